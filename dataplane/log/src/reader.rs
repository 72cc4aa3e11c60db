//! Readers: cursors over committed records, on any thread, zero-copy.
//!
//! A [`PartitionReader`] is a cheap handle (`Clone + Send + Sync`) on the state the partition
//! owner publishes: the list of segments (swapped whole with `arc-swap` at rolls and retention),
//! the committed end (a seqlock whose `next_offset` word is also loaded alone, with `Acquire`,
//! for the "anything new?" check), and the earliest position. A [`Cursor`] holds an `Arc` on the
//! segment it reads, so a segment deleted by retention stays mapped until every cursor on it
//! moves on or is dropped.
//!
//! # Invariants
//! - A cursor never reads a byte at or beyond the committed end it loaded: the committed end is
//!   stored with `Release` after the bytes below it were written, and only ever grows.
//! - The committed end always falls on a record boundary (or the start of the next segment).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering, fence};

use arc_swap::ArcSwap;

use crate::error::{Corruption, Error, Result};
use crate::record::{Checked, Expect, RecordView, check_record};
use crate::segment::{SEGMENT_HEADER_BYTES, Segment};
use crate::{Offset, PartitionId, SequenceNumber};

/// A position in the partition: an offset and the sequence number of the record there (or of
/// the next record to be appended there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Position {
    /// Byte position in the partition.
    pub offset: Offset,
    /// Sequence number.
    pub sequence: SequenceNumber,
}

/// The newest committed record, as Event Hubs reports it in partition properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LastRecord {
    /// Its sequence number.
    pub sequence: SequenceNumber,
    /// Its offset.
    pub offset: Offset,
    /// Its enqueued time, ms since the Unix epoch.
    pub enqueued_ms: i64,
}

/// What has been committed: where the next record goes, and the last committed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommittedPosition {
    /// Offset and sequence number right after the last committed record.
    pub end: Position,
    /// The last committed record; `None` when the partition never held one.
    pub last: Option<LastRecord>,
}

/// A seqlock over a [`CommittedPosition`]: one writer (the partition owner), any number of
/// readers, no allocation, no lock. The `next_offset` word is also stored with `Release` so that
/// [`PositionCell::end_offset`] alone synchronizes with the record bytes below it.
pub(crate) struct PositionCell {
    version: AtomicU64,
    next_offset: AtomicU64,
    next_sequence: AtomicU64,
    last_offset: AtomicU64,
    last_sequence: AtomicU64,
    last_enqueued_ms: AtomicI64,
}

const NO_LAST: u64 = u64::MAX;

impl PositionCell {
    pub(crate) fn new(position: CommittedPosition) -> PositionCell {
        let cell = PositionCell {
            version: AtomicU64::new(0),
            next_offset: AtomicU64::new(0),
            next_sequence: AtomicU64::new(0),
            last_offset: AtomicU64::new(NO_LAST),
            last_sequence: AtomicU64::new(NO_LAST),
            last_enqueued_ms: AtomicI64::new(0),
        };
        cell.store(position);
        cell
    }

    /// Publishes a new position (single writer).
    pub(crate) fn store(&self, position: CommittedPosition) {
        let version = self.version.load(Ordering::Relaxed);
        assert!(
            version.is_multiple_of(2),
            "single writer: no store in progress"
        );
        self.version.store(version + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let (last_offset, last_sequence, last_enqueued_ms) = match position.last {
            Some(last) => (last.offset.0, last.sequence.0, last.enqueued_ms),
            None => (NO_LAST, NO_LAST, 0),
        };
        self.next_sequence
            .store(position.end.sequence.0, Ordering::Relaxed);
        self.last_offset.store(last_offset, Ordering::Relaxed);
        self.last_sequence.store(last_sequence, Ordering::Relaxed);
        self.last_enqueued_ms
            .store(last_enqueued_ms, Ordering::Relaxed);
        self.next_offset
            .store(position.end.offset.0, Ordering::Release);
        self.version.store(version + 2, Ordering::Release);
    }

    /// A consistent snapshot.
    pub(crate) fn load(&self) -> CommittedPosition {
        loop {
            let before = self.version.load(Ordering::Acquire);
            if !before.is_multiple_of(2) {
                std::hint::spin_loop();
                continue;
            }
            let next_offset = self.next_offset.load(Ordering::Acquire);
            let next_sequence = self.next_sequence.load(Ordering::Relaxed);
            let last_offset = self.last_offset.load(Ordering::Relaxed);
            let last_sequence = self.last_sequence.load(Ordering::Relaxed);
            let last_enqueued_ms = self.last_enqueued_ms.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.version.load(Ordering::Relaxed) != before {
                continue;
            }
            let last = (last_offset != NO_LAST).then_some(LastRecord {
                sequence: SequenceNumber(last_sequence),
                offset: Offset(last_offset),
                enqueued_ms: last_enqueued_ms,
            });
            return CommittedPosition {
                end: Position {
                    offset: Offset(next_offset),
                    sequence: SequenceNumber(next_sequence),
                },
                last,
            };
        }
    }

    /// The committed end offset alone: one `Acquire` load.
    pub(crate) fn end_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }
}

/// State the owner publishes and readers read.
pub(crate) struct Shared {
    pub partition: PartitionId,
    /// Segments in offset order; never empty; the last one takes appends.
    pub segments: ArcSwap<Vec<Arc<Segment>>>,
    pub committed: PositionCell,
    /// Earliest readable position (moves with retention); its `last` is unused.
    pub earliest: PositionCell,
    pub poisoned: AtomicBool,
}

impl Shared {
    fn earliest_position(&self) -> Position {
        self.earliest.load().end
    }
}

/// Where a cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The earliest record still retained.
    Earliest,
    /// After the last committed record: only records committed from now on.
    Latest,
    /// The first record at `offset` (inclusive) or after it (exclusive). An offset that falls
    /// inside a record, or between segments, starts at the next record boundary.
    Offset {
        /// The offset.
        offset: Offset,
        /// Whether a record exactly at `offset` is included.
        inclusive: bool,
    },
    /// The record with this sequence number (or the next one appended, if it is in the future).
    Sequence(SequenceNumber),
    /// The first record enqueued at or after this time (ms since the Unix epoch).
    EnqueuedTime(i64),
}

/// A read handle on a partition: `Clone + Send + Sync`, usable on any thread while the owner
/// appends.
#[derive(Clone)]
pub struct PartitionReader {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("partition", &self.shared.partition)
            .finish_non_exhaustive()
    }
}

/// What a cursor skips before its first record (its start was not an exact record position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    OffsetBelow(u64),
    SequenceBelow(u64),
    TimeBelow(i64),
}

impl Skip {
    fn skips(self, offset: u64, sequence: u64, enqueued_ms: i64) -> bool {
        match self {
            Skip::Nothing => false,
            Skip::OffsetBelow(bound) => offset < bound,
            Skip::SequenceBelow(bound) => sequence < bound,
            Skip::TimeBelow(bound) => enqueued_ms < bound,
        }
    }
}

impl PartitionReader {
    pub(crate) fn new(shared: Arc<Shared>) -> PartitionReader {
        PartitionReader { shared }
    }

    /// The partition.
    pub fn partition(&self) -> PartitionId {
        self.shared.partition
    }

    /// The committed end and the last committed record (a consistent snapshot).
    pub fn committed(&self) -> CommittedPosition {
        self.shared.committed.load()
    }

    /// The committed end offset: one atomic load.
    pub fn committed_end(&self) -> Offset {
        Offset(self.shared.committed.end_offset())
    }

    /// The earliest retained position (where [`StartPosition::Earliest`] starts).
    pub fn earliest(&self) -> Position {
        self.shared.earliest_position()
    }

    /// Whether a committed record exists at or after `offset`: one atomic load, no lock.
    pub fn has_records_after(&self, offset: Offset) -> bool {
        self.shared.committed.end_offset() > offset.0
    }

    /// Whether the partition refuses appends after a failure (reads go on).
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// A cursor at `start`. Lookups are a binary search over segments and their sparse index,
    /// then a scan of at most one index interval.
    pub fn cursor(&self, start: StartPosition) -> Cursor {
        // Load the committed end before the segment list: a roll publishes the list before the
        // committed end moves into the new segment.
        let committed = self.shared.committed.load();
        let segments = self.shared.segments.load_full();
        let earliest = self.shared.earliest_position();
        let end = committed.end;
        assert!(!segments.is_empty(), "a partition always has a segment");
        match start {
            StartPosition::Earliest => self.at_earliest(&segments, Skip::Nothing),
            StartPosition::Latest => self.at_end(&segments, end, Skip::Nothing),
            StartPosition::Offset { offset, inclusive } => {
                let target = if inclusive {
                    offset.0
                } else {
                    offset.0.saturating_add(1)
                };
                if target <= earliest.offset.0 {
                    self.at_earliest(&segments, Skip::Nothing)
                } else if target >= end.offset.0 {
                    self.at_end(&segments, end, Skip::OffsetBelow(target))
                } else {
                    let segment = segment_at_offset(&segments, target);
                    let relative = (target - segment.base_offset().0) as u32;
                    let entry = segment
                        .index()
                        .floor_by_position(relative, readable_end(segment, end));
                    self.at_entry(segment, entry, Skip::OffsetBelow(target))
                }
            }
            StartPosition::Sequence(sequence) => {
                if sequence.0 <= earliest.sequence.0 {
                    self.at_earliest(&segments, Skip::Nothing)
                } else if sequence.0 >= end.sequence.0 {
                    self.at_end(&segments, end, Skip::SequenceBelow(sequence.0))
                } else {
                    let at = segments.partition_point(|s| {
                        s.base_sequence().0 <= sequence.0 && s.base_offset().0 < end.offset.0
                    });
                    let segment = &segments[at.max(1) - 1];
                    let entry = segment.index().floor_by_sequence(
                        sequence,
                        segment.base_sequence(),
                        readable_end(segment, end),
                    );
                    self.at_entry(segment, entry, Skip::SequenceBelow(sequence.0))
                }
            }
            StartPosition::EnqueuedTime(enqueued_ms) => {
                // The last segment whose first record is older than the time; times never
                // decrease, so the wanted record is in it or at the start of the next.
                let at = segments.partition_point(|s| {
                    let limit = readable_end(s, end);
                    s.index().len_before(limit) > 0 && s.index().entry(0).enqueued_ms < enqueued_ms
                });
                if at == 0 {
                    return self.at_earliest(&segments, Skip::TimeBelow(enqueued_ms));
                }
                let segment = &segments[at - 1];
                let entry = segment
                    .index()
                    .floor_by_time(enqueued_ms, readable_end(segment, end));
                self.at_entry(segment, entry, Skip::TimeBelow(enqueued_ms))
            }
        }
    }

    fn cursor_at(
        &self,
        segment: &Arc<Segment>,
        position: u32,
        sequence: Option<u64>,
        skip: Skip,
    ) -> Cursor {
        assert!(
            position.is_multiple_of(8),
            "cursors start on record boundaries"
        );
        assert!(
            position <= segment.data_capacity(),
            "cursor inside the segment"
        );
        Cursor {
            shared: Arc::clone(&self.shared),
            segment: Arc::clone(segment),
            position,
            next_offset: segment.base_offset().0 + u64::from(position),
            next_sequence: sequence,
            previous_enqueued_ms: None,
            skip,
            verify_crc: true,
        }
    }

    fn at_earliest(&self, segments: &[Arc<Segment>], skip: Skip) -> Cursor {
        let first = &segments[0];
        self.cursor_at(first, 0, Some(first.base_sequence().0), skip)
    }

    fn at_end(&self, segments: &[Arc<Segment>], end: Position, skip: Skip) -> Cursor {
        let segment = segment_at_offset(segments, end.offset.0);
        let position = end.offset.0 - segment.base_offset().0;
        self.cursor_at(segment, position as u32, Some(end.sequence.0), skip)
    }

    fn at_entry(
        &self,
        segment: &Arc<Segment>,
        entry: Option<crate::index::IndexEntry>,
        skip: Skip,
    ) -> Cursor {
        match entry {
            // An entry read from an index file is validated at open; stay defensive anyway.
            Some(entry)
                if entry.position.is_multiple_of(8) && entry.position < segment.data_capacity() =>
            {
                let sequence = segment.base_sequence().0 + u64::from(entry.sequence_delta);
                self.cursor_at(segment, entry.position, Some(sequence), skip)
            }
            _ => self.cursor_at(segment, 0, Some(segment.base_sequence().0), skip),
        }
    }
}

/// The segment holding `offset`: the last one whose base offset is at or below it.
fn segment_at_offset(segments: &[Arc<Segment>], offset: u64) -> &Arc<Segment> {
    let at = segments.partition_point(|s| s.base_offset().0 <= offset);
    &segments[at.max(1) - 1]
}

/// Data position in `segment` up to which records are committed, given the committed end.
fn readable_end(segment: &Segment, end: Position) -> u32 {
    let base = segment.base_offset().0;
    let limit = segment.sealed_bytes().unwrap_or(segment.data_capacity());
    if end.offset.0 <= base {
        0
    } else {
        (end.offset.0 - base).min(u64::from(limit)) as u32
    }
}

/// Reads committed records in order from a start position. `Send`; one per consumer.
///
/// `next` lends a [`RecordView`] that borrows the cursor (and through it, the mapped segment);
/// nothing is copied.
pub struct Cursor {
    shared: Arc<Shared>,
    segment: Arc<Segment>,
    position: u32,
    next_offset: u64,
    next_sequence: Option<u64>,
    previous_enqueued_ms: Option<i64>,
    skip: Skip,
    verify_crc: bool,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("next_offset", &self.next_offset)
            .finish_non_exhaustive()
    }
}

impl Cursor {
    /// Whether to check each record's CRC32C as it is read (default: yes). Turning it off is
    /// for consumers that check elsewhere; headers are validated either way.
    #[must_use]
    pub fn verify_crc(mut self, verify: bool) -> Cursor {
        self.verify_crc = verify;
        self
    }

    /// Offset of the next record this cursor will look at.
    pub fn position(&self) -> Offset {
        Offset(self.next_offset)
    }

    /// Whether a committed record is waiting: one atomic load, no lock.
    pub fn has_more(&self) -> bool {
        self.shared.committed.end_offset() > self.next_offset
    }

    /// The next committed record, or `None` when the cursor has reached the committed end (call
    /// again later). A corrupt record is an error, returned again on every call.
    #[allow(clippy::should_implement_trait)] // lends from `self`; Iterator cannot express that
    pub fn next(&mut self) -> Result<Option<RecordView<'_>>> {
        let (position, header) = loop {
            assert!(
                self.segment.base_offset().0 + u64::from(self.position) == self.next_offset,
                "the cursor's position and offset agree"
            );
            let end = self.shared.committed.end_offset();
            if self.next_offset >= end {
                return Ok(None);
            }
            if let Some(sealed) = self.segment.sealed_bytes()
                && self.position >= sealed
            {
                self.move_to_next_segment();
                continue;
            }
            let base = self.segment.base_offset().0;
            let limit = (end - base).min(u64::from(
                self.segment
                    .sealed_bytes()
                    .unwrap_or(self.segment.data_capacity()),
            ));
            // SAFETY: `limit` is at or below the committed end loaded above with Acquire, so the
            // bytes are committed and never written again while this Arc keeps them mapped.
            let area = unsafe { self.segment.data(0, limit as usize) };
            let expect = Expect {
                offset: self.next_offset,
                sequence: self.next_sequence,
                enqueued_ms_min: self.previous_enqueued_ms,
                verify_crc: false,
            };
            let (header, stride) = match check_record(area, self.position as usize, expect) {
                Checked::Record { header, stride } => (header, stride),
                Checked::End => {
                    return Err(self.corrupt(Corruption::LengthOutOfBounds { length: 0 }));
                }
                Checked::Bad(reason) => return Err(self.corrupt(reason)),
            };
            let skipped = self
                .skip
                .skips(header.offset, header.sequence, header.enqueued_ms);
            if !skipped && self.verify_crc {
                let computed = crc32c::crc32c(
                    &area[self.position as usize + 4
                        ..self.position as usize + header.length as usize],
                );
                if computed != header.crc32c {
                    return Err(self.corrupt(Corruption::ChecksumMismatch {
                        stored: header.crc32c,
                        computed,
                    }));
                }
            }
            let position = self.position;
            self.position += stride as u32;
            self.next_offset += stride as u64;
            self.next_sequence = Some(header.sequence + 1);
            self.previous_enqueued_ms = Some(header.enqueued_ms);
            if !skipped {
                self.skip = Skip::Nothing;
                break (position, header);
            }
        };
        // SAFETY: the record lies below the committed end (checked by check_record against the
        // committed area), so it is immutable while the cursor holds the segment.
        let bytes = unsafe { self.segment.data(position, header.length as usize) };
        Ok(Some(RecordView::new(header, bytes)))
    }

    fn corrupt(&self, reason: Corruption) -> Error {
        Error::CorruptRecord {
            path: self.segment.path().to_path_buf(),
            position: SEGMENT_HEADER_BYTES as u64 + u64::from(self.position),
            reason,
        }
    }

    /// Moves from the end of a sealed segment to the one that starts where it ends; if
    /// retention already deleted that one, to the earliest segment (records in between are
    /// gone, as in Event Hubs when a reader falls behind retention).
    fn move_to_next_segment(&mut self) {
        let segments = self.shared.segments.load();
        let at = segments.partition_point(|s| s.base_offset().0 < self.next_offset);
        if let Some(next) = segments.get(at)
            && next.base_offset().0 == self.next_offset
        {
            assert!(
                next.base_sequence().0 == self.next_sequence.unwrap_or(next.base_sequence().0),
                "segments chain"
            );
            self.segment = Arc::clone(next);
            self.position = 0;
            return;
        }
        let first = &segments[0];
        assert!(
            first.base_offset().0 > self.next_offset,
            "the next segment exists unless retention deleted it"
        );
        self.segment = Arc::clone(first);
        self.position = 0;
        self.next_offset = first.base_offset().0;
        self.next_sequence = Some(first.base_sequence().0);
        self.previous_enqueued_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_cell_snapshots_are_consistent_under_concurrent_stores() {
        // Setup: one thread stores positions whose fields are all derived from one counter;
        // another loads snapshots. Expectation: every snapshot is internally consistent and the
        // end offset never goes backwards.
        let cell = Arc::new(PositionCell::new(CommittedPosition {
            end: Position::default(),
            last: None,
        }));
        let writer = {
            let cell = Arc::clone(&cell);
            std::thread::spawn(move || {
                for i in 1..200_000u64 {
                    cell.store(CommittedPosition {
                        end: Position {
                            offset: Offset(i * 8),
                            sequence: SequenceNumber(i),
                        },
                        last: Some(LastRecord {
                            sequence: SequenceNumber(i - 1),
                            offset: Offset(i * 8 - 8),
                            enqueued_ms: i as i64,
                        }),
                    });
                }
            })
        };
        let mut previous = 0;
        while !writer.is_finished() {
            let snapshot = cell.load();
            let i = snapshot.end.sequence.0;
            assert_eq!(snapshot.end.offset.0, i * 8);
            if let Some(last) = snapshot.last {
                assert_eq!(
                    (last.sequence.0, last.offset.0, last.enqueued_ms),
                    (i - 1, i * 8 - 8, i as i64)
                );
            }
            assert!(i >= previous);
            previous = i;
        }
        writer.join().expect("writer thread");
    }
}
