//! The next segment is prepared off the append path when the caller runs the request on
//! another thread, and inline (counted) when it does not.

mod common;

use common::{OwnedInput, append_owned, read_all, small_config};
use dataplane_log::{AckMode, Partition, PartitionConfig, PartitionId, WritePath};

fn fill(partition: &mut Partition, prepare_ahead: bool) {
    for batch in 0..40u64 {
        let records: Vec<OwnedInput> = (0..8)
            .map(|i| OwnedInput::numbered(batch * 8 + i, 1000))
            .collect();
        append_owned(partition, &records, 0).expect("append");
        if prepare_ahead && let Some(prep) = partition.next_segment_request() {
            // Asking again while one is outstanding hands out nothing.
            assert!(partition.next_segment_request().is_none());
            let prepared = std::thread::spawn(move || prep.prepare())
                .join()
                .expect("thread")
                .expect("prepare");
            partition.install_prepared(prepared).expect("install");
            assert!(
                partition.next_segment_request().is_none(),
                "one prepared segment is enough"
            );
        }
    }
}

#[test]
fn segments_prepared_on_another_thread_keep_rolls_off_the_append_path() {
    // Setup: after every append, run any segment request on a separate thread and install the
    // result. Expectation: several rolls, none of which prepared a segment inline; the log's
    // directory holds no leftover temporary files except the one spare.
    for write_path in [WritePath::Pwrite, WritePath::Mmap] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut partition, _) = Partition::open(
            dir.path(),
            PartitionId(0),
            small_config(write_path, AckMode::Written),
        )
        .expect("open");
        fill(&mut partition, true);
        let stats = partition.stats();
        assert!(stats.segments_rolled >= 3, "{stats:?}");
        assert_eq!(stats.segments_prepared_inline, 0, "{stats:?}");
        drop(partition);
        let temporary = std::fs::read_dir(dir.path())
            .expect("list")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            })
            .count();
        assert_eq!(
            temporary, 0,
            "dropping the partition deletes the unused spare"
        );
    }
}

#[test]
fn without_a_prepared_segment_a_roll_prepares_inline_and_counts_it() {
    // Setup: the same appends, never running segment requests, on both write paths and in
    // both ack modes, with zero fill on; then reopen. Expectation: every roll was an inline
    // preparation, visible in the stats; the inline segments (allocated, neither zeroed nor
    // pre-faulted) hold every record, read back the same before and after recovery.
    for write_path in [WritePath::Pwrite, WritePath::Mmap] {
        for ack in [AckMode::Written, AckMode::Durable] {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = PartitionConfig {
                zero_fill: true,
                ..small_config(write_path, ack)
            };
            let (mut partition, _) =
                Partition::open(dir.path(), PartitionId(0), config.clone()).expect("open");
            fill(&mut partition, false);
            partition.flush_now().expect("flush");
            let stats = partition.stats();
            assert!(stats.segments_rolled >= 3);
            assert_eq!(stats.segments_prepared_inline, stats.segments_rolled);
            let expected: Vec<OwnedInput> =
                (0..320).map(|i| OwnedInput::numbered(i, 1000)).collect();
            let records = |partition: &Partition| -> Vec<OwnedInput> {
                read_all(&partition.reader())
                    .into_iter()
                    .map(|(_, record)| record)
                    .collect()
            };
            assert!(
                records(&partition) == expected,
                "{write_path:?} {ack:?}: every record, in order"
            );
            drop(partition);
            let (reopened, report) =
                Partition::open(dir.path(), PartitionId(0), config).expect("reopen");
            assert!(report.is_clean(), "{write_path:?} {ack:?}: {report:?}");
            assert!(
                records(&reopened) == expected,
                "{write_path:?} {ack:?}: every record after reopening"
            );
        }
    }
}

#[test]
fn the_next_segment_is_requested_only_once_the_active_one_is_half_full() {
    // Setup: 64 KiB segments, batches of about 4 KiB, asking for the next segment right after
    // open and after every append, and preparing it at once; then the same with
    // `prepare_next_at_percent = 0`.
    // Expectation: at 50 % no request while the active segment is below half its data area,
    // one as soon as it is at or past it, none while one is installed; after each roll the new
    // segment waits for half again. At 0 % the request comes right after open and after every
    // roll. No roll ever prepares inline.
    for percent in [50u8, 0] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dataplane_log::PartitionConfig {
            prepare_next_at_percent: percent,
            ..small_config(WritePath::Pwrite, AckMode::Written)
        };
        let threshold = config.segment_data_bytes() * u64::from(percent);
        let (mut partition, _) = Partition::open(dir.path(), PartitionId(0), config).expect("open");
        let mut segment_base = 0u64;
        let mut requested_in_segment = false;
        let mut requests = 0;
        for batch in 0..=60u64 {
            if batch > 0 {
                let rolls = partition.stats().segments_rolled;
                let records: Vec<OwnedInput> = (0..4)
                    .map(|i| OwnedInput::numbered(batch * 4 + i, 1000))
                    .collect();
                let receipt = append_owned(&mut partition, &records, 0).expect("append");
                if partition.stats().segments_rolled > rolls {
                    segment_base = receipt.first_offset.0;
                    requested_in_segment = false;
                }
            }
            let fill = (partition.written_end().offset.0 - segment_base) * 100;
            match partition.next_segment_request() {
                Some(prep) => {
                    assert!(
                        !requested_in_segment,
                        "{percent} %: one request per segment"
                    );
                    assert!(fill >= threshold, "{percent} %: asked at {fill}");
                    requests += 1;
                    requested_in_segment = true;
                    partition
                        .install_prepared(prep.prepare().expect("prepare"))
                        .expect("install");
                }
                None => assert!(
                    requested_in_segment || fill < threshold,
                    "{percent} %: nothing asked at {fill}"
                ),
            }
        }
        let stats = partition.stats();
        assert!(stats.segments_rolled >= 3, "{stats:?}");
        assert_eq!(stats.segments_prepared_inline, 0, "{stats:?}");
        if percent == 0 {
            assert_eq!(requests, stats.segments_rolled + 1, "{stats:?}");
        }
    }
}
