//! The partition: appends on its owner thread, flushes requested by value, segments prepared
//! ahead of need.
//!
//! # Append path
//! `append` sizes every record first (the forward encoder knows the exact size without
//! encoding), rolls to the next segment if the batch does not fit (a batch never spans
//! segments), then encodes header + body + CRC for each record straight into the staging buffer
//! (`WritePath::Pwrite`) or the mapped segment (`WritePath::Mmap`), adds the index entries that
//! fall due, and in `written` mode publishes the new committed end.
//!
//! On the pwrite path in `written` mode the batch is written at once, one `pwrite` per append.
//! In `durable` mode nothing is visible or acknowledged before a flush, so the bytes stay staged
//! and the next [`Partition::take_flush_request`] writes everything staged with one `pwrite`:
//! with many sessions appending one message each between two flushes, that is one syscall per
//! flush instead of one per message. A roll (the staged bytes belong to the old segment) and
//! a full staging buffer (`staged_bytes_max`) write earlier.
//!
//! ```text
//!   staging buffer                        active segment file
//!   ┌───────────────────────────┐         ┌──────────────────┬────────────────────┬───────┐
//!   │ batch │ batch │ … │ batch │ ─pwrite▶│ written records  │ staged_from ..     │ zeros │
//!   └───────────────────────────┘         │                  │ written end        │       │
//!   0                   staged_len        └──────────────────┴────────────────────┴───────┘
//! ```
//!
//! # Flush protocol (group commit)
//! ```text
//!   append ─▶ written end moves ──┐
//!                                 ▼
//!   take_flush_request() ── covers [end of the previous request, written end) and lists the
//!        │                  files dirtied in that range (+ the directory after a roll)
//!        ▼
//!   caller fdatasyncs every target (io_uring, a blocking thread, or FlushRequest::sync)
//!        │
//!        ├─ ok ──▶ flush_complete(req): the durable end moves over every completed request
//!        │         that has no incomplete one before it; in durable mode that is the
//!        │         committed end readers see
//!        └─ err ─▶ flush_failed(req, err): poisoned; nothing later commits
//! ```
//! Several requests may be in flight; each covers only what was appended after the previous one
//! was taken, so one `fdatasync` acknowledges every record that arrived while the previous one
//! ran.
//!
//! # Invariants
//! - written end >= end of the newest flush request >= durable end >= committed end (durable
//!   mode); committed end = written end (written mode).
//! - Staged bytes are the last `staged_len` bytes before the written end, all in the active
//!   segment; a flush request covers no staged byte (it writes them before it is returned).
//! - Sequence numbers are contiguous; offsets and enqueued times never decrease.
//! - Once poisoned, no append is accepted and the durable end never moves again.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use crate::config::{AckMode, PartitionConfig, WritePath};
use crate::error::{self, Error, Result};
use crate::reader::{
    CommittedPosition, LastRecord, PartitionReader, Position, PositionCell, Shared,
};
use crate::record::{self, RecordInput, RecordPlace};
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, PreparedSegment, Segment, SegmentPrep, SegmentWriter, WriterState};
use crate::{Offset, PartitionId, SequenceNumber};

/// Name of the lock file in a partition directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// What an append returns. Record `i` of the batch has sequence number `first_sequence + i`;
/// its offset is [`Partition::record_offsets`]`()[i]` until the next append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Sequence number of the first record.
    pub first_sequence: SequenceNumber,
    /// Offset of the first record.
    pub first_offset: Offset,
    /// Enqueued time stamped on every record of the batch (never before the previous batch's).
    pub enqueued_ms: i64,
    /// Records appended.
    pub count: u32,
    /// Offset right after the batch (where the next record goes).
    pub end_offset: Offset,
}

impl AppendReceipt {
    /// Sequence number of the last record.
    pub fn last_sequence(&self) -> SequenceNumber {
        SequenceNumber(self.first_sequence.0 + u64::from(self.count) - 1)
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Successful appends.
    pub batches_appended: u64,
    /// Records in them.
    pub records_appended: u64,
    /// Bytes written for them (headers and padding included).
    pub bytes_appended: u64,
    /// Segments rolled.
    pub segments_rolled: u64,
    /// Rolls that had to prepare the next segment inline, on the append path, because none was
    /// installed ahead of time.
    pub segments_prepared_inline: u64,
    /// Flush requests handed out.
    pub flushes_requested: u64,
    /// Flush requests completed.
    pub flushes_completed: u64,
    /// `pwrite` calls that wrote records: one per append in `written` mode; in `durable` mode
    /// one per flush request that had staged bytes, plus one per roll or full staging buffer.
    pub record_writes: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
}

/// What a flush target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushTargetKind {
    /// A segment file: `fdatasync` it.
    Segment,
    /// The partition directory, after a roll renamed a new segment into it: `fsync` it.
    Directory,
}

/// One file a flush must sync. Holds the file open, so its fd stays valid (and is not reused)
/// while the request lives, even if retention deletes the segment meanwhile.
#[derive(Debug, Clone)]
pub struct FlushTarget {
    kind: FlushTargetKind,
    path: PathBuf,
    file: Arc<File>,
}

impl FlushTarget {
    /// Segment file or directory.
    pub fn kind(&self) -> FlushTargetKind {
        self.kind
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw fd, valid as long as this target (or its request) is alive. For io_uring
    /// `IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC` (segments) or without (the directory).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// An owned duplicate (`dup`) of the file, for flushers that need a `File` of their own.
    pub fn try_clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Syncs it synchronously: `fdatasync` for a segment, `fsync` for the directory.
    pub fn sync(&self) -> io::Result<()> {
        match self.kind {
            FlushTargetKind::Segment => self.file.sync_data(),
            FlushTargetKind::Directory => self.file.sync_all(),
        }
    }
}

/// A flush to perform: sync every target, then hand the request back with
/// [`Partition::flush_complete`] or [`Partition::flush_failed`]. `Send`, so it may travel to an
/// I/O thread.
#[derive(Debug)]
pub struct FlushRequest {
    partition: PartitionId,
    id: u64,
    start: Position,
    end: CommittedPosition,
    targets: Vec<FlushTarget>,
}

impl FlushRequest {
    /// Identifies the request within its partition (increasing).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The partition.
    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    /// First position covered (the end of the previous request).
    pub fn start(&self) -> Position {
        self.start
    }

    /// Position after the last record covered.
    pub fn end(&self) -> Position {
        self.end.end
    }

    /// The files to sync, in order: segments oldest first, then the directory if a roll
    /// happened in the range. All must succeed before `flush_complete`.
    pub fn targets(&self) -> &[FlushTarget] {
        &self.targets
    }

    /// Syncs every target in order, synchronously; on failure returns the target that failed.
    pub fn sync(&self) -> std::result::Result<(), (usize, io::Error)> {
        for (i, target) in self.targets.iter().enumerate() {
            target.sync().map_err(|error| (i, error))?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    end: CommittedPosition,
    done: bool,
}

/// Group-commit bookkeeping.
struct FlushState {
    next_id: u64,
    /// End of the newest request handed out.
    started: Position,
    in_flight: VecDeque<InFlight>,
    /// End of the completed prefix of requests.
    durable: CommittedPosition,
    /// Segments written since `started`, oldest first.
    dirty: Vec<Arc<Segment>>,
    /// A roll renamed a file into the directory since `started`.
    directory_dirty: bool,
}

/// One partition log, owned by one thread (it is `Send`, not meant to be shared): appends,
/// rolls, flush bookkeeping, retention. Readers come from [`Partition::reader`].
///
/// # Invariants
/// - The last segment of the published list is the one `writer` writes.
/// - See the module docs for the ordering of written, requested, durable and committed ends.
pub struct Partition {
    id: PartitionId,
    dir: PathBuf,
    dir_file: Arc<File>,
    _lock: File,
    config: PartitionConfig,
    pub(crate) shared: Arc<Shared>,
    writer: SegmentWriter,
    next_sequence: u64,
    last_enqueued_ms: i64,
    last_record: Option<LastRecord>,
    /// Encoded records not yet written to the file: `staging[..staged_len]`, to be written at
    /// data position `staged_from` of the active segment.
    staging: Vec<u8>,
    staged_len: usize,
    staged_from: u32,
    body_sizes: Vec<u32>,
    record_offsets: Vec<Offset>,
    flush: FlushState,
    spare: Option<PreparedSegment>,
    prep_outstanding: bool,
    prep_counter: u64,
    prep_seed: u64,
    poison: Option<Error>,
    pub(crate) stats: PartitionStats,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("written_end", &self.written_end())
            .finish_non_exhaustive()
    }
}

fn lock_directory(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| error::open_failed(path.clone(), error))?;
    // SAFETY: flock only reads its integer arguments; the fd is open for the whole call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Error::Locked { path });
        }
        return Err(error::open_failed(path, error));
    }
    Ok(file)
}

impl Partition {
    /// Opens (creating if needed) the partition in `dir`, which is this partition's own
    /// directory, and recovers it (see [`recovery`]). Takes an exclusive lock
    /// on `dir/LOCK` for the life of the partition. Opening does blocking I/O (scans, syncs,
    /// preallocation): run it on a blocking thread.
    pub fn open(
        dir: impl AsRef<Path>,
        id: PartitionId,
        config: PartitionConfig,
    ) -> Result<(Partition, RecoveryReport)> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|error| error::open_failed(dir.clone(), error))?;
        let lock = lock_directory(&dir)?;
        let dir_file = File::open(&dir).map_err(|error| error::open_failed(dir.clone(), error))?;
        let prep_seed = prep_seed();
        let recovered = recovery::recover(&dir, id, &config)?;
        let mut report = recovered.report;
        let end = recovered.end;
        let mut segments = recovered.segments;
        // An empty active segment of another size than configured (the configuration changed)
        // is replaced, so that every batch up to the configured segment size fits either in the
        // active segment or, after a roll, in a new one.
        let writer = match recovered.writer {
            Some(writer)
                if writer.position() > 0
                    || u64::from(writer.segment().data_capacity())
                        == config.segment_data_bytes() =>
            {
                writer
            }
            stale => {
                if let Some(stale) = stale {
                    let stale = Arc::clone(stale.segment());
                    segments.pop();
                    for path in [stale.path(), stale.index_path()] {
                        fs::remove_file(path)
                            .map_err(|error| error::open_failed(path.to_path_buf(), error))?;
                    }
                }
                let last_enqueued_ms = recovered.last.map_or(i64::MIN, |l| l.enqueued_ms);
                let writer = create_segment(&dir, id, &config, prep_seed, end, last_enqueued_ms)?;
                segments.push(Arc::clone(writer.segment()));
                report.segments = segments.len();
                writer
            }
        };
        dir_file
            .sync_all()
            .map_err(|error| error::open_failed(dir.clone(), error))?;
        assert!(
            end.offset.0 == writer.segment().base_offset().0 + u64::from(writer.position()),
            "writer at the end"
        );
        let committed = CommittedPosition {
            end,
            last: recovered.last,
        };
        let first = &segments[0];
        let earliest = CommittedPosition {
            end: Position {
                offset: first.base_offset(),
                sequence: first.base_sequence(),
            },
            last: None,
        };
        let shared = Arc::new(Shared {
            partition: id,
            segments: ArcSwap::from_pointee(segments),
            committed: PositionCell::new(committed),
            earliest: PositionCell::new(earliest),
            poisoned: AtomicBool::new(false),
        });
        let partition = Partition {
            id,
            dir,
            dir_file: Arc::new(dir_file),
            _lock: lock,
            shared,
            last_enqueued_ms: recovered.last.map_or(i64::MIN, |l| l.enqueued_ms),
            writer,
            next_sequence: end.sequence.0,
            last_record: recovered.last,
            staging: Vec::new(),
            staged_len: 0,
            staged_from: 0,
            body_sizes: Vec::new(),
            record_offsets: Vec::new(),
            flush: FlushState {
                next_id: 0,
                started: end,
                in_flight: VecDeque::new(),
                durable: committed,
                dirty: Vec::new(),
                directory_dirty: false,
            },
            spare: None,
            prep_outstanding: false,
            prep_counter: 1,
            prep_seed,
            poison: None,
            stats: PartitionStats::default(),
            config,
        };
        Ok((partition, report))
    }

    /// The partition id.
    pub fn id(&self) -> PartitionId {
        self.id
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// A read handle for any thread.
    pub fn reader(&self) -> PartitionReader {
        PartitionReader::new(Arc::clone(&self.shared))
    }

    /// Counters.
    pub fn stats(&self) -> PartitionStats {
        self.stats
    }

    /// Where the next record goes (written, not necessarily committed).
    pub fn written_end(&self) -> Position {
        Position {
            offset: Offset(
                self.writer.segment().base_offset().0 + u64::from(self.writer.position()),
            ),
            sequence: SequenceNumber(self.next_sequence),
        }
    }

    /// What readers see.
    pub fn committed(&self) -> CommittedPosition {
        self.shared.committed.load()
    }

    /// What completed flushes made durable (the recovered end counts: open syncs it).
    pub fn durable(&self) -> CommittedPosition {
        self.flush.durable
    }

    /// Whether appends are refused after a failure.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_some()
    }

    /// The failure that poisoned the partition.
    pub fn poison_cause(&self) -> Option<&Error> {
        self.poison.as_ref()
    }

    /// Offsets of the records of the last successful append, in order.
    pub fn record_offsets(&self) -> &[Offset] {
        &self.record_offsets
    }

    /// The largest batch (encoded bytes) an append takes: a new segment's data area.
    pub fn batch_bytes_max(&self) -> u64 {
        self.config.segment_data_bytes()
    }

    fn check_poison(&self) -> Result<()> {
        match &self.poison {
            Some(cause) => Err(Error::Poisoned {
                cause: Box::new(cause.clone()),
            }),
            None => Ok(()),
        }
    }

    /// Records `error` as the poison and returns it.
    fn poison(&mut self, error: Error) -> Error {
        assert!(
            error.is_terminal_for_appends(),
            "only write-side failures poison"
        );
        if self.poison.is_none() {
            self.poison = Some(error.clone());
            self.shared.poisoned.store(true, Ordering::Release);
        }
        error
    }

    /// Appends a batch: every record gets the next sequence number, its offset and the batch's
    /// enqueued time (`now_ms`, raised to the previous batch's time if the clock went back).
    /// All or nothing for the recoverable errors (`EmptyBatch`, `RecordTooLarge`,
    /// `BatchTooLarge`); an I/O failure poisons the partition.
    pub fn append(&mut self, records: &[RecordInput<'_>], now_ms: i64) -> Result<AppendReceipt> {
        self.check_poison()?;
        if records.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let bytes_max = self.batch_bytes_max();
        self.body_sizes.clear();
        let mut batch_bytes = 0u64;
        for input in records {
            let body_bytes = record::body_bytes(input);
            let record_bytes = record::record_bytes(body_bytes) as u64;
            if record_bytes > bytes_max {
                return Err(Error::RecordTooLarge {
                    record_bytes,
                    record_bytes_max: bytes_max,
                });
            }
            self.body_sizes.push(body_bytes as u32);
            batch_bytes += record_bytes;
        }
        if batch_bytes > bytes_max {
            return Err(Error::BatchTooLarge {
                batch_bytes,
                batch_bytes_max: bytes_max,
            });
        }
        if batch_bytes > u64::from(self.writer.remaining()) {
            self.roll(now_ms)?;
        }
        assert!(
            batch_bytes <= u64::from(self.writer.remaining()),
            "the batch fits after a roll"
        );

        let enqueued_ms = now_ms.max(self.last_enqueued_ms);
        let base = self.writer.segment().base_offset().0;
        let start = self.writer.position();
        let first_offset = base + u64::from(start);
        let first_sequence = self.next_sequence;
        let batch = batch_bytes as usize;
        self.record_offsets.clear();
        let plan = BatchPlan {
            first_offset,
            first_sequence,
            enqueued_ms,
        };
        match self.config.write_path {
            WritePath::Pwrite => {
                if self.staged_len > 0
                    && self.staged_len + batch > self.config.staged_bytes_max as usize
                {
                    self.write_staged()?;
                }
                if self.staged_len == 0 {
                    self.staged_from = start;
                }
                assert!(
                    self.staged_from as usize + self.staged_len == start as usize,
                    "staged bytes end at the written end"
                );
                let at = self.staged_len;
                if self.staging.len() < at + batch {
                    self.staging.resize(at + batch, 0);
                }
                encode_batch(
                    records,
                    &self.body_sizes,
                    &mut self.staging[at..at + batch],
                    plan,
                    &mut self.record_offsets,
                );
                self.staged_len += batch;
            }
            WritePath::Mmap => {
                let out = self.writer.mapped_tail(batch);
                encode_batch(
                    records,
                    &self.body_sizes,
                    out,
                    plan,
                    &mut self.record_offsets,
                );
            }
        }
        assert!(
            self.record_offsets.len() == records.len(),
            "one offset per record"
        );
        for (i, offset) in self.record_offsets.iter().enumerate() {
            let sequence = SequenceNumber(first_sequence + i as u64);
            self.writer
                .note_record((offset.0 - base) as u32, sequence, enqueued_ms);
        }
        self.writer.advance(batch as u32);
        if self.staged_len > 0 && !self.config.stages_writes() {
            self.write_staged()?;
        }
        let count = records.len() as u64;
        self.next_sequence += count;
        self.last_enqueued_ms = enqueued_ms;
        let last_offset = *self
            .record_offsets
            .last()
            .expect("a non-empty batch has offsets");
        self.last_record = Some(LastRecord {
            sequence: SequenceNumber(self.next_sequence - 1),
            offset: last_offset,
            enqueued_ms,
        });
        if !self
            .flush
            .dirty
            .last()
            .is_some_and(|s| Arc::ptr_eq(s, self.writer.segment()))
        {
            self.flush.dirty.push(Arc::clone(self.writer.segment()));
        }
        self.stats.batches_appended += 1;
        self.stats.records_appended += count;
        self.stats.bytes_appended += batch_bytes;
        if self.config.ack == AckMode::Written {
            self.shared.committed.store(CommittedPosition {
                end: self.written_end(),
                last: self.last_record,
            });
        }
        Ok(AppendReceipt {
            first_sequence: SequenceNumber(first_sequence),
            first_offset: Offset(first_offset),
            enqueued_ms,
            count: count as u32,
            end_offset: Offset(first_offset + batch_bytes),
        })
    }

    /// Writes the staged bytes with one `pwrite`; a failure poisons.
    fn write_staged(&mut self) -> Result<()> {
        if self.staged_len == 0 {
            return Ok(());
        }
        self.check_poison()?;
        let written = self
            .writer
            .pwrite_at(self.staged_from, &self.staging[..self.staged_len]);
        if let Err(error) = written {
            return Err(self.poison(error));
        }
        self.stats.record_writes += 1;
        self.staged_from += self.staged_len as u32;
        self.staged_len = 0;
        assert!(
            self.staged_from == self.writer.position(),
            "everything up to the written end is in the file"
        );
        Ok(())
    }

    fn segment_prep(&mut self) -> SegmentPrep {
        self.prep_counter += 1;
        SegmentPrep {
            dir: self.dir.clone(),
            ticket: self.prep_seed ^ self.prep_counter,
            segment_bytes: self.config.segment_bytes,
            index_interval_bytes: self.config.index_interval_bytes,
            write_path: self.config.write_path,
            prefault: self.config.prefault,
            sync_after_prefault: self.config.ack == AckMode::Durable,
            zero_fill: self.config.zero_fill,
        }
    }

    /// A request to prepare the next segment off the append path, once the active segment is
    /// [`PartitionConfig::prepare_next_at_percent`] full and when none is prepared or being
    /// prepared. Cheap when there is nothing to ask for: call it after every append. Run
    /// [`SegmentPrep::prepare`] on a blocking thread and hand the result to
    /// [`Partition::install_prepared`]. If no prepared segment is installed when a roll needs
    /// one, the roll prepares it inline (counted in [`PartitionStats::segments_prepared_inline`]).
    pub fn next_segment_request(&mut self) -> Option<SegmentPrep> {
        if self.poison.is_some() || self.spare.is_some() || self.prep_outstanding {
            return None;
        }
        let filled = u64::from(self.writer.position()) * 100;
        let threshold = u64::from(self.writer.segment().data_capacity())
            * u64::from(self.config.prepare_next_at_percent);
        if filled < threshold {
            return None;
        }
        self.prep_outstanding = true;
        Some(self.segment_prep())
    }

    /// Installs a segment prepared from [`Partition::next_segment_request`]; the next roll uses
    /// it. A surplus one (a roll prepared inline meanwhile and another is already installed) is
    /// dropped, deleting its files.
    pub fn install_prepared(&mut self, prepared: PreparedSegment) -> Result<()> {
        assert!(
            prepared.dir() == self.dir,
            "prepared for this partition's directory"
        );
        assert!(
            prepared.data_capacity() == self.config.segment_data_bytes(),
            "prepared with this configuration"
        );
        self.prep_outstanding = false;
        self.check_poison()?;
        if self.spare.is_none() {
            self.spare = Some(prepared);
        }
        Ok(())
    }

    /// Seals the active segment and continues in a prepared one (inline preparation if none).
    fn roll(&mut self, now_ms: i64) -> Result<()> {
        // The staged bytes belong to the segment being sealed; they reach its file before the
        // next segment appears under its final name, so a reader that sees the new file finds
        // the old one complete.
        self.write_staged()?;
        let prepared = match self.spare.take() {
            Some(prepared) => prepared,
            None => {
                // No segment ready: one is made here, on the append path, as cheaply as it
                // can be: allocated, neither zeroed nor pre-faulted. Zeroing 128 MiB here
                // stalled every connection of the shard for 600 ms at 390k msgs/s; unzeroed,
                // this one segment's flushes also commit extent conversions instead. (Where
                // `fallocate` is unsupported, preallocation itself still writes zeros.)
                self.stats.segments_prepared_inline += 1;
                let prep = SegmentPrep {
                    zero_fill: false,
                    prefault: false,
                    ..self.segment_prep()
                };
                match prep.prepare() {
                    Ok(prepared) => prepared,
                    Err(error) => return Err(self.poison(error)),
                }
            }
        };
        self.prep_outstanding = false;
        let end = self.written_end();
        let header = segment::new_header(
            self.id,
            end.offset,
            end.sequence,
            prepared.data_capacity(),
            now_ms,
        );
        let segment = match prepared.install(header) {
            Ok(segment) => segment,
            Err(error) => return Err(self.poison(error)),
        };
        let state = WriterState {
            position: 0,
            next_index_position: 0,
            record_count: 0,
            last_enqueued_ms: self.last_enqueued_ms,
        };
        let previous = std::mem::replace(
            &mut self.writer,
            SegmentWriter::claim(Arc::clone(&segment), state),
        );
        assert!(
            previous.segment().base_offset().0 + u64::from(previous.position()) == end.offset.0
        );
        // Seal before publishing the new list: a reader that sees the new segment must also see
        // where the old one ends.
        previous.seal();
        let mut segments = Vec::clone(&self.shared.segments.load());
        assert!(
            segments
                .last()
                .is_some_and(|s| s.base_offset().0 < segment.base_offset().0),
            "rolls move forward"
        );
        segments.push(Arc::clone(&segment));
        self.shared.segments.store(Arc::new(segments));
        // The new file's header page is dirty, and its name must reach the disk.
        self.flush.dirty.push(segment);
        self.flush.directory_dirty = true;
        self.stats.segments_rolled += 1;
        Ok(())
    }

    /// The flush for everything appended since the previous request was taken, or `None` when
    /// there is nothing new. Writes the staged bytes first (durable mode, pwrite path: one
    /// `pwrite` for everything appended since the previous write), so that the request's
    /// targets hold every byte it covers. A failed write poisons the partition and is returned;
    /// a poisoned partition returns [`Error::Poisoned`].
    pub fn take_flush_request(&mut self) -> Result<Option<FlushRequest>> {
        self.check_poison()?;
        self.write_staged()?;
        let end = self.written_end();
        if end.offset == self.flush.started.offset {
            return Ok(None);
        }
        assert!(
            end.offset.0 > self.flush.started.offset.0,
            "the written end only grows"
        );
        let mut targets: Vec<FlushTarget> = self
            .flush
            .dirty
            .drain(..)
            .map(|s| FlushTarget {
                kind: FlushTargetKind::Segment,
                path: s.path().to_path_buf(),
                file: Arc::clone(s.file()),
            })
            .collect();
        if std::mem::take(&mut self.flush.directory_dirty) {
            targets.push(FlushTarget {
                kind: FlushTargetKind::Directory,
                path: self.dir.clone(),
                file: Arc::clone(&self.dir_file),
            });
        }
        assert!(
            !targets.is_empty(),
            "new records dirtied at least one segment"
        );
        let id = self.flush.next_id;
        self.flush.next_id += 1;
        let committed_end = CommittedPosition {
            end,
            last: self.last_record,
        };
        self.flush.in_flight.push_back(InFlight {
            id,
            end: committed_end,
            done: false,
        });
        let start = std::mem::replace(&mut self.flush.started, end);
        self.stats.flushes_requested += 1;
        Ok(Some(FlushRequest {
            partition: self.id,
            id,
            start,
            end: committed_end,
            targets,
        }))
    }

    /// Marks a request's range durable. The durable (and, in durable mode, committed) end moves
    /// over every completed request with no incomplete one before it. Refused once poisoned.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "by value: a request completes once"
    )]
    pub fn flush_complete(&mut self, request: FlushRequest) -> Result<CommittedPosition> {
        let FlushRequest { partition, id, .. } = request;
        assert!(partition == self.id, "flush request of another partition");
        let at = self.flush.in_flight.iter().position(|f| f.id == id);
        let at = at.expect("a flush request is completed once, by the partition that issued it");
        self.check_poison()?;
        self.flush.in_flight[at].done = true;
        while self.flush.in_flight.front().is_some_and(|f| f.done) {
            let done = self.flush.in_flight.pop_front().expect("front exists");
            assert!(
                done.end.end.offset.0 >= self.flush.durable.end.offset.0,
                "durable end only grows"
            );
            self.flush.durable = done.end;
        }
        if self.config.ack == AckMode::Durable {
            self.shared.committed.store(self.flush.durable);
        }
        self.stats.flushes_completed += 1;
        Ok(self.flush.durable)
    }

    /// Records a failed flush: the partition is poisoned (no later flush may claim durability for
    /// pages the kernel may have dropped) and the error naming ENOSPC or the I/O failure is
    /// returned.
    pub fn flush_failed(&mut self, request: FlushRequest, error: io::Error) -> Error {
        // Taken by value so that a failed request cannot also be completed.
        let FlushRequest {
            partition,
            id,
            targets,
            ..
        } = request;
        assert!(partition == self.id, "flush request of another partition");
        let path = targets
            .first()
            .map_or_else(|| self.dir.clone(), |t| t.path.clone());
        self.flush.in_flight.retain(|f| f.id != id);
        self.poison(error::flush_failed(path, error))
    }

    /// Takes a flush request, syncs it on this thread and completes it: for tests, benches and
    /// callers without an I/O thread. Returns the durable end.
    pub fn flush_now(&mut self) -> Result<CommittedPosition> {
        let Some(request) = self.take_flush_request()? else {
            return Ok(self.flush.durable);
        };
        if let Err((i, error)) = request.sync() {
            let path = request.targets[i].path.clone();
            self.flush.in_flight.retain(|f| f.id != request.id);
            return Err(self.poison(error::flush_failed(path, error)));
        }
        self.flush_complete(request)
    }

    /// Segments, oldest first (retention).
    pub(crate) fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        self.shared.segments.load_full()
    }

    /// Data position of the written end in the active segment.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn active_position(&self) -> u32 {
        self.writer.position()
    }

    /// The active segment.
    pub(crate) fn active_segment(&self) -> &Arc<Segment> {
        self.writer.segment()
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        // Staged records were never committed or acknowledged, so losing them would break no
        // promise; writing them (best effort, not synced) leaves on disk what immediate writes
        // would have left, as before staging existed.
        if self.poison.is_none() {
            let _ = self.write_staged();
        }
    }
}

/// Where a batch starts.
#[derive(Debug, Clone, Copy)]
struct BatchPlan {
    first_offset: u64,
    first_sequence: u64,
    enqueued_ms: i64,
}

/// Encodes `records` back to back into `out` (exactly the batch size), recording offsets.
/// Records are encoded three at a time and their CRCs computed together (see
/// [`record::seal_crc32c_x3`]) while their bytes are still in the cache.
fn encode_batch(
    records: &[RecordInput<'_>],
    body_sizes: &[u32],
    out: &mut [u8],
    plan: BatchPlan,
    offsets: &mut Vec<Offset>,
) {
    assert!(records.len() == body_sizes.len(), "one size per record");
    assert!(offsets.is_empty(), "offsets of this batch only");
    let mut at = 0usize;
    for (group, (inputs, sizes)) in records.chunks(3).zip(body_sizes.chunks(3)).enumerate() {
        let mut lengths = [0usize; 3];
        for (i, (input, body_bytes)) in inputs.iter().zip(sizes).enumerate() {
            let body_bytes = *body_bytes as usize;
            let len = record::record_bytes(body_bytes);
            let place = RecordPlace {
                sequence: SequenceNumber(plan.first_sequence + (group * 3 + i) as u64),
                offset: Offset(plan.first_offset + (at as u64)),
                enqueued_ms: plan.enqueued_ms,
            };
            record::encode_record_unsealed(input, body_bytes, place, &mut out[at..at + len]);
            offsets.push(place.offset);
            lengths[i] = len;
            at += len;
        }
        let start = at - lengths.iter().sum::<usize>();
        let (first, rest) = out[start..at].split_at_mut(lengths[0]);
        if inputs.len() == 3 {
            let (second, third) = rest.split_at_mut(lengths[1]);
            record::seal_crc32c_x3(first, second, third);
        } else {
            record::seal_crc32c(first);
            if inputs.len() == 2 {
                record::seal_crc32c(rest);
            }
        }
    }
    assert!(at == out.len(), "the batch fills its buffer exactly");
}

/// Creates a segment starting at `end` inline (open only) and claims its writer.
fn create_segment(
    dir: &Path,
    id: PartitionId,
    config: &PartitionConfig,
    ticket: u64,
    end: Position,
    last_enqueued_ms: i64,
) -> Result<SegmentWriter> {
    let prep = SegmentPrep {
        dir: dir.to_path_buf(),
        ticket,
        segment_bytes: config.segment_bytes,
        index_interval_bytes: config.index_interval_bytes,
        write_path: config.write_path,
        prefault: config.prefault,
        sync_after_prefault: config.ack == AckMode::Durable,
        zero_fill: config.zero_fill,
    };
    let prepared = prep.prepare()?;
    let header = segment::new_header(id, end.offset, end.sequence, prepared.data_capacity(), 0);
    let segment = prepared.install(header)?;
    let state = WriterState {
        position: 0,
        next_index_position: 0,
        record_count: 0,
        last_enqueued_ms,
    };
    Ok(SegmentWriter::claim(segment, state))
}

/// Seed for names of prepared files: unique across processes and opens.
fn prep_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (u64::from(std::process::id()) << 40) ^ nanos.rotate_left(17)
}
