//! Each shard's copy of the control plane's state: identities and policies, kept current by
//! applying the versioned messages of `schemas::plane` in order.
//!
//! A per-core copy (no shared map, no lock): lookups on the connect path touch only this
//! shard's memory. Keys are looked up by `&str` without allocating.

use std::collections::HashMap;
use std::sync::Arc;

use schemas::plane::{ControlMessage, HubSnapshot, Identity, IdentityKey, PolicyGrant};

#[derive(Debug, Default)]
struct DeviceEntry {
    device: Option<Identity>,
    modules: HashMap<String, Identity>,
}

/// What applying a message changed, for the shard to act on (closing connections of
/// identities that were disabled or deleted).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Identities that may no longer connect: deleted, disabled, or re-keyed.
    pub revoked: Vec<IdentityKey>,
}

/// A shard's copy of one hub's identities and policies.
#[derive(Debug, Default)]
pub struct IdentityCache {
    version: u64,
    hub_name: String,
    partition_count: u32,
    devices: HashMap<String, DeviceEntry>,
    policies: Vec<PolicyGrant>,
    consumer_groups: Vec<String>,
}

impl IdentityCache {
    /// The version of the last message applied; 0 before the first snapshot.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The hub's name.
    pub fn hub_name(&self) -> &str {
        &self.hub_name
    }

    /// Partitions of the hub's `events` endpoint.
    pub fn partition_count(&self) -> u32 {
        self.partition_count
    }

    /// Looks an identity up.
    pub fn identity(&self, device_id: &str, module_id: Option<&str>) -> Option<&Identity> {
        let entry = self.devices.get(device_id)?;
        match module_id {
            None => entry.device.as_ref(),
            Some(module_id) => entry.modules.get(module_id),
        }
    }

    /// Looks a shared access policy up by name.
    pub fn policy(&self, name: &str) -> Option<&PolicyGrant> {
        self.policies.iter().find(|policy| policy.name == name)
    }

    /// Every policy.
    pub fn policies(&self) -> &[PolicyGrant] {
        &self.policies
    }

    /// Whether `name` is a consumer group of the built-in endpoint (case-insensitive, as
    /// Event Hubs).
    pub fn has_consumer_group(&self, name: &str) -> bool {
        self.consumer_groups
            .iter()
            .any(|group| group.eq_ignore_ascii_case(name))
    }

    /// Applies one message. A message older than the cache is ignored; a snapshot replaces
    /// everything. Returns what the shard must act on.
    pub fn apply(&mut self, message: &ControlMessage) -> Applied {
        match message {
            ControlMessage::Snapshot(snapshot) => self.replace(snapshot),
            ControlMessage::UpsertIdentity { version, identity } => {
                if *version <= self.version {
                    return Applied::default();
                }
                self.version = *version;
                let revoked = self.upsert(identity);
                Applied {
                    revoked: revoked.into_iter().collect(),
                }
            }
            ControlMessage::RemoveIdentity { version, key } => {
                if *version <= self.version {
                    return Applied::default();
                }
                self.version = *version;
                Applied {
                    revoked: self.remove(key),
                }
            }
            ControlMessage::ConsumerGroups { version, groups } => {
                if *version > self.version {
                    self.version = *version;
                    self.consumer_groups.clone_from(groups);
                }
                Applied::default()
            }
        }
    }

    fn replace(&mut self, snapshot: &Arc<HubSnapshot>) -> Applied {
        let mut fresh = Self {
            version: snapshot.version,
            hub_name: snapshot.hub_name.clone(),
            partition_count: snapshot.partition_count,
            devices: HashMap::with_capacity(snapshot.identities.len()),
            policies: snapshot.policies.clone(),
            consumer_groups: snapshot.consumer_groups.clone(),
        };
        for identity in &snapshot.identities {
            fresh.upsert(identity);
        }
        // Anything that existed before and is gone or changed now must reconnect.
        let mut revoked = Vec::new();
        for (device_id, entry) in &self.devices {
            let keys = entry
                .device
                .iter()
                .chain(entry.modules.values())
                .map(|identity| (identity, &identity.key));
            for (old, key) in keys {
                let now = fresh.identity(device_id, key.module_id.as_deref());
                if now.is_none_or(|now| !still_admits(old, now)) {
                    revoked.push(key.clone());
                }
            }
        }
        *self = fresh;
        Applied { revoked }
    }

    fn upsert(&mut self, identity: &Identity) -> Option<IdentityKey> {
        let entry = self
            .devices
            .entry(identity.key.device_id.clone())
            .or_default();
        let slot = match &identity.key.module_id {
            None => &mut entry.device,
            Some(module_id) => {
                let previous = entry.modules.insert(module_id.clone(), identity.clone());
                return previous
                    .filter(|previous| !still_admits(previous, identity))
                    .map(|previous| previous.key);
            }
        };
        let previous = slot.replace(identity.clone());
        previous
            .filter(|previous| !still_admits(previous, identity))
            .map(|previous| previous.key)
    }

    fn remove(&mut self, key: &IdentityKey) -> Vec<IdentityKey> {
        let Some(entry) = self.devices.get_mut(&key.device_id) else {
            return Vec::new();
        };
        match &key.module_id {
            Some(module_id) => entry
                .modules
                .remove(module_id)
                .map(|identity| vec![identity.key])
                .unwrap_or_default(),
            None => {
                let entry = self
                    .devices
                    .remove(&key.device_id)
                    .expect("looked up just above");
                entry
                    .device
                    .into_iter()
                    .chain(entry.modules.into_values())
                    .map(|identity| identity.key)
                    .collect()
            }
        }
    }
}

/// Whether a connection authenticated as `old` may stay connected as `new`: still enabled,
/// same generation, same credentials.
fn still_admits(old: &Identity, new: &Identity) -> bool {
    new.enabled && old.generation_id == new.generation_id && old.credentials == new.credentials
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::plane::Credentials;

    fn identity(device: &str, module: Option<&str>, enabled: bool) -> Identity {
        Identity {
            key: IdentityKey {
                device_id: device.into(),
                module_id: module.map(Into::into),
            },
            enabled,
            generation_id: "1".into(),
            credentials: Credentials::Sas {
                primary: vec![1; 32],
                secondary: vec![2; 32],
            },
        }
    }

    fn snapshot(version: u64, identities: Vec<Identity>) -> ControlMessage {
        ControlMessage::Snapshot(Arc::new(HubSnapshot {
            version,
            hub_name: "hub".into(),
            partition_count: 4,
            identities,
            policies: vec![],
            consumer_groups: vec!["$Default".into()],
        }))
    }

    #[test]
    fn deltas_after_a_snapshot_update_lookups_and_report_revocations() {
        let mut cache = IdentityCache::default();
        cache.apply(&snapshot(
            5,
            vec![identity("d1", None, true), identity("d1", Some("m1"), true)],
        ));
        assert!(cache.identity("d1", Some("m1")).is_some());
        assert!(cache.has_consumer_group("$default"));

        let applied = cache.apply(&ControlMessage::UpsertIdentity {
            version: 6,
            identity: identity("d1", None, false),
        });
        assert_eq!(applied.revoked, vec![identity("d1", None, true).key]);
        assert!(!cache.identity("d1", None).unwrap().enabled);

        let stale = cache.apply(&ControlMessage::UpsertIdentity {
            version: 6,
            identity: identity("d1", None, true),
        });
        assert_eq!(stale, Applied::default());
        assert!(
            !cache.identity("d1", None).unwrap().enabled,
            "stale delta ignored"
        );

        let applied = cache.apply(&ControlMessage::RemoveIdentity {
            version: 7,
            key: identity("d1", None, true).key,
        });
        assert_eq!(applied.revoked.len(), 2, "the device and its module");
        assert!(cache.identity("d1", Some("m1")).is_none());
    }

    #[test]
    fn a_new_snapshot_revokes_what_disappeared_or_changed() {
        let mut cache = IdentityCache::default();
        cache.apply(&snapshot(
            1,
            vec![identity("a", None, true), identity("b", None, true)],
        ));
        let mut rekeyed = identity("b", None, true);
        rekeyed.credentials = Credentials::None;
        let applied = cache.apply(&snapshot(9, vec![rekeyed]));
        let mut revoked: Vec<_> = applied.revoked.into_iter().map(|k| k.device_id).collect();
        revoked.sort();
        assert_eq!(revoked, ["a", "b"]);
        assert_eq!(cache.version(), 9);
    }
}
