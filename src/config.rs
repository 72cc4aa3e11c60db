//! The `serve` configuration: embedded defaults, an optional TOML file, `SHOAL_*` environment
//! overrides and flags, merged in that order and validated before anything starts.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The defaults, documented key by key; the only source of default values.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// Partition count bounds: IoT Hub's own (checklist D7).
pub const PARTITION_COUNT_MIN: u32 = 2;
/// See [`PARTITION_COUNT_MIN`].
pub const PARTITION_COUNT_MAX: u32 = 128;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub listeners: ListenersSection,
    pub tls: TlsSection,
    pub hub: HubSection,
    pub dataplane: DataplaneSection,
    pub log: LogSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneSection {
    pub shards: u32,
    pub pin_cpus: bool,
    pub spin_before_park_us: u32,
    pub ack: AckSetting,
    pub inflight_per_connection: u32,
    pub inflight_per_shard: u32,
    pub connections_per_shard: u32,
    pub connect_timeout_secs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckSetting {
    Durable,
    Written,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WritePathSetting {
    Pwrite,
    Mmap,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub segment_mib: u32,
    pub retention_hours: u32,
    pub retention_mib: u64,
    pub write_path: WritePathSetting,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub data_dir: PathBuf,
    pub hostname: String,
    pub host_aliases: Vec<String>,
    pub bind_address: IpAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::struct_field_names, reason = "the names mirror the TOML keys")]
pub struct ListenersSection {
    pub https_port: u16,
    pub mqtt_port: u16,
    pub amqp_port: u16,
    pub mqtt_plain_port: u16,
    pub amqp_plain_port: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    pub name: String,
    pub partition_count: u32,
}

/// Flags that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub hostname: Option<String>,
    pub https_port: Option<u16>,
    pub mqtt_port: Option<u16>,
    pub amqp_port: Option<u16>,
}

impl Config {
    /// Merges defaults, `file`, the environment and `overrides`, then validates.
    pub fn load(
        file: Option<&std::path::Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> anyhow::Result<Self> {
        let mut table: toml::Table =
            toml::from_str(DEFAULT_CONFIG).context("the embedded default configuration")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the configuration file {}", path.display()))?;
            let user: toml::Table = toml::from_str(&text)
                .with_context(|| format!("parsing the configuration file {}", path.display()))?;
            merge(&mut table, user, &format!("{}", path.display()))?;
        }
        apply_environment(&mut table, environment)?;
        apply_overrides(&mut table, overrides);
        let config: Self = toml::Value::Table(table)
            .try_into()
            .context("the configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.log.retention_mib > u64::MAX >> 20 {
            bail!(
                "log.retention_mib is {}; it must be at most {} (0 keeps everything)",
                self.log.retention_mib,
                u64::MAX >> 20
            );
        }
        let hub = &self.hub;
        if !(PARTITION_COUNT_MIN..=PARTITION_COUNT_MAX).contains(&hub.partition_count) {
            bail!(
                "hub.partition_count is {}; it must be from {PARTITION_COUNT_MIN} to {PARTITION_COUNT_MAX}",
                hub.partition_count
            );
        }
        let name_ok = (3..=50).contains(&hub.name.len())
            && hub
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !hub.name.starts_with('-')
            && !hub.name.ends_with('-');
        if !name_ok {
            bail!(
                "hub.name {:?} must be 3 to 50 letters, digits or '-', not starting or ending with '-'",
                hub.name
            );
        }
        for name in std::iter::once(&self.server.hostname).chain(&self.server.host_aliases) {
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'));
            if !valid {
                bail!("{name:?} is not a host name or IP address");
            }
        }
        let ports = [
            ("listeners.https_port", self.listeners.https_port),
            ("listeners.mqtt_port", self.listeners.mqtt_port),
            ("listeners.amqp_port", self.listeners.amqp_port),
            ("listeners.mqtt_plain_port", self.listeners.mqtt_plain_port),
            ("listeners.amqp_plain_port", self.listeners.amqp_plain_port),
        ];
        for (index, (name, port)) in ports.iter().enumerate() {
            if *port == 0 {
                if name.ends_with("plain_port") {
                    continue;
                }
                bail!("{name} is 0; choose a port from 1 to 65535");
            }
            if let Some((other, _)) = ports[index + 1..].iter().find(|(_, p)| p == port) {
                bail!("{name} and {other} are both {port}; each listener needs its own port");
            }
        }
        let dataplane = &self.dataplane;
        for (name, value) in [
            (
                "dataplane.inflight_per_connection",
                dataplane.inflight_per_connection,
            ),
            ("dataplane.inflight_per_shard", dataplane.inflight_per_shard),
            (
                "dataplane.connections_per_shard",
                dataplane.connections_per_shard,
            ),
            (
                "dataplane.connect_timeout_secs",
                dataplane.connect_timeout_secs,
            ),
        ] {
            if value == 0 {
                bail!("{name} is 0; it must be at least 1");
            }
        }
        if dataplane.shards > 1024 {
            bail!("dataplane.shards is {}; at most 1024", dataplane.shards);
        }
        if !(1..=4095).contains(&self.log.segment_mib) {
            bail!(
                "log.segment_mib is {}; it must be from 1 to 4095",
                self.log.segment_mib
            );
        }
        let tls = &self.tls;
        if tls.cert_path.as_os_str().is_empty() != tls.key_path.as_os_str().is_empty() {
            bail!(
                "tls.cert_path and tls.key_path go together: set both, or neither for a development certificate"
            );
        }
        Ok(())
    }

    /// Every name the server answers to: the host name, the aliases, `localhost`, `127.0.0.1`.
    pub fn host_names(&self) -> Vec<String> {
        let mut names = vec![self.server.hostname.clone()];
        for name in self
            .server
            .host_aliases
            .iter()
            .map(String::as_str)
            .chain(["localhost", "127.0.0.1"])
        {
            if !names.iter().any(|known| known.eq_ignore_ascii_case(name)) {
                names.push(name.to_owned());
            }
        }
        names
    }
}

/// Lays `user` over `base`; a key that the defaults do not have is an error.
fn merge(base: &mut toml::Table, user: toml::Table, origin: &str) -> anyhow::Result<()> {
    for (section, value) in user {
        let Some(toml::Value::Table(base_section)) = base.get_mut(&section) else {
            bail!("{origin}: unknown section [{section}]");
        };
        let toml::Value::Table(user_section) = value else {
            bail!("{origin}: [{section}] must be a table");
        };
        for (key, value) in user_section {
            let Some(default) = base_section.get(&key) else {
                bail!("{origin}: unknown key {section}.{key}");
            };
            if default.type_str() != value.type_str() {
                bail!(
                    "{origin}: {section}.{key} must be a {}, not a {}",
                    default.type_str(),
                    value.type_str()
                );
            }
            base_section.insert(key, value);
        }
    }
    Ok(())
}

fn apply_environment(
    table: &mut toml::Table,
    environment: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let sections: BTreeMap<String, String> = table
        .keys()
        .map(|section| (section.to_ascii_uppercase(), section.clone()))
        .collect();
    for (name, value) in environment {
        let Some(rest) = name.strip_prefix("SHOAL_") else {
            continue;
        };
        let found = sections.iter().find_map(|(upper, section)| {
            rest.strip_prefix(upper.as_str())
                .and_then(|key| key.strip_prefix('_'))
                .map(|key| (section.clone(), key.to_ascii_lowercase()))
        });
        // Other SHOAL_* variables (SHOAL_LOG, test settings) are not configuration; a variable
        // that names a section but no key in it is a typo and stops the server.
        let Some((section, key)) = found else {
            continue;
        };
        let Some(toml::Value::Table(section_table)) = table.get_mut(&section) else {
            bail!("environment variable {name} names no configuration section");
        };
        let Some(default) = section_table.get(&key) else {
            bail!("environment variable {name}: unknown key {section}.{key}");
        };
        let parsed = match default {
            toml::Value::Integer(_) => toml::Value::Integer(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={value:?} is not a whole number"))?,
            ),
            toml::Value::Boolean(_) => toml::Value::Boolean(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={value:?} is not true or false"))?,
            ),
            toml::Value::Array(_) => toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| toml::Value::String(item.to_owned()))
                    .collect(),
            ),
            _ => toml::Value::String(value),
        };
        section_table.insert(key, parsed);
    }
    Ok(())
}

fn apply_overrides(table: &mut toml::Table, overrides: &Overrides) {
    let mut set = |section: &str, key: &str, value: toml::Value| {
        if let Some(toml::Value::Table(section)) = table.get_mut(section) {
            section.insert(key.to_owned(), value);
        }
    };
    if let Some(dir) = &overrides.data_dir {
        set(
            "server",
            "data_dir",
            toml::Value::String(dir.display().to_string()),
        );
    }
    if let Some(hostname) = &overrides.hostname {
        set("server", "hostname", toml::Value::String(hostname.clone()));
    }
    for (key, port) in [
        ("https_port", overrides.https_port),
        ("mqtt_port", overrides.mqtt_port),
        ("amqp_port", overrides.amqp_port),
    ] {
        if let Some(port) = port {
            set("listeners", key, toml::Value::Integer(i64::from(port)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let config = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.listeners.mqtt_port, 8883);
        assert_eq!(config.hub.partition_count, 4);
        assert_eq!(config.host_names(), ["localhost", "127.0.0.1"]);
    }

    #[test]
    fn file_environment_and_flags_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.toml");
        std::fs::write(&path, "[listeners]\nmqtt_port = 1000\nhttps_port = 2000\n").unwrap();
        let config = Config::load(
            Some(&path),
            env(&[
                ("SHOAL_LISTENERS_MQTT_PORT", "3000"),
                ("SHOAL_SERVER_HOST_ALIASES", "a.b, c"),
            ]),
            &Overrides {
                https_port: Some(4000),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.listeners.mqtt_port, 3000);
        assert_eq!(config.listeners.https_port, 4000);
        assert_eq!(config.server.host_aliases, ["a.b", "c"]);
    }

    #[test]
    fn the_plain_amqp_listener_is_off_unless_given_a_port_of_its_own() {
        let config = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.listeners.amqp_plain_port, 0);
        let config = Config::load(
            None,
            env(&[("SHOAL_LISTENERS_AMQP_PLAIN_PORT", "5672")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.listeners.amqp_plain_port, 5672);
        let error = Config::load(
            None,
            env(&[("SHOAL_LISTENERS_AMQP_PLAIN_PORT", "5671")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("both 5671"), "{error:#}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.toml");
        std::fs::write(&path, "[listeners]\nmqtt_prot = 1\n").unwrap();
        let error = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap_err();
        assert!(
            format!("{error:#}").contains("listeners.mqtt_prot"),
            "{error:#}"
        );
        let error = Config::load(
            None,
            env(&[("SHOAL_HUB_PARTITIONS", "4")]),
            &Overrides::default(),
        )
        .unwrap_err();
        Config::load(None, env(&[("SHOAL_LOG", "debug")]), &Overrides::default()).unwrap();
        assert!(format!("{error:#}").contains("hub.partitions"), "{error:#}");
        let error = Config::load(
            None,
            env(&[("SHOAL_LOG_RETENTION_MIB", "9223372036854775807")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("log.retention_mib"),
            "{error:#}"
        );
        let error = Config::load(
            None,
            env(&[("SHOAL_HUB_PARTITION_COUNT", "200")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("partition_count"),
            "{error:#}"
        );
        let error = Config::load(
            None,
            env(&[("SHOAL_LISTENERS_AMQP_PORT", "8883")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("both 8883"), "{error:#}");
        std::fs::write(&path, "[hub]\npartition_count = \"four\"\n").unwrap();
        assert!(Config::load(Some(&path), env(&[]), &Overrides::default()).is_err());
    }
}
