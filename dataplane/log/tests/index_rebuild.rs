//! Index files are a cache: missing, damaged or stale ones are rebuilt from their segment at
//! open (and reported), sealed ones that check out are kept, and lookups work either way.

mod common;

use common::{OwnedInput, append_owned, segment_files, small_config};
use dataplane_log::{
    AckMode, Partition, PartitionConfig, PartitionId, SequenceNumber, StartPosition, WritePath,
};

fn build(dir: &std::path::Path, config: &PartitionConfig) -> u64 {
    let (mut partition, _) = Partition::open(dir, PartitionId(0), config.clone()).expect("open");
    for batch in 0..30u64 {
        let records: Vec<OwnedInput> = (0..8)
            .map(|i| OwnedInput::numbered(batch * 8 + i, 600))
            .collect();
        append_owned(&mut partition, &records, batch as i64 * 10).expect("append");
    }
    partition.flush_now().expect("flush");
    assert!(partition.stats().segments_rolled >= 2);
    partition.written_end().sequence.0
}

fn assert_lookups(partition: &Partition, records: u64) {
    let reader = partition.reader();
    for sequence in (0..records).step_by(7) {
        let mut cursor = reader.cursor(StartPosition::Sequence(SequenceNumber(sequence)));
        let record = cursor.next().expect("read").expect("record");
        assert_eq!(record.sequence().0, sequence);
        let offset = record.offset();
        let mut by_offset = reader.cursor(StartPosition::Offset {
            offset,
            inclusive: true,
        });
        assert_eq!(
            by_offset.next().expect("read").map(|r| r.sequence().0),
            Some(sequence)
        );
        let mut by_time = reader.cursor(StartPosition::EnqueuedTime(record.enqueued_ms()));
        assert_eq!(
            by_time.next().expect("read").map(|r| r.sequence().0),
            Some(sequence / 8 * 8)
        );
    }
}

#[test]
fn sealed_indexes_are_kept_and_only_the_active_one_is_rebuilt_on_a_clean_open() {
    // Setup: a cleanly written log reopened. Expectation: only the active segment's index is
    // rebuilt (it is never sealed); the sealed ones validate against their segments.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    let records = build(dir.path(), &config);
    let (partition, report) = Partition::open(dir.path(), PartitionId(0), config).expect("open");
    let active = segment_files(dir.path())
        .last()
        .expect("segments")
        .1
        .with_extension("index");
    assert_eq!(report.indexes_rebuilt, [active]);
    assert_lookups(&partition, records);
}

#[test]
fn missing_damaged_and_stale_indexes_are_rebuilt_and_lookups_still_work() {
    // Setup: the first sealed index deleted, the second overwritten with garbage; then, in a
    // second round, every index left from a different index interval.
    // Expectation: each is rebuilt and reported, and lookups by sequence, offset and time land
    // on the right records.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    let records = build(dir.path(), &config);
    let segments = segment_files(dir.path());
    let first = segments[0].1.with_extension("index");
    let second = segments[1].1.with_extension("index");
    std::fs::remove_file(&first).expect("delete index");
    std::fs::write(&second, vec![0xA5u8; 300]).expect("damage index");
    let (partition, report) =
        Partition::open(dir.path(), PartitionId(0), config.clone()).expect("open");
    assert!(report.indexes_rebuilt.contains(&first), "{report:?}");
    assert!(report.indexes_rebuilt.contains(&second), "{report:?}");
    assert!(report.is_clean());
    assert_lookups(&partition, records);
    drop(partition);

    let coarse = PartitionConfig {
        index_interval_bytes: 4096,
        ..config
    };
    let (partition, report) = Partition::open(dir.path(), PartitionId(0), coarse).expect("open");
    assert_eq!(report.indexes_rebuilt.len(), segments.len(), "{report:?}");
    assert_lookups(&partition, records);
}
