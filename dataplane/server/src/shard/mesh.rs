//! Typed messages between shards, carried by glommio's channel mesh (bounded SPSC channels,
//! one per ordered pair of shards).

use std::os::fd::OwnedFd;

use dataplane_wire::bytes::BytesMut;
use dataplane_wire::mqtt::Connect;
use rustls::ServerConnection;

use crate::auth::Authenticated;

/// Capacity of each shard-to-shard channel. A hand-over is one message per connection, so
/// this bounds how many connections can be in flight to one shard at once; senders wait
/// beyond it (backpressure on accept, never a drop).
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// A message from one shard to another.
#[derive(Debug)]
pub enum ShardMessage {
    /// An authenticated MQTT connection moving to its home shard.
    Adopt(Box<Handoff>),
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
