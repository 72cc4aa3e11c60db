//! Messages a shard posts to other shards without waiting: one queue and one sending task
//! per destination.
//!
//! Code that must not await (an AMQP event handler, a partition's commit hook) posts here; the
//! destination's task sends in posting order, waiting while the destination's inbox is full.
//! Commit notices are not queued one by one: each destination keeps a bit per partition, and
//! every notice posted while the previous one waited to be sent folds into one message.
//!
//! # Invariants
//! - Messages to one destination leave in the order they were posted (a release never
//!   overtakes the claim it releases).
//! - Posting never awaits and never fails; a destination that stopped drops what was queued.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use glommio::channels::channel_mesh::Senders;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::mesh::ShardMessage;

/// Partitions a commit notice can name: one bit each. The hub's partition count is at most
/// this (the configuration refuses more).
pub const NOTICE_PARTITIONS_MAX: u32 = 128;

struct Destination {
    queue: RefCell<VecDeque<ShardMessage>>,
    committed: Cell<u128>,
    wake: LocalSender<()>,
    wakes: RefCell<Option<LocalReceiver<()>>>,
}

/// The outgoing side of a shard's mesh connections.
pub struct Outbox {
    shard: usize,
    destinations: Vec<Destination>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Outbox")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox of shard `shard` with one queue per shard (its own stays unused).
    pub fn new(shard: usize, count: usize) -> Self {
        let destinations = (0..count)
            .map(|_| {
                let (wake, wakes) = local_channel::new_bounded(1);
                Destination {
                    queue: RefCell::new(VecDeque::new()),
                    committed: Cell::new(0),
                    wake,
                    wakes: RefCell::new(Some(wakes)),
                }
            })
            .collect();
        Self {
            shard,
            destinations,
        }
    }

    /// Queues `message` for shard `to`.
    pub fn post(&self, to: usize, message: ShardMessage) {
        assert_ne!(to, self.shard, "a shard does not post to itself");
        let destination = &self.destinations[to];
        destination.queue.borrow_mut().push_back(message);
        // Full means a wake-up is already pending; the task drains everything it finds.
        let _ = destination.wake.try_send(());
    }

    /// Tells shard `to` that `partition` committed records, folded with any notice to `to`
    /// that has not left yet.
    pub fn post_committed(&self, to: usize, partition: u32) {
        assert_ne!(to, self.shard, "a shard does not post to itself");
        assert!(
            partition < NOTICE_PARTITIONS_MAX,
            "partition ids stay below the notice width"
        );
        let destination = &self.destinations[to];
        destination
            .committed
            .set(destination.committed.get() | (1u128 << partition));
        let _ = destination.wake.try_send(());
    }

    /// Starts one sending task per other shard. Messages posted before this wait in their
    /// queues.
    pub fn start(self: &Rc<Self>, senders: &Rc<Senders<ShardMessage>>) {
        for to in 0..self.destinations.len() {
            if to == self.shard {
                continue;
            }
            let Some(wakes) = self.destinations[to].wakes.borrow_mut().take() else {
                continue;
            };
            glommio::spawn_local(Rc::clone(self).send_to(to, wakes, Rc::clone(senders))).detach();
        }
    }

    async fn send_to(
        self: Rc<Self>,
        to: usize,
        wakes: LocalReceiver<()>,
        senders: Rc<Senders<ShardMessage>>,
    ) {
        let destination = &self.destinations[to];
        while wakes.recv().await.is_some() {
            loop {
                let next = destination.queue.borrow_mut().pop_front().or_else(|| {
                    let partitions = destination.committed.replace(0);
                    (partitions != 0).then_some(ShardMessage::Committed { partitions })
                });
                let Some(message) = next else {
                    break;
                };
                if senders.send_to(to, message).await.is_err() {
                    // The destination stopped: the process is shutting down.
                    return;
                }
            }
        }
    }
}
