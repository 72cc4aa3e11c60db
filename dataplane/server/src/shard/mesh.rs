//! Typed messages between shards, carried by glommio's channel mesh (bounded SPSC channels,
//! one per ordered pair of shards).
//!
//! ```text
//!  reader's shard                                   partition's owner shard
//!  ──────────────                                   ───────────────────────
//!  Directory (at start, every shard to every other: its partitions' readers)
//!  Claim {reader, partition, group, epoch} ───────▶ epoch rules (eventhub::ownership)
//!  ◀─────────────────────── ClaimAnswered {serial, answer}
//!  ◀─────────────────────── Steal {serial}          (a higher epoch took the pair)
//!  Release {reader, partition, group} ────────────▶ forget the reader
//!  ◀─────────────────────── Committed {partitions}  (after a flush; one per flush at most)
//! ```

use std::os::fd::OwnedFd;

use dataplane_log::PartitionReader;
use dataplane_wire::bytes::BytesMut;
use dataplane_wire::mqtt::Connect;
use rustls::ServerConnection;

use crate::auth::Authenticated;
use crate::eventhub::ownership::{Claim, ClaimAnswer, ReaderId};

/// Capacity of each shard-to-shard channel. A hand-over is one message per connection, so
/// this bounds how many connections can be in flight to one shard at once; senders wait
/// beyond it (backpressure on accept, never a drop).
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// A message from one shard to another.
#[derive(Debug)]
pub enum ShardMessage {
    /// An authenticated MQTT connection moving to its home shard.
    Adopt(Box<Handoff>),
    /// At start: read handles on the partitions the sending shard owns, so that readers on
    /// every shard can read them in place.
    Directory(Vec<(u32, PartitionReader)>),
    /// A partition reader on the sending shard asks the owner for (consumer group, partition).
    Claim(Claim),
    /// The owner's answer to a [`ShardMessage::Claim`], for the reader with this serial.
    ClaimAnswered {
        /// The reader's serial on the receiving shard.
        serial: u64,
        /// The answer.
        answer: ClaimAnswer,
    },
    /// A reader that claimed a pair ended; the owner forgets it.
    Release {
        /// The reader.
        reader: ReaderId,
        /// The partition it claimed.
        partition: u32,
        /// The consumer group it claimed, lower-cased.
        consumer_group: String,
    },
    /// A reader with a higher owner level took the pair from the reader with this serial.
    Steal {
        /// The reader's serial on the receiving shard.
        serial: u64,
    },
    /// Partitions owned by the sender committed records (bit `p` is partition `p`); readers of
    /// them on the receiving shard read on.
    Committed {
        /// One bit per partition.
        partitions: u128,
    },
}

/// Everything an MQTT connection is, between CONNECT and CONNACK: the socket, the TLS state,
/// the bytes read but not yet handled, and who it is.
pub struct Handoff {
    /// The socket (a duplicate of the accepting shard's descriptor, which that shard closed).
    pub socket: OwnedFd,
    /// The TLS state after the handshake; `None` on a plain-TCP listener.
    pub tls: Option<ServerConnection>,
    /// Socket bytes read but not yet fed to TLS.
    pub raw_in: Vec<u8>,
    /// Plaintext after the CONNECT packet (a pipelined first PUBLISH, say).
    pub plaintext: BytesMut,
    /// The CONNECT packet.
    pub connect: Connect,
    /// Its authenticated identity.
    pub authenticated: Authenticated,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Handoff")
            .field("client_id", &self.connect.client_id)
            .finish_non_exhaustive()
    }
}
