//! Who reads which partition of which consumer group, kept by the partition's owner shard.
//!
//! Every partition receiver, whatever shard its connection lives on, *claims* its (consumer
//! group, partition) from the owner shard before its attach is answered, and *releases* it when
//! the link or the connection ends. The owner decides with Event Hubs' owner-level (epoch)
//! rules and learns, from the same claims, which shards must hear about its commits.
//!
//! Epoch rules, as Event Hubs applies them:
//! - a reader with epoch `e` takes the pair from every reader without an epoch and every reader
//!   with an epoch at or below `e` (they are detached with `amqp:link:stolen`);
//! - a reader with epoch `e` is refused while a reader with a higher epoch holds the pair;
//! - a reader without an epoch is refused while any reader with an epoch holds the pair;
//! - at most [`READERS_PER_GROUP_MAX`] readers share a pair.
//!
//! The table is plain data (no glommio, no I/O), so these rules are unit-tested here.

use std::collections::HashMap;

/// Readers one (consumer group, partition) pair may have at once, as in Event Hubs.
pub const READERS_PER_GROUP_MAX: usize = 5;

/// A partition reader, named across shards: the shard its connection lives on and a serial
/// number that shard gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReaderId {
    /// The shard holding the reader's connection.
    pub shard: usize,
    /// Unique on that shard for the life of the process.
    pub serial: u64,
}

/// A reader asking for a (consumer group, partition) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Who asks.
    pub reader: ReaderId,
    /// The partition.
    pub partition: u32,
    /// The consumer group, lower-cased (Event Hubs compares group names case-insensitively).
    pub consumer_group: String,
    /// The owner level (`com.microsoft:epoch`), if the reader gave one.
    pub epoch: Option<i64>,
}

/// The owner's answer to a [`Claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAnswer {
    /// The reader may read.
    Granted,
    /// A reader with this higher epoch holds the pair.
    HigherEpochHolds {
        /// The holder's epoch.
        epoch: i64,
    },
    /// Too many readers share the pair already.
    TooManyReaders,
}

/// What a claim did: the answer, and the readers it took the pair from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimOutcome {
    /// The answer for the claiming reader.
    pub answer: ClaimAnswer,
    /// Readers to detach with `amqp:link:stolen`; they are no longer in the table.
    pub stolen: Vec<ReaderId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    reader: ReaderId,
    epoch: Option<i64>,
}

/// The owner shard's record of the readers of its partitions.
///
/// # Invariants
/// - A reader appears at most once, under the pair it claimed.
/// - Within a pair, either no holder has an epoch (at most [`READERS_PER_GROUP_MAX`] of them),
///   or there is exactly one holder and it has an epoch.
/// - `interest[partition][shard]` is the number of holders of that partition on that shard.
#[derive(Debug, Default)]
pub struct OwnerTable {
    holders: HashMap<(u32, String), Vec<Holder>>,
    interest: HashMap<u32, Vec<u32>>,
}

impl OwnerTable {
    /// Decides a claim and records the reader when it is granted.
    pub fn claim(&mut self, claim: Claim) -> ClaimOutcome {
        let key = (claim.partition, claim.consumer_group);
        let holders = self.holders.entry(key.clone()).or_default();
        let highest = holders.iter().filter_map(|holder| holder.epoch).max();
        let refused = |answer| ClaimOutcome {
            answer,
            stolen: Vec::new(),
        };
        let stolen: Vec<ReaderId> = match (claim.epoch, highest) {
            (None, Some(epoch)) => return refused(ClaimAnswer::HigherEpochHolds { epoch }),
            (Some(mine), Some(epoch)) if epoch > mine => {
                return refused(ClaimAnswer::HigherEpochHolds { epoch });
            }
            (None, None) => {
                if holders.len() >= READERS_PER_GROUP_MAX {
                    return refused(ClaimAnswer::TooManyReaders);
                }
                Vec::new()
            }
            // An epoch at or above every holder's takes the pair from all of them.
            (Some(_), _) => holders.drain(..).map(|holder| holder.reader).collect(),
        };
        holders.push(Holder {
            reader: claim.reader,
            epoch: claim.epoch,
        });
        assert!(
            holders.len() == 1 || holders.iter().all(|holder| holder.epoch.is_none()),
            "a pair with an owner level has one holder"
        );
        self.count(claim.partition, claim.reader.shard, 1);
        for reader in &stolen {
            self.count(claim.partition, reader.shard, -1);
        }
        ClaimOutcome {
            answer: ClaimAnswer::Granted,
            stolen,
        }
    }

    /// Forgets a reader that ended; `false` if it was not holding the pair (it was stolen, or
    /// refused).
    pub fn release(&mut self, reader: ReaderId, partition: u32, consumer_group: &str) -> bool {
        let key = (partition, consumer_group.to_owned());
        let Some(holders) = self.holders.get_mut(&key) else {
            return false;
        };
        let Some(at) = holders.iter().position(|holder| holder.reader == reader) else {
            return false;
        };
        holders.swap_remove(at);
        if holders.is_empty() {
            self.holders.remove(&key);
        }
        self.count(partition, reader.shard, -1);
        true
    }

    /// Shards other than `except` holding at least one reader of `partition`.
    pub fn interested_shards(&self, partition: u32, except: usize) -> impl Iterator<Item = usize> {
        self.interest
            .get(&partition)
            .into_iter()
            .flat_map(|counts| counts.iter().enumerate())
            .filter(move |(shard, count)| **count > 0 && *shard != except)
            .map(|(shard, _)| shard)
    }

    /// Readers holding pairs, over all partitions.
    pub fn reader_count(&self) -> usize {
        self.holders.values().map(Vec::len).sum()
    }

    fn count(&mut self, partition: u32, shard: usize, delta: i32) {
        let counts = self.interest.entry(partition).or_default();
        if counts.len() <= shard {
            counts.resize(shard + 1, 0);
        }
        let count = &mut counts[shard];
        assert!(
            delta > 0 || *count > 0,
            "interest released more often than claimed"
        );
        *count = count.saturating_add_signed(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(shard: usize, serial: u64) -> ReaderId {
        ReaderId { shard, serial }
    }

    fn claim(reader: ReaderId, epoch: Option<i64>) -> Claim {
        Claim {
            reader,
            partition: 3,
            consumer_group: "$default".into(),
            epoch,
        }
    }

    #[test]
    fn readers_without_epoch_share_a_partition_up_to_the_limit() {
        let mut table = OwnerTable::default();
        for serial in 0..READERS_PER_GROUP_MAX as u64 {
            let outcome = table.claim(claim(reader(0, serial), None));
            assert_eq!(outcome.answer, ClaimAnswer::Granted);
            assert!(outcome.stolen.is_empty());
        }
        let outcome = table.claim(claim(reader(1, 99), None));
        assert_eq!(outcome.answer, ClaimAnswer::TooManyReaders);
        assert_eq!(table.reader_count(), READERS_PER_GROUP_MAX);
    }

    #[test]
    fn an_epoch_takes_the_partition_from_readers_without_one_and_from_lower_epochs() {
        let mut table = OwnerTable::default();
        table.claim(claim(reader(0, 1), None));
        table.claim(claim(reader(1, 2), None));
        let outcome = table.claim(claim(reader(1, 3), Some(5)));
        assert_eq!(outcome.answer, ClaimAnswer::Granted);
        assert_eq!(outcome.stolen, vec![reader(0, 1), reader(1, 2)]);
        assert_eq!(table.interested_shards(3, 9).collect::<Vec<_>>(), vec![1]);

        let outcome = table.claim(claim(reader(0, 4), Some(7)));
        assert_eq!(outcome.stolen, vec![reader(1, 3)]);
        assert_eq!(table.interested_shards(3, 9).collect::<Vec<_>>(), vec![0]);
        // An equal epoch takes over too, as in Event Hubs.
        let outcome = table.claim(claim(reader(1, 5), Some(7)));
        assert_eq!(outcome.stolen, vec![reader(0, 4)]);
    }

    #[test]
    fn lower_epochs_and_readers_without_epoch_are_refused_while_an_epoch_holds() {
        let mut table = OwnerTable::default();
        table.claim(claim(reader(0, 1), Some(10)));
        assert_eq!(
            table.claim(claim(reader(0, 2), Some(9))).answer,
            ClaimAnswer::HigherEpochHolds { epoch: 10 }
        );
        assert_eq!(
            table.claim(claim(reader(0, 3), None)).answer,
            ClaimAnswer::HigherEpochHolds { epoch: 10 }
        );
        assert_eq!(table.reader_count(), 1);
    }

    #[test]
    fn consumer_groups_and_partitions_are_independent() {
        let mut table = OwnerTable::default();
        table.claim(claim(reader(0, 1), Some(10)));
        let mut other_group = claim(reader(0, 2), None);
        other_group.consumer_group = "analytics".into();
        assert_eq!(table.claim(other_group).answer, ClaimAnswer::Granted);
        let mut other_partition = claim(reader(0, 3), None);
        other_partition.partition = 4;
        assert_eq!(table.claim(other_partition).answer, ClaimAnswer::Granted);
    }

    #[test]
    fn release_forgets_the_reader_once_and_interest_follows() {
        let mut table = OwnerTable::default();
        table.claim(claim(reader(2, 1), None));
        assert_eq!(table.interested_shards(3, 0).collect::<Vec<_>>(), vec![2]);
        assert!(table.release(reader(2, 1), 3, "$default"));
        assert!(!table.release(reader(2, 1), 3, "$default"));
        assert_eq!(table.interested_shards(3, 0).count(), 0);
        // A stolen reader's late release changes nothing.
        table.claim(claim(reader(1, 7), None));
        table.claim(claim(reader(2, 8), Some(1)));
        assert!(!table.release(reader(1, 7), 3, "$default"));
        assert_eq!(table.interested_shards(3, 0).collect::<Vec<_>>(), vec![2]);
    }
}
