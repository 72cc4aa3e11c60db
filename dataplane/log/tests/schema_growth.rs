//! Fields appended to the record schema: a partition written before they existed opens, its
//! records read back with the new fields absent, and records carrying them append and read
//! back next to the old ones.
//!
//! `tests/fixtures/first_release/00000000000000000000.segment` was written by this crate as of
//! commit 53c8997, whose schema ended at `payload`: partition 3, 16 KiB segments, three records
//! (every field of that schema, a bare payload, every field again) in two batches.

mod common;

use common::{OwnedInput, append_owned, read_all};
use dataplane_log::{AckMode, Partition, PartitionConfig, PartitionId, WritePath};

const FIXTURE: &str = "tests/fixtures/first_release";

fn config(write_path: WritePath) -> PartitionConfig {
    PartitionConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 256,
        write_path,
        ack: AckMode::Durable,
        retention_ms: None,
        retention_bytes: None,
        prefault: false,
        zero_fill: false,
        prepare_next_at_percent: 50,
        staged_bytes_max: 1 << 20,
    }
}

fn first_release_records() -> Vec<OwnedInput> {
    let full = OwnedInput {
        message_id: Some("msg-0001".to_owned()),
        correlation_id: Some("corr-0001".to_owned()),
        user_id: Some(b"\x00\x01user".to_vec()),
        content_type: Some("application/json".to_owned()),
        content_encoding: Some("utf-8".to_owned()),
        creation_time_ms: Some(1_767_225_600_000),
        expiry_time_ms: Some(1_767_229_200_000),
        connection_device_id: Some("sensor-000042".to_owned()),
        connection_module_id: Some("thermostat".to_owned()),
        auth_method: Some(r#"{"scope":"device","type":"sas","issuer":"iothub"}"#.to_owned()),
        auth_generation_id: Some("638712345678901234".to_owned()),
        message_source: Some("Telemetry".to_owned()),
        properties: vec![
            ("temperatureAlert".to_owned(), "false".to_owned()),
            (String::new(), "é".to_owned()),
        ],
        payload: b"{\"temperature\":21.5}".to_vec(),
        ..OwnedInput::default()
    };
    let bare = OwnedInput {
        payload: b"bare".to_vec(),
        ..OwnedInput::default()
    };
    vec![full.clone(), bare, full]
}

#[test]
fn a_partition_written_before_the_new_fields_reads_back_and_takes_records_with_them() {
    // Setup: a copy of the first-release segment, opened on each write path; then a record
    // with the four new fields (and one with two of them) appended, flushed, and the partition
    // reopened. Expectation: the old records read back field for field with the new fields
    // absent, at their original positions and times; the new records read back with theirs;
    // recovery finds nothing to repair, before and after.
    for write_path in [WritePath::Pwrite, WritePath::Mmap] {
        let dir = tempfile::tempdir().expect("tempdir");
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
        common::copy_dir(&fixture, dir.path());
        let (mut partition, report) =
            Partition::open(dir.path(), PartitionId(3), config(write_path)).expect("open");
        assert!(report.is_clean(), "{report:?}");
        let old = first_release_records();
        let records = read_all(&partition.reader());
        let inputs: Vec<OwnedInput> = records.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(inputs, old);
        let times: Vec<i64> = records.iter().map(|(h, _)| h.enqueued_ms).collect();
        assert_eq!(
            times,
            [1_767_225_600_123, 1_767_225_600_123, 1_767_225_600_456]
        );

        let tagged = OwnedInput {
            interface_id: Some("dtmi:azureiot:DeviceManagement:DeviceInformation;1".to_owned()),
            component_name: Some("thermostat1".to_owned()),
            data_schema: Some("dtmi:com:example:TemperatureController;2".to_owned()),
            output_name: Some("alerts".to_owned()),
            ..OwnedInput::numbered(3, 40)
        };
        let partly = OwnedInput {
            component_name: Some("thermostat2".to_owned()),
            output_name: Some(String::new()),
            ..OwnedInput::numbered(4, 10)
        };
        append_owned(
            &mut partition,
            &[tagged.clone(), partly.clone()],
            1_767_225_601_000,
        )
        .expect("append");
        partition.flush_now().expect("flush");
        drop(partition);

        let (partition, report) =
            Partition::open(dir.path(), PartitionId(3), config(write_path)).expect("reopen");
        assert!(report.is_clean(), "{report:?}");
        let mut expected = old;
        expected.extend([tagged, partly]);
        let inputs: Vec<OwnedInput> = read_all(&partition.reader())
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(inputs, expected);
    }
}
