//! One partition's owner: the log and the sessions waiting on it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use dataplane_log::{AppendReceipt, Partition, PartitionReader, RecordInput};
use dataplane_wire::mqtt::PacketId;
use glommio::channels::local_channel::LocalSender;

use super::SegmentPreparer;

/// The acknowledgements one session waits for, in the order its messages arrived.
///
/// # Invariants
/// - Sequence numbers in `pending` increase (one session appends to one partition, in order),
///   so releasing is popping a prefix: PUBACKs leave in the order the PUBLISHes came.
#[derive(Debug)]
pub struct AckQueue {
    pending: RefCell<VecDeque<(u64, PacketId)>>,
    released: RefCell<Vec<PacketId>>,
    /// Whether the queue is on its partition's waiting list.
    listed: Cell<bool>,
    /// The partition failed: nothing pending will ever be acknowledged.
    failed: Cell<bool>,
    wake_writer: Rc<LocalSender<()>>,
}

impl AckQueue {
    /// A queue that wakes its session's writer through `wake_writer`.
    pub fn new(wake_writer: Rc<LocalSender<()>>) -> Self {
        Self {
            pending: RefCell::new(VecDeque::new()),
            released: RefCell::new(Vec::new()),
            listed: Cell::new(false),
            failed: Cell::new(false),
            wake_writer,
        }
    }

    /// Messages appended but not yet acknowledged.
    pub fn pending_count(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Whether the partition failed under this session's pending messages.
    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Moves the packet ids released so far into `into`.
    pub fn take_released(&self, into: &mut Vec<PacketId>) {
        into.append(&mut self.released.borrow_mut());
    }

    fn push(&self, sequence: u64, packet_id: PacketId) {
        let mut pending = self.pending.borrow_mut();
        assert!(
            pending.back().is_none_or(|(last, _)| *last < sequence),
            "acknowledgements are queued in sequence order"
        );
        pending.push_back((sequence, packet_id));
    }

    /// Releases every pending acknowledgement below `next_sequence`; returns how many.
    fn release(&self, next_sequence: u64) -> usize {
        let mut pending = self.pending.borrow_mut();
        let mut released = self.released.borrow_mut();
        let before = released.len();
        while let Some(&(sequence, packet_id)) = pending.front() {
            if sequence >= next_sequence {
                break;
            }
            pending.pop_front();
            released.push(packet_id);
        }
        let count = released.len() - before;
        if count > 0 {
            // Full means a wake-up is already queued; the writer drains everything at once.
            let _ = self.wake_writer.try_send(());
        }
        count
    }

    fn fail(&self) {
        self.failed.set(true);
        let _ = self.wake_writer.try_send(());
    }
}

/// A message ready to append, and the acknowledgement it needs (QoS 1) or not (QoS 0).
pub type Acknowledgement = Option<PacketId>;

/// A partition owned by this shard.
pub struct PartitionOwner {
    id: u32,
    log: RefCell<Partition>,
    reader: PartitionReader,
    waiting: RefCell<Vec<Rc<AckQueue>>>,
    /// Wakes the shard's flusher (`durable` mode).
    flush_signal: Option<Rc<LocalSender<()>>>,
    /// Prepares this partition's next segments (shared by the shard's partitions).
    preparer: Rc<SegmentPreparer>,
    preparing_segment: Cell<bool>,
    /// The partition failed (write or flush) and refuses appends; reported once.
    failed: Cell<bool>,
    /// In-flight acknowledgements across the partition, for the shard's bound.
    inflight: Cell<usize>,
    /// Runs after every commit; wakes the partition's Event Hubs readers.
    commit_hook: RefCell<Option<Box<dyn Fn()>>>,
}

impl std::fmt::Debug for PartitionOwner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PartitionOwner")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why an append failed; the session closes the connection without acknowledging.
#[derive(Debug, thiserror::Error)]
#[error("partition {partition}: {source}")]
pub struct AppendError {
    /// The partition.
    pub partition: u32,
    /// The log's error.
    #[source]
    pub source: dataplane_log::Error,
}

impl PartitionOwner {
    /// Takes ownership of an opened partition. In `durable` mode `flush_signal` wakes the
    /// shard's flusher (see [`super::ShardFlusher`]), which flushes this partition with the
    /// shard's others.
    pub fn new(
        id: u32,
        log: Partition,
        flush_signal: Option<Rc<LocalSender<()>>>,
        preparer: Rc<SegmentPreparer>,
    ) -> Rc<Self> {
        let reader = log.reader();
        Rc::new(Self {
            id,
            preparer,
            log: RefCell::new(log),
            reader,
            waiting: RefCell::new(Vec::new()),
            flush_signal,
            preparing_segment: Cell::new(false),
            failed: Cell::new(false),
            inflight: Cell::new(0),
            commit_hook: RefCell::new(None),
        })
    }

    /// The partition id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// A reader for any thread.
    pub fn reader(&self) -> PartitionReader {
        self.reader.clone()
    }

    /// Sets what runs after every commit (each flush in `durable` mode, each append in
    /// `written` mode).
    pub fn set_commit_hook(&self, hook: Box<dyn Fn()>) {
        *self.commit_hook.borrow_mut() = Some(hook);
    }

    /// Acknowledgements waiting for a flush on this partition.
    pub fn inflight(&self) -> usize {
        self.inflight.get()
    }

    /// Appends a batch; queues each QoS 1 message's acknowledgement on `acks`, released when
    /// the records are committed (at once in `written` mode, after the flush in `durable`).
    pub fn append(
        self: &Rc<Self>,
        records: &[RecordInput<'_>],
        acknowledgements: &[Acknowledgement],
        acks: &Rc<AckQueue>,
        now_ms: i64,
    ) -> Result<AppendReceipt, AppendError> {
        assert_eq!(records.len(), acknowledgements.len());
        assert!(!records.is_empty(), "an empty batch is not appended");
        let receipt = self
            .log
            .borrow_mut()
            .append(records, now_ms)
            .map_err(|source| AppendError {
                partition: self.id,
                source,
            })?;
        let mut queued = 0;
        for (index, packet_id) in acknowledgements.iter().enumerate() {
            if let Some(packet_id) = packet_id {
                acks.push(receipt.first_sequence.0 + index as u64, *packet_id);
                queued += 1;
            }
        }
        if queued > 0 {
            self.inflight.set(self.inflight.get() + queued);
            if !acks.listed.replace(true) {
                self.waiting.borrow_mut().push(Rc::clone(acks));
            }
        }
        match &self.flush_signal {
            // Full means the flusher is already woken; it takes everything at once.
            Some(signal) => {
                let _ = signal.try_send(());
            }
            None => self.release_committed(),
        }
        self.prepare_next_segment();
        Ok(receipt)
    }

    /// Starts preparing the next segment on the shard's [`SegmentPreparer`] when the log asks
    /// for it (after appends, and once at open: a recovered segment may already be past the
    /// threshold).
    pub fn prepare_next_segment(self: &Rc<Self>) {
        if self.preparing_segment.get() {
            return;
        }
        let Some(request) = self.log.borrow_mut().next_segment_request() else {
            return;
        };
        self.preparing_segment.set(true);
        let owner = Rc::clone(self);
        glommio::spawn_local(async move {
            let prepared = owner.preparer.prepare(request).await;
            let result = prepared.and_then(|prepared| owner.log.borrow_mut().install_prepared(prepared));
            if let Err(error) = result {
                // The log prepares inline when the roll comes; appends go on.
                tracing::warn!(partition = owner.id, %error, "could not prepare the next segment ahead");
            }
            owner.preparing_segment.set(false);
        })
        .detach();
    }

    /// Releases acknowledgements of committed records to their sessions.
    fn release_committed(&self) {
        let next = self.reader.committed().end.sequence.0;
        let mut released_total = 0;
        self.waiting.borrow_mut().retain(|acks| {
            released_total += acks.release(next);
            let keep = acks.pending_count() > 0;
            if !keep {
                acks.listed.set(false);
            }
            keep
        });
        self.inflight.set(self.inflight.get() - released_total);
        if let Some(hook) = self.commit_hook.borrow().as_ref() {
            hook();
        }
    }

    /// Fails every waiting session: the partition is poisoned and their messages will never
    /// be acknowledged (the devices resend them on a new connection).
    fn fail_waiting(&self) {
        for acks in self.waiting.borrow_mut().drain(..) {
            acks.listed.set(false);
            acks.fail();
        }
        self.inflight.set(0);
    }

    /// Takes this partition's flush request, if it has unflushed records: the staged bytes are
    /// written now, the `fdatasync` is the caller's. On a write failure the partition is
    /// poisoned and its waiting sessions fail.
    pub(super) fn take_flush_request(&self) -> Option<dataplane_log::FlushRequest> {
        match self.log.borrow_mut().take_flush_request() {
            Ok(request) => request,
            Err(error) => {
                if !self.failed.replace(true) {
                    tracing::error!(
                        partition = self.id,
                        %error,
                        "writing records failed: the partition refuses appends until restarted"
                    );
                }
                self.fail_waiting();
                None
            }
        }
    }

    /// Records the outcome of a flush: commits and releases acknowledgements, or poisons the
    /// partition and fails its waiting sessions (a failed `fdatasync` is never retried on the
    /// same pages).
    pub(super) fn finish_flush(
        &self,
        request: dataplane_log::FlushRequest,
        result: std::io::Result<()>,
    ) {
        let outcome = match result {
            Ok(()) => self
                .log
                .borrow_mut()
                .flush_complete(request)
                .map(drop)
                .map_err(|error| (error, "flush bookkeeping failed")),
            Err(error) => Err((
                self.log.borrow_mut().flush_failed(request, error),
                "fdatasync failed: the partition refuses appends until restarted",
            )),
        };
        match outcome {
            Ok(()) => self.release_committed(),
            Err((error, what)) => {
                tracing::error!(partition = self.id, %error, "{what}");
                self.failed.set(true);
                self.fail_waiting();
            }
        }
    }

    /// Flushes what is still unflushed, at shutdown (synchronously: nothing else runs then).
    pub fn flush_on_stop(&self) {
        let mut log = self.log.borrow_mut();
        if log.is_poisoned() {
            return;
        }
        if let Err(error) = log.flush_now() {
            tracing::error!(partition = self.id, %error, "final flush failed");
        }
        let stats = log.stats();
        tracing::info!(
            partition = self.id,
            records = stats.records_appended,
            batches = stats.batches_appended,
            flushes = stats.flushes_completed,
            segments_rolled = stats.segments_rolled,
            prepared_inline = stats.segments_prepared_inline,
            "partition closed"
        );
    }

    /// Deletes segments past retention.
    pub fn enforce_retention(&self, now_ms: i64) {
        match self.log.borrow_mut().enforce_retention(now_ms) {
            Ok(report) if report.segments_deleted > 0 => {
                tracing::info!(
                    partition = self.id,
                    deleted = report.segments_deleted,
                    "retention deleted segments"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(partition = self.id, %error, "retention failed"),
        }
    }
}
