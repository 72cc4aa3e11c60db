//! Readers on other threads never see uncommitted records in durable mode, while the owner
//! keeps appending, rolling segments and flushing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{OwnedInput, append_owned, small_config};
use dataplane_log::{AckMode, Offset, Partition, PartitionId, StartPosition, WritePath};

fn readers_see_only_flushed_records(write_path: WritePath) {
    // Setup: the owner appends batches of numbered records, rolling 64 KiB segments, and every
    // few batches takes a flush request, publishes the request's end in `synced_end` *before*
    // completing it, then completes it. Two reader threads tail the partition meanwhile.
    // Expectation: every record a reader sees ends at or before `synced_end` as loaded after
    // the read (a record visible before its flush completed would break this), carries the
    // payload derived from its sequence number, and readers see every record in order.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(write_path, AckMode::Durable);
    let (mut partition, _) = Partition::open(dir.path(), PartitionId(0), config).expect("open");
    let synced_end = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let total_records: u64 = 6_000;
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let reader = partition.reader();
            let (synced_end, done) = (Arc::clone(&synced_end), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut cursor = reader.cursor(StartPosition::Earliest);
                let mut next_sequence = 0u64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    while let Some(record) = cursor.next().expect("read") {
                        let synced = synced_end.load(Ordering::Acquire);
                        assert!(
                            record.next_offset().0 <= synced,
                            "record visible before its flush completed"
                        );
                        assert_eq!(record.sequence().0, next_sequence);
                        let expected = OwnedInput::numbered(
                            next_sequence,
                            40 + (next_sequence % 300) as usize,
                        );
                        assert_eq!(
                            record.payload().expect("payload"),
                            expected.payload.as_slice()
                        );
                        next_sequence += 1;
                    }
                    assert!(!reader.has_records_after(cursor.position()) || !finished);
                    if finished && next_sequence == total_records {
                        return next_sequence;
                    }
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut sequence = 0u64;
    let mut batches = 0u64;
    while sequence < total_records {
        let size = (1 + batches % 23).min(total_records - sequence);
        let batch: Vec<OwnedInput> = (sequence..sequence + size)
            .map(|s| OwnedInput::numbered(s, 40 + (s % 300) as usize))
            .collect();
        append_owned(&mut partition, &batch, batches as i64).expect("append");
        sequence += size;
        batches += 1;
        if batches.is_multiple_of(5) || sequence == total_records {
            let request = partition
                .take_flush_request()
                .expect("the staged records are written")
                .expect("new records to flush");
            request.sync().expect("sync");
            synced_end.store(request.end().offset.0, Ordering::Release);
            partition.flush_complete(request).expect("complete");
        }
        let committed = partition.committed().end.offset;
        assert!(committed <= Offset(synced_end.load(Ordering::Acquire)));
        assert!(committed <= partition.written_end().offset);
    }
    assert!(
        partition.stats().segments_rolled >= 3,
        "the test spans several segments"
    );
    done.store(true, Ordering::Release);
    for reader in readers {
        assert_eq!(reader.join().expect("reader thread"), total_records);
    }
}

#[test]
fn readers_on_other_threads_see_only_flushed_records_with_pwrite() {
    readers_see_only_flushed_records(WritePath::Pwrite);
}

#[test]
fn readers_on_other_threads_see_only_flushed_records_with_mmap_writes() {
    readers_see_only_flushed_records(WritePath::Mmap);
}
