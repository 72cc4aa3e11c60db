//! The control plane: hubs, shared access policies, the identity registry, the IoT Hub service
//! REST API, and the store behind them.
//!
//! Ordinary multi-threaded async (tokio, axum) is fine here: nothing in this crate is on the
//! per-message path. It must never depend on the data plane's crates that know about cores
//! (`dataplane`); it talks to shards only through `schemas::plane` messages.
//!
//! # Invariants worth naming
//! - A REST write either commits whole or changes nothing; the etag changes on every write.
//! - The data plane learns of every committed identity change, in store order per identity
//!   ([`sync::Publisher`] re-reads after the write, under one lock).
//! - Keys are generated from the OS's CSPRNG and are never logged.

pub mod api;
pub mod client;
pub mod registry;
pub mod server;
pub mod store;
pub mod sync;
pub mod tls;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use registry::hub::{HubRecord, default_policies};
use store::{SqliteStore, Store, StoreError};

/// What the control plane needs to start.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// Where the store file lives.
    pub data_dir: PathBuf,
    /// The default hub's name.
    pub hub_name: String,
    /// Partitions of the default hub's `events` endpoint, used when the hub is created.
    pub partition_count: u32,
    /// Names clients may address the hub by; the first is the canonical host name.
    pub accepted_hosts: Vec<String>,
    /// The Event Hubs-compatible endpoint as clients dial it, `sb://{host}/`.
    pub event_hub_endpoint: String,
    /// Retention of the built-in endpoint, in days.
    pub retention_days: u32,
    /// What the data plane's shards have applied, when a data plane runs in this process.
    pub applied: Option<Arc<schemas::plane::AppliedVersions>>,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlPlaneError {
    /// The store could not be opened or read.
    #[error("the registry store: {0}")]
    Store(#[from] StoreError),
    /// The data directory could not be created.
    #[error("{path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The running control plane's shared state.
pub struct ControlPlane {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The default hub as it was at start.
    pub hub: HubRecord,
    /// Publishes registry changes to the data plane.
    pub publisher: Arc<sync::Publisher>,
    api_state: Arc<api::ApiState>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ControlPlane")
            .field("hub", &self.hub.name)
            .finish_non_exhaustive()
    }
}

/// The store file's name inside the data directory.
pub const STORE_FILE: &str = "registry.sqlite";

impl ControlPlane {
    /// Opens the store, creates the default hub with its policies on first start, and loads
    /// the identities the data plane will subscribe to.
    pub fn open(config: &ControlPlaneConfig) -> Result<Self, ControlPlaneError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ControlPlaneError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data_dir.join(STORE_FILE))?);
        let hub = if let Some(hub) = store.hub(&config.hub_name)? {
            hub
        } else {
            let hub = HubRecord {
                name: config.hub_name.clone(),
                partition_count: config.partition_count,
                created_ms: now_ms(),
                policies: default_policies(registry::keys::new_key),
                consumer_groups: registry::hub::default_consumer_groups(),
            };
            store.create_hub(&hub)?;
            hub
        };
        store.reset_connections(&hub.name, now_ms())?;
        let publisher = Arc::new(sync::Publisher::load(Arc::clone(&store), hub.clone())?);
        let api_state = Arc::new(api::ApiState {
            store: Arc::clone(&store),
            hub: RwLock::new(Arc::new(hub.clone())),
            accepted_hosts: config.accepted_hosts.clone(),
            publisher: Arc::clone(&publisher),
            hub_writes: std::sync::Mutex::new(()),
            event_hub_endpoint: config.event_hub_endpoint.clone(),
            retention_days: config.retention_days,
            applied: config.applied.clone(),
        });
        Ok(Self {
            store,
            hub,
            publisher,
            api_state,
        })
    }

    /// The REST API's router.
    pub fn router(&self) -> axum::Router {
        api::router(Arc::clone(&self.api_state))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
