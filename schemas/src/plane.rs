//! Messages between the control plane and the data plane.
//!
//! The control plane publishes versioned state (a full [`HubSnapshot`], then [`ControlMessage`]
//! deltas) to every shard; shards report [`DataplaneReport`]s back. These are plain data: no
//! handle, lock or pointer into either plane, so the same messages can later travel between
//! processes. Today both planes run in one process and the messages move over channels.
//!
//! # Invariants worth naming
//! - Versions increase by one per message; a shard that sees a gap asks for a new snapshot.
//! - A snapshot replaces everything a shard knew; deltas apply on top of the latest snapshot.

use std::sync::Arc;

/// Who an identity is: a device, or a module of a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityKey {
    /// Device id (case-sensitive).
    pub device_id: String,
    /// Module id, for module identities.
    pub module_id: Option<String>,
}

/// How an identity proves who it is, with keys already base64-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Symmetric keys; either signs SAS tokens.
    Sas {
        /// Decoded primary key.
        primary: Vec<u8>,
        /// Decoded secondary key.
        secondary: Vec<u8>,
    },
    /// X.509 thumbprints, upper-case hex.
    X509Thumbprint {
        /// Primary thumbprint.
        primary: String,
        /// Secondary thumbprint.
        secondary: Option<String>,
    },
    /// X.509 chaining to a registered CA.
    CertificateAuthority,
    /// No credentials of its own.
    None,
}

/// One identity as the data plane needs it to authenticate and stamp messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Device and optional module id.
    pub key: IdentityKey,
    /// Disabled identities are refused and their connections closed.
    pub enabled: bool,
    /// Stamped as `iothub-connection-auth-generation-id`.
    pub generation_id: String,
    /// How it authenticates.
    pub credentials: Credentials,
}

/// A shared access policy as the data plane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyGrant {
    /// `skn`.
    pub name: String,
    /// Primary key, as the base64 text (Event Hubs clients sign with the text's bytes).
    pub primary_key: String,
    /// Secondary key, base64 text.
    pub secondary_key: String,
    /// May act for any device.
    pub device_connect: bool,
    /// May use back-end endpoints (the Event Hubs-compatible endpoint, C2D).
    pub service_connect: bool,
}

/// Everything a shard knows about a hub, at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSnapshot {
    /// The version of the last change included.
    pub version: u64,
    /// Hub name, also the Event Hubs-compatible name.
    pub hub_name: String,
    /// Partitions of the built-in `events` endpoint.
    pub partition_count: u32,
    /// Every identity.
    pub identities: Vec<Identity>,
    /// Every shared access policy.
    pub policies: Vec<PolicyGrant>,
    /// Consumer groups of the built-in endpoint (always holds `$Default`).
    pub consumer_groups: Vec<String>,
}

/// A versioned change published by the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// Replace everything.
    Snapshot(Arc<HubSnapshot>),
    /// An identity was created or changed.
    UpsertIdentity {
        /// Version of this change.
        version: u64,
        /// The new state.
        identity: Identity,
    },
    /// An identity (and, for a device, its modules) was deleted.
    RemoveIdentity {
        /// Version of this change.
        version: u64,
        /// Who. A device key removes its modules too.
        key: IdentityKey,
    },
    /// The built-in endpoint's consumer groups changed; the full list follows.
    ConsumerGroups {
        /// Version of this change.
        version: u64,
        /// Every consumer group (always holds `$Default`).
        groups: Vec<String>,
    },
}

impl ControlMessage {
    /// The version this message brings a shard to.
    pub fn version(&self) -> u64 {
        match self {
            Self::Snapshot(snapshot) => snapshot.version,
            Self::UpsertIdentity { version, .. }
            | Self::RemoveIdentity { version, .. }
            | Self::ConsumerGroups { version, .. } => *version,
        }
    }
}

/// A change in an identity's connection, reported by the shard that holds the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionEvent {
    /// Who.
    pub key: IdentityKey,
    /// `Some(true)` connected, `Some(false)` disconnected, `None` only activity.
    pub connected: Option<bool>,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
}

/// What shards send to the control plane, batched (never one message per D2C message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataplaneReport {
    /// Connection changes and activity since the previous report.
    Connections(Vec<ConnectionEvent>),
}

/// The control-plane version each shard has applied, so that a registry write can return only
/// once every shard sees it (a device created over REST can connect as soon as the call
/// returns). Plain atomics: written by each shard after it applies messages, read by the
/// control plane; when the planes run as separate processes this becomes an acknowledgement
/// message.
#[derive(Debug)]
pub struct AppliedVersions {
    slots: Box<[std::sync::atomic::AtomicU64]>,
}

impl AppliedVersions {
    /// Slots for `shards` shards, all at version 0.
    pub fn new(shards: usize) -> Self {
        Self {
            slots: (0..shards)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    /// Records that `shard` applied everything up to `version`.
    pub fn store(&self, shard: usize, version: u64) {
        if let Some(slot) = self.slots.get(shard) {
            slot.store(version, std::sync::atomic::Ordering::Release);
        }
    }

    /// The version every shard has applied.
    pub fn min(&self) -> u64 {
        self.slots
            .iter()
            .map(|slot| slot.load(std::sync::atomic::Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }
}
