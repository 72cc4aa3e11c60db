//! The hub resource and its shared access policies (checklist H2, S1).

use serde::{Deserialize, Serialize};

/// A permission a shared access policy grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read identities and statistics.
    RegistryRead,
    /// Create, update and delete identities (implies read).
    RegistryWrite,
    /// Back-end operations: C2D, methods, twins, the Event Hubs-compatible endpoint.
    ServiceConnect,
    /// Act as any device (gateways, protocol translators).
    DeviceConnect,
}

/// The set of permissions of one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rights {
    /// RegistryRead.
    pub registry_read: bool,
    /// RegistryWrite (IoT Hub's portal calls it RegistryReadWrite).
    pub registry_write: bool,
    /// ServiceConnect.
    pub service_connect: bool,
    /// DeviceConnect.
    pub device_connect: bool,
}

impl Rights {
    /// Whether these rights allow `permission`.
    pub fn allow(self, permission: Permission) -> bool {
        match permission {
            Permission::RegistryRead => self.registry_read || self.registry_write,
            Permission::RegistryWrite => self.registry_write,
            Permission::ServiceConnect => self.service_connect,
            Permission::DeviceConnect => self.device_connect,
        }
    }

    /// ARM's spelling, e.g. `RegistryRead, RegistryWrite, ServiceConnect`.
    pub fn describe(self) -> String {
        let mut names = Vec::new();
        if self.registry_read {
            names.push("RegistryRead");
        }
        if self.registry_write {
            names.push("RegistryWrite");
        }
        if self.service_connect {
            names.push("ServiceConnect");
        }
        if self.device_connect {
            names.push("DeviceConnect");
        }
        names.join(", ")
    }
}

/// A shared access policy: a name, two keys and rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// `skn` in tokens.
    pub name: String,
    /// Primary key, base64.
    pub primary_key: String,
    /// Secondary key, base64.
    pub secondary_key: String,
    /// What it may do.
    pub rights: Rights,
}

/// A hub as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubRecord {
    /// The hub name; also the Event Hubs-compatible name (`EntityPath`).
    pub name: String,
    /// Partitions of the built-in `events` endpoint; fixed at creation.
    pub partition_count: u32,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// Shared access policies.
    pub policies: Vec<Policy>,
    /// Consumer groups of the built-in `events` endpoint; always holds `$Default`.
    #[serde(default = "default_consumer_groups")]
    pub consumer_groups: Vec<String>,
}

/// The consumer group every Event Hubs-compatible endpoint has.
pub const DEFAULT_CONSUMER_GROUP: &str = "$Default";

/// Consumer groups a hub may have (IoT Hub allows 20 on its standard tiers).
pub const CONSUMER_GROUPS_MAX: usize = 32;

/// The consumer groups of a new hub.
pub fn default_consumer_groups() -> Vec<String> {
    vec![DEFAULT_CONSUMER_GROUP.to_owned()]
}

/// Checks a consumer group name: 1 to 50 letters, digits, `.`, `-` or `_`, as Event Hubs.
pub fn validate_consumer_group(name: &str) -> Result<(), String> {
    let valid = (1..=50).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "A consumer group name has 1 to 50 letters, digits, '.', '-' or '_'; got {name:?}."
        ))
    }
}

impl HubRecord {
    /// Looks a policy up by name (case-sensitive, as IoT Hub).
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|policy| policy.name == name)
    }
}

/// The default policies of a new hub, as IoT Hub creates them.
pub fn default_policies(mut new_key: impl FnMut() -> String) -> Vec<Policy> {
    let rights = |registry_read, registry_write, service_connect, device_connect| Rights {
        registry_read,
        registry_write,
        service_connect,
        device_connect,
    };
    [
        ("iothubowner", rights(true, true, true, true)),
        ("service", rights(false, false, true, false)),
        ("device", rights(false, false, false, true)),
        ("registryRead", rights(true, false, false, false)),
        ("registryReadWrite", rights(true, true, false, false)),
    ]
    .into_iter()
    .map(|(name, rights)| Policy {
        name: name.to_owned(),
        primary_key: new_key(),
        secondary_key: new_key(),
        rights,
    })
    .collect()
}
