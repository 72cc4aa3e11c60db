//! Segment headers that check out by CRC but hold impossible values are refused with the file
//! named, never a panic or an overflow; a zeroed header is only dropped when nothing is lost.

mod common;

use std::os::unix::fs::FileExt;

use common::{OwnedInput, append_owned, read_all, segment_files, small_config};
use dataplane_log::segment::new_header;
use dataplane_log::{AckMode, Error, Offset, Partition, PartitionId, SequenceNumber, WritePath};

const SEGMENT_BYTES: u64 = 64 * 1024;

fn write_segment(
    dir: &std::path::Path,
    name_offset: u64,
    header: &[u8; 64],
    data: &[u8],
) -> std::path::PathBuf {
    let path = dir.join(format!("{name_offset:020}.segment"));
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(SEGMENT_BYTES).expect("size");
    file.write_all_at(header, 0).expect("header");
    file.write_all_at(data, 64).expect("data");
    path
}

#[test]
fn headers_with_out_of_range_fields_are_refused_with_the_file_named() {
    // Setup: one segment per case, each header with a valid CRC: a base offset of u64::MAX
    // (file named to match), a base sequence near u64::MAX, a data capacity of u64::MAX, and a
    // capacity that disagrees with the file size. Expectation: CorruptSegment naming the file.
    let cases: [(u64, u64, u64); 4] = [
        (u64::MAX, 0, SEGMENT_BYTES - 64),
        (0, u64::MAX - 1, SEGMENT_BYTES - 64),
        (0, 0, u64::MAX),
        (0, 0, SEGMENT_BYTES),
    ];
    for (base_offset, base_sequence, capacity) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let header = new_header(
            PartitionId(0),
            Offset(base_offset),
            SequenceNumber(base_sequence),
            capacity,
            0,
        );
        let path = write_segment(dir.path(), base_offset, &header.encode(), &[]);
        match Partition::open(
            dir.path(),
            PartitionId(0),
            small_config(WritePath::Pwrite, AckMode::Durable),
        ) {
            Err(Error::CorruptSegment { path: named, .. }) => assert_eq!(named, path),
            other => panic!(
                "case {base_offset} {base_sequence} {capacity}: expected CorruptSegment, got {other:?}"
            ),
        }
    }
}

#[test]
fn a_zeroed_last_header_is_dropped_only_when_the_segment_holds_nothing() {
    // Setup: a log with one sealed segment, then a last segment whose header is zeros: first
    // with an all-zero data area (a roll whose header never reached the disk and nothing after
    // it either), then with bytes in its data area.
    // Expectation: the empty one is removed and reported and the log continues; the one with
    // data refuses the open, naming it, because dropping it could lose records.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    {
        let (mut partition, _) =
            Partition::open(dir.path(), PartitionId(0), config.clone()).expect("open");
        for batch in 0..12u64 {
            let records: Vec<OwnedInput> = (0..8)
                .map(|i| OwnedInput::numbered(batch * 8 + i, 600))
                .collect();
            append_owned(&mut partition, &records, 0).expect("append");
        }
        partition.flush_now().expect("flush");
        assert_eq!(partition.stats().segments_rolled, 1);
    }
    let last = segment_files(dir.path())
        .last()
        .expect("segments")
        .1
        .clone();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&last)
        .expect("open last");
    let mut data = vec![0u8; 4096];
    file.read_exact_at(&mut data, 64).expect("read data");
    file.write_all_at(&[0u8; 64], 0).expect("zero header");

    match Partition::open(dir.path(), PartitionId(0), config.clone()) {
        Err(Error::CorruptSegment { path, reason }) => {
            assert_eq!(path, last);
            assert!(reason.contains("holds data"), "{reason}");
        }
        other => panic!("expected CorruptSegment, got {other:?}"),
    }

    file.write_all_at(&vec![0u8; (SEGMENT_BYTES - 64) as usize], 64)
        .expect("zero data");
    drop(file);
    let (partition, report) = Partition::open(dir.path(), PartitionId(0), config).expect("open");
    assert_eq!(report.removed_segments, [last]);
    let records = read_all(&partition.reader());
    assert_eq!(records.len() as u64, report.end.sequence.0);
    assert!(!records.is_empty());
}
