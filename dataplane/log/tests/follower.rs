//! A read-only follower (what `shoal events tail` uses) reads a partition directory that a
//! writer appends to, or that nobody holds: across rolls and retention, next to a torn or
//! half-written tail, without taking the lock or changing a byte.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{OwnedInput, Rng, append_owned, read_all, small_config};
use dataplane_log::{
    AckMode, Error, Follower, Partition, PartitionConfig, PartitionId, RecordHeader, StartPosition,
    WritePath,
};

/// Every record readable from `cursor` now, checked against `OwnedInput::numbered`.
fn drain(cursor: &mut dataplane_log::Cursor, payload_bytes: impl Fn(u64) -> usize) -> Vec<u64> {
    let mut sequences = Vec::new();
    while let Some(view) = cursor.next().expect("readable records read back") {
        let sequence = view.sequence().0;
        assert!(view.crc_is_valid());
        assert_eq!(
            OwnedInput::from_view(&view),
            OwnedInput::numbered(sequence, payload_bytes(sequence)),
            "record {sequence}"
        );
        sequences.push(sequence);
    }
    sequences
}

fn payload_bytes(sequence: u64) -> usize {
    40 + (sequence * 37 % 700) as usize
}

/// A fingerprint of every file in `dir`: name, length and content.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect()
}

#[test]
fn a_follower_on_another_thread_sees_every_record_while_the_writer_appends_and_rolls() {
    // Setup: for each write path and ack mode, a writer thread appends 3000 records in batches
    // of 1 to 9 (durable mode flushes every few batches, so records reach the file only at the
    // flush request on the pwrite path), rolling 64 KiB segments many times, while this thread
    // opens a follower and refreshes and reads in a loop.
    // Expectation: the follower never errors or panics, reads each record exactly once, in
    // order, with its content intact, and ends having read all 3000 across every roll.
    let cases = [
        (WritePath::Pwrite, AckMode::Durable),
        (WritePath::Mmap, AckMode::Durable),
        (WritePath::Pwrite, AckMode::Written),
        (WritePath::Mmap, AckMode::Written),
    ];
    for (write_path, ack) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut partition, _) =
            Partition::open(dir.path(), PartitionId(2), small_config(write_path, ack))
                .expect("open");
        let done = Arc::new(AtomicBool::new(false));
        let total = 3000u64;
        let writer = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut sequence = 0u64;
                let mut batch = 0u64;
                while sequence < total {
                    let size = (1 + batch % 9).min(total - sequence);
                    let records: Vec<OwnedInput> = (sequence..sequence + size)
                        .map(|s| OwnedInput::numbered(s, payload_bytes(s)))
                        .collect();
                    append_owned(&mut partition, &records, batch as i64).expect("append");
                    if let Some(prep) = partition.next_segment_request() {
                        partition
                            .install_prepared(prep.prepare().expect("prepare"))
                            .expect("install");
                    }
                    if batch % 4 == 3 || sequence + size == total {
                        partition.flush_now().expect("flush");
                    }
                    sequence += size;
                    batch += 1;
                }
                done.store(true, Ordering::Release);
                partition.stats()
            })
        };
        let mut follower = Follower::open(dir.path()).expect("follow");
        assert_eq!(follower.partition(), PartitionId(2));
        let mut cursor = follower.cursor(StartPosition::Earliest);
        let mut seen = Vec::new();
        loop {
            let finished = done.load(Ordering::Acquire);
            follower.refresh().expect("refresh");
            seen.extend(drain(&mut cursor, payload_bytes));
            if finished && seen.len() as u64 == total {
                break;
            }
            assert!(
                !finished || seen.len() as u64 <= total,
                "{write_path:?}/{ack:?}: read more than was appended"
            );
            std::thread::yield_now();
        }
        let stats = writer.join().expect("writer");
        assert!(stats.segments_rolled >= 5, "{stats:?}");
        assert_eq!(
            seen,
            (0..total).collect::<Vec<_>>(),
            "{write_path:?}/{ack:?}"
        );
        assert_eq!(follower.readable().end.sequence.0, total);
        assert_eq!(
            follower.readable().last.map(|l| l.sequence.0),
            Some(total - 1)
        );
        assert_eq!(
            follower.segment_count() as u64,
            stats.segments_rolled + 1,
            "every segment is followed"
        );
    }
}

#[test]
fn a_follower_follows_rolls_and_retention_in_the_same_process() {
    // Setup: a writer with 64 KiB segments and size retention, and a follower opened on the
    // same directory while the writer holds the lock. Records are appended and flushed until
    // several rolls happened, then retention deletes the oldest segments.
    // Expectation: each refresh reports the records and segments added; after retention the
    // follower drops the deleted segments, its earliest position moves to the writer's, a cursor
    // from Earliest starts there, and the cursor opened before keeps reading to the end; time
    // and sequence lookups land on the same records as the writer's own reader.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    let (mut partition, _) =
        Partition::open(dir.path(), PartitionId(0), config.clone()).expect("open");
    let mut follower = Follower::open(dir.path()).expect("follow an empty partition");
    assert_eq!(follower.readable().end.sequence.0, 0);
    assert_eq!(follower.readable().last, None);
    let mut cursor = follower.cursor(StartPosition::Earliest);
    assert!(drain(&mut cursor, payload_bytes).is_empty());

    let mut appended = 0u64;
    let append_rounds = |partition: &mut Partition, appended: &mut u64, rounds: u64| {
        for round in 0..rounds {
            let records: Vec<OwnedInput> = (*appended..*appended + 10)
                .map(|s| OwnedInput::numbered(s, payload_bytes(s)))
                .collect();
            append_owned(partition, &records, (*appended / 10 + round) as i64).expect("append");
            *appended += 10;
            partition.flush_now().expect("flush");
        }
    };
    append_rounds(&mut partition, &mut appended, 3);
    let report = follower.refresh().expect("refresh");
    assert_eq!(report.records_added, 30);
    assert_eq!(report.segments_added, 0);
    assert_eq!(
        drain(&mut cursor, payload_bytes),
        (0..30).collect::<Vec<_>>()
    );

    append_rounds(&mut partition, &mut appended, 40);
    let rolled = partition.stats().segments_rolled;
    assert!(rolled >= 3, "{:?}", partition.stats());
    let report = follower.refresh().expect("refresh");
    assert_eq!(report.records_added, 400);
    assert_eq!(report.segments_added as u64, rolled);
    assert_eq!(report.end, partition.committed().end);
    assert_eq!(
        drain(&mut cursor, payload_bytes),
        (30..430).collect::<Vec<_>>()
    );

    // Lookups agree with the owner's reader.
    let owner = partition.reader();
    for start in [
        StartPosition::Sequence(dataplane_log::SequenceNumber(217)),
        StartPosition::EnqueuedTime(20),
        StartPosition::Latest,
    ] {
        let mine = follower.cursor(start).position();
        assert_eq!(mine, owner.cursor(start).position(), "{start:?}");
    }

    // Retention: keep about two segments' worth of files.
    drop(partition);
    let config = PartitionConfig {
        retention_bytes: Some(2 * 64 * 1024 + 8192),
        ..config
    };
    let (mut partition, _) = Partition::open(dir.path(), PartitionId(0), config).expect("reopen");
    let deleted = partition.enforce_retention(0).expect("retention");
    assert!(deleted.segments_deleted >= 1, "{deleted:?}");
    append_rounds(&mut partition, &mut appended, 2);
    let report = follower.refresh().expect("refresh after retention");
    assert_eq!(report.segments_dropped, deleted.segments_deleted);
    assert_eq!(report.records_added, 20);
    assert_eq!(follower.earliest(), partition.reader().earliest());
    assert_eq!(
        drain(&mut cursor, payload_bytes),
        (430..450).collect::<Vec<_>>()
    );
    let mut from_earliest = follower.cursor(StartPosition::Earliest);
    let rest = drain(&mut from_earliest, payload_bytes);
    assert_eq!(rest.first().copied(), Some(deleted.earliest.sequence.0));
    assert_eq!(rest.last().copied(), Some(449));
}

#[test]
fn a_follower_needs_no_lock_holder_and_changes_nothing_on_disk() {
    // Setup: a partition written (two rolls), flushed and closed; its index files deleted.
    // A follower opens it with nobody holding LOCK, reads everything, refreshes.
    // Expectation: every record reads back; no file was created, removed or changed (the
    // missing indexes are rebuilt in memory only); a writer can open (and lock) the partition
    // while the follower is alive, and the follower then sees what it appends.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    {
        let (mut partition, _) =
            Partition::open(dir.path(), PartitionId(0), config.clone()).expect("open");
        for batch in 0..30u64 {
            let records: Vec<OwnedInput> = (batch * 10..batch * 10 + 10)
                .map(|s| OwnedInput::numbered(s, payload_bytes(s)))
                .collect();
            append_owned(&mut partition, &records, batch as i64).expect("append");
        }
        partition.flush_now().expect("flush");
        assert!(partition.stats().segments_rolled >= 2);
    }
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "index") {
            std::fs::remove_file(path).expect("remove index");
        }
    }
    let before = snapshot(dir.path());
    let mut follower = Follower::open(dir.path()).expect("follow");
    let mut cursor = follower.cursor(StartPosition::Earliest);
    assert_eq!(
        drain(&mut cursor, payload_bytes),
        (0..300).collect::<Vec<_>>()
    );
    follower.refresh().expect("refresh");
    assert_eq!(snapshot(dir.path()), before, "the follower changed nothing");

    let (mut partition, _) =
        Partition::open(dir.path(), PartitionId(0), config).expect("a writer takes the lock");
    append_owned(
        &mut partition,
        &[OwnedInput::numbered(300, payload_bytes(300))],
        99,
    )
    .expect("append");
    partition.flush_now().expect("flush");
    follower.refresh().expect("refresh");
    assert_eq!(drain(&mut cursor, payload_bytes), [300]);
}

#[test]
fn an_empty_directory_is_reported_not_followed() {
    // Setup: a directory without segments. Expectation: NoSegments, naming it; nothing created.
    let dir = tempfile::tempdir().expect("tempdir");
    let error = Follower::open(dir.path()).expect_err("nothing to follow");
    assert!(matches!(error, Error::NoSegments { .. }), "{error}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
}

/// Records of the active segment: (file position, length, sequence), from the headers.
fn active_records(dir: &Path) -> (std::path::PathBuf, Vec<(u64, u64, u64)>) {
    let files = common::segment_files(dir);
    let (base, path) = files.last().expect("a segment").clone();
    let bytes = std::fs::read(&path).expect("read");
    let mut records = Vec::new();
    let mut at = 64usize;
    while at + 40 <= bytes.len() {
        let mut head = [0u8; 40];
        head.copy_from_slice(&bytes[at..at + 40]);
        let header = RecordHeader::decode(&head);
        if header.length == 0 {
            break;
        }
        assert_eq!(header.offset, base + at as u64 - 64);
        records.push((at as u64, u64::from(header.length), header.sequence));
        at += header.length.next_multiple_of(8) as usize;
    }
    (path, records)
}

#[test]
fn a_torn_or_half_written_tail_never_panics_a_follower_and_recovery_lets_it_go_on() {
    // Setup: 40 times, a copy of a flushed partition whose active segment is damaged from a
    // random byte on: zeros, random scraps (a torn write), or a valid record's bytes with its
    // CRC or one body byte changed (a record caught half written). A follower opens the copy
    // and refreshes twice, more scraps being written between the refreshes; then a writer
    // opens the copy (its recovery truncates the tail) and appends two records.
    // Expectation: no panic and no error; the follower reads exactly the records that end
    // before the first damaged byte, reports the tail as incomplete when the damage is not
    // zeros, and after the writer's recovery and appends reads the two new records.
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    let source = tempfile::tempdir().expect("tempdir");
    {
        let (mut partition, _) =
            Partition::open(source.path(), PartitionId(0), config.clone()).expect("open");
        for batch in 0..20u64 {
            let records: Vec<OwnedInput> = (batch * 7..batch * 7 + 7)
                .map(|s| OwnedInput::numbered(s, payload_bytes(s)))
                .collect();
            append_owned(&mut partition, &records, batch as i64).expect("append");
        }
        partition.flush_now().expect("flush");
    }
    let (source_active, records) = active_records(source.path());
    assert!(records.len() >= 5, "records to tear");
    let original = std::fs::read(&source_active).expect("read");
    let first = records[0].0;
    let end = records
        .last()
        .map(|r| r.0 + r.1.next_multiple_of(8))
        .expect("records");
    let mut rng = Rng::from_env("follower_torn_tail");
    for iteration in 0..40 {
        let dir = tempfile::tempdir().expect("tempdir");
        common::copy_dir(source.path(), dir.path());
        let active = dir
            .path()
            .join(source_active.file_name().expect("file name"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&active)
            .expect("open segment");
        let cut = first + rng.below(end - first);
        let damage = iteration % 3;
        match damage {
            0 => file
                .write_all_at(&vec![0u8; (end - cut) as usize], cut)
                .expect("zeros"),
            1 => {
                let scraps: Vec<u8> = (0..=rng.below(300))
                    .map(|_| rng.next_u64() as u8 | 1)
                    .collect();
                file.write_all_at(&vec![0u8; (end - cut) as usize], cut)
                    .expect("zeros");
                file.write_all_at(&scraps, cut).expect("scraps");
            }
            _ => {
                // Change one byte inside the record holding the cut: its CRC no longer matches.
                let mut byte = [0u8];
                file.read_exact_at(&mut byte, cut).expect("read");
                file.write_all_at(&[byte[0] ^ 0x5A], cut).expect("flip");
            }
        }
        // A record survives when its bytes (padding aside) did not change and none before it
        // changed: the follower stops at the first record that does not validate.
        let damaged = std::fs::read(&active).expect("read");
        let survivors = records
            .iter()
            .take_while(|r| {
                let range = r.0 as usize..(r.0 + r.1) as usize;
                damaged[range.clone()] == original[range]
            })
            .count();
        let mut follower = Follower::open(dir.path()).expect("a follower opens a torn tail");
        let mut cursor = follower.cursor(StartPosition::Sequence(dataplane_log::SequenceNumber(
            records[0].2,
        )));
        let seen = drain(&mut cursor, payload_bytes);
        assert_eq!(
            seen.len(),
            survivors,
            "iteration {iteration}: damage {damage} at {cut}"
        );
        assert_eq!(
            follower.readable().end.sequence.0,
            records[0].2 + survivors as u64,
            "iteration {iteration}"
        );
        let scraps: Vec<u8> = (0..=rng.below(64))
            .map(|_| rng.next_u64() as u8 | 1)
            .collect();
        file.write_all_at(&scraps, end + 8).expect("more scraps");
        let report = follower.refresh().expect("refresh");
        assert_eq!(report.records_added, 0, "iteration {iteration}");
        let tail_is_zeros = damage == 0 && records.get(survivors).is_none_or(|r| r.0 >= cut);
        assert!(
            tail_is_zeros || report.incomplete_tail.is_some(),
            "iteration {iteration}: {report:?}"
        );
        assert!(drain(&mut cursor, payload_bytes).is_empty());
        drop(file);

        // The writer's recovery truncates the tail; appends continue where the follower stopped.
        let next = follower.readable().end.sequence.0;
        let Ok((mut partition, _)) = Partition::open(dir.path(), PartitionId(0), config.clone())
        else {
            // Scraps that happen to leave a valid record after the damage are interior
            // corruption for recovery; the follower only had to survive them.
            continue;
        };
        assert_eq!(
            partition.written_end().sequence.0,
            next,
            "iteration {iteration}"
        );
        let more: Vec<OwnedInput> = (next..next + 2)
            .map(|s| OwnedInput::numbered(s, payload_bytes(s)))
            .collect();
        append_owned(&mut partition, &more, 1000).expect("append after recovery");
        partition.flush_now().expect("flush");
        follower.refresh().expect("refresh after recovery");
        assert_eq!(
            drain(&mut cursor, payload_bytes),
            [next, next + 1],
            "iteration {iteration}"
        );
        assert_eq!(read_all(&partition.reader()).len() as u64, next + 2);
    }
}

#[test]
fn records_larger_than_a_read_and_across_read_boundaries_are_followed() {
    // Setup: 4 MiB segments in written mode; records from 40 bytes to 300 KiB (larger than
    // the follower's first read of 64 KiB, and than its doubled reads), appended in small
    // batches, with a refresh after every batch, and a second follower opened at the end.
    // Expectation: both followers read every record once, in order, intact; the incremental
    // one never reports a record it could not read in full as readable.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PartitionConfig {
        segment_bytes: 4 << 20,
        ..small_config(WritePath::Pwrite, AckMode::Written)
    };
    let (mut partition, _) = Partition::open(dir.path(), PartitionId(0), config).expect("open");
    let size = |s: u64| match s % 11 {
        0 => 300 * 1024,
        3 => 70 * 1024 + (s as usize % 4096),
        _ => 40 + (s as usize * 97) % 5000,
    };
    let mut follower = Follower::open(dir.path()).expect("follow");
    let mut cursor = follower.cursor(StartPosition::Earliest);
    let mut seen = Vec::new();
    let mut sequence = 0u64;
    for batch in 0..120u64 {
        let records: Vec<OwnedInput> = (sequence..sequence + 1 + batch % 3)
            .map(|s| OwnedInput::numbered(s, size(s)))
            .collect();
        sequence += records.len() as u64;
        append_owned(&mut partition, &records, batch as i64).expect("append");
        if let Some(prep) = partition.next_segment_request() {
            partition
                .install_prepared(prep.prepare().expect("prepare"))
                .expect("install");
        }
        let report = follower.refresh().expect("refresh");
        assert_eq!(report.end, partition.committed().end, "batch {batch}");
        seen.extend(drain(&mut cursor, size));
    }
    assert!(partition.stats().segments_rolled >= 2);
    assert_eq!(seen, (0..sequence).collect::<Vec<_>>());
    let late = Follower::open(dir.path()).expect("follow late");
    let mut cursor = late.cursor(StartPosition::Earliest);
    assert_eq!(drain(&mut cursor, size), (0..sequence).collect::<Vec<_>>());
}
