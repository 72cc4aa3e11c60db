//! Retention deletes whole sealed segments, oldest first, by age and by size; `earliest` moves
//! with them; a reader holding a deleted segment keeps reading it.

mod common;

use common::{OwnedInput, append_owned, read_all, small_config};
use dataplane_log::{AckMode, Partition, PartitionConfig, PartitionId, StartPosition, WritePath};

/// 40 batches of 8 records of 1000 bytes at times 0, 1000, 2000, ...: about five segments.
fn filled(dir: &std::path::Path, config: PartitionConfig) -> Partition {
    let (mut partition, _) = Partition::open(dir, PartitionId(0), config).expect("open");
    for batch in 0..40u64 {
        let records: Vec<OwnedInput> = (0..8)
            .map(|i| OwnedInput::numbered(batch * 8 + i, 1000))
            .collect();
        append_owned(&mut partition, &records, batch as i64 * 1000).expect("append");
    }
    partition.flush_now().expect("flush");
    assert!(partition.stats().segments_rolled >= 4);
    partition
}

fn segment_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "segment"))
        })
        .count()
}

#[test]
fn retention_by_size_deletes_the_oldest_sealed_segments_and_moves_earliest() {
    // Setup: about five segments of 64 KiB; a size limit of two segments' worth of files.
    // Expectation: the oldest segments go until the files fit, never the active one; earliest
    // moves to the first kept segment; reading from earliest starts there; the deleted files
    // are gone; a cursor asking for an older offset starts at earliest.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PartitionConfig {
        retention_bytes: Some(2 * 66 * 1024),
        ..small_config(WritePath::Pwrite, AckMode::Written)
    };
    let mut partition = filled(dir.path(), config);
    let before = segment_count(dir.path());
    let report = partition.enforce_retention(0).expect("retention");
    assert!(report.segments_deleted >= 2, "{report:?}");
    assert_eq!(segment_count(dir.path()), before - report.segments_deleted);
    let reader = partition.reader();
    let earliest = reader.earliest();
    assert_eq!(earliest, report.earliest);
    assert!(earliest.sequence.0 > 0);
    let records = read_all(&reader);
    assert_eq!(records[0].0.sequence, earliest.sequence.0);
    assert_eq!(records[0].0.offset, earliest.offset.0);
    assert_eq!(records.last().expect("records").0.sequence, 319);
    let mut old = reader.cursor(StartPosition::Offset {
        offset: dataplane_log::Offset(0),
        inclusive: true,
    });
    assert_eq!(
        old.next().expect("read").map(|r| r.sequence()),
        Some(earliest.sequence)
    );
    // A second pass has nothing left to do.
    assert_eq!(
        partition
            .enforce_retention(0)
            .expect("retention")
            .segments_deleted,
        0
    );
    // Offsets survive a reopen after deletion.
    drop(partition);
    let config = small_config(WritePath::Pwrite, AckMode::Written);
    let (partition, report) = Partition::open(dir.path(), PartitionId(0), config).expect("reopen");
    assert!(report.is_clean());
    assert_eq!(partition.reader().earliest(), earliest);
}

#[test]
fn retention_by_age_deletes_segments_whose_newest_record_is_too_old() {
    // Setup: records enqueued at 0..39 s; retention of 15 s evaluated at 40 s.
    // Expectation: exactly the sealed segments whose newest record is older than 25 s go, and
    // the first remaining record is older than 25 s only if it shares a segment with a newer one.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PartitionConfig {
        retention_ms: Some(15_000),
        ..small_config(WritePath::Pwrite, AckMode::Written)
    };
    let mut partition = filled(dir.path(), config);
    let report = partition.enforce_retention(40_000).expect("retention");
    assert!(report.segments_deleted >= 1, "{report:?}");
    let records = read_all(&partition.reader());
    let first = records[0].0;
    assert!(first.sequence > 0);
    assert_eq!(first.sequence, report.earliest.sequence.0);
    // The record just before the new earliest was in a deleted segment, whose newest record was
    // older than the cutoff.
    let previous_time = (first.sequence - 1) / 8 * 1000;
    assert!(
        (previous_time as i64) < 25_000,
        "a segment with a young record was deleted"
    );
    assert_eq!(
        partition
            .enforce_retention(0)
            .expect("retention")
            .segments_deleted,
        0,
        "nothing is too old at t=0"
    );
}

#[test]
fn a_reader_inside_a_deleted_segment_finishes_it_then_continues_at_earliest() {
    // Setup: a cursor reads the first record, then retention deletes every sealed segment.
    // Expectation: the cursor still reads the rest of the segment it holds (unlinked but
    // mapped) with intact payloads, then, as an Event Hubs reader behind retention does,
    // continues at the new earliest record and reads on to the end without an error.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PartitionConfig {
        retention_bytes: Some(1),
        ..small_config(WritePath::Pwrite, AckMode::Written)
    };
    let mut partition = filled(dir.path(), config);
    let reader = partition.reader();
    let mut cursor = reader.cursor(StartPosition::Earliest);
    assert_eq!(
        cursor.next().expect("read").map(|r| r.sequence().0),
        Some(0)
    );
    let report = partition.enforce_retention(0).expect("retention");
    assert!(report.segments_deleted >= 4);
    assert_eq!(
        segment_count(dir.path()),
        1,
        "only the active segment is left"
    );
    let earliest = reader.earliest().sequence.0;
    let (mut next, mut jumped) = (1, false);
    while let Some(record) = cursor.next().expect("read") {
        if record.sequence().0 != next {
            assert!(!jumped, "one jump, from the held segment to earliest");
            assert_eq!(record.sequence().0, earliest);
            (next, jumped) = (earliest, true);
        }
        assert_eq!(
            record.payload().expect("payload"),
            OwnedInput::numbered(next, 1000).payload.as_slice()
        );
        next += 1;
    }
    assert!(jumped);
    assert_eq!(next, 320);
}
