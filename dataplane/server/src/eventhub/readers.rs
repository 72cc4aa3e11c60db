//! A shard's side of the partition readers: the readers whose connections live here, the
//! claims on the partitions it owns, and the read handles on every partition.
//!
//! ```text
//!  connection (session::amqp)           Readers on its shard              owner shard's Readers
//!  ──────────────────────────           ────────────────────              ─────────────────────
//!  attach ─▶ claim(listener) ──────────▶ local reader + Claim ──mesh──▶   OwnerTable::claim
//!  ◀── claim_answered / stolen ────────  ◀───────── ClaimAnswered / Steal ──┘
//!  ◀── committed (wake) ───────────────  ◀───────── Committed ◀── partition_committed (flush)
//! ```
//!
//! When the owner is this shard, the same steps are direct calls. Readers read through
//! [`PartitionReader`]s on their own shard; the owner only decides claims and sends notices,
//! so a busy reader never takes time from the shard that writes the partition.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use dataplane_log::PartitionReader;

use super::ownership::{Claim, ClaimAnswer, OwnerTable, ReaderId};
use crate::shard::mesh::ShardMessage;
use crate::shard::outbox::Outbox;
use crate::shard::placement;

/// What a connection with partition readers hears from its shard. Calls come from the shard's
/// own tasks (never another thread) and must not block; implementations queue and wake.
pub trait ReaderListener {
    /// The partition's owner answered the reader's claim.
    fn claim_answered(&self, serial: u64, answer: ClaimAnswer);
    /// A reader with a higher (or equal) owner level took the partition from this reader.
    fn stolen(&self, serial: u64);
    /// The partition of one of this connection's readers committed records.
    fn committed(&self);
}

struct LocalReader {
    partition: u32,
    consumer_group: String,
    listener: Weak<dyn ReaderListener>,
}

/// The partition readers of one shard.
///
/// # Invariants
/// - A serial names at most one local reader, and is never reused.
/// - A local reader is in `by_partition` under its partition exactly while it is in `local`.
/// - Every local reader has claimed its pair: its claim is held by the owner, or waits for an
///   answer, or was refused (and then the reader is gone from here).
pub struct Readers {
    shard: usize,
    shard_count: usize,
    outbox: Rc<Outbox>,
    next_serial: Cell<u64>,
    local: RefCell<HashMap<u64, LocalReader>>,
    by_partition: RefCell<HashMap<u32, Vec<u64>>>,
    owned: RefCell<OwnerTable>,
    directory: RefCell<HashMap<u32, PartitionReader>>,
    directories_heard: Cell<usize>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Readers")
            .field("shard", &self.shard)
            .field("local", &self.local.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Readers {
    /// The readers of shard `shard` of `shard_count`, posting to other shards through `outbox`.
    pub fn new(shard: usize, shard_count: usize, outbox: Rc<Outbox>) -> Self {
        Self {
            shard,
            shard_count,
            outbox,
            next_serial: Cell::new(0),
            local: RefCell::new(HashMap::new()),
            by_partition: RefCell::new(HashMap::new()),
            owned: RefCell::new(OwnerTable::default()),
            directory: RefCell::new(HashMap::new()),
            directories_heard: Cell::new(0),
        }
    }

    fn owner_of(&self, partition: u32) -> usize {
        placement::shard_of(partition, self.shard_count)
    }

    /// Adds read handles on partitions (this shard's at start, then each other shard's).
    pub fn add_to_directory(&self, entries: Vec<(u32, PartitionReader)>) {
        self.directory.borrow_mut().extend(entries);
    }

    /// Adds another shard's read handles, as its `Directory` message brought them.
    pub fn add_peer_directory(&self, entries: Vec<(u32, PartitionReader)>) {
        self.add_to_directory(entries);
        self.directories_heard.set(self.directories_heard.get() + 1);
    }

    /// How many other shards have sent their directory.
    pub fn directories_heard(&self) -> usize {
        self.directories_heard.get()
    }

    /// A read handle on a partition; `None` when it did not open (its recovery failed).
    pub fn partition_reader(&self, partition: u32) -> Option<PartitionReader> {
        self.directory.borrow().get(&partition).cloned()
    }

    /// Local readers, for tests and metrics.
    pub fn local_count(&self) -> usize {
        self.local.borrow().len()
    }

    /// Registers a reader of `partition` for `consumer_group` (lower-cased) and claims the pair
    /// from its owner. Returns the reader's serial and, when this shard owns the partition, the
    /// answer; otherwise the answer arrives through [`ReaderListener::claim_answered`]. A
    /// refused reader is forgotten at once.
    pub fn claim(
        &self,
        partition: u32,
        consumer_group: &str,
        epoch: Option<i64>,
        listener: Weak<dyn ReaderListener>,
    ) -> (u64, Option<ClaimAnswer>) {
        let serial = self.next_serial.get();
        self.next_serial.set(serial + 1);
        self.local.borrow_mut().insert(
            serial,
            LocalReader {
                partition,
                consumer_group: consumer_group.to_owned(),
                listener,
            },
        );
        self.by_partition
            .borrow_mut()
            .entry(partition)
            .or_default()
            .push(serial);
        let claim = Claim {
            reader: ReaderId {
                shard: self.shard,
                serial,
            },
            partition,
            consumer_group: consumer_group.to_owned(),
            epoch,
        };
        let owner = self.owner_of(partition);
        if owner != self.shard {
            self.outbox.post(owner, ShardMessage::Claim(claim));
            return (serial, None);
        }
        let answer = self.decide(claim);
        if answer != ClaimAnswer::Granted {
            self.forget(serial);
        }
        (serial, Some(answer))
    }

    /// A local reader ended (its link detached or its connection closed): forgets it and
    /// releases its claim.
    pub fn release(&self, serial: u64) {
        let Some(reader) = self.forget(serial) else {
            return;
        };
        let id = ReaderId {
            shard: self.shard,
            serial,
        };
        let owner = self.owner_of(reader.partition);
        if owner == self.shard {
            self.owned
                .borrow_mut()
                .release(id, reader.partition, &reader.consumer_group);
        } else {
            self.outbox.post(
                owner,
                ShardMessage::Release {
                    reader: id,
                    partition: reader.partition,
                    consumer_group: reader.consumer_group,
                },
            );
        }
    }

    fn forget(&self, serial: u64) -> Option<LocalReader> {
        let reader = self.local.borrow_mut().remove(&serial)?;
        let mut by_partition = self.by_partition.borrow_mut();
        if let Some(serials) = by_partition.get_mut(&reader.partition) {
            serials.retain(|known| *known != serial);
            if serials.is_empty() {
                by_partition.remove(&reader.partition);
            }
        }
        Some(reader)
    }

    /// Decides a claim on a partition this shard owns, and tells the readers it took the pair
    /// from.
    fn decide(&self, claim: Claim) -> ClaimAnswer {
        assert_eq!(
            self.owner_of(claim.partition),
            self.shard,
            "claims are decided by the partition's owner"
        );
        let outcome = self.owned.borrow_mut().claim(claim);
        for stolen in outcome.stolen {
            if stolen.shard == self.shard {
                self.handle_steal(stolen.serial);
            } else {
                self.outbox.post(
                    stolen.shard,
                    ShardMessage::Steal {
                        serial: stolen.serial,
                    },
                );
            }
        }
        outcome.answer
    }

    /// Owner side: a claim from a reader on another shard.
    pub fn handle_claim(&self, claim: Claim) {
        let reader = claim.reader;
        assert_ne!(reader.shard, self.shard, "local claims are direct calls");
        let answer = self.decide(claim);
        self.outbox.post(
            reader.shard,
            ShardMessage::ClaimAnswered {
                serial: reader.serial,
                answer,
            },
        );
    }

    /// Owner side: a reader on another shard ended.
    pub fn handle_release(&self, reader: ReaderId, partition: u32, consumer_group: &str) {
        self.owned
            .borrow_mut()
            .release(reader, partition, consumer_group);
    }

    /// Reader side: the owner answered a claim. A reader that ended meanwhile already sent
    /// its release, which the owner handles after this claim.
    pub fn handle_answer(&self, serial: u64, answer: ClaimAnswer) {
        let listener = if answer == ClaimAnswer::Granted {
            self.local
                .borrow()
                .get(&serial)
                .map(|reader| reader.listener.clone())
        } else {
            self.forget(serial).map(|reader| reader.listener)
        };
        if let Some(listener) = listener.and_then(|listener| listener.upgrade()) {
            listener.claim_answered(serial, answer);
        }
    }

    /// Reader side: the owner gave this reader's pair to a higher owner level.
    pub fn handle_steal(&self, serial: u64) {
        if let Some(listener) = self
            .forget(serial)
            .and_then(|reader| reader.listener.upgrade())
        {
            listener.stolen(serial);
        }
    }

    /// Reader side: partitions committed records; wakes their local readers.
    pub fn handle_committed(&self, partitions: u128) {
        let mut rest = partitions;
        while rest != 0 {
            let partition = rest.trailing_zeros();
            rest &= rest - 1;
            self.wake_local(partition);
        }
    }

    /// Owner side, after every commit of `partition`: wakes its local readers and tells every
    /// other shard that has readers of it.
    pub fn partition_committed(&self, partition: u32) {
        self.wake_local(partition);
        let owned = self.owned.borrow();
        for shard in owned.interested_shards(partition, self.shard) {
            self.outbox.post_committed(shard, partition);
        }
    }

    fn wake_local(&self, partition: u32) {
        let listeners: Vec<Rc<dyn ReaderListener>> = {
            let by_partition = self.by_partition.borrow();
            let Some(serials) = by_partition.get(&partition) else {
                return;
            };
            let local = self.local.borrow();
            serials
                .iter()
                .filter_map(|serial| local.get(serial))
                .filter_map(|reader| reader.listener.upgrade())
                .collect()
        };
        for listener in listeners {
            listener.committed();
        }
    }
}
