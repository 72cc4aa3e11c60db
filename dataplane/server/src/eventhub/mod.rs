//! The built-in Event Hubs-compatible endpoint on the shards: who may read ([`cbs`]), what the
//! hub and its partitions report ([`management`]), how a record becomes an event message
//! ([`encode`]), and how readers on any shard follow a partition owned by another
//! ([`readers`], [`ownership`]).
//!
//! The AMQP protocol itself is the sans-IO `dataplane_amqp` crate; the connection task that
//! drives it over a socket is `session::amqp`.
//!
//! # Invariants worth naming
//! - A reader sends only committed records: it reads through a [`dataplane_log::Cursor`],
//!   which never passes the committed end.
//! - A committed record reaches a waiting reader without polling: the owner's commit hook
//!   wakes local readers at once and sends other shards with readers one notice per flush.
//! - The owner shard decides every claim on its partitions, so owner-level (epoch) rules hold
//!   across shards and connections.

pub mod cbs;
pub mod encode;
pub mod management;
pub mod ownership;
pub mod readers;

use dataplane_amqp::address::StartPosition as Selector;
use dataplane_log::{Offset, SequenceNumber, StartPosition};

/// Where a cursor starts for a receiver's selector filter. Clients send offsets as opaque
/// strings; ours are byte positions, and anything that is not one (or is negative) means the
/// start of the partition. A receiver without a filter starts at the beginning too: the SDKs
/// always send one, except after a reconnect that has no offset to resume from, and reading
/// again beats losing events.
pub fn start_position(selector: Option<&Selector>) -> StartPosition {
    match selector {
        None | Some(Selector::Start) => StartPosition::Earliest,
        Some(Selector::Latest) => StartPosition::Latest,
        Some(Selector::Offset { offset, inclusive }) => match offset.parse::<u64>() {
            Ok(offset) => StartPosition::Offset {
                offset: Offset(offset),
                inclusive: *inclusive,
            },
            Err(_) => StartPosition::Earliest,
        },
        Some(Selector::SequenceNumber {
            sequence_number,
            inclusive,
        }) => {
            let first = if *inclusive {
                *sequence_number
            } else {
                sequence_number.saturating_add(1)
            };
            match u64::try_from(first) {
                Ok(first) => StartPosition::Sequence(SequenceNumber(first)),
                Err(_) => StartPosition::Earliest,
            }
        }
        Some(Selector::EnqueuedTime {
            milliseconds,
            inclusive,
        }) => {
            // Times are whole milliseconds: "after t" is "at or after t + 1".
            let first = if *inclusive {
                *milliseconds
            } else {
                milliseconds.saturating_add(1)
            };
            if first <= 0 {
                StartPosition::Earliest
            } else {
                StartPosition::EnqueuedTime(first)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_map_to_cursor_positions() {
        let parse = |text: &str| start_position(Some(&Selector::parse_selector(text).unwrap()));
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > '-1'"),
            StartPosition::Earliest
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > '@latest'"),
            StartPosition::Latest
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > '4096'"),
            StartPosition::Offset {
                offset: Offset(4096),
                inclusive: false
            }
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-sequence-number >= '5'"),
            StartPosition::Sequence(SequenceNumber(5))
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-sequence-number > '5'"),
            StartPosition::Sequence(SequenceNumber(6))
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-sequence-number > '-1'"),
            StartPosition::Sequence(SequenceNumber(0))
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-enqueued-time > '1700000000000'"),
            StartPosition::EnqueuedTime(1_700_000_000_001)
        );
        assert_eq!(start_position(None), StartPosition::Earliest);
    }
}
