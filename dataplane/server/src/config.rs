//! The data plane's configuration, resolved by the binary before any shard starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dataplane_log::{AckMode, PartitionConfig};

/// A listener's address and, unless it is a plain-TCP listener, its TLS configuration.
#[derive(Clone)]
pub struct ListenerConfig {
    /// Where to listen.
    pub address: SocketAddr,
    /// `None` for plain TCP (only behind a TLS-terminating proxy).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ListenerConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ListenerConfig")
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Bounds that keep one connection or one shard from taking the machine.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// QoS 1 messages a connection may have waiting for their PUBACK; at the bound the
    /// session stops reading its socket until flushes catch up.
    pub inflight_per_connection: usize,
    /// The same bound for all of a shard's connections together.
    pub inflight_per_shard: usize,
    /// A connection must finish TLS and send CONNECT within this time.
    pub connect_timeout: Duration,
    /// Largest MQTT packet accepted, fixed header included.
    pub mqtt_packet_bytes_max: usize,
    /// Connections one shard serves at once; more are closed right after accept.
    pub connections_per_shard: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            inflight_per_connection: 256,
            inflight_per_shard: 65_536,
            connect_timeout: Duration::from_secs(10),
            mqtt_packet_bytes_max: dataplane_wire::mqtt::PACKET_BYTES_MAX_DEFAULT,
            connections_per_shard: 200_000,
        }
    }
}

/// Everything the data plane needs to start.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Shards (pinned executors); at least 1.
    pub shard_count: usize,
    /// Pin shard `n` to CPU `cpus[n % cpus.len()]`; empty: no pinning.
    pub cpus: Vec<usize>,
    /// How long an idle shard spins before it sleeps. Zero sleeps at once; spinning saves the
    /// cost of waking a sleeping CPU (large on virtual machines) at the price of CPU time.
    pub spin_before_park: Duration,
    /// Partition logs live under `{data_dir}/hubs/{hub}/events/{partition}`.
    pub data_dir: PathBuf,
    /// Names devices may put in their token's resource (the certificate's names).
    pub accepted_hosts: Vec<String>,
    /// MQTT over TLS (8883), and optionally a plain-TCP MQTT listener.
    pub mqtt: Vec<ListenerConfig>,
    /// AMQP 1.0 over TLS (5671), and optionally a plain-TCP AMQP listener.
    pub amqp: Vec<ListenerConfig>,
    /// When the hub was created (ms since the Unix epoch), reported as the event hub's
    /// `created_at`.
    pub hub_created_ms: i64,
    /// How partition logs are written and when acknowledgements go out.
    pub log: PartitionConfig,
    /// Bounds.
    pub limits: Limits,
    /// How often each partition's retention is enforced.
    pub retention_interval: Duration,
    /// Where each shard records the control-plane version it applied (so registry writes can
    /// wait for the data plane); `None` when nobody waits.
    pub applied_versions: Option<Arc<schemas::plane::AppliedVersions>>,
}

impl DataPlaneConfig {
    /// Whether acknowledgements wait for `fdatasync`.
    pub fn durable(&self) -> bool {
        self.log.ack == AckMode::Durable
    }
}
