//! A flipped bit anywhere in the partition's files is either harmless (padding, unused space,
//! index files, which are rebuilt), a torn tail (in the last record of the active segment or
//! after it), or an error naming the file and the exact position: never silently skipped data.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{
    OwnedInput, RecordSpan, Rng, append_owned, copy_dir, record_spans, segment_files, small_config,
};
use dataplane_log::{
    AckMode, Error, Partition, PartitionId, SequenceNumber, StartPosition, WritePath,
};

/// What a flip must lead to.
#[derive(Debug)]
enum Outcome {
    /// Opens, every record reads back.
    Harmless,
    /// Opens with this torn tail (file position) reported, records before it read back.
    TornTail(u64),
    /// Open refuses the segment header.
    BadHeader,
    /// Open refuses with interior corruption at this position, a valid record following.
    Interior { position: u64, next: u64 },
    /// In a sealed segment: open refuses at this position, or opens and the reader stops there.
    Sealed { position: u64 },
}

fn expected_outcome(
    spans: &[RecordSpan],
    file: &Path,
    byte: u64,
    active: bool,
    data_end: u64,
) -> Outcome {
    if byte < 64 {
        return Outcome::BadHeader;
    }
    let name = file.file_name();
    let in_file: Vec<&RecordSpan> = spans
        .iter()
        .filter(|s| s.path.file_name() == name)
        .collect();
    let Some(at) = in_file
        .iter()
        .position(|s| s.position <= byte && byte < s.position + s.stride)
    else {
        // Beyond the records: the active segment's tail must be zeros, a sealed one's is unused.
        return if active {
            Outcome::TornTail(data_end)
        } else {
            Outcome::Harmless
        };
    };
    let span = in_file[at];
    if byte >= span.position + span.length {
        return Outcome::Harmless; // padding, outside the CRC and never read
    }
    match (active, in_file.get(at + 1)) {
        (true, None) => Outcome::TornTail(span.position),
        (true, Some(next)) => Outcome::Interior {
            position: span.position,
            next: next.position,
        },
        (false, _) => Outcome::Sealed {
            position: span.position,
        },
    }
}

fn read_until_error(partition: &Partition) -> (Vec<u64>, Option<Error>) {
    let mut cursor = partition.reader().cursor(StartPosition::Earliest);
    let mut sequences = Vec::new();
    loop {
        match cursor.next() {
            Ok(Some(record)) => {
                assert!(record.crc_is_valid());
                assert_eq!(
                    record.payload().expect("payload"),
                    OwnedInput::numbered(
                        record.sequence().0,
                        record.payload().expect("payload").len()
                    )
                    .payload
                    .as_slice()
                );
                sequences.push(record.sequence().0);
            }
            Ok(None) => return (sequences, None),
            Err(error) => return (sequences, Some(error)),
        }
    }
}

#[test]
fn a_flipped_bit_is_harmless_torn_or_an_error_naming_file_and_position() {
    // Setup: a log of three or more segments (two sealed with sealed indexes, an active one);
    // each iteration flips one random bit of one random file of a fresh copy.
    // Expectation, from the record layout: header flips refuse the open; flips in a record of
    // the active segment are interior corruption (naming the record and the next valid one)
    // unless it is the last record (torn tail, reported); flips past the active segment's
    // records are a reported torn tail; flips in a sealed segment's records either refuse the
    // open or stop the reader, naming that record's file position; flips in padding, unused
    // sealed space or index files change nothing readable.
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    let source = tempfile::tempdir().expect("tempdir");
    {
        let (mut partition, _) =
            Partition::open(source.path(), PartitionId(0), config.clone()).expect("open");
        for batch in 0..35u64 {
            let records: Vec<OwnedInput> = (0..6)
                .map(|i| OwnedInput::numbered(batch * 6 + i, 300 + (i as usize * 131)))
                .collect();
            append_owned(&mut partition, &records, batch as i64).expect("append");
        }
        partition.flush_now().expect("flush");
        assert!(partition.stats().segments_rolled >= 2);
    }
    let spans = record_spans(source.path(), &config);
    let total = spans.len();
    let segments = segment_files(source.path());
    let mut files: Vec<PathBuf> = segments.iter().map(|(_, p)| p.clone()).collect();
    files.extend(segments.iter().map(|(_, p)| p.with_extension("index")));
    let mut rng = Rng::from_env("bit_flip");
    let mut seen = [0usize; 5];
    for iteration in 0..400 {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(source.path(), dir.path());
        let source_file = &files[rng.below(files.len() as u64) as usize];
        let file = dir.path().join(source_file.file_name().expect("name"));
        let is_index = file.extension().is_some_and(|e| e == "index");
        let len = std::fs::metadata(&file).expect("metadata").len();
        // Most flips go where the records are, so that every outcome is exercised.
        let byte = if !is_index && rng.below(10) == 0 {
            rng.below(64)
        } else if !is_index && rng.below(4) != 0 {
            let in_file: Vec<&RecordSpan> =
                spans.iter().filter(|s| s.path == *source_file).collect();
            let end = in_file.last().map_or(64, |s| s.position + s.stride);
            rng.below(end + 64).min(len - 1)
        } else {
            rng.below(len)
        };
        let bit = rng.below(8);
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
            .expect("open file");
        let mut value = [0u8];
        handle.read_exact_at(&mut value, byte).expect("read byte");
        handle
            .write_all_at(&[value[0] ^ (1 << bit)], byte)
            .expect("flip");
        drop(handle);

        let active = *source_file == segments.last().expect("segments").1;
        let data_end = spans
            .iter()
            .rfind(|s| s.path == *source_file)
            .map_or(64, |s| s.position + s.stride);
        let outcome = if is_index {
            Outcome::Harmless
        } else {
            expected_outcome(&spans, source_file, byte, active, data_end)
        };
        let context = format!(
            "iteration {iteration}: flipped bit {bit} of byte {byte} of {file:?}, expected {outcome:?}"
        );
        let opened = Partition::open(dir.path(), PartitionId(0), config.clone());
        match (&outcome, opened) {
            (Outcome::Harmless, Ok((partition, report))) => {
                seen[0] += 1;
                assert!(report.truncated.is_empty(), "{context}: {report:?}");
                let (sequences, error) = read_until_error(&partition);
                assert!(
                    error.is_none() && sequences.len() == total,
                    "{context}: {error:?}"
                );
                // Lookups still land on the right record (index files may have been rebuilt).
                let probe = SequenceNumber(rng.below(total as u64));
                let mut cursor = partition.reader().cursor(StartPosition::Sequence(probe));
                assert_eq!(
                    cursor.next().expect("read").map(|r| r.sequence()),
                    Some(probe),
                    "{context}"
                );
            }
            (Outcome::TornTail(position), Ok((partition, report))) => {
                seen[1] += 1;
                assert_eq!(report.truncated.len(), 1, "{context}: {report:?}");
                assert_eq!(
                    (
                        report.truncated[0].path.as_path(),
                        report.truncated[0].position
                    ),
                    (file.as_path(), *position),
                    "{context}"
                );
                let (sequences, error) = read_until_error(&partition);
                let kept = spans
                    .iter()
                    .filter(|s| !(s.path == *source_file && s.position >= *position))
                    .count();
                assert!(
                    error.is_none() && sequences.len() == kept,
                    "{context}: {error:?}"
                );
            }
            (Outcome::BadHeader, Err(Error::CorruptSegment { path, .. })) => {
                seen[2] += 1;
                assert_eq!(path, file, "{context}");
            }
            (
                Outcome::Interior { position, next },
                Err(Error::InteriorCorruption {
                    path,
                    position: at,
                    valid_record_after,
                    ..
                }),
            ) => {
                seen[3] += 1;
                assert_eq!(
                    (path.as_path(), at, valid_record_after),
                    (file.as_path(), *position, Some(*next)),
                    "{context}"
                );
            }
            (
                Outcome::Sealed { position },
                Err(Error::InteriorCorruption {
                    path,
                    position: at,
                    valid_record_after: None,
                    ..
                }),
            ) => {
                seen[4] += 1;
                assert_eq!(
                    (path.as_path(), at),
                    (file.as_path(), *position),
                    "{context}"
                );
            }
            (Outcome::Sealed { position }, Ok((partition, _))) => {
                seen[4] += 1;
                let (sequences, error) = read_until_error(&partition);
                match error {
                    Some(Error::CorruptRecord {
                        path, position: at, ..
                    }) => {
                        assert_eq!(
                            (path.as_path(), at),
                            (file.as_path(), *position),
                            "{context}"
                        );
                    }
                    other => panic!("{context}: reader went on past the flipped record: {other:?}"),
                }
                let before = spans
                    .iter()
                    .filter(|s| s.path == *source_file && s.position < *position)
                    .count()
                    + spans.iter().take_while(|s| s.path != *source_file).count();
                assert_eq!(sequences.len(), before, "{context}");
            }
            (_, other) => panic!("{context}: got {:?}", other.map(|(_, report)| report)),
        }
    }
    assert!(
        seen.iter().all(|n| *n > 0),
        "every outcome was exercised: {seen:?}"
    );
}
