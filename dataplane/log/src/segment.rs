//! One segment file: a header, then records, preallocated and mapped.
//!
//! ```text
//!  segment file {base_offset:020}.segment, preallocated to segment_bytes
//!  byte 0            8          12        14       16             20          24
//!  ┌─────────────────┬──────────┬─────────┬────────┬──────────────┬───────────┐
//!  │ magic "SHOALSEG"│crc32c u32│version  │flags   │partition_id  │reserved   │
//!  │                 │(12..64)  │u16 = 1  │u16 = 0 │u32           │u32 = 0    │
//!  ├─────────────────┴──────────┴──┬──────┴────────┴─────┬────────┴───────────┤
//!  │ base_offset u64 (24..32)      │ base_sequence u64   │ created_ms i64     │
//!  ├───────────────────────────────┼─────────────────────┴────────────────────┤
//!  │ data_capacity_bytes u64       │ reserved u64 = 0 (56..64)                │
//!  ├───────────────────────────────┴──────────────────────────────────────────┤
//!  │ data area, from byte 64: record │ record │ ... │ zeros to the end of file │
//!  └──────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! A record at data position `p` has partition offset `base_offset + p`; the next segment's
//! `base_offset` is this one's `base_offset` plus the end of its records, so offsets are
//! contiguous across segments and stay valid forever, also after old segments are deleted.
//!
//! # Life of a segment
//! 1. Once the active segment is `prepare_next_at_percent` full, the partition asks for the
//!    next one; [`SegmentPrep::prepare`] (on a blocking thread, or inline as a fallback) creates
//!    `prepared-*.segment.tmp` and `prepared-*.index.tmp`, preallocates both with `fallocate`,
//!    maps them and pre-faults every page, so that appends never touch a cold page and a full
//!    disk shows up here, as `ENOSPC`, instead of as `SIGBUS` in a mapping. The inline
//!    fallback (a roll that found no segment ready) skips the zero fill and the pre-faulting,
//!    so that the append path waits milliseconds rather than for a whole segment of writes;
//!    `fallocate` still reserves its blocks (on copy-on-write filesystems a write through the
//!    mapping of such a segment can still find the disk full).
//! 2. At a roll, the partition writes the header, renames both files to their final names and
//!    asks the next flush to sync the directory too.
//! 3. When the next roll happens, the segment is *sealed*: its end is published to readers and
//!    recorded in the index header.
//! 4. Retention unlinks sealed segments; readers still holding one keep it mapped until they
//!    drop it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::config::WritePath;
use crate::error::{self, Result};
use crate::index::{self, IndexEntry, IndexHeader, SegmentIndex};
use crate::{Offset, PartitionId, SegmentId, SequenceNumber};

/// Size of the segment file header; records start here.
pub const SEGMENT_HEADER_BYTES: usize = 64;

const SEGMENT_MAGIC: [u8; 8] = *b"SHOALSEG";
const SEGMENT_VERSION: u16 = 1;
const NOT_SEALED: u64 = u64::MAX;

/// Suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".segment";
/// Suffix of index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Suffix of files being prepared (deleted at open).
pub(crate) const TEMPORARY_SUFFIX: &str = ".tmp";

/// The segment file header, as laid out in the module docs.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentHeader {
    /// `SHOALSEG`.
    pub magic: [u8; 8],
    /// CRC32C of header bytes `12..64`.
    pub crc32c: u32,
    /// Format version.
    pub version: u16,
    /// Zero.
    pub flags: u16,
    /// The partition this segment belongs to.
    pub partition_id: u32,
    /// Zero.
    pub reserved: u32,
    /// Partition offset of the first data byte.
    pub base_offset: u64,
    /// Sequence number of the first record.
    pub base_sequence: u64,
    /// When the segment was started, ms since the Unix epoch.
    pub created_ms: i64,
    /// Bytes in the data area (file length minus the header).
    pub data_capacity_bytes: u64,
    /// Zero.
    pub reserved_tail: u64,
}

const _: () = assert!(size_of::<SegmentHeader>() == SEGMENT_HEADER_BYTES);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, base_offset) == 24);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, data_capacity_bytes) == 48);
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(crate::record::RECORD_ALIGNMENT_BYTES));

impl SegmentHeader {
    /// Serializes the header, computing its CRC.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..8].copy_from_slice(&self.magic);
        out[12..14].copy_from_slice(&self.version.to_le_bytes());
        out[14..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..20].copy_from_slice(&self.partition_id.to_le_bytes());
        out[20..24].copy_from_slice(&self.reserved.to_le_bytes());
        out[24..32].copy_from_slice(&self.base_offset.to_le_bytes());
        out[32..40].copy_from_slice(&self.base_sequence.to_le_bytes());
        out[40..48].copy_from_slice(&self.created_ms.to_le_bytes());
        out[48..56].copy_from_slice(&self.data_capacity_bytes.to_le_bytes());
        out[56..64].copy_from_slice(&self.reserved_tail.to_le_bytes());
        let crc = crc32c::crc32c(&out[12..]);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and checks a header; the error says what is wrong.
    pub fn decode(bytes: &[u8; SEGMENT_HEADER_BYTES]) -> std::result::Result<Self, &'static str> {
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err("bad magic");
        }
        if crc32c::crc32c(&bytes[12..]) != u32_at(8) {
            return Err("header checksum mismatch");
        }
        if u16_at(12) != SEGMENT_VERSION {
            return Err("unknown version");
        }
        let header = SegmentHeader {
            magic: SEGMENT_MAGIC,
            crc32c: u32_at(8),
            version: u16_at(12),
            flags: u16_at(14),
            partition_id: u32_at(16),
            reserved: u32_at(20),
            base_offset: u64_at(24),
            base_sequence: u64_at(32),
            created_ms: u64_at(40) as i64,
            data_capacity_bytes: u64_at(48),
            reserved_tail: u64_at(56),
        };
        if header.flags != 0 || header.reserved != 0 || header.reserved_tail != 0 {
            return Err("unknown flags or reserved bits");
        }
        Ok(header)
    }
}

/// `{base_offset:020}.segment`.
pub(crate) fn segment_file_name(id: SegmentId) -> String {
    format!("{:020}{SEGMENT_SUFFIX}", id.0)
}

/// `{base_offset:020}.index`.
pub(crate) fn index_file_name(id: SegmentId) -> String {
    format!("{:020}{INDEX_SUFFIX}", id.0)
}

/// Parses `{base_offset:020}.segment`.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(SegmentId)
}

/// Allocates `bytes` for `file` so that later writes (through `pwrite` or a mapping) cannot
/// fail for lack of space. Falls back to writing zeros where `fallocate` is not supported.
pub(crate) fn preallocate(file: &File, bytes: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: fallocate only reads its integer arguments; the fd is open for the whole call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(error);
    }
    write_zeros(file, 0, bytes, ZeroWrite::Cached)
}

/// Zeros written per step of [`write_zeros`].
const ZERO_CHUNK_BYTES: u64 = 128 << 10;

/// With [`ZeroWrite::WrittenBack`], how far writeback may run behind the writes: after each
/// chunk's writeback is started, everything older than this many chunks is waited for. A live
/// partition's `fdatasync` finds at most one chunk more than this ahead of it in the disk's
/// queue, and the preparing thread sleeps only when the disk is this far behind.
const ZERO_WRITEBACK_DEPTH: u64 = 4;

/// Whether [`write_zeros`] leaves the zeros in the page cache or writes them back as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZeroWrite {
    /// Dirty pages, written back by the kernel or the caller's next sync.
    Cached,
    /// Written back (`sync_file_range`) as they go, at most [`ZERO_WRITEBACK_DEPTH`] + 1
    /// chunks at a time, and all of them by the return.
    ///
    /// Why, for segment preparation: a 128 MiB burst of dirty pages handed to the disk at
    /// once sits in front of every `fdatasync` the live partitions issue meanwhile; several
    /// partitions rolling together (equal rates roll together) stalled acknowledgements at
    /// 100k msgs/s. So is a 1 MiB chunk, on a busy disk. Small chunks waited for one by one
    /// are slow to write (the preparing thread runs at the lowest priority and sleeps on
    /// each), and at 390k msgs/s a roll then found no segment ready and prepared one inline
    /// (a 600 ms stall). Chunk size and depth are measured in `dataplane/log/DECISIONS.md` §2.
    WrittenBack,
}

/// Writes `bytes` zeros at `at`, one [`ZERO_CHUNK_BYTES`] chunk at a time.
///
/// The chunks start at `at`, not on chunk boundaries of the file, so each chunk's last page is
/// also the next one's first. Aligning them measured worse at 16 in flight (300-327k msgs/s,
/// PUBACK p99 12.4 ms, against 357-369k and 7.9-8.9 ms alternated): the next chunk's write
/// into a page still under writeback waits for it, which paces the fill, and a paced fill
/// leaves the disk to the live partitions' flushes (`dataplane/log/DECISIONS.md` §2).
pub(crate) fn write_zeros(file: &File, at: u64, bytes: u64, how: ZeroWrite) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(bytes) as usize];
    let window = ZERO_WRITEBACK_DEPTH * ZERO_CHUNK_BYTES;
    let mut done = 0u64;
    // With `WrittenBack`: bytes (from `at`) known to be on the disk.
    let mut written_back = 0u64;
    while done < bytes {
        let chunk = (bytes - done).min(zeros.len() as u64);
        file.write_all_at(&zeros[..chunk as usize], at + done)?;
        if how == ZeroWrite::WrittenBack {
            sync_range(file, at + done, chunk, WriteBack::Start)?;
        }
        done += chunk;
        if how == ZeroWrite::WrittenBack && done - written_back > window {
            // Usually finished by now, so no sleep.
            let upto = done - window;
            sync_range(
                file,
                at + written_back,
                upto - written_back,
                WriteBack::Wait,
            )?;
            written_back = upto;
        }
    }
    if how == ZeroWrite::WrittenBack && written_back < bytes {
        sync_range(
            file,
            at + written_back,
            bytes - written_back,
            WriteBack::Wait,
        )?;
    }
    Ok(())
}

/// What [`sync_range`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteBack {
    /// Starts writeback of the range's dirty pages and returns.
    Start,
    /// Writes back the range and waits until all of it is on the disk.
    Wait,
}

/// Writes back `file[at..at + len]` (`sync_file_range`), waiting for it or not; the data
/// only, no metadata and no disk cache flush: the caller's `fdatasync` provides those.
fn sync_range(file: &File, at: u64, len: u64, how: WriteBack) -> io::Result<()> {
    // `sync_file_range` reads a length of 0 as "to the end of the file".
    debug_assert!(len > 0, "an empty range is never synced");
    let (Ok(offset), Ok(nbytes)) = (libc::off64_t::try_from(at), libc::off64_t::try_from(len))
    else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    let flags = match how {
        WriteBack::Start => libc::SYNC_FILE_RANGE_WRITE,
        WriteBack::Wait => {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        }
    };
    // SAFETY: sync_file_range only reads its integer arguments; the fd is open for the call.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, nbytes, flags) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    // Filesystems without it (some FUSE and network ones) still get the final fdatasync.
    if matches!(
        error.raw_os_error(),
        Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
    ) {
        return Ok(());
    }
    Err(error)
}

/// Faults in every page of `map[start..start + len]`, for write (`PopulateWrite`, which also
/// dirties them) or for read.
pub(crate) fn prefault(map: &MmapRaw, start: usize, len: usize, write: bool) -> io::Result<()> {
    assert!(
        start + len <= map.len(),
        "prefault range inside the mapping"
    );
    if len == 0 {
        return Ok(());
    }
    let advice = if write {
        Advice::PopulateWrite
    } else {
        Advice::PopulateRead
    };
    let page = 4096;
    let aligned_start = start / page * page;
    match map.advise_range(advice, aligned_start, start + len - aligned_start) {
        Ok(()) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            // Kernels before 5.14 lack MADV_POPULATE_*: touch one byte per page instead.
            let mut at = aligned_start;
            while at < start + len {
                // SAFETY: `at` is inside the mapping (asserted above). A read does not change
                // the byte; a write stores back the byte just read, from the only writer, in a
                // range no reader uses yet (the segment is not published while being prepared).
                unsafe {
                    let byte = map.as_ptr().add(at).read_volatile();
                    if write {
                        map.as_mut_ptr().add(at).write_volatile(byte);
                    }
                }
                at += page;
            }
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// A segment as readers and the writer share it.
///
/// Reading the mapping as `&[u8]` assumes that nothing outside this partition writes the bytes
/// read while they are mapped: the partition directory is locked (`LOCK`, `flock`) by its
/// owner, which only writes past what readers may read, and operators must not edit segment
/// files of a running partition. A [`Follower`](crate::Follower) in another process maps the
/// same files read-only and reads them through the mapping only below the end of the records
/// it validated (see `follower.rs`).
///
/// # Invariants
/// - Bytes of the data area below the partition's committed end are never written again.
/// - At most one [`SegmentWriter`] exists per segment (`writer_claimed`).
/// - `sealed_bytes` goes from "not sealed" to the end of the records once, and never changes
///   again.
pub(crate) struct Segment {
    header: SegmentHeader,
    path: PathBuf,
    index_path: PathBuf,
    file: Arc<File>,
    map: MmapRaw,
    writable: bool,
    index: SegmentIndex,
    sealed_bytes: AtomicU64,
    last_enqueued_ms: AtomicI64,
    writer_claimed: AtomicBool,
}

/// What a segment is built from (at a roll or at open).
pub(crate) struct SegmentParts {
    pub header: SegmentHeader,
    pub path: PathBuf,
    pub index_path: PathBuf,
    pub file: File,
    pub map: MmapRaw,
    pub writable: bool,
    pub index: SegmentIndex,
}

impl Segment {
    pub(crate) fn new(parts: SegmentParts) -> Segment {
        let data_capacity = parts.header.data_capacity_bytes;
        assert!(
            parts.map.len() as u64 >= SEGMENT_HEADER_BYTES as u64 + data_capacity,
            "mapping covers the data area"
        );
        assert!(data_capacity < 1 << 32, "positions fit u32");
        Segment {
            header: parts.header,
            path: parts.path,
            index_path: parts.index_path,
            file: Arc::new(parts.file),
            map: parts.map,
            writable: parts.writable,
            index: parts.index,
            sealed_bytes: AtomicU64::new(NOT_SEALED),
            last_enqueued_ms: AtomicI64::new(i64::MIN),
            writer_claimed: AtomicBool::new(false),
        }
    }

    /// Partition offset of the first data byte.
    pub(crate) fn base_offset(&self) -> Offset {
        Offset(self.header.base_offset)
    }

    /// Sequence number of the first record.
    pub(crate) fn base_sequence(&self) -> SequenceNumber {
        SequenceNumber(self.header.base_sequence)
    }

    /// Bytes in the data area.
    pub(crate) fn data_capacity(&self) -> u32 {
        self.header.data_capacity_bytes as u32
    }

    /// Bytes the segment and index files take on disk.
    pub(crate) fn file_bytes(&self) -> u64 {
        SEGMENT_HEADER_BYTES as u64
            + self.header.data_capacity_bytes
            + index::index_file_bytes(self.index.entry_capacity())
    }

    /// The segment file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The index file.
    pub(crate) fn index_path(&self) -> &Path {
        &self.index_path
    }

    /// The open segment file (shared with flush requests).
    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The sparse index.
    pub(crate) fn index(&self) -> &SegmentIndex {
        &self.index
    }

    /// End of the records once sealed; `None` while the segment takes appends.
    pub(crate) fn sealed_bytes(&self) -> Option<u32> {
        let sealed = self.sealed_bytes.load(Ordering::Acquire);
        (sealed != NOT_SEALED).then_some(sealed as u32)
    }

    /// Enqueued time of the newest record, once sealed (or recovered); `i64::MIN` when unknown
    /// or empty.
    pub(crate) fn last_enqueued_ms(&self) -> i64 {
        self.last_enqueued_ms.load(Ordering::Acquire)
    }

    /// Marks the segment sealed at `data_bytes` (open, for segments before the last).
    pub(crate) fn mark_sealed(&self, data_bytes: u32, last_enqueued_ms: i64) {
        assert!(
            data_bytes <= self.data_capacity(),
            "sealed end inside the data area"
        );
        self.last_enqueued_ms
            .store(last_enqueued_ms, Ordering::Release);
        let previous = self
            .sealed_bytes
            .swap(u64::from(data_bytes), Ordering::AcqRel);
        assert!(
            previous == NOT_SEALED || previous == u64::from(data_bytes),
            "sealed once"
        );
    }

    /// The data area bytes `position..position + len`.
    ///
    /// # Safety
    /// The range must be immutable for the lifetime of the borrow: below a committed end loaded
    /// with `Acquire`, or read while no writer exists (open, before the segment is shared).
    pub(crate) unsafe fn data(&self, position: u32, len: usize) -> &[u8] {
        let end = position as usize + len;
        assert!(
            end <= self.data_capacity() as usize,
            "read inside the data area"
        );
        // SAFETY: in bounds of the mapping (asserted above, and Segment::new asserts the mapping
        // covers the data area); immutability is the caller's contract.
        unsafe {
            std::slice::from_raw_parts(
                self.map
                    .as_ptr()
                    .add(SEGMENT_HEADER_BYTES + position as usize),
                len,
            )
        }
    }

    /// The whole data area, for recovery.
    ///
    /// # Safety
    /// No writer may exist (open, before the segment is shared or written).
    pub(crate) unsafe fn data_unshared(&self) -> &[u8] {
        assert!(
            !self.writer_claimed.load(Ordering::Acquire),
            "no writer while recovering"
        );
        // SAFETY: the contract above; the range is the data area.
        unsafe { self.data(0, self.data_capacity() as usize) }
    }

    /// The mapping (for prefaulting the rest of a recovered active segment).
    pub(crate) fn map(&self) -> &MmapRaw {
        &self.map
    }
}

/// The single writer of the active segment.
///
/// # Invariants
/// - `position` is the end of the written records, 8-aligned, `<= data_capacity`.
/// - Writes happen only at or beyond `position`, never below the committed end.
pub(crate) struct SegmentWriter {
    segment: Arc<Segment>,
    position: u32,
    next_index_position: u32,
    record_count: u32,
    last_enqueued_ms: i64,
}

/// Where a recovered segment's writer resumes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterState {
    pub position: u32,
    pub next_index_position: u32,
    pub record_count: u32,
    pub last_enqueued_ms: i64,
}

impl SegmentWriter {
    /// Claims the writer role of `segment`.
    pub(crate) fn claim(segment: Arc<Segment>, state: WriterState) -> SegmentWriter {
        assert!(
            !segment.writer_claimed.swap(true, Ordering::AcqRel),
            "one writer per segment"
        );
        assert!(
            segment.sealed_bytes().is_none(),
            "sealed segments take no writes"
        );
        assert!(state.position <= segment.data_capacity() && state.position.is_multiple_of(8));
        SegmentWriter {
            segment,
            position: state.position,
            next_index_position: state.next_index_position,
            record_count: state.record_count,
            last_enqueued_ms: state.last_enqueued_ms,
        }
    }

    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// End of the written records.
    pub(crate) fn position(&self) -> u32 {
        self.position
    }

    /// Bytes left for records.
    pub(crate) fn remaining(&self) -> u32 {
        self.segment.data_capacity() - self.position
    }

    /// Writes encoded records with `pwrite` at data position `position`; they must end exactly
    /// at the end of the written records (the partition advances first, then writes what it
    /// staged).
    pub(crate) fn pwrite_at(&mut self, position: u32, bytes: &[u8]) -> Result<()> {
        assert!(
            u64::from(position) + bytes.len() as u64 == u64::from(self.position),
            "the written bytes end at the written end"
        );
        assert!(
            position.is_multiple_of(8) && bytes.len().is_multiple_of(8),
            "whole records"
        );
        let at = SEGMENT_HEADER_BYTES as u64 + u64::from(position);
        self.segment
            .file
            .write_all_at(bytes, at)
            .map_err(|error| error::write_failed(self.segment.path.clone(), at, error))
    }

    /// The unwritten region `position..position + len` of a writable mapping.
    pub(crate) fn mapped_tail(&mut self, len: usize) -> &mut [u8] {
        assert!(
            self.segment.writable,
            "the mmap write path maps segments writable"
        );
        assert!(len <= self.remaining() as usize, "batch fits the segment");
        let at = SEGMENT_HEADER_BYTES + self.position as usize;
        // SAFETY: in bounds of the mapping (checked above); the region is at or beyond the end of
        // the written records, hence beyond the committed end, so no reader holds a reference
        // into it; `&mut self` on the unique writer means nobody else writes it.
        unsafe { std::slice::from_raw_parts_mut(self.segment.map.as_mut_ptr().add(at), len) }
    }

    /// Accounts for a record just written at `position`, adding an index entry when due.
    pub(crate) fn note_record(
        &mut self,
        position: u32,
        sequence: SequenceNumber,
        enqueued_ms: i64,
    ) {
        assert!(position >= self.position, "records are noted in order");
        if position >= self.next_index_position {
            let delta = sequence.0 - self.segment.base_sequence().0;
            let sequence_delta =
                u32::try_from(delta).expect("a segment holds fewer than 2^32 records");
            self.segment.index.push(IndexEntry {
                position,
                sequence_delta,
                enqueued_ms,
            });
            self.next_index_position = position + self.segment.index.interval_bytes();
        }
        self.record_count += 1;
        self.last_enqueued_ms = enqueued_ms;
    }

    /// Moves the end of the written records.
    pub(crate) fn advance(&mut self, bytes: u32) {
        assert!(bytes <= self.remaining(), "advance inside the segment");
        assert!(bytes.is_multiple_of(8), "records are 8-aligned");
        self.position += bytes;
    }

    /// Seals the segment at its current end: records the end in the index header (a cache that
    /// spares a scan at the next open) and publishes it to readers.
    pub(crate) fn seal(self) {
        let segment = &self.segment;
        let index = segment.index();
        let count = index.len();
        let mut header = IndexHeader::new(
            segment.header.base_offset,
            segment.header.base_sequence,
            index.interval_bytes(),
            index.entry_capacity(),
        );
        header.flags = 1;
        header.sealed_entry_count = count;
        header.sealed_entries_crc32c = index.entries_crc32c(count);
        header.sealed_data_bytes = self.position;
        header.sealed_record_count = self.record_count;
        header.sealed_last_enqueued_ms = self.last_enqueued_ms;
        index.write_header(&header);
        segment.mark_sealed(self.position, self.last_enqueued_ms);
    }
}

/// A request to prepare the next segment, to be run on a blocking thread (it creates,
/// preallocates, maps and pre-faults files: slow syscalls that must stay off the append path).
/// `Send`; obtained from [`Partition::next_segment_request`](crate::Partition::next_segment_request).
#[derive(Debug)]
pub struct SegmentPrep {
    pub(crate) dir: PathBuf,
    pub(crate) ticket: u64,
    pub(crate) segment_bytes: u64,
    pub(crate) index_interval_bytes: u32,
    pub(crate) write_path: WritePath,
    pub(crate) prefault: bool,
    /// Sync the file after pre-faulting it for write (mmap path in durable mode), so that the
    /// zeros the prefault dirtied are written back here, off the append path, and not by the
    /// first flush after the roll.
    pub(crate) sync_after_prefault: bool,
    /// Write (and sync) zeros over the data area after preallocating it.
    pub(crate) zero_fill: bool,
}

/// A prepared (created, preallocated, mapped, and unless it was made inline at a roll, zeroed
/// and pre-faulted) segment waiting to be installed with
/// [`Partition::install_prepared`](crate::Partition::install_prepared). Dropping it deletes its
/// files.
pub struct PreparedSegment {
    dir: PathBuf,
    segment_path: PathBuf,
    index_path: PathBuf,
    segment_file: Option<File>,
    map: Option<MmapRaw>,
    index: Option<SegmentIndex>,
    data_capacity: u64,
    writable: bool,
}

impl std::fmt::Debug for PreparedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedSegment")
            .field("path", &self.segment_path)
            .finish_non_exhaustive()
    }
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
}

impl SegmentPrep {
    /// Creates the files, preallocates, maps and pre-faults them. Errors are recoverable here
    /// (retry later); if no prepared segment is installed when a roll needs one, the partition
    /// prepares it inline.
    pub fn prepare(self) -> Result<PreparedSegment> {
        assert!(
            self.segment_bytes > SEGMENT_HEADER_BYTES as u64,
            "segment holds a header"
        );
        assert!(self.index_interval_bytes > 0, "index interval is positive");
        let stem = format!("prepared-{:016x}", self.ticket);
        let segment_path = self
            .dir
            .join(format!("{stem}{SEGMENT_SUFFIX}{TEMPORARY_SUFFIX}"));
        let index_path = self
            .dir
            .join(format!("{stem}{INDEX_SUFFIX}{TEMPORARY_SUFFIX}"));
        let data_capacity = self.segment_bytes - SEGMENT_HEADER_BYTES as u64;
        let entry_capacity = index::entry_capacity(data_capacity, self.index_interval_bytes);
        let writable = self.write_path == WritePath::Mmap;
        // From here on, dropping `prepared` deletes whatever was created.
        let mut prepared = PreparedSegment {
            dir: self.dir.clone(),
            segment_path,
            index_path,
            segment_file: None,
            map: None,
            index: None,
            data_capacity,
            writable,
        };
        let failed = |path: &Path| {
            let path = path.to_path_buf();
            move |error| error::prepare_failed(path, error)
        };

        let segment_file =
            create_new(&prepared.segment_path).map_err(failed(&prepared.segment_path))?;
        preallocate(&segment_file, self.segment_bytes).map_err(failed(&prepared.segment_path))?;
        // The mmap path needs no zero fill: pre-faulting for write dirties every page anyway.
        if self.zero_fill && !writable {
            write_zeros(
                &segment_file,
                SEGMENT_HEADER_BYTES as u64,
                data_capacity,
                ZeroWrite::WrittenBack,
            )
            .and_then(|()| segment_file.sync_data())
            .map_err(failed(&prepared.segment_path))?;
        }
        let mut options = MmapOptions::new();
        options.len(self.segment_bytes as usize);
        let map = if writable {
            options.map_raw(&segment_file)
        } else {
            options.map_raw_read_only(&segment_file)
        }
        .map_err(failed(&prepared.segment_path))?;
        if self.prefault {
            prefault(&map, SEGMENT_HEADER_BYTES, data_capacity as usize, writable)
                .map_err(failed(&prepared.segment_path))?;
        }
        if self.prefault && writable && self.sync_after_prefault {
            segment_file
                .sync_data()
                .map_err(failed(&prepared.segment_path))?;
        }
        prepared.segment_file = Some(segment_file);
        prepared.map = Some(map);

        let index_file = create_new(&prepared.index_path).map_err(failed(&prepared.index_path))?;
        preallocate(&index_file, index::index_file_bytes(entry_capacity))
            .map_err(failed(&prepared.index_path))?;
        let index = SegmentIndex::map_file(&index_file, entry_capacity, self.index_interval_bytes)
            .map_err(failed(&prepared.index_path))?;
        if self.prefault {
            prefault(index.map(), 0, index.map().len(), true)
                .map_err(failed(&prepared.index_path))?;
        }
        prepared.index = Some(index);
        Ok(prepared)
    }
}

impl PreparedSegment {
    /// The directory the segment was prepared in.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes in the data area.
    pub(crate) fn data_capacity(&self) -> u64 {
        self.data_capacity
    }

    /// Turns the prepared files into segment `header.base_offset`: writes both headers, renames
    /// the files to their final names. The caller syncs the directory with the next flush.
    pub(crate) fn install(mut self, header: SegmentHeader) -> Result<Arc<Segment>> {
        assert!(
            header.data_capacity_bytes == self.data_capacity,
            "header matches the prepared size"
        );
        let (Some(file), Some(map), Some(index)) =
            (self.segment_file.take(), self.map.take(), self.index.take())
        else {
            unreachable!("a PreparedSegment is complete until installed");
        };
        file.write_all_at(&header.encode(), 0)
            .map_err(|error| error::write_failed(self.segment_path.clone(), 0, error))?;
        let id = SegmentId(header.base_offset);
        index.write_header(&IndexHeader::new(
            header.base_offset,
            header.base_sequence,
            index.interval_bytes(),
            index.entry_capacity(),
        ));
        let path = self.dir.join(segment_file_name(id));
        let index_path = self.dir.join(index_file_name(id));
        fs::rename(&self.segment_path, &path)
            .map_err(|error| error::prepare_failed(path.clone(), error))?;
        // The segment file now has its final name: this PreparedSegment must not delete it.
        self.segment_path.clone_from(&path);
        fs::rename(&self.index_path, &index_path)
            .map_err(|error| error::prepare_failed(index_path.clone(), error))?;
        self.index_path.clone_from(&index_path);
        let writable = self.writable;
        let segment = Segment::new(SegmentParts {
            header,
            path,
            index_path,
            file,
            map,
            writable,
            index,
        });
        // Installed: nothing left to clean up.
        self.segment_path = PathBuf::new();
        self.index_path = PathBuf::new();
        Ok(Arc::new(segment))
    }
}

impl Drop for PreparedSegment {
    fn drop(&mut self) {
        // Best effort: leftovers are also removed at the next open.
        if self.segment_path.as_os_str().is_empty() {
            return;
        }
        let temporary = |path: &Path| path.to_str().is_some_and(|p| p.ends_with(TEMPORARY_SUFFIX));
        if temporary(&self.segment_path) {
            let _ = fs::remove_file(&self.segment_path);
        }
        if temporary(&self.index_path) {
            let _ = fs::remove_file(&self.index_path);
        }
    }
}

/// A new segment header for `partition` (its CRC is computed by [`SegmentHeader::encode`]).
pub fn new_header(
    partition: PartitionId,
    base_offset: Offset,
    base_sequence: SequenceNumber,
    data_capacity: u64,
    created_ms: i64,
) -> SegmentHeader {
    SegmentHeader {
        magic: SEGMENT_MAGIC,
        version: SEGMENT_VERSION,
        partition_id: partition.0,
        base_offset: base_offset.0,
        base_sequence: base_sequence.0,
        created_ms,
        data_capacity_bytes: data_capacity,
        ..SegmentHeader::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        // Setup: a header for partition 3. Expectation: decode(encode(h)) == h with the CRC
        // filled in; any flipped byte is refused.
        let header = new_header(PartitionId(3), Offset(4096), SequenceNumber(17), 65_472, 5);
        let bytes = header.encode();
        let decoded = SegmentHeader::decode(&bytes).expect("valid header");
        assert_eq!(
            SegmentHeader {
                crc32c: 0,
                ..decoded
            },
            header
        );
        for byte in 0..SEGMENT_HEADER_BYTES {
            let mut damaged = bytes;
            damaged[byte] ^= 0x01;
            assert!(SegmentHeader::decode(&damaged).is_err(), "byte {byte}");
        }
    }

    #[test]
    fn zero_fill_written_back_zeroes_exactly_its_range() {
        // Setup: a file of 0xAB bytes, zeroed over ranges that start mid-page, span more
        // chunks than the writeback window and end inside a chunk, that fit in one chunk, that
        // are aligned, or empty; both ways of writing. Expectation: each range reads zeros,
        // the bytes around it are untouched.
        let dir = tempfile::tempdir().unwrap();
        let chunk = ZERO_CHUNK_BYTES;
        let window_chunks = ZERO_WRITEBACK_DEPTH;
        let ranges = [
            (100, 2 * chunk + 5000),
            (64, (window_chunks + 3) * chunk + 5000),
            (chunk, (window_chunks + 1) * chunk),
            (5, 10),
            (7, 0),
        ];
        for how in [ZeroWrite::WrittenBack, ZeroWrite::Cached] {
            for (at, len) in ranges {
                let path = dir.path().join(format!("zeros-{how:?}-{at}-{len}"));
                let file = create_new(&path).unwrap();
                let total = at + len + 8192;
                file.write_all_at(&vec![0xAB; total as usize], 0).unwrap();
                write_zeros(&file, at, len, how).unwrap();
                let mut read_back = vec![0u8; total as usize];
                file.read_exact_at(&mut read_back, 0).unwrap();
                let (before, rest) = read_back.split_at(at as usize);
                let (zeroed, after) = rest.split_at(len as usize);
                assert!(before.iter().all(|&b| b == 0xAB), "{how:?} {at}+{len}");
                assert!(zeroed.iter().all(|&b| b == 0), "{how:?} {at}+{len}");
                assert!(after.iter().all(|&b| b == 0xAB), "{how:?} {at}+{len}");
            }
        }
    }

    #[test]
    fn file_names_sort_by_offset_and_parse_back() {
        // Setup: names for two offsets. Expectation: lexical order is numeric order and the
        // parser inverts the formatter; other names are ignored.
        let (a, b) = (
            segment_file_name(SegmentId(9)),
            segment_file_name(SegmentId(10)),
        );
        assert!(a < b);
        assert_eq!(parse_segment_file_name(&b), Some(SegmentId(10)));
        assert_eq!(parse_segment_file_name("9.segment"), None);
        assert_eq!(
            parse_segment_file_name("0000000000000000000x.segment"),
            None
        );
        assert_eq!(
            parse_segment_file_name(&index_file_name(SegmentId(1))),
            None
        );
    }
}
