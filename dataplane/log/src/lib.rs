//! Partition logs: mmap'd segment files that lose nothing acknowledged.
//!
//! A partition is a directory of preallocated segment files holding records (a fixed header
//! plus a `shoal.log.Record` flatbuffer body, see [`record`]), each segment with a sparse index
//! (see [`index`]). One thread owns a [`Partition`] and appends batches to it; any number of
//! [`PartitionReader`]s on any thread read committed records in place, through the segment
//! mappings, without copying. Durability is requested by value: the partition hands out
//! [`FlushRequest`]s naming the files to `fdatasync`, the caller performs them (through
//! io_uring on the data plane, or [`Partition::flush_now`]) and reports back, and the committed
//! end that readers see moves. Segments are prepared ahead of need through [`SegmentPrep`] on a
//! blocking thread, asked for once the active segment is half full (see
//! [`PartitionConfig::prepare_next_at_percent`]), so the append path never creates, maps or
//! faults in a file. Another process (`shoal events tail`) follows a partition with a
//! [`Follower`]: read-only, without the lock, showing the records written so far (not only the
//! durable ones; see [`follower`]).
//!
//! ```text
//!   owner thread                                              any thread
//!   ────────────                                              ──────────
//!   append(batch) ─▶ encode+CRC into staging ─pwrite─▶ page cache ◀─ mmap ─ Cursor::next()
//!        │       (durable: staged until the next     (or memcpy into             ▲
//!        │        take_flush_request, one pwrite)     the mapping)               │
//!        ├─ take_flush_request() ─▶ caller fdatasyncs ─▶ flush_complete()        │
//!        │                                                  │                    │
//!        │                           committed end (Release) ┴─────── Acquire ───┘
//!        └─ next_segment_request() ─▶ blocking thread: prepare() ─▶ install_prepared()
//!           (None until the active segment is half full)
//!
//!   another process: Follower::refresh() ─ pread past its readable end until records validate,
//!                    then the same Cursors over read-only mappings of the same files
//! ```
//!
//! Measured decisions (write paths, zero-filled segments, the forward flatbuffers encoder,
//! interleaved CRCs, the recovery policy, staged durable writes, preparing segments at half
//! fill, the follower, growing the schema) are in `dataplane/log/DECISIONS.md`.
//!
//! # Never depends on
//! glommio, tokio or any other runtime or executor, sockets, or a clock: the caller passes
//! `now_ms` and owns all scheduling. The crate builds and is tested without io_uring, which is
//! what lets fuzzing, property tests and a future simulator use it.
//!
//! # Invariants worth naming
//! - Sequence numbers are contiguous from 0 per partition; offsets (byte positions in the
//!   partition) and enqueued times never decrease, and an offset names the same record forever,
//!   also after retention deleted the segments before it.
//! - Readers never see a byte at or beyond the committed end (a follower's: its readable end).
//!   In `durable` mode the committed end moves only when a flush covering it completed; in
//!   `written` mode append moves it.
//! - A segment stays mapped while any reader holds it; retention only unlinks files.
//! - Nothing read from disk can make this crate panic or read out of bounds: every length,
//!   offset and index entry is checked, record bodies are verified before typed access.
//! - A failed write, preallocation or flush poisons the partition for appends (reads go on);
//!   the durable end never moves again until the partition is reopened and recovered.
//! - Recovery truncates a torn tail only when nothing valid follows it, and reports it; any
//!   other damage refuses to open with the file and position.
//! - A follower never writes, truncates, renames, deletes or locks anything, and reads through
//!   its mappings only below the end of the records it validated.

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod follower;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod index;
pub mod partition;
pub mod reader;
pub mod record;
pub mod recovery;
pub mod retention;
pub mod segment;

pub use config::{AckMode, PartitionConfig, WritePath};
pub use error::{BodyError, Corruption, Error, Result};
pub use follower::{FollowReport, Follower};
pub use partition::{
    AppendReceipt, FlushRequest, FlushTarget, FlushTargetKind, Partition, PartitionStats,
};
pub use reader::{CommittedPosition, Cursor, LastRecord, PartitionReader, Position, StartPosition};
pub use record::{RecordHeader, RecordInput, RecordView};
pub use recovery::{RecoveryReport, TornTail};
pub use retention::RetentionReport;
pub use segment::{PreparedSegment, SegmentPrep};

/// The body schema's generated accessors (`shoal.log.Record`, `shoal.log.Property`).
pub use schemas::record as body;

// The threading contract, checked at compile time: the owner may move a partition to its
// shard, flush requests and segment preparations travel to I/O threads, readers go anywhere.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_and_sync<T: Send + Sync>() {}
    send::<Partition>();
    send::<Cursor>();
    send::<FlushRequest>();
    send::<SegmentPrep>();
    send::<PreparedSegment>();
    send::<Follower>();
    send_and_sync::<PartitionReader>();
};

/// Byte position of a record in its partition, as Event Hubs exposes it (as a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

/// Sequence number of a record, contiguous from 0 per partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SequenceNumber(pub u64);

/// A segment, named by the offset of its first byte (`{base_offset:020}.segment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SegmentId(pub u64);

/// A partition of a hub's event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PartitionId(pub u32);

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
