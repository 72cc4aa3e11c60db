//! Segments roll when full: files named by base offset, offsets contiguous across segments,
//! cursors cross segment boundaries, and a reopened partition continues where it stopped.

mod common;

use common::{OwnedInput, append_owned, read_all, small_config};
use dataplane_log::{AckMode, Partition, PartitionId, SequenceNumber, StartPosition, WritePath};

fn segment_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".segment"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_full_segment_rolls_and_readers_cross_into_the_next() {
    // Setup: 64 KiB segments, 300 records of 1 KiB in batches of 10, flushed as they go.
    // Expectation: several segment files, each named by the offset of its first record (the
    // offset after the previous segment's last record); a single cursor reads all 300 in order
    // across the boundaries; a reopen recovers cleanly and appends continue the sequence.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    let (mut partition, _) =
        Partition::open(dir.path(), PartitionId(0), config.clone()).expect("open");
    let mut first_offsets = Vec::new();
    for batch in 0..30u64 {
        let records: Vec<OwnedInput> = (0..10)
            .map(|i| OwnedInput::numbered(batch * 10 + i, 1024))
            .collect();
        let receipt = append_owned(&mut partition, &records, batch as i64).expect("append");
        first_offsets.push(receipt.first_offset);
        partition.flush_now().expect("flush");
    }
    let rolls = partition.stats().segments_rolled;
    assert!(
        rolls >= 4,
        "300 KiB over 64 KiB segments rolls at least four times, rolled {rolls}"
    );
    let names = segment_files(dir.path());
    assert_eq!(names.len() as u64, rolls + 1);
    for name in &names[1..] {
        let base: u64 = name
            .trim_end_matches(".segment")
            .parse()
            .expect("numeric name");
        assert!(
            first_offsets.iter().any(|o| o.0 == base),
            "segment {name} starts at a batch boundary"
        );
    }
    let records = read_all(&partition.reader());
    assert_eq!(records.len(), 300);
    for (i, (header, record)) in records.iter().enumerate() {
        assert_eq!(header.sequence, i as u64);
        assert_eq!(*record, OwnedInput::numbered(i as u64, 1024));
    }
    let end = partition.written_end();
    drop(partition);

    let (mut partition, report) =
        Partition::open(dir.path(), PartitionId(0), config).expect("reopen");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.end, end);
    assert_eq!(report.segments, names.len());
    let receipt =
        append_owned(&mut partition, &[OwnedInput::numbered(300, 1024)], 100).expect("append");
    assert_eq!(receipt.first_sequence, SequenceNumber(300));
    assert_eq!(receipt.first_offset, end.offset);
    partition.flush_now().expect("flush");
    let mut cursor = partition
        .reader()
        .cursor(StartPosition::Sequence(SequenceNumber(299)));
    assert_eq!(
        cursor.next().expect("read").map(|r| r.sequence().0),
        Some(299)
    );
    assert_eq!(
        cursor.next().expect("read").map(|r| r.sequence().0),
        Some(300)
    );
    assert!(cursor.next().expect("read").is_none());
}

#[test]
fn a_batch_larger_than_a_segment_is_refused_and_nothing_is_appended() {
    // Setup: a batch whose encoded size exceeds a segment's data area.
    // Expectation: BatchTooLarge, a recoverable error: the partition is not poisoned and the
    // written end did not move.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(WritePath::Pwrite, AckMode::Written);
    let (mut partition, _) = Partition::open(dir.path(), PartitionId(0), config).expect("open");
    let before = partition.written_end();
    let records: Vec<OwnedInput> = (0..70).map(|i| OwnedInput::numbered(i, 1024)).collect();
    let error = append_owned(&mut partition, &records, 0).expect_err("too large");
    assert!(
        matches!(error, dataplane_log::Error::BatchTooLarge { .. }),
        "{error}"
    );
    let error =
        append_owned(&mut partition, &[OwnedInput::numbered(0, 70_000)], 0).expect_err("too large");
    assert!(
        matches!(error, dataplane_log::Error::RecordTooLarge { .. }),
        "{error}"
    );
    assert!(matches!(
        partition.append(&[], 0),
        Err(dataplane_log::Error::EmptyBatch)
    ));
    assert!(!partition.is_poisoned());
    assert_eq!(partition.written_end(), before);
}
