//! The thread-per-core data plane: shards, listeners, sessions and ingest.
//!
//! This is the only crate that knows about cores and glommio. Each shard is one pinned
//! executor that owns its connections, sessions and partitions ([`shard`]); protocol logic
//! lives in the sans-IO crates (`dataplane-wire`, `dataplane-amqp`) and storage in the
//! runtime-free `dataplane-log`.
//!
//! # Invariants worth naming
//! - Shard code takes no lock: state is `Rc`/`RefCell`/`Cell`; what crosses cores is a typed
//!   message on a bounded channel, a control-plane message, or a partition reader.
//! - A PUBACK leaves only after the records it acknowledges are committed (after `fdatasync`
//!   in `durable` mode), in the order the PUBLISHes arrived.
//! - A device's session runs on the shard that owns its partition (its home), so its appends
//!   never cross cores.
//! - An Event Hubs reader sends only committed records, and learns of new ones from its
//!   partition's commit (a direct wake-up, or one mesh notice per flush), never by polling.
//! - Every bound is enforced by not reading the socket: nothing acknowledged is ever dropped.

pub mod auth;
pub mod config;
pub mod eventhub;
pub mod ingest;
pub mod listener;
pub mod session;
pub mod shard;
pub mod sync;

pub use config::{DataPlaneConfig, Limits, ListenerConfig};
pub use shard::pool::{DataPlane, ShardListeners, StartError};

/// Binds every listener once per shard (`SO_REUSEPORT`), so that a busy or privileged port
/// fails before anything starts.
/// A failure names the address that could not be bound.
pub fn bind_listeners(
    config: &DataPlaneConfig,
) -> Result<Vec<ShardListeners>, (std::net::SocketAddr, std::io::Error)> {
    for listener in config.mqtt.iter().chain(&config.amqp) {
        listener::check_port_free(listener.address).map_err(|error| (listener.address, error))?;
    }
    let bind = |listeners: &[ListenerConfig]| {
        listeners
            .iter()
            .map(|listener| {
                listener::bind_reuseport(listener.address)
                    .map(|socket| (socket, listener.tls.clone()))
                    .map_err(|error| (listener.address, error))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut shards = Vec::with_capacity(config.shard_count);
    for _ in 0..config.shard_count {
        shards.push(ShardListeners {
            mqtt: bind(&config.mqtt)?,
            amqp: bind(&config.amqp)?,
        });
    }
    Ok(shards)
}

/// The CPUs this process may run on (its affinity mask), in order; shards are pinned to them.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, usize::from)).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|cpu| libc::CPU_ISSET(*cpu, &set))
            .collect()
    }
}
