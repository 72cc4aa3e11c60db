//! D2C ingest on the owner shard: appending batches to a partition, group-committing them with
//! one `fdatasync` per flush, and releasing acknowledgements once per flush.
//!
//! ```text
//!  session (reader task) ──append(batch)──▶ PartitionOwner ──wake──▶ shard flusher
//!        ▲                                   │ pending acks                │ fdatasync (inline, or the blocking pool when slow)
//!        │                                   ▼                             ▼
//!  session (writer task) ◀──wake── AckQueue::release(committed) ◀── flush_complete
//! ```
//!
//! Group commit: while one `fdatasync` runs, appends keep landing in the page cache; the next
//! flush covers all of them. So the durable acknowledgement costs latency (one flush), not
//! throughput (one flush per burst, however many messages it holds).

mod flusher;
mod partition;
mod preparer;

pub use flusher::ShardFlusher;
pub use partition::{AckQueue, PartitionOwner};
pub use preparer::SegmentPreparer;
