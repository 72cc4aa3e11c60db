//! Sparse index of one segment: one entry per `index_interval_bytes` of records.
//!
//! ```text
//!  index file {base_offset:020}.index
//!  byte 0            8          12        14       16                24                32
//!  ┌─────────────────┬──────────┬─────────┬────────┬─────────────────┬─────────────────┐
//!  │ magic "SHOALIDX"│crc32c u32│version  │flags   │ base_offset u64 │ base_sequence   │
//!  │                 │(12..64)  │u16 = 1  │u16     │                 │ u64             │
//!  ├────────────┬────┴──────────┬─────────┴────────┬┴────────────────┼─────────────────┤
//!  │interval u32│entry_capacity │sealed_entry_count│sealed_entries   │sealed_data_bytes│
//!  │            │u32            │u32               │_crc32c u32      │u32              │
//!  ├────────────┴───────────────┼──────────────────┴─────────────────┴─────────────────┤
//!  │ sealed_record_count u32    │ sealed_last_enqueued_ms i64 (bytes 56..64)           │
//!  └────────────────────────────┴──────────────────────────────────────────────────────┘
//!  entries from byte 64, 16 bytes each:
//!  ┌───────────────────┬────────────────────┬──────────────────┐
//!  │ position u32      │ sequence_delta u32 │ enqueued_ms i64  │  × entry_capacity
//!  └───────────────────┴────────────────────┴──────────────────┘
//! ```
//!
//! - `position` is the record's byte position in the segment's data area, `sequence_delta` its
//!   sequence number minus the segment's base sequence. Entries are strictly increasing in
//!   position and sequence and non-decreasing in time (the partition never lets enqueued time go
//!   backwards), which is what makes every lookup a binary search.
//! - The file is preallocated and mapped shared; the owner stores entries into the mapping as it
//!   appends and publishes the count with a `Release` store, so readers on other threads use the
//!   active segment's index too. The file is never flushed on the hot path: it is a cache of
//!   what the segment holds, validated on open and rebuilt by a scan when missing or stale.
//! - Flag bit 0 (`sealed`) with the `sealed_*` fields is written when the segment rolls; a
//!   sealed index whose fields check out against the segment spares a full scan on open.
//!
//! # Invariants
//! - Entry `i < count` is fully written before `count` exceeds `i` (single writer, `Release`).
//! - `count <= entry_capacity`, with `entry_capacity >= data_capacity / interval + 1`.

use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::SequenceNumber;

/// Size of the index file header.
pub const INDEX_HEADER_BYTES: usize = 64;
/// Size of one index entry.
pub const INDEX_ENTRY_BYTES: usize = 16;

const INDEX_MAGIC: [u8; 8] = *b"SHOALIDX";
const INDEX_VERSION: u16 = 1;
const INDEX_FLAG_SEALED: u16 = 1;

/// The index file header, as laid out in the module docs.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexHeader {
    /// `SHOALIDX`.
    pub magic: [u8; 8],
    /// CRC32C of header bytes `12..64`.
    pub crc32c: u32,
    /// Format version.
    pub version: u16,
    /// Bit 0: sealed.
    pub flags: u16,
    /// The segment's base offset.
    pub base_offset: u64,
    /// The segment's base sequence number.
    pub base_sequence: u64,
    /// Bytes of records per entry.
    pub interval_bytes: u32,
    /// Entries the file has room for.
    pub entry_capacity: u32,
    /// Sealed: number of entries.
    pub sealed_entry_count: u32,
    /// Sealed: CRC32C of the entries.
    pub sealed_entries_crc32c: u32,
    /// Sealed: end of the records in the data area.
    pub sealed_data_bytes: u32,
    /// Sealed: number of records.
    pub sealed_record_count: u32,
    /// Sealed: enqueued time of the last record (meaningless when there is none).
    pub sealed_last_enqueued_ms: i64,
}

const _: () = assert!(size_of::<IndexHeader>() == INDEX_HEADER_BYTES);
const _: () = assert!(std::mem::offset_of!(IndexHeader, base_offset) == 16);
const _: () = assert!(std::mem::offset_of!(IndexHeader, interval_bytes) == 32);
const _: () = assert!(std::mem::offset_of!(IndexHeader, sealed_last_enqueued_ms) == 56);

/// One index entry, with the sequence number made absolute.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Byte position of the record in the segment's data area.
    pub position: u32,
    /// Sequence number minus the segment's base sequence.
    pub sequence_delta: u32,
    /// Enqueued time of the record.
    pub enqueued_ms: i64,
}

const _: () = assert!(size_of::<IndexEntry>() == INDEX_ENTRY_BYTES);
const _: () = assert!(INDEX_HEADER_BYTES.is_multiple_of(8) && INDEX_ENTRY_BYTES.is_multiple_of(8));

impl IndexHeader {
    /// A fresh, unsealed header.
    pub(crate) fn new(
        base_offset: u64,
        base_sequence: u64,
        interval_bytes: u32,
        entry_capacity: u32,
    ) -> Self {
        IndexHeader {
            magic: INDEX_MAGIC,
            version: INDEX_VERSION,
            base_offset,
            base_sequence,
            interval_bytes,
            entry_capacity,
            ..IndexHeader::default()
        }
    }

    /// Whether the sealed fields are meaningful.
    pub fn is_sealed(&self) -> bool {
        self.flags & INDEX_FLAG_SEALED != 0
    }

    fn encode(&self) -> [u8; INDEX_HEADER_BYTES] {
        let mut out = [0u8; INDEX_HEADER_BYTES];
        out[0..8].copy_from_slice(&self.magic);
        out[12..14].copy_from_slice(&self.version.to_le_bytes());
        out[14..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.base_sequence.to_le_bytes());
        out[32..36].copy_from_slice(&self.interval_bytes.to_le_bytes());
        out[36..40].copy_from_slice(&self.entry_capacity.to_le_bytes());
        out[40..44].copy_from_slice(&self.sealed_entry_count.to_le_bytes());
        out[44..48].copy_from_slice(&self.sealed_entries_crc32c.to_le_bytes());
        out[48..52].copy_from_slice(&self.sealed_data_bytes.to_le_bytes());
        out[52..56].copy_from_slice(&self.sealed_record_count.to_le_bytes());
        out[56..64].copy_from_slice(&self.sealed_last_enqueued_ms.to_le_bytes());
        let crc = crc32c::crc32c(&out[12..]);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and checks magic, version and CRC; `None` when any is wrong.
    pub(crate) fn decode(bytes: &[u8; INDEX_HEADER_BYTES]) -> Option<IndexHeader> {
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        if bytes[0..8] != INDEX_MAGIC || u16_at(12) != INDEX_VERSION {
            return None;
        }
        if crc32c::crc32c(&bytes[12..]) != u32_at(8) {
            return None;
        }
        Some(IndexHeader {
            magic: INDEX_MAGIC,
            crc32c: u32_at(8),
            version: u16_at(12),
            flags: u16_at(14),
            base_offset: u64_at(16),
            base_sequence: u64_at(24),
            interval_bytes: u32_at(32),
            entry_capacity: u32_at(36),
            sealed_entry_count: u32_at(40),
            sealed_entries_crc32c: u32_at(44),
            sealed_data_bytes: u32_at(48),
            sealed_record_count: u32_at(52),
            sealed_last_enqueued_ms: u64_at(56) as i64,
        })
    }
}

/// Entries needed for a data area of `data_capacity` bytes: entries are at least `interval`
/// bytes apart and the first is at position 0.
pub(crate) fn entry_capacity(data_capacity: u64, interval_bytes: u32) -> u32 {
    assert!(interval_bytes > 0, "interval is positive");
    let capacity = data_capacity / u64::from(interval_bytes) + 2;
    assert!(capacity < u64::from(u32::MAX), "entry capacity fits u32");
    capacity as u32
}

/// Size of the index file for `entry_capacity` entries, rounded up to a page.
pub(crate) fn index_file_bytes(entry_capacity: u32) -> u64 {
    let bytes = INDEX_HEADER_BYTES as u64 + INDEX_ENTRY_BYTES as u64 * u64::from(entry_capacity);
    bytes.div_ceil(4096) * 4096
}

/// The index of one segment, in a shared mapping (of the index file, or anonymous when the file
/// could not be written).
///
/// # Invariants
/// - Only the segment's single writer stores entries or headers, and only at or beyond `count`
///   (entries) or while no reader exists (rebuild, seal).
pub(crate) struct SegmentIndex {
    map: MmapRaw,
    entry_capacity: u32,
    interval_bytes: u32,
    count: AtomicU32,
}

// SAFETY: the mapping is plain shared memory; entries below `count` are immutable once published
// (Release/Acquire on `count`), and stores happen only from the one writer (see Invariants).
unsafe impl Send for SegmentIndex {}
// SAFETY: as for Send; readers only read entries below the published count.
unsafe impl Sync for SegmentIndex {}

impl SegmentIndex {
    /// Maps an index file that is at least [`index_file_bytes`]`(entry_capacity)` long.
    pub(crate) fn map_file(
        file: &File,
        entry_capacity: u32,
        interval_bytes: u32,
    ) -> std::io::Result<Self> {
        let len = index_file_bytes(entry_capacity) as usize;
        let map = MmapOptions::new().len(len).map_raw(file)?;
        Ok(Self::from_map(map, entry_capacity, interval_bytes))
    }

    /// An index that lives only in memory (used when the index file cannot be written, for
    /// example on a full filesystem).
    pub(crate) fn anonymous(entry_capacity: u32, interval_bytes: u32) -> std::io::Result<Self> {
        let len = index_file_bytes(entry_capacity) as usize;
        let map = MmapRaw::from(MmapOptions::new().len(len).map_anon()?);
        Ok(Self::from_map(map, entry_capacity, interval_bytes))
    }

    fn from_map(map: MmapRaw, entry_capacity: u32, interval_bytes: u32) -> Self {
        assert!(
            map.len() as u64 >= index_file_bytes(entry_capacity),
            "mapping holds every entry"
        );
        assert!(interval_bytes > 0, "interval is positive");
        SegmentIndex {
            map,
            entry_capacity,
            interval_bytes,
            count: AtomicU32::new(0),
        }
    }

    /// Bytes of records between entries.
    pub(crate) fn interval_bytes(&self) -> u32 {
        self.interval_bytes
    }

    /// Room for entries.
    pub(crate) fn entry_capacity(&self) -> u32 {
        self.entry_capacity
    }

    /// The mapping, for prefaulting.
    pub(crate) fn map(&self) -> &MmapRaw {
        &self.map
    }

    /// Published entry count.
    pub(crate) fn len(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// Reads the header stored in the mapping (validated: `None` if magic, version or CRC fail).
    pub(crate) fn read_header(&self) -> Option<IndexHeader> {
        let mut bytes = [0u8; INDEX_HEADER_BYTES];
        // SAFETY: the mapping is at least INDEX_HEADER_BYTES long (from_map asserts it), and the
        // header is only written by the single writer while no reader reads it (open, seal).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr(),
                bytes.as_mut_ptr(),
                INDEX_HEADER_BYTES,
            );
        };
        IndexHeader::decode(&bytes)
    }

    /// Stores a header (single writer only; see the type's invariants).
    pub(crate) fn write_header(&self, header: &IndexHeader) {
        assert!(
            header.entry_capacity <= self.entry_capacity,
            "header fits the mapping"
        );
        let bytes = header.encode();
        // SAFETY: in bounds (from_map asserts the length); readers never read the header, and
        // the single writer is the only one storing it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr(),
                INDEX_HEADER_BYTES,
            );
        };
    }

    /// Raw bytes of entry `i` (`i < entry_capacity`).
    fn entry_bytes(&self, i: u32) -> [u8; INDEX_ENTRY_BYTES] {
        assert!(i < self.entry_capacity, "entry inside the mapping");
        let mut bytes = [0u8; INDEX_ENTRY_BYTES];
        let at = INDEX_HEADER_BYTES + INDEX_ENTRY_BYTES * i as usize;
        // SAFETY: `at + 16` is inside the mapping (capacity checked above and in from_map); the
        // caller only reads entries below the published count, or entries read from disk
        // before the index is shared, so no store races with this read.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(at),
                bytes.as_mut_ptr(),
                INDEX_ENTRY_BYTES,
            );
        };
        bytes
    }

    /// Entry `i`, which must be below the published count (or below `count_unpublished` while
    /// validating at open).
    pub(crate) fn entry(&self, i: u32) -> IndexEntry {
        let b = self.entry_bytes(i);
        IndexEntry {
            position: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            sequence_delta: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            enqueued_ms: i64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        }
    }

    /// Appends an entry and publishes it (single writer only).
    pub(crate) fn push(&self, entry: IndexEntry) {
        let count = self.count.load(Ordering::Relaxed);
        assert!(
            count < self.entry_capacity,
            "index entry capacity covers the segment"
        );
        if count > 0 {
            let last = self.entry(count - 1);
            assert!(entry.position > last.position && entry.sequence_delta > last.sequence_delta);
        }
        let mut bytes = [0u8; INDEX_ENTRY_BYTES];
        bytes[0..4].copy_from_slice(&entry.position.to_le_bytes());
        bytes[4..8].copy_from_slice(&entry.sequence_delta.to_le_bytes());
        bytes[8..16].copy_from_slice(&entry.enqueued_ms.to_le_bytes());
        let at = INDEX_HEADER_BYTES + INDEX_ENTRY_BYTES * count as usize;
        // SAFETY: in bounds (count < capacity); entry `count` is not yet published, so no reader
        // reads it, and the single writer is the only one storing.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(at),
                INDEX_ENTRY_BYTES,
            );
        };
        self.count.store(count + 1, Ordering::Release);
    }

    /// Copies the bytes of an index file (header and entries) into the mapping, for a
    /// [`Follower`](crate::Follower), which never maps another process's index file: the copy
    /// is validated like the file itself before any entry is published.
    pub(crate) fn load(&self, bytes: &[u8]) {
        assert!(self.len() == 0, "loaded before any entry is published");
        let len = bytes.len().min(self.map.len());
        // SAFETY: `len` is within the mapping; no entry is published, so no reader reads it,
        // and the index is not shared yet.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.as_mut_ptr(), len);
        };
    }

    /// Publishes `count` entries already present in the mapping (open, after validation).
    pub(crate) fn set_len(&self, count: u32) {
        assert!(count <= self.entry_capacity, "count within capacity");
        self.count.store(count, Ordering::Release);
    }

    /// CRC32C of the first `count` entries.
    pub(crate) fn entries_crc32c(&self, count: u32) -> u32 {
        assert!(count <= self.entry_capacity, "count within capacity");
        let len = INDEX_ENTRY_BYTES * count as usize;
        // SAFETY: the range is inside the mapping; entries below `count` are published (or read
        // before sharing) and never stored again.
        let entries =
            unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(INDEX_HEADER_BYTES), len) };
        crc32c::crc32c(entries)
    }

    /// Index of the first entry among the first `count` for which `before` is false, with
    /// `before` monotonic (true, then false).
    fn partition_point(&self, count: u32, before: impl Fn(&IndexEntry) -> bool) -> u32 {
        let (mut low, mut high) = (0u32, count);
        while low < high {
            let mid = low + (high - low) / 2;
            if before(&self.entry(mid)) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// Number of published entries whose record starts before `position_end`.
    pub(crate) fn len_before(&self, position_end: u32) -> u32 {
        self.partition_point(self.len(), |e| e.position < position_end)
    }

    /// Last entry at or before `position`, among entries before `position_end`.
    pub(crate) fn floor_by_position(&self, position: u32, position_end: u32) -> Option<IndexEntry> {
        let count = self.len_before(position_end);
        let point = self.partition_point(count, |e| e.position <= position);
        point.checked_sub(1).map(|i| self.entry(i))
    }

    /// Last entry with a sequence number at or below `sequence` (relative to `base`), among
    /// entries before `position_end`.
    pub(crate) fn floor_by_sequence(
        &self,
        sequence: SequenceNumber,
        base: SequenceNumber,
        position_end: u32,
    ) -> Option<IndexEntry> {
        let count = self.len_before(position_end);
        let delta = sequence.0.saturating_sub(base.0);
        let point = self.partition_point(count, |e| u64::from(e.sequence_delta) <= delta);
        point.checked_sub(1).map(|i| self.entry(i))
    }

    /// Last entry with an enqueued time strictly before `enqueued_ms`, among entries before
    /// `position_end`. Strictly: records with equal times may precede the entry.
    pub(crate) fn floor_by_time(&self, enqueued_ms: i64, position_end: u32) -> Option<IndexEntry> {
        let count = self.len_before(position_end);
        let point = self.partition_point(count, |e| e.enqueued_ms < enqueued_ms);
        point.checked_sub(1).map(|i| self.entry(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(entries: &[(u32, u32, i64)]) -> SegmentIndex {
        let index = SegmentIndex::anonymous(16, 64).expect("anonymous mapping");
        for &(position, sequence_delta, enqueued_ms) in entries {
            index.push(IndexEntry {
                position,
                sequence_delta,
                enqueued_ms,
            });
        }
        index
    }

    #[test]
    fn header_round_trips_and_rejects_a_flipped_bit() {
        // Setup: a sealed header written into an index. Expectation: read back equal; a flipped
        // bit anywhere fails the CRC or magic check.
        let index = index_with(&[]);
        let mut header = IndexHeader::new(4096, 7, 64, 16);
        header.flags = INDEX_FLAG_SEALED;
        header.sealed_data_bytes = 100;
        index.write_header(&header);
        let read = index.read_header().expect("valid header");
        assert!(read.is_sealed());
        assert_eq!(IndexHeader { crc32c: 0, ..read }, header);
        for byte in 0..INDEX_HEADER_BYTES {
            let mut bytes = header.encode();
            bytes[byte] ^= 0x10;
            assert!(IndexHeader::decode(&bytes).is_none(), "byte {byte}");
        }
    }

    #[test]
    fn floors_find_the_last_entry_not_after_the_key() {
        // Setup: entries at positions 0, 100, 200 with sequences 0, 3, 6 and times 10, 10, 20.
        // Expectation: floors by each key, bounded by the readable end.
        let index = index_with(&[(0, 0, 10), (100, 3, 10), (200, 6, 20)]);
        let end = u32::MAX;
        assert_eq!(
            index.floor_by_position(150, end).map(|e| e.position),
            Some(100)
        );
        assert_eq!(
            index.floor_by_position(200, end).map(|e| e.position),
            Some(200)
        );
        assert_eq!(
            index.floor_by_position(200, 200).map(|e| e.position),
            Some(100)
        );
        let base = SequenceNumber(50);
        assert_eq!(
            index
                .floor_by_sequence(SequenceNumber(55), base, end)
                .map(|e| e.position),
            Some(100)
        );
        assert_eq!(
            index
                .floor_by_sequence(SequenceNumber(10), base, end)
                .map(|e| e.position),
            Some(0)
        );
        assert_eq!(index.floor_by_time(10, end), None);
        assert_eq!(index.floor_by_time(11, end).map(|e| e.position), Some(100));
        assert_eq!(index.floor_by_time(99, end).map(|e| e.position), Some(200));
        assert_eq!(index.floor_by_time(99, 150).map(|e| e.position), Some(100));
    }

    #[test]
    fn capacity_covers_a_segment_of_minimal_spacing() {
        // Setup: entries exactly one interval apart over the whole data area.
        // Expectation: they all fit in entry_capacity.
        let (data, interval) = (10_000u64, 64u32);
        let needed = data.div_ceil(u64::from(interval));
        assert!(u64::from(entry_capacity(data, interval)) >= needed);
    }
}
