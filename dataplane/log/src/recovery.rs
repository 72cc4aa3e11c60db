//! Opening a partition directory: what survives a crash, and what refuses to start.
//!
//! 1. Leftover `*.tmp` files (segments being prepared when the process died) are deleted.
//! 2. Every `{base_offset:020}.segment` header is checked (magic, version, CRC, partition,
//!    base offset = file name, capacity = file size). A last segment whose header is all zeros
//!    was renamed but never got its header to disk (power loss right after a roll, before the
//!    flush that would have synced it): nothing in it was acknowledged, so it is removed and
//!    reported. Any other bad header refuses the open.
//! 3. Segments before the last are *sealed*: a sealed index (see `index.rs`) whose entries CRC,
//!    ordering and tail records check out spares a scan; otherwise the whole segment is scanned
//!    and any bad record is [`Error::InteriorCorruption`]. Each must end exactly where the next
//!    begins ([`Error::SegmentGap`] otherwise).
//! 4. The last segment is scanned record by record (length bounds, offset, sequence, time, CRC).
//!    Where the records stop, the rest of the data area must be zeros. If it is not:
//!    - a valid record further on means the bad bytes are not a torn tail:
//!      [`Error::InteriorCorruption`] names the file, the bad position and the valid one;
//!    - otherwise it is a torn tail (a batch cut short by the crash): the bytes are zeroed, so
//!      the next append overwrites them, synced, and reported in [`RecoveryReport`].
//! 5. The last segment is synced, so everything recovered is durable and counts as committed.
//!
//! The policy never guesses in favour of dropping data: a bad record that could be either
//! corruption or a torn write is only truncated when nothing valid follows it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use crate::config::{AckMode, PartitionConfig, WritePath};
use crate::error::{self, Corruption, Error, Result};
use crate::index::{self, IndexHeader, SegmentIndex};
use crate::reader::{LastRecord, Position};
use crate::record::{Checked, Expect, RECORD_HEADER_BYTES, check_record};
use crate::segment::{
    self, SEGMENT_HEADER_BYTES, Segment, SegmentHeader, SegmentParts, SegmentWriter, WriterState,
};
use crate::{Offset, PartitionId, SegmentId, SequenceNumber};

/// A torn tail found and truncated at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// File position where the valid records end.
    pub position: u64,
    /// Bytes zeroed after it (up to the last nonzero byte).
    pub bytes_dropped: u64,
    /// What the first bad record looked like (`None` when its header was zeros).
    pub reason: Option<Corruption>,
}

/// What opening a partition found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the partition after recovery.
    pub segments: usize,
    /// Torn tails truncated.
    pub truncated: Vec<TornTail>,
    /// Segment files removed because their header never reached the disk.
    pub removed_segments: Vec<PathBuf>,
    /// Index files rebuilt by scanning their segment (missing, stale or unsealed).
    pub indexes_rebuilt: Vec<PathBuf>,
    /// Indexes kept in memory only because their file could not be written.
    pub indexes_in_memory: Vec<PathBuf>,
    /// Leftover files of interrupted segment preparations, deleted.
    pub temporary_files_removed: Vec<PathBuf>,
    /// Where appends continue.
    pub end: Position,
}

impl RecoveryReport {
    /// True when recovery changed nothing on disk except rebuilding indexes.
    pub fn is_clean(&self) -> bool {
        self.truncated.is_empty() && self.removed_segments.is_empty()
    }
}

/// Everything the partition needs after recovery.
pub(crate) struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    /// `None` when the directory held no segment.
    pub writer: Option<SegmentWriter>,
    pub end: Position,
    pub last: Option<LastRecord>,
    pub report: RecoveryReport,
}

/// A segment file whose header checked out.
struct Candidate {
    path: PathBuf,
    file: File,
    header: SegmentHeader,
}

/// Where the records of a scanned segment end, and what the scan saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scan {
    pub data_bytes: u32,
    pub records: u32,
    pub last: Option<LastRecord>,
    pub last_index_position: Option<u32>,
    pub stopped: Option<Corruption>,
}

/// Recovers the segments in `dir` (which exists and is locked).
pub(crate) fn recover(
    dir: &Path,
    partition: PartitionId,
    config: &PartitionConfig,
) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let mut ids = list_segments(dir, &mut report)?;
    ids.sort_unstable();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "segment ids are unique file names"
    );
    let mut candidates = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let last = i + 1 == ids.len();
        if let Some(candidate) = read_header(dir, *id, partition, last, &mut report)? {
            candidates.push(candidate);
        }
    }
    if candidates.is_empty() {
        return Ok(Recovered {
            segments: Vec::new(),
            writer: None,
            end: Position::default(),
            last: None,
            report,
        });
    }

    let count = candidates.len();
    let mut segments = Vec::with_capacity(count);
    let mut expected: Option<(Position, i64)> = None;
    let mut last_record = None;
    let mut writer = None;
    for (i, candidate) in candidates.into_iter().enumerate() {
        let active = i + 1 == count;
        let (path, header) = (candidate.path.clone(), candidate.header);
        if let Some((end, _)) = expected
            && (end.offset.0 != header.base_offset || end.sequence.0 != header.base_sequence)
        {
            return Err(Error::SegmentGap {
                path,
                expected_offset: end.offset.0,
                expected_sequence: end.sequence.0,
                found_offset: header.base_offset,
                found_sequence: header.base_sequence,
            });
        }
        let time_min = expected.map(|(_, time)| time);
        let segment = open_segment(
            dir,
            candidate,
            active && config.write_path == WritePath::Mmap,
            config,
            &mut report,
        )?;
        let scan = if active {
            recover_active(&segment, time_min, &mut report)?
        } else {
            recover_sealed(&segment, time_min, &mut report)?
        };
        let end = Position {
            offset: Offset(header.base_offset + u64::from(scan.data_bytes)),
            sequence: SequenceNumber(header.base_sequence + u64::from(scan.records)),
        };
        let time = scan
            .last
            .map_or(time_min.unwrap_or(i64::MIN), |last| last.enqueued_ms);
        if scan.last.is_some() {
            last_record = scan.last;
        }
        expected = Some((end, time));
        if active {
            if config.prefault {
                let start = SEGMENT_HEADER_BYTES + scan.data_bytes as usize;
                let len = segment.data_capacity() as usize - scan.data_bytes as usize;
                let write = config.write_path == WritePath::Mmap;
                segment::prefault(segment.map(), start, len, write)
                    .map_err(|error| error::open_failed(path.clone(), error))?;
                if write && config.ack == AckMode::Durable {
                    // As in SegmentPrep::prepare: write the dirtied zeros back now, not in the
                    // first flush.
                    segment
                        .file()
                        .sync_data()
                        .map_err(|error| error::open_failed(path.clone(), error))?;
                }
            }
            let state = WriterState {
                position: scan.data_bytes,
                next_index_position: scan
                    .last_index_position
                    .map_or(0, |p| p + segment.index().interval_bytes()),
                record_count: scan.records,
                last_enqueued_ms: time,
            };
            let segment = Arc::new(segment);
            writer = Some(SegmentWriter::claim(Arc::clone(&segment), state));
            segments.push(segment);
        } else {
            segment.mark_sealed(scan.data_bytes, time);
            segments.push(Arc::new(segment));
        }
    }
    let (end, _) = expected.expect("at least one segment was recovered");
    assert!(writer.is_some(), "the last segment has a writer");
    assert!(segments.len() == count, "every candidate became a segment");
    report.segments = segments.len();
    report.end = end;
    Ok(Recovered {
        segments,
        writer,
        end,
        last: last_record,
        report,
    })
}

/// Segment ids in `dir`, in no particular order, without touching anything.
pub(crate) fn segment_ids(dir: &Path) -> Result<Vec<SegmentId>> {
    let open_failed = |error| error::open_failed(dir.to_path_buf(), error);
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(open_failed)? {
        let entry = entry.map_err(open_failed)?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_segment_file_name)
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Segment ids in `dir`; deletes leftover temporary files.
fn list_segments(dir: &Path, report: &mut RecoveryReport) -> Result<Vec<SegmentId>> {
    let open_failed = |error| error::open_failed(dir.to_path_buf(), error);
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(open_failed)? {
        let entry = entry.map_err(open_failed)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(segment::TEMPORARY_SUFFIX) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|error| error::open_failed(path.clone(), error))?;
            report.temporary_files_removed.push(path);
        } else if let Some(id) = segment::parse_segment_file_name(name) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Opens a segment file and checks its header. `Ok(None)` when it is the last segment and its
/// header is all zeros (removed and reported).
fn read_header(
    dir: &Path,
    id: SegmentId,
    partition: PartitionId,
    last: bool,
    report: &mut RecoveryReport,
) -> Result<Option<Candidate>> {
    let path = dir.join(segment::segment_file_name(id));
    let open_failed = |error| error::open_failed(path.clone(), error);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(open_failed)?;
    let file_bytes = file.metadata().map_err(open_failed)?.len();
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    let corrupt = |reason| {
        Err(Error::CorruptSegment {
            path: path.clone(),
            reason,
        })
    };
    if file_bytes < SEGMENT_HEADER_BYTES as u64 {
        return corrupt("shorter than a segment header");
    }
    file.read_exact_at(&mut bytes, 0).map_err(open_failed)?;
    let header = match SegmentHeader::decode(&bytes) {
        Ok(header) => header,
        Err(_) if last && bytes.iter().all(|b| *b == 0) => {
            // Renamed at a roll, but the header never reached the disk. Removing it loses
            // nothing only if no record reached the disk either; otherwise an operator decides.
            if !file_is_zeros(&file, SEGMENT_HEADER_BYTES as u64, file_bytes)
                .map_err(open_failed)?
            {
                return corrupt("header is all zeros but the segment holds data");
            }
            remove_torn_segment(dir, id, &path, report)?;
            return Ok(None);
        }
        Err(reason) => return corrupt(reason),
    };
    if header.partition_id != partition.0 {
        return corrupt("belongs to another partition");
    }
    if let Err(reason) = check_header(&header, id, file_bytes) {
        return corrupt(reason);
    }
    Ok(Some(Candidate { path, file, header }))
}

/// Checks a decoded segment header against its file name and size (the partition id is the
/// caller's to check).
pub(crate) fn check_header(
    header: &SegmentHeader,
    id: SegmentId,
    file_bytes: u64,
) -> std::result::Result<(), &'static str> {
    if header.base_offset != id.0 {
        return Err("base offset differs from the file name");
    }
    if header.data_capacity_bytes >= 1 << 32 || !header.data_capacity_bytes.is_multiple_of(8) {
        return Err("data capacity out of bounds");
    }
    if header.data_capacity_bytes + SEGMENT_HEADER_BYTES as u64 != file_bytes {
        return Err("data capacity differs from the file size");
    }
    // Far beyond any real log (2^62 bytes or records), and it keeps every later addition of a
    // segment-sized amount free of overflow.
    if header.base_offset > POSITION_MAX || header.base_sequence > POSITION_MAX {
        return Err("base offset or sequence out of range");
    }
    Ok(())
}

/// Largest base offset or base sequence number a segment may declare.
const POSITION_MAX: u64 = 1 << 62;

/// Whether `file[from..to]` holds only zeros.
fn file_is_zeros(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let len = (to - at).min(buffer.len() as u64) as usize;
        file.read_exact_at(&mut buffer[..len], at)?;
        if buffer[..len].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += len as u64;
    }
    Ok(true)
}

fn remove_torn_segment(
    dir: &Path,
    id: SegmentId,
    path: &Path,
    report: &mut RecoveryReport,
) -> Result<()> {
    fs::remove_file(path).map_err(|error| error::open_failed(path.to_path_buf(), error))?;
    let index_path = dir.join(segment::index_file_name(id));
    match fs::remove_file(&index_path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error::open_failed(index_path, error)),
    }
    report.removed_segments.push(path.to_path_buf());
    Ok(())
}

/// Maps the segment and opens (or creates) its index file.
fn open_segment(
    dir: &Path,
    candidate: Candidate,
    writable: bool,
    config: &PartitionConfig,
    report: &mut RecoveryReport,
) -> Result<Segment> {
    let Candidate { path, file, header } = candidate;
    let open_failed = |error| error::open_failed(path.clone(), error);
    let mut options = MmapOptions::new();
    options.len(SEGMENT_HEADER_BYTES + header.data_capacity_bytes as usize);
    let map: MmapRaw = if writable {
        options.map_raw(&file)
    } else {
        options.map_raw_read_only(&file)
    }
    .map_err(open_failed)?;
    let interval = config.index_interval_bytes;
    let entry_capacity = index::entry_capacity(header.data_capacity_bytes, interval);
    let index_path = dir.join(segment::index_file_name(SegmentId(header.base_offset)));
    let index = match open_index_file(&index_path, entry_capacity) {
        Ok(index_file) => SegmentIndex::map_file(&index_file, entry_capacity, interval)
            .map_err(|error| error::open_failed(index_path.clone(), error))?,
        Err(_) => {
            // A full filesystem must not keep a partition from opening: the index is a cache.
            report.indexes_in_memory.push(index_path.clone());
            SegmentIndex::anonymous(entry_capacity, interval)
                .map_err(|error| error::open_failed(index_path.clone(), error))?
        }
    };
    Ok(Segment::new(SegmentParts {
        header,
        path,
        index_path,
        file,
        map,
        writable,
        index,
    }))
}

/// Opens the index file, growing (and preallocating) it when it is missing or short.
fn open_index_file(path: &Path, entry_capacity: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let needed = index::index_file_bytes(entry_capacity);
    if file.metadata()?.len() < needed {
        segment::preallocate(&file, needed)?;
    }
    Ok(file)
}

/// Whether the index header on disk describes this segment with this configuration.
fn index_header_matches(segment: &Segment, header: &IndexHeader) -> bool {
    let index = segment.index();
    header.base_offset == segment.base_offset().0
        && header.base_sequence == segment.base_sequence().0
        && header.interval_bytes == index.interval_bytes()
        && header.entry_capacity == index.entry_capacity()
}

/// Walks records from `position` (with the sequence number and minimum time expected there),
/// pushing index entries when `rebuild` is set, until an all-zero header, the end of `area`, or
/// a bad record.
fn scan(segment: &Segment, area: &[u8], start: (u32, u64, Option<i64>), rebuild: bool) -> Scan {
    let (mut position, mut sequence, mut time_min) = start;
    assert!(
        position as usize <= area.len(),
        "scan starts inside the area"
    );
    assert!(
        position.is_multiple_of(8),
        "scan starts on a record boundary"
    );
    let base = segment.base_offset().0;
    let interval = segment.index().interval_bytes();
    let mut next_index_position = 0u32;
    let mut result = Scan {
        data_bytes: position,
        records: 0,
        last: None,
        last_index_position: None,
        stopped: None,
    };
    loop {
        let expect = Expect {
            offset: base + u64::from(position),
            sequence: Some(sequence),
            enqueued_ms_min: time_min,
            verify_crc: true,
        };
        match check_record(area, position as usize, expect) {
            Checked::Record { header, stride } => {
                if rebuild && position >= next_index_position {
                    segment.index().push(index::IndexEntry {
                        position,
                        sequence_delta: (sequence - segment.base_sequence().0) as u32,
                        enqueued_ms: header.enqueued_ms,
                    });
                    result.last_index_position = Some(position);
                    next_index_position = position + interval;
                }
                result.last = Some(LastRecord {
                    sequence: SequenceNumber(sequence),
                    offset: Offset(header.offset),
                    enqueued_ms: header.enqueued_ms,
                });
                result.records += 1;
                time_min = Some(header.enqueued_ms);
                sequence += 1;
                position += stride as u32;
                result.data_bytes = position;
            }
            Checked::End => return result,
            Checked::Bad(reason) => {
                result.stopped = Some(reason);
                return result;
            }
        }
    }
}

/// A sealed segment: trust a sealed index that checks out, otherwise scan everything strictly.
/// Also how a [`Follower`](crate::Follower) loads segments that are no longer written.
pub(crate) fn recover_sealed(
    segment: &Segment,
    time_min: Option<i64>,
    report: &mut RecoveryReport,
) -> Result<Scan> {
    // SAFETY: no writer exists yet; the segment is not shared.
    let area = unsafe { segment.data_unshared() };
    if let Some(header) = segment.index().read_header()
        && header.is_sealed()
        && index_header_matches(segment, &header)
        && let Some(scan) = validate_sealed_index(segment, area, &header, time_min)
    {
        segment.index().set_len(header.sealed_entry_count);
        return Ok(scan);
    }
    segment.index().set_len(0);
    let scan = scan(
        segment,
        area,
        (0, segment.base_sequence().0, time_min),
        true,
    );
    if let Some(reason) = scan.stopped {
        return Err(Error::InteriorCorruption {
            path: segment.path().to_path_buf(),
            position: SEGMENT_HEADER_BYTES as u64 + u64::from(scan.data_bytes),
            reason,
            valid_record_after: None,
        });
    }
    write_sealed_header(segment, &scan);
    report
        .indexes_rebuilt
        .push(segment.index_path().to_path_buf());
    Ok(scan)
}

/// Checks a sealed index against its segment without reading the whole segment: the entries'
/// CRC, bounds and ordering, then the records from the last entry to the recorded end.
fn validate_sealed_index(
    segment: &Segment,
    area: &[u8],
    header: &IndexHeader,
    time_min: Option<i64>,
) -> Option<Scan> {
    let index = segment.index();
    let count = header.sealed_entry_count;
    let data_bytes = header.sealed_data_bytes;
    if count > index.entry_capacity()
        || data_bytes > segment.data_capacity()
        || !data_bytes.is_multiple_of(8)
    {
        return None;
    }
    if index.entries_crc32c(count) != header.sealed_entries_crc32c
        || header.sealed_record_count < count
    {
        return None;
    }
    if count == 0 {
        return (data_bytes == 0 && header.sealed_record_count == 0).then_some(Scan {
            data_bytes: 0,
            records: 0,
            last: None,
            last_index_position: None,
            stopped: None,
        });
    }
    let mut previous: Option<index::IndexEntry> = None;
    for i in 0..count {
        let entry = index.entry(i);
        let in_bounds = entry.position < data_bytes
            && entry.position.is_multiple_of(8)
            && entry.sequence_delta < header.sealed_record_count;
        let ordered = match previous {
            None => {
                entry.position == 0
                    && entry.sequence_delta == 0
                    && time_min.is_none_or(|t| entry.enqueued_ms >= t)
            }
            Some(p) => {
                entry.position > p.position
                    && entry.sequence_delta > p.sequence_delta
                    && entry.enqueued_ms >= p.enqueued_ms
                    && entry.position - p.position >= index.interval_bytes()
            }
        };
        if !in_bounds || !ordered {
            return None;
        }
        previous = Some(entry);
    }
    let last_entry = previous?;
    let sequence = segment.base_sequence().0 + u64::from(last_entry.sequence_delta);
    let tail = scan(
        segment,
        &area[..data_bytes as usize],
        (last_entry.position, sequence, None),
        false,
    );
    let records = last_entry.sequence_delta.checked_add(tail.records)?;
    let ends_right = tail.stopped.is_none()
        && tail.data_bytes == data_bytes
        && records == header.sealed_record_count;
    let first_ok = tail.records > 0
        && tail
            .last
            .is_some_and(|l| l.enqueued_ms == header.sealed_last_enqueued_ms);
    (ends_right && first_ok).then_some(Scan {
        data_bytes,
        records,
        last: tail.last,
        last_index_position: Some(last_entry.position),
        stopped: None,
    })
}

fn write_sealed_header(segment: &Segment, scan: &Scan) {
    let index = segment.index();
    let count = index.len();
    let mut header = IndexHeader::new(
        segment.base_offset().0,
        segment.base_sequence().0,
        index.interval_bytes(),
        index.entry_capacity(),
    );
    header.flags = 1;
    header.sealed_entry_count = count;
    header.sealed_entries_crc32c = index.entries_crc32c(count);
    header.sealed_data_bytes = scan.data_bytes;
    header.sealed_record_count = scan.records;
    header.sealed_last_enqueued_ms = scan.last.map_or(i64::MIN, |l| l.enqueued_ms);
    index.write_header(&header);
}

/// The last segment: scan every record, then make sure only zeros follow (truncating a torn
/// tail, refusing interior corruption), sync it, and rebuild its index.
fn recover_active(
    segment: &Segment,
    time_min: Option<i64>,
    report: &mut RecoveryReport,
) -> Result<Scan> {
    // SAFETY: no writer exists yet; the segment is not shared.
    let area = unsafe { segment.data_unshared() };
    segment.index().set_len(0);
    let scan = scan(
        segment,
        area,
        (0, segment.base_sequence().0, time_min),
        true,
    );
    let end = scan.data_bytes as usize;
    assert!(end <= area.len(), "records end inside the data area");
    assert!(
        scan.stopped.is_none() || end < area.len(),
        "a bad record lies inside the area"
    );
    let path = segment.path().to_path_buf();
    if let Some(last_nonzero) = area[end..].iter().rposition(|b| *b != 0) {
        let garbage_end = end + last_nonzero + 1;
        if let Some(valid) = find_valid_record(segment, area, end + 8, garbage_end) {
            return Err(Error::InteriorCorruption {
                path,
                position: (SEGMENT_HEADER_BYTES + end) as u64,
                reason: scan
                    .stopped
                    .unwrap_or(Corruption::LengthOutOfBounds { length: 0 }),
                valid_record_after: Some((SEGMENT_HEADER_BYTES + valid) as u64),
            });
        }
        zero(
            segment.file(),
            &path,
            SEGMENT_HEADER_BYTES + end,
            garbage_end - end,
        )?;
        report.truncated.push(TornTail {
            path: path.clone(),
            position: (SEGMENT_HEADER_BYTES + end) as u64,
            bytes_dropped: (garbage_end - end) as u64,
            reason: scan.stopped,
        });
    }
    segment
        .file()
        .sync_data()
        .map_err(|error| error::open_failed(path, error))?;
    segment.index().write_header(&IndexHeader::new(
        segment.base_offset().0,
        segment.base_sequence().0,
        segment.index().interval_bytes(),
        segment.index().entry_capacity(),
    ));
    report
        .indexes_rebuilt
        .push(segment.index_path().to_path_buf());
    Ok(Scan {
        stopped: None,
        ..scan
    })
}

/// The first position in `from..to` (8-aligned) holding a record that validates on its own
/// (its offset field matching its position, and its CRC).
fn find_valid_record(segment: &Segment, area: &[u8], from: usize, to: usize) -> Option<usize> {
    let base = segment.base_offset().0;
    let mut position = from.next_multiple_of(8);
    while position + RECORD_HEADER_BYTES <= to.min(area.len()) {
        // Cheap filter first: the offset field must name this very position.
        let offset_field = &area[position + 16..position + 24];
        if offset_field == (base + position as u64).to_le_bytes() {
            let expect = Expect {
                offset: base + position as u64,
                sequence: None,
                enqueued_ms_min: None,
                verify_crc: true,
            };
            if let Checked::Record { .. } = check_record(area, position, expect) {
                return Some(position);
            }
        }
        position += 8;
    }
    None
}

/// Writes `len` zero bytes at file position `at` (a torn tail), through the page cache that the
/// mapping shares.
fn zero(file: &File, path: &Path, at: usize, len: usize) -> Result<()> {
    segment::write_zeros(file, at as u64, len as u64, segment::ZeroWrite::Cached)
        .map_err(|error| error::write_failed(path.to_path_buf(), at as u64, error))
}
