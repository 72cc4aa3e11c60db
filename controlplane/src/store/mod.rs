//! Persistence behind a trait, so that the embedded SQLite store can be swapped for a shared
//! one (PostgreSQL) when several nodes run one hub.
//!
//! Every write method is atomic: it either applies whole or leaves the store unchanged, and the
//! precondition is checked in the same transaction as the write. Methods are synchronous; the
//! async API calls them on a blocking thread.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::registry::hub::HubRecord;
use crate::registry::model::{DeviceRecord, ModuleRecord, RuntimeState};

/// What a write requires of the existing record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Create: the record must not exist.
    MustNotExist,
    /// Update or delete with `If-Match: *`: the record must exist.
    MustExist,
    /// Update or delete with `If-Match: "etag"`: the record must exist with this etag.
    IfMatch(String),
}

impl Precondition {
    /// Create-or-update without an etag: update a record that exists, create one that does not.
    pub fn create_or_update(exists: bool) -> Self {
        if exists {
            Self::MustExist
        } else {
            Self::MustNotExist
        }
    }
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record does not exist.
    #[error("not found")]
    NotFound,
    /// The record exists and the write required that it did not.
    #[error("already exists")]
    AlreadyExists,
    /// The record's etag differs from the one required.
    #[error("the etag does not match")]
    PreconditionFailed,
    /// The backend failed; nothing was written.
    #[error("store: {0}")]
    Backend(String),
}

/// Store result.
pub type StoreResult<T> = Result<T, StoreError>;

/// Counts for `GET /statistics/devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceCounts {
    /// All devices.
    pub total: u64,
    /// Enabled devices.
    pub enabled: u64,
    /// Disabled devices.
    pub disabled: u64,
}

/// One connection-state change reported by the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeUpdate {
    /// Device id.
    pub device_id: String,
    /// Module id, if the connection was a module's.
    pub module_id: Option<String>,
    /// New connection state, when it changed.
    pub connected: Option<bool>,
    /// When it changed, ms since the Unix epoch.
    pub changed_ms: i64,
    /// Last activity, ms since the Unix epoch.
    pub last_activity_ms: Option<i64>,
}

/// The control plane's persistent state.
pub trait Store: Send + Sync + 'static {
    /// Reads a hub and its policies.
    fn hub(&self, name: &str) -> StoreResult<Option<HubRecord>>;
    /// Creates a hub; fails with `AlreadyExists` if it is there.
    fn create_hub(&self, hub: &HubRecord) -> StoreResult<()>;
    /// Replaces a hub's record (policies, consumer groups); `NotFound` if it is not there.
    fn update_hub(&self, hub: &HubRecord) -> StoreResult<()>;

    /// Reads one device with its runtime state.
    fn device(
        &self,
        hub: &str,
        device_id: &str,
    ) -> StoreResult<Option<(DeviceRecord, RuntimeState)>>;
    /// Lists up to `limit` devices, ordered by id.
    fn devices(&self, hub: &str, limit: usize) -> StoreResult<Vec<(DeviceRecord, RuntimeState)>>;
    /// Creates or replaces a device under `precondition`.
    fn put_device(
        &self,
        hub: &str,
        device: &DeviceRecord,
        precondition: &Precondition,
    ) -> StoreResult<()>;
    /// Deletes a device and its modules under `precondition`; returns what was deleted.
    fn delete_device(
        &self,
        hub: &str,
        device_id: &str,
        precondition: &Precondition,
    ) -> StoreResult<(DeviceRecord, Vec<ModuleRecord>)>;
    /// Counts devices by status.
    fn device_counts(&self, hub: &str) -> StoreResult<DeviceCounts>;

    /// Reads one module with its runtime state.
    fn module(
        &self,
        hub: &str,
        device_id: &str,
        module_id: &str,
    ) -> StoreResult<Option<(ModuleRecord, RuntimeState)>>;
    /// Lists a device's modules; `NotFound` if the device does not exist.
    fn modules(&self, hub: &str, device_id: &str)
    -> StoreResult<Vec<(ModuleRecord, RuntimeState)>>;
    /// Creates or replaces a module under `precondition`; `NotFound` if its device is missing.
    fn put_module(
        &self,
        hub: &str,
        module: &ModuleRecord,
        precondition: &Precondition,
    ) -> StoreResult<()>;
    /// Deletes a module under `precondition`.
    fn delete_module(
        &self,
        hub: &str,
        device_id: &str,
        module_id: &str,
        precondition: &Precondition,
    ) -> StoreResult<ModuleRecord>;

    /// Every device and module of a hub, for the data plane's identity snapshot.
    fn identities(&self, hub: &str) -> StoreResult<(Vec<DeviceRecord>, Vec<ModuleRecord>)>;

    /// Applies a batch of runtime updates in one transaction; unknown identities are skipped.
    fn record_runtime(&self, hub: &str, updates: &[RuntimeUpdate]) -> StoreResult<()>;
    /// Marks every identity disconnected (at start: no connection survives a restart).
    fn reset_connections(&self, hub: &str, now_ms: i64) -> StoreResult<()>;
    /// Identities with a live connection.
    fn connected_count(&self, hub: &str) -> StoreResult<u64>;
}
