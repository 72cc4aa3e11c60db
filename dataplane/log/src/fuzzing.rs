//! Entry points for the `log_recovery` fuzz target (`dataplane/fuzz`), compiled with the
//! `fuzzing` feature and in this crate's tests, where the seed corpus runs through them on
//! stable.
//!
//! [`log_recovery`] turns arbitrary bytes into partition files, opens the partition and checks
//! invariants, not just the absence of a panic:
//! - opening either fails with an error or succeeds;
//! - after a successful open every record a cursor yields has a valid CRC, a verifiable body
//!   whose payload matches the fast payload lookup, contiguous sequence numbers from the
//!   earliest one, offsets that follow each other and non-decreasing times, and the cursor ends
//!   exactly at the committed end;
//! - an append after recovery reads back, and a second open (recovery of a recovered log) keeps
//!   every record;
//! - a read-only [`Follower`] opened on the files before recovery never panics, changes no
//!   file, refreshes to the same end, yields only valid records in order, and when both it and
//!   recovery accept the files, its readable end is the end recovery finds.
//!
//! Input layout: byte 0 picks the mode.
//! - even: *raw files*. Byte 1 holds flags (bit 0: write the index file, bit 1: fix up the
//!   segment header so that the fuzzer explores the records rather than the header CRC, bit 2:
//!   mmap write path). With bit 0, bytes 2..4 (little-endian u16) give the index file length
//!   and the index bytes follow; the remaining bytes are the segment file.
//! - odd: *damaged valid log*. Byte 1 gives the record count, byte 2 the payload size, byte 3
//!   selects options; a log is written with the crate itself (small segments, several rolls),
//!   then each following 6-byte group `[op, position u32 LE, value]` damages it: op % 4 = 0
//!   XORs a byte of a segment, 1 XORs a byte of an index, 2 truncates a segment file, 3 zeroes
//!   64 bytes of a segment; `op / 4` picks the file.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::segment::{self, SEGMENT_HEADER_BYTES};
use crate::{
    AckMode, Error, Follower, Offset, Partition, PartitionConfig, PartitionId, RecordInput,
    SegmentId, SequenceNumber, StartPosition, WritePath,
};

const PARTITION: PartitionId = PartitionId(0);
const RAW_CAPACITY_BYTES_MAX: u64 = 1 << 20;

fn config(write_path: WritePath) -> PartitionConfig {
    PartitionConfig {
        segment_bytes: crate::config::SEGMENT_BYTES_MIN,
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

/// A fresh scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var_os("SHOAL_FUZZ_DIR").map_or_else(
            || {
                let shm = Path::new("/dev/shm");
                if shm.is_dir() {
                    shm.to_path_buf()
                } else {
                    std::env::temp_dir()
                }
            },
            PathBuf::from,
        );
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("shoal-log-fuzz-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory for fuzzing");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs one fuzz input; panics only when an invariant is broken.
pub fn log_recovery(data: &[u8]) {
    let scratch = Scratch::new();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let write_path = if mode % 2 == 0 {
        write_raw_files(&scratch.0, rest)
    } else {
        write_damaged_log(&scratch.0, rest)
    };
    let followed = check_follower(&scratch.0);
    check_open(&scratch.0, write_path, followed);
}

/// Every file of `dir` by name, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(dir)
        .expect("list fuzz directory")
        .flatten()
        .map(|entry| {
            let path = entry.path();
            let bytes = fs::read(&path).unwrap_or_default();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Follows the files read-only, as `shoal events tail` would next to a writer, and checks the
/// follower's invariants; returns its readable end when it accepted the files.
fn check_follower(dir: &Path) -> Option<crate::Position> {
    let before = snapshot(dir);
    let followed = Follower::open(dir).ok().map(|mut follower| {
        let end = follower.readable().end;
        let report = follower
            .refresh()
            .expect("refreshing an unchanged directory");
        assert_eq!(report.end, end, "nothing changed, nothing added");
        assert_eq!(report.records_added, 0);
        let earliest = follower.earliest();
        let mut cursor = follower.cursor(StartPosition::Earliest);
        let mut sequence = earliest.sequence.0;
        loop {
            match cursor.next() {
                Ok(Some(record)) => {
                    assert!(record.crc_is_valid(), "a follower yields valid records");
                    assert_eq!(record.sequence().0, sequence, "in order, none missing");
                    sequence += 1;
                }
                Ok(None) => {
                    assert_eq!(sequence, end.sequence.0, "up to the readable end");
                    break;
                }
                // Records of sealed segments trusted through their index are checked when read.
                Err(Error::CorruptRecord { .. }) => break,
                Err(error) => panic!("unexpected follower read error: {error}"),
            }
        }
        end
    });
    assert!(snapshot(dir) == before, "a follower changes no file");
    followed
}

fn write_raw_files(dir: &Path, data: &[u8]) -> WritePath {
    let Some((&flags, mut rest)) = data.split_first() else {
        return WritePath::Pwrite;
    };
    let id = SegmentId(0);
    if flags & 1 != 0 && rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        fs::write(dir.join(segment::index_file_name(id)), &rest[2..2 + len])
            .expect("write fuzz index file");
        rest = &rest[2 + len..];
    }
    let mut segment = rest.to_vec();
    if flags & 2 != 0 {
        let body = segment.len().saturating_sub(SEGMENT_HEADER_BYTES) as u64;
        let capacity = (body / 8 * 8).clamp(1024, RAW_CAPACITY_BYTES_MAX);
        segment.resize(SEGMENT_HEADER_BYTES + capacity as usize, 0);
        let header = segment::new_header(PARTITION, Offset(0), SequenceNumber(0), capacity, 0);
        segment[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
    }
    fs::write(dir.join(segment::segment_file_name(id)), &segment).expect("write fuzz segment file");
    if flags & 4 != 0 {
        WritePath::Mmap
    } else {
        WritePath::Pwrite
    }
}

fn write_damaged_log(dir: &Path, data: &[u8]) -> WritePath {
    let count = data.first().map_or(0, |n| usize::from(*n) % 128);
    let payload_bytes = data.get(1).map_or(0, |n| usize::from(*n) * 9);
    let options = data.get(2).copied().unwrap_or(0);
    let write_path = if options & 1 != 0 {
        WritePath::Mmap
    } else {
        WritePath::Pwrite
    };
    {
        let (mut partition, _) =
            Partition::open(dir, PARTITION, config(write_path)).expect("open a fresh partition");
        let payload = vec![0x5Au8; payload_bytes];
        let properties = [("k", "v"), ("unit", "celsius")];
        for i in 0..count {
            let input = RecordInput {
                message_id: Some("id"),
                properties: if i % 3 == 0 { &properties } else { &[] },
                creation_time_ms: (i % 2 == 0).then_some(i as i64),
                interface_id: (i % 5 == 0).then_some("dtmi:example:Thermostat;1"),
                output_name: (i % 7 == 1).then_some("alerts"),
                payload: &payload[..payload_bytes.min(i * 31)],
                ..RecordInput::default()
            };
            partition
                .append(&[input], i as i64 / 4)
                .expect("append to a fresh partition");
            if options & 2 != 0 || i + 1 == count {
                partition.flush_now().expect("flush a fresh partition");
            }
        }
    }
    let mut segments: Vec<PathBuf> = Vec::new();
    let mut indexes: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir).expect("list fuzz directory").flatten() {
        let path = entry.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("segment") => segments.push(path),
            Some("index") => indexes.push(path),
            _ => {}
        }
    }
    segments.sort();
    indexes.sort();
    for op in data.get(3..).unwrap_or_default().chunks_exact(6) {
        let position = u64::from(u32::from_le_bytes([op[1], op[2], op[3], op[4]]));
        let files = if op[0] % 4 == 1 { &indexes } else { &segments };
        let Some(path) = files.get(usize::from(op[0] / 4) % files.len().max(1)) else {
            continue;
        };
        let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(path) else {
            continue;
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len == 0 {
            continue;
        }
        match op[0] % 4 {
            0 | 1 => {
                let at = position % len;
                let mut byte = [0u8];
                if file.read_exact_at(&mut byte, at).is_ok() {
                    let _ = file.write_all_at(&[byte[0] ^ op[5].max(1)], at);
                }
            }
            2 => {
                let _ = file.set_len(position % len);
            }
            _ => {
                let at = position % len;
                let zeros = [0u8; 64];
                let _ = file.write_all_at(&zeros[..(len - at).min(64) as usize], at);
            }
        }
    }
    write_path
}

/// Opens the partition and checks the invariants listed in the module docs.
fn check_open(dir: &Path, write_path: WritePath, followed: Option<crate::Position>) {
    let config = config(write_path);
    let Ok((mut partition, _report)) = Partition::open(dir, PARTITION, config.clone()) else {
        return;
    };
    if let Some(followed) = followed {
        assert_eq!(
            partition.written_end(),
            followed,
            "the follower's readable end is where recovery ends"
        );
    }
    let records = check_records(&partition);
    assert!(
        !partition.is_poisoned(),
        "a freshly opened partition is not poisoned"
    );
    let end = partition.written_end();
    let payload = b"after recovery";
    // Whatever the recovered segment looked like, a small record fits (in it, or after a roll
    // into a new segment of the configured size).
    let receipt = partition
        .append(
            &[RecordInput {
                payload,
                ..RecordInput::default()
            }],
            1,
        )
        .unwrap_or_else(|error| panic!("append after recovery failed: {error}"));
    assert_eq!(
        receipt.first_sequence, end.sequence,
        "appends continue the sequence"
    );
    partition.flush_now().expect("flush after recovery");
    let reader = partition.reader();
    let mut cursor = reader.cursor(StartPosition::Sequence(receipt.first_sequence));
    let record = cursor
        .next()
        .expect("read the appended record")
        .expect("the appended record is committed");
    assert_eq!(record.sequence(), receipt.first_sequence);
    assert_eq!(record.payload().expect("payload"), payload);
    drop(cursor);
    drop(partition);
    let (reopened, _) =
        Partition::open(dir, PARTITION, config).expect("a recovered log opens again");
    let records_again = check_records(&reopened);
    if let (Some(before), Some(after)) = (records, records_again) {
        assert_eq!(after, before + 1, "reopening keeps every record");
    }
}

/// Reads every committed record, checking each; returns how many there were, or `None` when
/// a record of a sealed segment failed its CRC at read time (sealed segments with a valid sealed
/// index are not rescanned at open; the reader reports the damage, naming file and position).
fn check_records(partition: &Partition) -> Option<u64> {
    let reader = partition.reader();
    let earliest = reader.earliest();
    let committed = reader.committed();
    let mut cursor = reader.cursor(StartPosition::Earliest);
    let mut expected = Position {
        offset: earliest.offset.0,
        sequence: earliest.sequence.0,
        time: i64::MIN,
    };
    let mut count = 0u64;
    loop {
        let record = match cursor.next() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(Error::CorruptRecord { path, .. }) => {
                let active =
                    partition.written_end().offset.0 - u64::from(partition.active_position());
                assert!(
                    path != partition
                        .dir()
                        .join(segment::segment_file_name(SegmentId(active))),
                    "the active segment was fully validated at open"
                );
                return None;
            }
            Err(error) => panic!("unexpected read error: {error}"),
        };
        assert!(
            record.crc_is_valid(),
            "every yielded record has a valid CRC"
        );
        assert_eq!(
            record.sequence().0,
            expected.sequence,
            "sequence numbers are contiguous"
        );
        assert!(record.offset().0 >= expected.offset, "offsets increase");
        assert!(
            record.enqueued_ms() >= expected.time,
            "times never decrease"
        );
        // Recovery checks framing and CRC, not the body; a body that fails the verifier is an
        // error for the reader, never a panic, and a verified body agrees with the fast path.
        if let Ok(body) = record.body() {
            assert_eq!(
                record.payload().expect("payload lookup"),
                body.payload().bytes()
            );
        }
        expected = Position {
            offset: record.next_offset().0,
            sequence: expected.sequence + 1,
            time: record.enqueued_ms(),
        };
        count += 1;
    }
    assert_eq!(
        cursor.position(),
        committed.end.offset,
        "the cursor stops at the committed end"
    );
    assert_eq!(
        expected.sequence, committed.end.sequence.0,
        "every committed record was read"
    );
    if let Some(last) = committed.last {
        assert_eq!(last.sequence.0 + 1, committed.end.sequence.0);
    }
    Some(count)
}

struct Position {
    offset: u64,
    sequence: u64,
    time: i64,
}

/// Inputs that reach deep into recovery: valid logs of several shapes, damaged in the ways
/// the crash and bit-flip tests damage them, and raw images of real segment files.
pub fn seed_inputs() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        vec![1, 0, 0, 0],
        vec![1, 20, 30, 0],
        vec![1, 90, 20, 2],
        vec![1, 60, 40, 1],
        // A flipped byte inside the last segment, one in a sealed one, an index byte.
        vec![1, 90, 20, 0, 4, 0x40, 0x01, 0, 0, 0x80],
        vec![1, 90, 20, 0, 0, 0x00, 0x02, 0, 0, 0x01],
        vec![1, 90, 20, 0, 1, 0x50, 0x00, 0, 0, 0x04],
        // A truncated file, a zeroed range.
        vec![1, 50, 10, 0, 2, 0x00, 0x10, 0, 0, 0],
        vec![1, 50, 10, 1, 3, 0x00, 0x08, 0, 0, 0],
        // Raw: nothing, a header only, a fixed-up header over garbage.
        vec![0],
        vec![0, 2],
        vec![0, 2, 1, 2, 3, 4, 5, 6, 7, 8],
    ];
    // Raw images of a real log's first segment and index.
    let scratch = Scratch::new();
    write_damaged_log(&scratch.0, &[40, 12, 0]);
    let id = SegmentId(0);
    if let (Ok(segment), Ok(index)) = (
        fs::read(scratch.0.join(segment::segment_file_name(id))),
        fs::read(scratch.0.join(segment::index_file_name(id))),
    ) {
        let index = &index[..index.len().min(1024)];
        let mut raw = vec![0, 1];
        raw.extend_from_slice(&(index.len() as u16).to_le_bytes());
        raw.extend_from_slice(index);
        raw.extend_from_slice(&segment);
        seeds.push(raw);
        let mut raw_fixed = vec![0, 2];
        raw_fixed.extend_from_slice(&segment);
        seeds.push(raw_fixed);
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_corpus_passes_the_recovery_invariants() {
        // Setup: the built-in seeds plus every file in dataplane/fuzz/seeds/log_recovery (the
        // checked-in corpus the fuzzer starts from). Expectation: each input runs through the
        // fuzz entry point without breaking an invariant, on stable, in CI.
        let mut inputs = seed_inputs();
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/log_recovery");
        if let Ok(entries) = fs::read_dir(&corpus) {
            for entry in entries.flatten() {
                inputs.push(fs::read(entry.path()).expect("read a seed file"));
            }
        }
        assert!(inputs.len() >= 10, "the corpus is not empty");
        for input in &inputs {
            log_recovery(input);
        }
    }
}
