//! The shard's flusher: one group commit for every partition the shard owns.
//!
//! A round gathers the flush requests of every partition with unflushed records and runs
//! their `fdatasync`s back to back in one job on the blocking pool, then commits each and
//! releases its acknowledgements. While a round runs, appends keep landing (staged, then
//! written when the next round takes them), so the next round covers everything that arrived
//! meanwhile.
//!
//! Where the `fdatasync`s run is a measured decision. io_uring runs every fsync on a kernel
//! worker thread, and on this machine kind a thread's sleep and wake-up costs about 45 us of
//! CPU; a job on glommio's blocking pool costs the same. Run inline on the shard, the fsyncs of
//! a round cost no wake-up, but the shard serves nothing while they run. Measured with
//! `shoal-perf` (100 devices, TLS, QoS 1, 256 B, server on one core, four partitions):
//!
//! | fsyncs | 1 in flight | 16 in flight | 22k msgs/s open loop, PUBACK p99 |
//! |---|---|---|---|
//! | io_uring, one per partition | 46k msgs/s, 19.5 us CPU/msg | 312k msgs/s, 2.8 us/msg, p99 6 ms | 7.0 ms, 33 us/msg |
//! | blocking pool, one job per round | 38-40k msgs/s, 19.3 us/msg | | |
//! | inline, one round | 48-50k msgs/s, 13 us/msg | 308k msgs/s, 2.4 us/msg, p99 28 ms | 5.3 ms, 19 us/msg |
//!
//! So rounds run inline while the disk is fast, and move to the blocking pool when a round took
//! longer than [`INLINE_ROUND_MAX`]: a slow or stalled disk then delays acknowledgements, never
//! the shard's other connections and readers. They come back inline once a round is fast
//! again.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::PartitionOwner;

/// A round of fsyncs slower than this moves the next rounds off the shard.
pub const INLINE_ROUND_MAX: Duration = Duration::from_millis(2);

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
                // Let every session the reactor has already woken append first: one round
                // then covers the whole burst instead of its first message, at no cost in
                // latency (those sessions run now either way).
                futures_lite::future::yield_now().await;
                let round: Vec<_> = self
                    .partitions
                    .borrow()
                    .iter()
                    .filter_map(|partition| {
                        partition
                            .take_flush_request()
                            .map(|request| (Rc::clone(partition), request))
                    })
                    .collect();
                if round.is_empty() {
                    break;
                }
                let (partitions, requests): (Vec<_>, Vec<_>) = round.into_iter().unzip();
                let sync_all = move || {
                    let started = Instant::now();
                    let synced = requests
                        .into_iter()
                        .map(|request| {
                            let result = request.sync().map_err(|(_, error)| error);
                            (request, result)
                        })
                        .collect::<Vec<_>>();
                    (synced, started.elapsed())
                };
                let (synced, took) = if self.inline.get() {
                    sync_all()
                } else {
                    glommio::executor().spawn_blocking(sync_all).await
                };
                let fast = took <= INLINE_ROUND_MAX;
                if fast != self.inline.replace(fast) {
                    tracing::debug!(?took, inline = fast, "flush rounds move");
                }
                assert_eq!(synced.len(), partitions.len(), "one outcome per request");
                for (partition, (request, result)) in partitions.iter().zip(synced) {
                    partition.finish_flush(request, result);
                }
            }
        }
    }
}
