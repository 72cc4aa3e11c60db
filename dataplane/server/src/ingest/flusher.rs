//! The shard's flusher: group commit for every partition the shard owns, one partition at a
//! time.
//!
//! A cycle visits the partitions in turn. For each with unflushed records it takes the flush
//! request (covering everything appended since its previous flush started, including what
//! arrived while the other partitions synced), runs the `fdatasync`, commits, releases the
//! acknowledgements and yields, so that those PUBACKs go out and new appends land before the
//! next partition's sync. While a sync runs, appends keep landing (staged, then written when
//! the next request takes them).
//!
//! Why one partition at a time rather than one round for all of them (every request taken at
//! the start, every acknowledgement released at the end): a message then waits for its own
//! partition's sync, not for the whole round's, and its request is taken later, so fewer
//! messages miss a sync. Alternated three times each (`perf/compare.sh --servers shoal`, TLS,
//! 100 devices, server on one core): one in flight 56.2-56.8k msgs/s, PUBACK p99 3.3-3.5 ms,
//! 10.8-11.0 us/msg against 48.3-52.8k, 4.0-4.3 ms, 11.9-12.6 us/msg; 16 in flight 449-464k
//! against 382-416k; publish-to-consume p99 at 100k msgs/s 6.0 / 6.5 / 10.0 ms against 7.0 /
//! 8.6 / 8.4 ms. Half load, now a higher offered rate (28k against 24-26k msgs/s), PUBACK p99
//! 6.3-7.5 ms against 4.3-6.8 ms.
//!
//! Where the `fdatasync`s run is a measured decision. io_uring runs every fsync on a kernel
//! worker thread, and on this machine kind a thread's sleep and wake-up costs about 45 us of
//! CPU; a job on glommio's blocking pool costs the same. Run inline on the shard, an fsync
//! costs no wake-up, but the shard serves nothing while it runs. Measured with `shoal-perf`
//! (100 devices, TLS, QoS 1, 256 B, server on one core, four partitions), with rounds:
//!
//! | fsyncs | 1 in flight | 16 in flight | 22k msgs/s open loop, PUBACK p99 |
//! |---|---|---|---|
//! | io_uring, one per partition | 46k msgs/s, 19.5 us CPU/msg | 312k msgs/s, 2.8 us/msg, p99 6 ms | 7.0 ms, 33 us/msg |
//! | blocking pool, one job per round | 38-40k msgs/s, 19.3 us/msg | | |
//! | inline, one round | 48-50k msgs/s, 13 us/msg | 308k msgs/s, 2.4 us/msg, p99 28 ms | 5.3 ms, 19 us/msg |
//!
//! So fsyncs run inline while the disk is fast, and move to the blocking pool when one took
//! longer than [`INLINE_SYNC_MAX`]: a slow or stalled disk then delays acknowledgements, never
//! the shard's other connections and readers. They come back inline once one is fast again.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::PartitionOwner;

/// An fsync slower than this moves the next ones off the shard.
pub const INLINE_SYNC_MAX: Duration = Duration::from_millis(1);

/// The flusher of one shard (`durable` mode).
pub struct ShardFlusher {
    partitions: RefCell<Vec<Rc<PartitionOwner>>>,
    signal: Rc<LocalSender<()>>,
    signals: RefCell<Option<LocalReceiver<()>>>,
    /// Whether the last round was fast enough to run the next one inline.
    inline: Cell<bool>,
}

impl std::fmt::Debug for ShardFlusher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ShardFlusher")
            .finish_non_exhaustive()
    }
}

impl ShardFlusher {
    /// A flusher with no partitions yet.
    pub fn new() -> Rc<Self> {
        let (signal, signals) = local_channel::new_bounded(1);
        Rc::new(Self {
            partitions: RefCell::new(Vec::new()),
            signal: Rc::new(signal),
            signals: RefCell::new(Some(signals)),
            inline: Cell::new(true),
        })
    }

    /// What a partition calls (through `PartitionOwner`) after an append.
    pub fn signal(&self) -> Rc<LocalSender<()>> {
        Rc::clone(&self.signal)
    }

    /// Adds a partition to flush.
    pub fn add(&self, partition: Rc<PartitionOwner>) {
        self.partitions.borrow_mut().push(partition);
    }

    /// Runs rounds until the shard stops.
    pub async fn run(self: Rc<Self>) {
        let Some(signals) = self.signals.borrow_mut().take() else {
            return;
        };
        while signals.recv().await.is_some() {
            loop {
                // Let every session the reactor has already woken append first: one sync then
                // covers the whole burst instead of its first message, at no cost in latency
                // (those sessions run now either way).
                futures_lite::future::yield_now().await;
                let mut synced_any = false;
                // By index, without copying the list each cycle; partitions are only added at
                // start.
                let count = self.partitions.borrow().len();
                for index in 0..count {
                    let partition = Rc::clone(&self.partitions.borrow()[index]);
                    // Taken just before its own sync, the request covers what arrived while
                    // the other partitions synced.
                    let Some(request) = partition.take_flush_request() else {
                        continue;
                    };
                    synced_any = true;
                    let sync = move || {
                        let started = Instant::now();
                        let result = request.sync().map_err(|(_, error)| error);
                        (request, result, started.elapsed())
                    };
                    let (request, result, took) = if self.inline.get() {
                        sync()
                    } else {
                        glommio::executor().spawn_blocking(sync).await
                    };
                    let fast = took <= INLINE_SYNC_MAX;
                    if fast != self.inline.replace(fast) {
                        tracing::debug!(?took, inline = fast, "flushes move");
                    }
                    partition.finish_flush(request, result);
                    // The acknowledgements just released go out, and new appends land, before
                    // the next partition's sync rather than after the last one's.
                    futures_lite::future::yield_now().await;
                }
                if !synced_any {
                    break;
                }
            }
        }
    }
}
