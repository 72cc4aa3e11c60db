//! Following a partition from another process: read-only, without the lock.
//!
//! A [`Follower`] opens a partition directory that a [`Partition`](crate::Partition) in another
//! process may be appending to (holding `LOCK`), or that nobody holds. It never takes the lock
//! and never writes, truncates, renames or deletes anything: it opens the segment files
//! read-only, maps them read-only and keeps its indexes in private memory. [`Follower::refresh`]
//! picks up what the writer did since: records appended, segments rolled in, segments deleted
//! by retention. Cursors come from the same [`PartitionReader`] machinery as the owner's
//! readers and yield the same [`RecordView`](crate::RecordView)s.
//!
//! # The readable end
//! A follower cannot see the writer's flush bookkeeping; its readable end is where the valid
//! records stop. Every record below it passed the header checks (length, offset, sequence,
//! time) and its CRC32C when the follower scanned it.
//!
//! ```text
//!  last segment ┌────────────────────────────────┬────────────────┬──────────────────────┐
//!               │ records the follower checked;  │ being written, │ zeros (preallocated) │
//!               │ cursors read them in place     │ or torn        │                      │
//!               │ through the read-only mapping  │                │                      │
//!               └────────────────────────────────┴────────────────┴──────────────────────┘
//!                                 readable end ──┘ read with pread into a buffer until the
//!                                                  next record validates
//! ```
//!
//! **A follower shows what is written, not what is durable.** In `durable` mode a record
//! reaches the file before the `fdatasync` that makes it durable (at the flush request on the
//! pwrite path, at the append on the mmap path), so a follower may show records that a power
//! loss would still take away and that no device has had acknowledged yet. A process crash
//! does not take them away (the page cache survives it, and the writer's recovery keeps every
//! valid record).
//!
//! # Why reading next to a writer in another process is sound
//! - Bytes below the readable end never change: the writer only writes at or after its own
//!   written end, which is at or past every record that validates, and a restarted writer's
//!   recovery only zeroes bytes after the last valid record.
//! - Bytes past the readable end may change while the follower looks at them, so it reads them
//!   with `pread` into a private buffer, never through the mapping; a record caught half
//!   written fails its length or CRC check and is tried again at the next refresh.
//! - Segment files are preallocated to their full size before they get their final name and
//!   are never truncated, so a mapping never reaches past the end of its file (no `SIGBUS`);
//!   retention unlinks files, which leaves mappings and descriptors valid.
//! - A segment is complete before the next one appears under its final name (the writer
//!   writes what it staged at the roll, before the rename), so a segment with a successor is
//!   loaded like a sealed segment at open: through its sealed index, or scanned in full.
//!
//! A follower cannot tell a record torn by a crash from one being written: both stop the scan
//! until the writer (or its recovery) moves on. A segment file replaced under the same name
//! while followed is refused, unless the follower had read nothing from it (the writer replaces
//! an empty last segment when its configured segment size changed).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use memmap2::MmapOptions;

use crate::config::{INDEX_INTERVAL_BYTES_MAX, INDEX_INTERVAL_BYTES_MIN, PartitionConfig};
use crate::error::{self, Corruption, Error, Result};
use crate::index::{self, INDEX_HEADER_BYTES, IndexEntry, IndexHeader, SegmentIndex};
use crate::reader::{
    CommittedPosition, Cursor, LastRecord, PartitionReader, Position, PositionCell, Shared,
    StartPosition,
};
use crate::record::{Checked, Expect, RECORD_HEADER_BYTES, align8, check_record};
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, SEGMENT_HEADER_BYTES, Segment, SegmentHeader, SegmentParts};
use crate::{Offset, PartitionId, SegmentId, SequenceNumber};

/// The first read past the readable end; an idle refresh reads this much (or less) once.
const SCAN_CHUNK_BYTES_MIN: usize = 64 * 1024;
/// Reads double up to this size while records keep coming (catching up on a backlog).
const SCAN_CHUNK_BYTES_MAX: usize = 4 << 20;

/// What one [`Follower::refresh`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowReport {
    /// Records that became readable.
    pub records_added: u64,
    /// Segments that appeared (rolls).
    pub segments_added: usize,
    /// Segments whose files are gone (retention), no longer listed.
    pub segments_dropped: usize,
    /// The readable end afterwards.
    pub end: Position,
    /// What the bytes right after the readable end looked like when they were neither zeros
    /// nor a valid record: a write in progress, or a tail torn by a crash that the writer's
    /// recovery will truncate.
    pub incomplete_tail: Option<Corruption>,
}

/// A read-only view of a partition directory that another process may be appending to. See
/// the module docs for what it shows and why reading it is sound.
///
/// # Invariants
/// - The published segment list is never empty and chains (each segment starts where the one
///   before it ends), except that retention may have removed segments before the first.
/// - The published readable end only grows, and every record below it has been validated.
/// - Every segment but the last is sealed before a list with a successor is published.
pub struct Follower {
    dir: PathBuf,
    shared: Arc<Shared>,
    tail: Tail,
    /// The newest record of the segments before the tail.
    last_before_tail: Option<LastRecord>,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("dir", &self.dir)
            .field("end", &self.tail.end())
            .finish_non_exhaustive()
    }
}

/// The last segment, scanned incrementally.
struct Tail {
    segment: Arc<Segment>,
    /// Device and inode of its file, to notice a replacement under the same name.
    identity: (u64, u64),
    /// Data position of the readable end.
    position: u32,
    next_sequence: u64,
    /// Enqueued time of the newest record so far (of this segment or the ones before).
    time_min: Option<i64>,
    next_index_position: u32,
    last: Option<LastRecord>,
    incomplete: Option<Corruption>,
}

/// A segment file whose header checked out, opened read-only.
struct Candidate {
    id: SegmentId,
    path: PathBuf,
    file: File,
    header: SegmentHeader,
    identity: (u64, u64),
}

impl Candidate {
    fn start(&self) -> Position {
        Position {
            offset: Offset(self.header.base_offset),
            sequence: SequenceNumber(self.header.base_sequence),
        }
    }
}

/// Segments loaded in order: sealed ones, then the last as the new tail (already scanned).
struct Chain {
    sealed: Vec<Arc<Segment>>,
    tail: Tail,
    last_before_tail: Option<LastRecord>,
}

impl Follower {
    /// Opens the partition in `dir` read-only, without its lock, and scans it up to the
    /// readable end. Fails with [`Error::NoSegments`] while the directory holds no segment yet
    /// (retry later), and like recovery does when a sealed segment is damaged.
    pub fn open(dir: impl AsRef<Path>) -> Result<Follower> {
        let dir = dir.as_ref().to_path_buf();
        let ids = sorted_segment_ids(&dir)?;
        let candidates = open_candidates(&dir, &ids, None)?;
        let Some(first) = candidates.first() else {
            return Err(Error::NoSegments { path: dir });
        };
        let partition = PartitionId(first.header.partition_id);
        let mut buffer = Vec::new();
        let chain = load_chain(&dir, candidates, None, &mut buffer)?;
        let mut segments = chain.sealed;
        segments.push(Arc::clone(&chain.tail.segment));
        let earliest = CommittedPosition {
            end: Position {
                offset: segments[0].base_offset(),
                sequence: segments[0].base_sequence(),
            },
            last: None,
        };
        let committed = CommittedPosition {
            end: chain.tail.end(),
            last: chain.tail.last.or(chain.last_before_tail),
        };
        let shared = Arc::new(Shared {
            partition,
            segments: ArcSwap::from_pointee(segments),
            committed: PositionCell::new(committed),
            earliest: PositionCell::new(earliest),
            poisoned: AtomicBool::new(false),
        });
        Ok(Follower {
            dir,
            shared,
            tail: chain.tail,
            last_before_tail: chain.last_before_tail,
            buffer,
        })
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The partition, as its segment headers name it.
    pub fn partition(&self) -> PartitionId {
        self.shared.partition
    }

    /// A read handle (`Clone + Send + Sync`) whose "committed" end is this follower's readable
    /// end; it moves when [`Follower::refresh`] runs.
    pub fn reader(&self) -> PartitionReader {
        PartitionReader::new(Arc::clone(&self.shared))
    }

    /// A cursor over the readable records from `start` ([`StartPosition::Latest`] is the
    /// readable end). It reads past the end it stopped at once a refresh moved it.
    pub fn cursor(&self, start: StartPosition) -> Cursor {
        self.reader().cursor(start)
    }

    /// The readable end and the last readable record.
    pub fn readable(&self) -> CommittedPosition {
        self.shared.committed.load()
    }

    /// The earliest position still on disk, as far as the last refresh saw.
    pub fn earliest(&self) -> Position {
        self.shared.earliest.load().end
    }

    /// Segments followed.
    pub fn segment_count(&self) -> usize {
        self.shared.segments.load().len()
    }

    /// Picks up what the writer did since the last refresh: records appended to the last
    /// segment, segments rolled in after it (the last one becoming the new tail), and segments
    /// whose files retention deleted. Cheap when nothing changed: a directory listing, a `stat`
    /// and one small read. After an error the follower stays readable up to what it had
    /// published, and the refresh may be retried.
    pub fn refresh(&mut self) -> Result<FollowReport> {
        let ids = sorted_segment_ids(&self.dir)?;
        let before = self.tail.end();
        let tail_id = SegmentId(self.tail.segment.base_offset().0);
        let tail_listed = ids.binary_search(&tail_id).is_ok();
        if tail_listed {
            self.follow_replaced_tail(tail_id)?;
        }
        self.tail.scan(&mut self.buffer)?;
        self.publish_end();

        let newer: Vec<SegmentId> = ids.iter().filter(|id| id.0 > tail_id.0).copied().collect();
        let candidates = if newer.is_empty() {
            Vec::new()
        } else {
            open_candidates(&self.dir, &newer, Some(self.partition()))?
        };
        let mut segments = Vec::clone(&self.shared.segments.load());
        let followed_before = segments.len();
        let mut segments_added = 0;
        if let Some(first) = candidates.first() {
            let start = self.start_after_tail(first, tail_listed)?;
            let chain = load_chain(&self.dir, candidates, start, &mut self.buffer)?;
            segments_added = chain.sealed.len() + 1;
            let old = std::mem::replace(&mut self.tail, chain.tail);
            self.last_before_tail = chain
                .last_before_tail
                .or(old.last)
                .or(self.last_before_tail);
            // Sealed before any list shows a successor: a cursor at its end moves on.
            old.segment
                .mark_sealed(old.position, old.time_min.unwrap_or(i64::MIN));
            if !tail_listed {
                // Retention deleted it (and everything before it) after the roll.
                segments.clear();
            }
            segments.extend(chain.sealed);
            segments.push(Arc::clone(&self.tail.segment));
        }
        // Retention deletes oldest first: keep the longest suffix whose files are listed (the
        // tail always stays; the follower still holds its file).
        let keep_from = segments[..segments.len() - 1]
            .iter()
            .rposition(|s| ids.binary_search(&SegmentId(s.base_offset().0)).is_err())
            .map_or(0, |missing| missing + 1);
        segments.drain(..keep_from);
        assert!(!segments.is_empty(), "the tail is always followed");
        let segments_dropped = followed_before + segments_added - segments.len();
        let first = &segments[0];
        let earliest = Position {
            offset: first.base_offset(),
            sequence: first.base_sequence(),
        };
        assert!(
            earliest.offset >= self.earliest().offset,
            "the earliest position only moves forward"
        );
        // Earliest first, as the owner's retention does: a cursor that finds its next segment
        // gone restarts from it.
        self.shared.earliest.store(CommittedPosition {
            end: earliest,
            last: None,
        });
        self.shared.segments.store(Arc::new(segments));
        self.publish_end();
        let end = self.tail.end();
        Ok(FollowReport {
            records_added: end.sequence.0 - before.sequence.0,
            segments_added,
            segments_dropped,
            end,
            incomplete_tail: self.tail.incomplete,
        })
    }

    /// Publishes the tail's readable end (only ever forward).
    fn publish_end(&self) {
        let end = self.tail.end();
        let published = self.shared.committed.load();
        assert!(
            end.offset >= published.end.offset,
            "the readable end only grows"
        );
        if end != published.end {
            self.shared.committed.store(CommittedPosition {
                end,
                last: self.tail.last.or(self.last_before_tail),
            });
        }
    }

    /// Where the first new segment must start, given how the tail ended.
    fn start_after_tail(
        &self,
        first: &Candidate,
        tail_listed: bool,
    ) -> Result<Option<(Position, Option<i64>)>> {
        let end = self.tail.end();
        let found = first.start();
        let gap = || Error::SegmentGap {
            path: first.path.clone(),
            expected_offset: end.offset.0,
            expected_sequence: end.sequence.0,
            found_offset: found.offset.0,
            found_sequence: found.sequence.0,
        };
        if found == end {
            return Ok(Some((end, self.tail.time_min)));
        }
        if tail_listed {
            // The writer rolled: the tail is complete and must end where its successor starts.
            return Err(match self.tail.incomplete {
                Some(reason) if found.offset > end.offset => Error::CorruptRecord {
                    path: self.tail.segment.path().to_path_buf(),
                    position: SEGMENT_HEADER_BYTES as u64 + u64::from(self.tail.position),
                    reason,
                },
                _ => gap(),
            });
        }
        // Retention deleted the tail after a roll: what lay between is gone, but nothing may
        // start before what was already read.
        if found.offset > end.offset && found.sequence >= end.sequence {
            Ok(None)
        } else {
            Err(gap())
        }
    }

    /// Follows a new file under the tail's name when the follower has read nothing from the
    /// old one; refuses a replacement of a file it has read from.
    fn follow_replaced_tail(&mut self, tail_id: SegmentId) -> Result<()> {
        let path = self.tail.segment.path().to_path_buf();
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error::open_failed(path, error)),
        };
        if (metadata.dev(), metadata.ino()) == self.tail.identity {
            return Ok(());
        }
        if self.tail.position > 0 {
            return Err(Error::CorruptSegment {
                path,
                reason: "replaced by another file while followed; open the follower again",
            });
        }
        let Some(candidate) = open_candidates(&self.dir, &[tail_id], Some(self.partition()))?
            .into_iter()
            .next()
        else {
            return Ok(());
        };
        let end = self.tail.end();
        if candidate.start() != end {
            return Err(Error::SegmentGap {
                path,
                expected_offset: end.offset.0,
                expected_sequence: end.sequence.0,
                found_offset: candidate.header.base_offset,
                found_sequence: candidate.header.base_sequence,
            });
        }
        let identity = candidate.identity;
        let segment = Arc::new(open_segment(&self.dir, candidate, false)?);
        let replacement = Tail::new(segment, identity, self.tail.time_min);
        let old = std::mem::replace(&mut self.tail, replacement);
        // Sealed empty: a cursor in it moves to the replacement, which starts where it ends.
        old.segment.mark_sealed(0, old.time_min.unwrap_or(i64::MIN));
        let mut segments = Vec::clone(&self.shared.segments.load());
        let last = segments.len() - 1;
        assert!(
            Arc::ptr_eq(&segments[last], &old.segment),
            "the tail is last"
        );
        segments[last] = Arc::clone(&self.tail.segment);
        self.shared.segments.store(Arc::new(segments));
        Ok(())
    }
}

impl Tail {
    fn new(segment: Arc<Segment>, identity: (u64, u64), time_min: Option<i64>) -> Tail {
        let next_sequence = segment.base_sequence().0;
        Tail {
            segment,
            identity,
            position: 0,
            next_sequence,
            time_min,
            next_index_position: 0,
            last: None,
            incomplete: None,
        }
    }

    fn end(&self) -> Position {
        Position {
            offset: Offset(self.segment.base_offset().0 + u64::from(self.position)),
            sequence: SequenceNumber(self.next_sequence),
        }
    }

    /// Reads past the readable end with `pread` and moves it over every record that validates,
    /// stopping at zeros or at bytes that do not (yet) form a valid record.
    fn scan(&mut self, buffer: &mut Vec<u8>) -> Result<()> {
        let capacity = self.segment.data_capacity();
        let base = self.segment.base_offset().0;
        let mut chunk = SCAN_CHUNK_BYTES_MIN;
        self.incomplete = None;
        loop {
            let from = self.position;
            if from >= capacity {
                return Ok(());
            }
            let len = (capacity - from).min(u32::try_from(chunk).unwrap_or(u32::MAX)) as usize;
            buffer.resize(len, 0);
            let at_file = SEGMENT_HEADER_BYTES as u64 + u64::from(from);
            self.segment
                .file()
                .read_exact_at(buffer, at_file)
                .map_err(|error| error::open_failed(self.segment.path().to_path_buf(), error))?;
            let mut at = 0usize;
            let needed = loop {
                let position = from as usize + at;
                let rest = buffer.len() - at;
                let capacity_bytes = capacity as usize;
                // A record that runs past the buffer but not past the segment: read more.
                if rest < RECORD_HEADER_BYTES && position + RECORD_HEADER_BYTES <= capacity_bytes {
                    break Some(RECORD_HEADER_BYTES);
                }
                if rest >= RECORD_HEADER_BYTES {
                    let length = u32::from_le_bytes([
                        buffer[at + 4],
                        buffer[at + 5],
                        buffer[at + 6],
                        buffer[at + 7],
                    ]) as usize;
                    let stride = align8(length);
                    if stride > rest && position + stride <= capacity_bytes {
                        break Some(stride);
                    }
                }
                let expect = Expect {
                    offset: base + position as u64,
                    sequence: Some(self.next_sequence),
                    enqueued_ms_min: self.time_min,
                    verify_crc: true,
                };
                match check_record(buffer, at, expect) {
                    Checked::Record { header, stride } => {
                        self.accept(position as u32, header.enqueued_ms, header.offset);
                        at += stride;
                        self.position = (position + stride) as u32;
                    }
                    Checked::End => return Ok(()),
                    Checked::Bad(reason) => {
                        self.incomplete = Some(reason);
                        return Ok(());
                    }
                }
            };
            if let Some(needed) = needed {
                chunk = (chunk * 2).clamp(needed, SCAN_CHUNK_BYTES_MAX.max(needed));
            }
        }
    }

    /// Accounts for a validated record at data position `position`.
    fn accept(&mut self, position: u32, enqueued_ms: i64, offset: u64) {
        assert!(position >= self.position, "records are accepted in order");
        if position >= self.next_index_position {
            let delta = self.next_sequence - self.segment.base_sequence().0;
            let sequence_delta =
                u32::try_from(delta).expect("a segment holds fewer than 2^32 records");
            self.segment.index().push(IndexEntry {
                position,
                sequence_delta,
                enqueued_ms,
            });
            self.next_index_position = position + self.segment.index().interval_bytes();
        }
        self.last = Some(LastRecord {
            sequence: SequenceNumber(self.next_sequence),
            offset: Offset(offset),
            enqueued_ms,
        });
        self.next_sequence += 1;
        self.time_min = Some(enqueued_ms);
    }
}

/// Segment ids of `dir`, sorted.
fn sorted_segment_ids(dir: &Path) -> Result<Vec<SegmentId>> {
    let mut ids = recovery::segment_ids(dir)?;
    ids.sort_unstable();
    Ok(ids)
}

/// Opens the segment files `ids` (sorted) read-only and checks their headers. Files that are
/// gone before any was opened (retention got there first) are skipped, and so is a last file
/// whose header is not readable yet; anything else wrong is an error.
fn open_candidates(
    dir: &Path,
    ids: &[SegmentId],
    partition: Option<PartitionId>,
) -> Result<Vec<Candidate>> {
    let mut partition = partition;
    let mut candidates: Vec<Candidate> = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let last = i + 1 == ids.len();
        let path = dir.join(segment::segment_file_name(*id));
        let open_failed = |error| error::open_failed(path.clone(), error);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error)
                if error.kind() == io::ErrorKind::NotFound && (candidates.is_empty() || last) =>
            {
                continue;
            }
            Err(error) => return Err(open_failed(error)),
        };
        let metadata = file.metadata().map_err(open_failed)?;
        let corrupt = |reason| Error::CorruptSegment {
            path: path.clone(),
            reason,
        };
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        let header = if metadata.len() < SEGMENT_HEADER_BYTES as u64 {
            Err("shorter than a segment header")
        } else {
            file.read_exact_at(&mut bytes, 0).map_err(open_failed)?;
            SegmentHeader::decode(&bytes).and_then(|header| {
                recovery::check_header(&header, *id, metadata.len()).map(|()| header)
            })
        };
        let header = match header {
            Ok(header) => header,
            // A writer's recovery removes a last segment whose header never reached the disk;
            // until then there is nothing to read in it.
            Err(_) if last => continue,
            Err(reason) => return Err(corrupt(reason)),
        };
        let expected = *partition.get_or_insert(PartitionId(header.partition_id));
        if header.partition_id != expected.0 {
            return Err(corrupt("belongs to another partition"));
        }
        candidates.push(Candidate {
            id: *id,
            path,
            file,
            header,
            identity: (metadata.dev(), metadata.ino()),
        });
    }
    Ok(candidates)
}

/// Loads `candidates` in order: every one but the last as a sealed segment (validated like
/// recovery validates sealed segments), the last as the tail, scanned. `start` is where the
/// first must begin (and the newest time before it), when known.
fn load_chain(
    dir: &Path,
    candidates: Vec<Candidate>,
    start: Option<(Position, Option<i64>)>,
    buffer: &mut Vec<u8>,
) -> Result<Chain> {
    assert!(!candidates.is_empty(), "a chain of at least one segment");
    let count = candidates.len();
    let mut expected = start;
    let mut last_before_tail = None;
    let mut sealed = Vec::with_capacity(count - 1);
    for (i, candidate) in candidates.into_iter().enumerate() {
        let found = candidate.start();
        if let Some((end, _)) = expected
            && end != found
        {
            return Err(Error::SegmentGap {
                path: candidate.path,
                expected_offset: end.offset.0,
                expected_sequence: end.sequence.0,
                found_offset: found.offset.0,
                found_sequence: found.sequence.0,
            });
        }
        let time_min = expected.and_then(|(_, time)| time);
        let identity = candidate.identity;
        if i + 1 == count {
            let segment = Arc::new(open_segment(dir, candidate, false)?);
            let mut tail = Tail::new(segment, identity, time_min);
            tail.scan(buffer)?;
            return Ok(Chain {
                sealed,
                tail,
                last_before_tail,
            });
        }
        let segment = open_segment(dir, candidate, true)?;
        let scan = recovery::recover_sealed(&segment, time_min, &mut RecoveryReport::default())?;
        let time = scan.last.map(|l| l.enqueued_ms).or(time_min);
        segment.mark_sealed(scan.data_bytes, time.unwrap_or(i64::MIN));
        if scan.last.is_some() {
            last_before_tail = scan.last;
        }
        expected = Some((
            Position {
                offset: Offset(found.offset.0 + u64::from(scan.data_bytes)),
                sequence: SequenceNumber(found.sequence.0 + u64::from(scan.records)),
            },
            time,
        ));
        sealed.push(Arc::new(segment));
    }
    unreachable!("the last candidate returns the chain")
}

/// Maps a segment read-only with a private index: a copy of its index file's entries when
/// `load_entries` (sealed segments; validated by the caller), else empty with the file's
/// interval (the tail, whose entries the writer may be storing right now).
fn open_segment(dir: &Path, candidate: Candidate, load_entries: bool) -> Result<Segment> {
    let Candidate {
        id,
        path,
        file,
        header,
        ..
    } = candidate;
    let capacity = header.data_capacity_bytes;
    // Read-only and shared with the writer's page cache; why reading it is sound is argued in
    // the module docs (never truncated; read only below the readable end, or in segments that
    // nothing writes any more).
    let map = MmapOptions::new()
        .len(SEGMENT_HEADER_BYTES + capacity as usize)
        .map_raw_read_only(&file)
        .map_err(|error| error::open_failed(path.clone(), error))?;
    let index_path = dir.join(segment::index_file_name(id));
    let (interval, entries) = read_index_file(&index_path, &header, load_entries);
    let index = SegmentIndex::anonymous(index::entry_capacity(capacity, interval), interval)
        .map_err(|error| error::open_failed(index_path.clone(), error))?;
    if let Some(bytes) = entries {
        index.load(&bytes);
    }
    Ok(Segment::new(SegmentParts {
        header,
        path,
        index_path,
        file,
        map,
        writable: false,
        index,
    }))
}

/// The interval of a segment's index file and, when asked, its bytes; the configured default
/// interval and nothing when the file is missing or its header does not describe the segment
/// (the index is a cache: a follower rebuilds what it needs by scanning).
fn read_index_file(path: &Path, header: &SegmentHeader, entries: bool) -> (u32, Option<Vec<u8>>) {
    let default = (PartitionConfig::default().index_interval_bytes, None);
    let Ok(file) = File::open(path) else {
        return default;
    };
    let mut bytes = [0u8; INDEX_HEADER_BYTES];
    if file.read_exact_at(&mut bytes, 0).is_err() {
        return default;
    }
    let Some(index_header) = IndexHeader::decode(&bytes) else {
        return default;
    };
    let interval = index_header.interval_bytes;
    if !(INDEX_INTERVAL_BYTES_MIN..=INDEX_INTERVAL_BYTES_MAX).contains(&interval)
        || index_header.base_offset != header.base_offset
        || index_header.entry_capacity
            != index::entry_capacity(header.data_capacity_bytes, interval)
    {
        return default;
    }
    if !entries {
        return (interval, None);
    }
    let len = index::index_file_bytes(index_header.entry_capacity);
    let mut all = vec![0u8; len as usize];
    let read = file
        .metadata()
        .is_ok_and(|m| m.len() >= len)
        .then(|| file.read_exact_at(&mut all, 0));
    match read {
        Some(Ok(())) => (interval, Some(all)),
        _ => (interval, None),
    }
}
