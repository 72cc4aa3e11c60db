//! Scenarios: what to run, from a TOML file (`perf/scenarios/*.toml`), flags, or both
//! (flags win). Every key has a default, so an empty file is the canonical workload's shape
//! against a plain MQTT broker on `127.0.0.1:1883`.
//!
//! ```toml
//! name = "inflight-16"
//! [target]                 # kind = "shoal" (IoT Hub semantics) or "mqtt" (any broker)
//! kind = "mqtt"
//! host = "127.0.0.1"
//! port = 8883
//! tls = true
//! ca = "/tmp/ca.pem"
//! [devices]
//! count = 100
//! [publish]
//! qos = 1
//! payload = "256"          # or "64-1024" (uniform) or "64:3,4096:1" (weighted)
//! inflight = 16
//! rate = 0                 # total msgs/s; 0 = closed loop, as fast as acks allow
//! duration = "10s"
//! [[storm]]                # reconnect storms: drop a fraction of the devices at `at`
//! at = "5s"
//! fraction = 0.5
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::clock::parse_duration;
use crate::payload::PayloadSizes;
use crate::tls::TlsVersions;

/// A duration written as `"10s"`, `"250ms"` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Duration(pub u64);

impl Duration {
    /// Nanoseconds.
    pub fn ns(self) -> u64 {
        self.0
    }

    /// From seconds.
    pub const fn secs(s: u64) -> Self {
        Self(s * crate::clock::NS_PER_S)
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Self)
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self.0;
        if ns.is_multiple_of(crate::clock::NS_PER_S) {
            write!(f, "{}s", ns / crate::clock::NS_PER_S)
        } else if ns.is_multiple_of(crate::clock::NS_PER_MS) {
            write!(f, "{}ms", ns / crate::clock::NS_PER_MS)
        } else {
            write!(f, "{}us", ns / 1000)
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(f64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Raw::Seconds(s) if s.is_finite() && s >= 0.0 => Ok(Self((s * 1e9).round() as u64)),
            Raw::Seconds(s) => Err(serde::de::Error::custom(format!("{s} is not a duration"))),
        }
    }
}

/// What kind of server the devices talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Shoal: IoT Hub device semantics (registered devices, SAS passwords, IoT Hub topics).
    Shoal,
    /// Any MQTT 3.1.1 broker: client ids `perf-{n}`, topic `perf/{n}`, no credentials.
    #[default]
    Mqtt,
}

/// Where to connect and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Target {
    /// Shoal or a plain MQTT broker.
    pub kind: TargetKind,
    /// Address to connect to (an IP or a name that resolves).
    pub host: String,
    /// MQTT port; for Shoal, taken from endpoints.json when 0.
    pub port: u16,
    /// MQTT over TLS; default: on for Shoal, off for other brokers.
    pub tls: Option<bool>,
    /// The CA to trust (PEM); for Shoal, endpoints.json's `ca_cert_path` when empty.
    pub ca: Option<PathBuf>,
    /// The name to verify in the server certificate (and SNI); defaults to `host`, or to
    /// Shoal's hostname.
    pub server_name: Option<String>,
    /// TLS versions to offer.
    pub tls_versions: TlsVersions,
    /// Resume TLS sessions on reconnect (devices do not).
    pub tls_resumption: bool,
    /// Shoal's data directory (its endpoints.json says how to reach it).
    pub data_dir: Option<PathBuf>,
    /// Start a Shoal on a temporary data directory (the canonical run does).
    pub start_shoal: bool,
    /// The server process to measure (CPU, memory); for Shoal, endpoints.json's `pid`.
    pub server_pid: Option<u32>,
}

impl Target {
    /// Whether devices use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.unwrap_or(self.kind == TargetKind::Shoal)
    }
}

impl Default for Target {
    fn default() -> Self {
        Self {
            kind: TargetKind::Mqtt,
            host: "127.0.0.1".into(),
            port: 0,
            tls: None,
            ca: None,
            server_name: None,
            tls_versions: TlsVersions::Any,
            tls_resumption: false,
            data_dir: None,
            start_shoal: false,
            server_pid: None,
        }
    }
}

/// How devices are registered with Shoal before they connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Register {
    /// Bulk-create them (100 per REST call); fails if they exist.
    #[default]
    Create,
    /// Bulk create-or-update them with the generator's keys.
    Upsert,
    /// They exist already; read each device's key over REST.
    Existing,
}

/// The simulated devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Devices {
    /// How many.
    pub count: u32,
    /// Shoal only: how they get registered.
    pub register: Register,
    /// Device ids are `{prefix}{n}` (n zero-padded) for Shoal; `perf-{n}` for peers.
    pub prefix: String,
    /// MQTT clean-session flag (the IoT Hub device SDK sends false).
    pub clean_session: bool,
    /// MQTT keep-alive in seconds; idle connections send PINGREQ at half of it.
    pub keep_alive_s: u16,
    /// Spread connections over 127.0.0.1 ..= 127.0.0.N as source addresses (loopback
    /// targets only), ~28k connections per address; 0 = let the kernel choose.
    pub source_ips: u8,
}

impl Default for Devices {
    fn default() -> Self {
        Self {
            count: 100,
            register: Register::Create,
            prefix: "perf-".into(),
            clean_session: false,
            keep_alive_s: 60,
            source_ips: 0,
        }
    }
}

/// How connections are opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Connect {
    /// New connections per second; 0 = as fast as `concurrency` allows.
    pub rate: f64,
    /// Connections being set up (TCP + TLS + CONNACK) at once.
    pub concurrency: u32,
    /// Time allowed from TCP connect to CONNACK.
    pub timeout: Duration,
    /// Further attempts after a failed connect.
    pub retries: u32,
    /// Wait before a retry.
    pub retry_backoff: Duration,
}

impl Default for Connect {
    fn default() -> Self {
        Self {
            rate: 0.0,
            concurrency: 256,
            timeout: Duration::secs(30),
            retries: 3,
            retry_backoff: Duration::secs(1),
        }
    }
}

/// The publishing workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Publish {
    /// 0 or 1.
    pub qos: u8,
    /// Payload size(s); see [`PayloadSizes::parse`].
    pub payload: String,
    /// Total messages per second, open loop; 0 = closed loop (as fast as acks allow).
    pub rate: f64,
    /// Messages per second per device (open loop); overrides `rate` when > 0.
    pub device_rate: f64,
    /// QoS 1 messages in flight per device.
    pub inflight: u32,
    /// How long to publish (after the warm-up); 0 = until `messages`.
    pub duration: Duration,
    /// Stop after this many messages in total; 0 = no limit.
    pub messages: u64,
    /// Excluded from the figures at the start of publishing.
    pub warmup: Duration,
    /// After publishing stops, how long to wait for outstanding acks.
    pub drain_timeout: Duration,
    /// Shoal only: a property bag for the topic, e.g. `$.ct=application%2Fjson&k=v`.
    pub properties: String,
    /// Hold the connections for `duration` without publishing (memory and keep-alive soak).
    pub idle: bool,
    /// Seed for payload sizes.
    pub seed: u64,
}

impl Default for Publish {
    fn default() -> Self {
        Self {
            qos: 1,
            payload: "256".into(),
            rate: 0.0,
            device_rate: 0.0,
            inflight: 1,
            duration: Duration::secs(10),
            messages: 0,
            warmup: Duration::secs(1),
            drain_timeout: Duration::secs(5),
            properties: String::new(),
            idle: false,
            seed: 1,
        }
    }
}

/// A reconnect storm: at `at` (from the start of publishing), a fraction of the devices
/// drop their connection and reconnect at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storm {
    /// When, from the start of publishing (warm-up included).
    pub at: Duration,
    /// Share of the devices, 0 to 1.
    pub fraction: f64,
    /// Repeat every this long; 0 = once.
    pub every: Duration,
    /// Drop at once (TCP reset, messages in flight lost) instead of after the device's
    /// in-flight messages are acknowledged.
    pub abrupt: bool,
}

impl Default for Storm {
    fn default() -> Self {
        Self {
            at: Duration::secs(5),
            fraction: 0.5,
            every: Duration(0),
            abrupt: false,
        }
    }
}

impl std::str::FromStr for Storm {
    type Err = String;

    /// `at=5s,fraction=0.5[,every=10s][,abrupt]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut storm = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("at", v)) => storm.at = v.parse()?,
                Some(("fraction", v)) => {
                    storm.fraction = v.parse().map_err(|_| format!("fraction '{v}'"))?;
                }
                Some(("every", v)) => storm.every = v.parse()?,
                None if part == "abrupt" => storm.abrupt = true,
                _ => {
                    return Err(format!(
                        "storm part '{part}': use at=, fraction=, every=, abrupt"
                    ));
                }
            }
        }
        Ok(storm)
    }
}

/// The Event Hubs-compatible consumer (publish-to-consume latency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Consumer {
    /// Read every partition while publishing.
    pub enabled: bool,
    /// AMQP host; defaults to the MQTT target host.
    pub host: Option<String>,
    /// AMQP port; endpoints.json's `amqp_port` when 0.
    pub port: u16,
    /// AMQP over TLS (plain TCP is the emulator mode).
    pub tls: bool,
    /// The event hub name; endpoints.json's `hub_name` when empty.
    pub hub: String,
    /// Partitions to read, `0..partitions`; endpoints.json's `partition_count` when 0.
    pub partitions: u32,
    /// The shared access policy to sign with; `service` or `iothubowner`.
    pub policy: String,
    /// Its key (the string; Event Hubs signs with its UTF-8 bytes); endpoints.json's when
    /// empty.
    pub key: String,
    /// The host in the token audience `sb://{host}/{hub}/consumergroups/$Default`; the
    /// Shoal hostname when empty.
    pub audience_host: String,
    /// Consumer group.
    pub consumer_group: String,
    /// Link credit granted per partition.
    pub credit: u32,
    /// Where each receiver starts: `@latest` (only what is published after it attached,
    /// the default) or `-1` (everything retained).
    pub start: String,
}

impl Default for Consumer {
    fn default() -> Self {
        Self {
            enabled: false,
            host: None,
            port: 0,
            tls: true,
            hub: String::new(),
            partitions: 0,
            policy: "iothubowner".into(),
            key: String::new(),
            audience_host: String::new(),
            consumer_group: "$Default".into(),
            credit: 1000,
            start: "@latest".into(),
        }
    }
}

/// Where results go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Output {
    /// Write the JSON report here (`-` = stdout).
    pub json: Option<PathBuf>,
    /// Write the SVG report here.
    pub svg: Option<PathBuf>,
    /// Print the progress line every second.
    pub progress: bool,
    /// A label for the run in reports.
    pub label: String,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            json: None,
            svg: None,
            progress: true,
            label: String::new(),
        }
    }
}

/// Where and how the generator runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Runner {
    /// Pin the load thread to this CPU.
    pub pin_core: Option<usize>,
    /// When the next due message (or other timer) is at most this many microseconds
    /// away, poll instead of sleeping. A sleep and wake-up costs tens of microseconds of
    /// CPU on a VM and arrives late; spinning is reported apart from busy time. 0 = never
    /// spin. Default: 100, or 0 when the consumer runs (its threads share the load core,
    /// and a spinning thread would delay them).
    pub spin_us: Option<u64>,
}

impl Runner {
    /// The spin threshold in force.
    pub fn spin_us(&self, consumer: bool) -> u64 {
        self.spin_us.unwrap_or(if consumer { 0 } else { 100 })
    }
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// What the scenario is for.
    pub description: String,
    /// The server.
    pub target: Target,
    /// The devices.
    pub devices: Devices,
    /// Connection set-up.
    pub connect: Connect,
    /// The workload.
    pub publish: Publish,
    /// Reconnect storms.
    #[serde(rename = "storm")]
    pub storms: Vec<Storm>,
    /// The Event Hubs consumer.
    pub consumer: Consumer,
    /// Outputs.
    pub output: Output,
    /// The generator's placement.
    pub runner: Runner,
}

impl Scenario {
    /// Parses TOML.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).map_err(|error| anyhow!("{error}"))
    }

    /// Reads a TOML file; a bare name is looked up in `perf/scenarios/`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let candidates = [
            path.to_owned(),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios")
                .join(path)
                .with_extension("toml"),
        ];
        let found = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            anyhow!(
                "scenario {} not found (also looked in perf/scenarios/)",
                path.display()
            )
        })?;
        let text = std::fs::read_to_string(found)
            .with_context(|| format!("reading {}", found.display()))?;
        let mut scenario =
            Self::from_toml(&text).with_context(|| format!("in {}", found.display()))?;
        if scenario.name.is_empty() {
            scenario.name = found
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        Ok(scenario)
    }

    /// The total open-loop rate, if the run is open loop.
    pub fn open_loop_rate(&self) -> Option<f64> {
        let p = &self.publish;
        if p.device_rate > 0.0 {
            Some(p.device_rate * f64::from(self.devices.count))
        } else if p.rate > 0.0 {
            Some(p.rate)
        } else {
            None
        }
    }

    /// Checks the scenario for contradictions before anything connects.
    pub fn validate(&self) -> anyhow::Result<()> {
        let p = &self.publish;
        if self.devices.count == 0 {
            bail!("devices.count must be at least 1");
        }
        if p.qos > 1 {
            bail!("publish.qos must be 0 or 1 (QoS 2 is not a device-to-cloud option in IoT Hub)");
        }
        if p.inflight == 0 || p.inflight > 16_384 {
            bail!("publish.inflight must be 1 ..= 16384");
        }
        PayloadSizes::parse(&p.payload).map_err(|e| anyhow!("publish.payload: {e}"))?;
        if p.rate < 0.0 || p.device_rate < 0.0 || !p.rate.is_finite() || !p.device_rate.is_finite()
        {
            bail!("publish.rate and publish.device_rate must be >= 0");
        }
        if p.duration.ns() == 0 && p.messages == 0 {
            bail!("set publish.duration or publish.messages, or the run never ends");
        }
        if p.idle && p.duration.ns() == 0 {
            bail!("an idle soak needs publish.duration");
        }
        if self.target.kind == TargetKind::Mqtt && self.target.port == 0 {
            bail!("target.port is required for an MQTT broker");
        }
        if self.target.uses_tls()
            && self.target.kind == TargetKind::Mqtt
            && self.target.ca.is_none()
        {
            bail!("target.tls needs target.ca (the CA certificate to trust)");
        }
        if self.connect.concurrency == 0 {
            bail!("connect.concurrency must be at least 1");
        }
        for storm in &self.storms {
            if !(0.0..=1.0).contains(&storm.fraction) {
                bail!("storm.fraction must be within 0 ..= 1");
            }
        }
        if self.consumer.enabled && self.target.kind != TargetKind::Shoal {
            bail!("the Event Hubs consumer needs target.kind = \"shoal\"");
        }
        if self.consumer.enabled
            && p.payload
                .parse::<usize>()
                .is_ok_and(|n| n < crate::payload::HEADER_BYTES)
        {
            bail!(
                "the consumer reads a {}-byte timestamp header from each payload: use payloads of at least that size",
                crate::payload::HEADER_BYTES
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_gives_the_defaults() {
        let scenario = Scenario::from_toml("").expect("parses");
        assert_eq!(scenario, Scenario::default());
        assert_eq!(scenario.devices.count, 100);
        assert_eq!(scenario.publish.qos, 1);
        assert_eq!(scenario.publish.duration, Duration::secs(10));
        assert_eq!(scenario.open_loop_rate(), None);
    }

    #[test]
    fn a_full_scenario_parses() {
        let text = r#"
            name = "storm"
            [target]
            kind = "shoal"
            data_dir = "/tmp/shoal"
            tls = true
            tls_versions = "1.2"
            [devices]
            count = 1000
            register = "upsert"
            source_ips = 4
            [connect]
            rate = 500
            timeout = "5s"
            [publish]
            qos = 1
            payload = "64:3,4096:1"
            device_rate = 2.5
            inflight = 4
            duration = 30
            warmup = "500ms"
            properties = "$.ct=application%2Fjson"
            [[storm]]
            at = "10s"
            fraction = 0.25
            every = "10s"
            abrupt = true
            [consumer]
            enabled = true
            partitions = 4
        "#;
        let s = Scenario::from_toml(text).expect("parses");
        assert_eq!(s.target.kind, TargetKind::Shoal);
        assert_eq!(s.target.tls_versions, TlsVersions::Tls12);
        assert_eq!(s.devices.register, Register::Upsert);
        assert_eq!(s.connect.timeout, Duration::secs(5));
        assert_eq!(s.publish.duration, Duration::secs(30));
        assert_eq!(s.publish.warmup, Duration(500_000_000));
        assert_eq!(s.open_loop_rate(), Some(2500.0));
        assert_eq!(s.storms.len(), 1);
        assert!(s.storms[0].abrupt);
        assert_eq!(s.storms[0].every, Duration::secs(10));
        assert!(s.consumer.enabled);
        s.validate().expect("valid");
    }

    #[test]
    fn unknown_keys_and_bad_values_fail_fast() {
        assert!(Scenario::from_toml("[publish]\nqoss = 1").is_err());
        assert!(Scenario::from_toml("[publish]\nduration = \"ten\"").is_err());
        let mut s = Scenario::default();
        s.target.port = 1883;
        s.validate().expect("valid");
        s.publish.qos = 2;
        assert!(s.validate().is_err());
        s.publish.qos = 1;
        s.target.tls = Some(true);
        assert!(s.validate().is_err(), "TLS without a CA");
        s.target.tls = None;
        s.consumer.enabled = true;
        assert!(s.validate().is_err(), "consumer against a peer");
    }

    #[test]
    fn storms_parse_from_flags() {
        let storm: Storm = "at=2s,fraction=0.1,every=500ms,abrupt"
            .parse()
            .expect("parses");
        assert_eq!(
            storm,
            Storm {
                at: Duration::secs(2),
                fraction: 0.1,
                every: Duration(500_000_000),
                abrupt: true
            }
        );
        assert!("when=now".parse::<Storm>().is_err());
    }

    #[test]
    fn every_shipped_scenario_parses_and_validates_its_shape() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("perf/scenarios exists") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let mut s = Scenario::load(&path).expect("parses");
                // Ports and CAs come from the command line or endpoints.json.
                if s.target.port == 0 {
                    s.target.port = 1883;
                }
                if s.target.uses_tls() && s.target.ca.is_none() {
                    s.target.ca = Some("ca.pem".into());
                }
                s.validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 4, "scenarios found: {seen}");
    }
}
