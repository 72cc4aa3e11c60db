//! A torn tail (the last records of the active segment cut short by a crash, the rest of the
//! area never written or holding scraps) is truncated, reported with file, position and bytes,
//! and overwritten by the next append.

mod common;

use std::os::unix::fs::FileExt;

use common::{OwnedInput, Rng, append_owned, copy_dir, read_all, record_spans, small_config};
use dataplane_log::{AckMode, Error, Partition, PartitionConfig, PartitionId, WritePath};

fn pristine(config: &PartitionConfig) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut partition, _) =
        Partition::open(dir.path(), PartitionId(0), config.clone()).expect("open");
    for batch in 0..30u64 {
        let records: Vec<OwnedInput> = (0..7)
            .map(|i| {
                OwnedInput::numbered(batch * 7 + i, 200 + ((batch * 7 + i) * 37 % 900) as usize)
            })
            .collect();
        append_owned(&mut partition, &records, batch as i64).expect("append");
    }
    partition.flush_now().expect("flush");
    assert!(partition.stats().segments_rolled >= 1);
    dir
}

#[test]
fn a_torn_tail_is_truncated_reported_and_overwritten_by_the_next_append() {
    // Setup: a log over several segments; in each iteration a copy whose active segment is cut
    // at a random byte: everything from there on is zeros, or (every other iteration) random
    // scraps up to a random point, as an interrupted write leaves it.
    // Expectation: exactly the records that end before the cut survive; if the cut fell inside
    // a record, recovery reports a torn tail at that record's file position, with the bytes it
    // zeroed; the next append lands at the recovered end, and a second open is clean.
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    let source = pristine(&config);
    let spans = record_spans(source.path(), &config);
    let active: Vec<_> = spans.iter().filter(|s| s.in_active).cloned().collect();
    assert!(
        active.len() >= 5,
        "the active segment holds records to tear"
    );
    let (first, last) = (
        active[0].position,
        active.last().expect("records").position + active.last().expect("records").stride,
    );
    let mut rng = Rng::from_env("torn_tail");
    for iteration in 0..60 {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(source.path(), dir.path());
        let path = &dir
            .path()
            .join(active[0].path.file_name().expect("file name"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open segment");
        let mut original = vec![0u8; (last - first + 4096) as usize];
        file.read_exact_at(&mut original, first)
            .expect("read the intact tail");
        let cut = first + rng.below(last - first + 1);
        file.write_all_at(&vec![0u8; (last - cut) as usize], cut)
            .expect("zero the tail");
        if iteration % 2 == 1 {
            let scraps: Vec<u8> = (0..rng.below(300))
                .map(|_| rng.next_u64() as u8 | 1)
                .collect();
            file.write_all_at(&scraps, cut).expect("scraps");
        }
        let mut image = vec![0u8; (last - first + 4096) as usize];
        file.read_exact_at(&mut image, first).expect("read back");
        drop(file);

        // A record survives when its bytes did not change (a cut inside a run of zeros changes
        // nothing); the first one that changed is where the torn tail starts.
        let unchanged = |s: &&common::RecordSpan| {
            let range = (s.position - first) as usize..(s.position + s.length - first) as usize;
            original[range.clone()] == image[range]
        };
        let torn = active
            .iter()
            .find(|s| !unchanged(s))
            .map_or(last, |s| s.position);
        let survivors: Vec<_> = spans
            .iter()
            .filter(|s| !s.in_active || s.position < torn)
            .collect();
        let last_nonzero = image
            .iter()
            .rposition(|b| *b != 0)
            .map(|i| first + i as u64);
        let expected_drop = last_nonzero.filter(|n| *n >= torn).map(|n| n + 1 - torn);

        let (mut partition, report) =
            Partition::open(dir.path(), PartitionId(0), config.clone()).expect("recover");
        match expected_drop {
            Some(bytes) => {
                assert_eq!(
                    report.truncated.len(),
                    1,
                    "iteration {iteration}: {report:?}"
                );
                let tail = &report.truncated[0];
                assert_eq!(
                    (&tail.path, tail.position, tail.bytes_dropped),
                    (path, torn, bytes),
                    "iteration {iteration}"
                );
            }
            None => assert!(
                report.truncated.is_empty(),
                "iteration {iteration}: {report:?}"
            ),
        }
        let records = read_all(&partition.reader());
        assert_eq!(records.len(), survivors.len(), "iteration {iteration}");
        for ((header, record), span) in records.iter().zip(&survivors) {
            assert_eq!(header.sequence, span.sequence);
            assert_eq!(
                *record,
                OwnedInput::numbered(span.sequence, record.payload.len())
            );
        }
        let next = records.len() as u64;
        let receipt =
            append_owned(&mut partition, &[OwnedInput::numbered(next, 300)], 100).expect("append");
        assert_eq!(receipt.first_sequence.0, next);
        assert_eq!(receipt.first_offset, report.end.offset);
        partition.flush_now().expect("flush");
        drop(partition);
        let (partition, report) =
            Partition::open(dir.path(), PartitionId(0), config.clone()).expect("reopen");
        assert!(report.is_clean(), "iteration {iteration}: {report:?}");
        let records = read_all(&partition.reader());
        assert_eq!(records.len() as u64, next + 1);
        assert_eq!(
            records.last().expect("records").1,
            OwnedInput::numbered(next, 300)
        );
    }
}

#[test]
fn a_segment_file_shortened_on_disk_is_refused_with_its_name() {
    // Setup: the active segment file truncated (set_len) at a random point: preallocated files
    // never shrink, so this is outside damage, not a torn write.
    // Expectation: open fails with CorruptSegment naming the file.
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    let source = pristine(&config);
    let spans = record_spans(source.path(), &config);
    let path = spans.last().expect("records").path.clone();
    let mut rng = Rng::from_env("shortened_segment");
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(source.path(), dir.path());
        let target = dir.path().join(path.file_name().expect("name"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .expect("open");
        file.set_len(rng.below(64 * 1024)).expect("truncate");
        match Partition::open(dir.path(), PartitionId(0), config.clone()) {
            Err(Error::CorruptSegment { path, .. }) => assert_eq!(path, target),
            other => panic!("expected CorruptSegment, got {other:?}"),
        }
    }
}
