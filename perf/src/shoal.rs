//! Finding a Shoal (its `endpoints.json`) and starting one for the canonical run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;

/// What `shoal serve` writes to `{data_dir}/endpoints.json` once it listens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Endpoints {
    /// The host name clients dial and sign for.
    pub hostname: String,
    /// The development CA, when Shoal created one.
    pub ca_cert_path: Option<PathBuf>,
    /// `HostName=…;SharedAccessKeyName=iothubowner;SharedAccessKey=…`.
    pub service_connection_string: String,
    /// MQTT over TLS.
    pub mqtt_port: u16,
    /// AMQP over TLS.
    pub amqp_port: u16,
    /// The server's pid.
    pub pid: u32,
    /// The hub (and Event Hubs-compatible) name.
    #[serde(default)]
    pub hub_name: Option<String>,
    /// Partitions of the events endpoint.
    #[serde(default)]
    pub partition_count: Option<u32>,
    /// Connection strings per shared access policy.
    #[serde(default)]
    pub policies: std::collections::BTreeMap<String, String>,
}

impl Endpoints {
    /// Reads `{data_dir}/endpoints.json`.
    pub fn read(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("endpoints.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is Shoal running on that data directory?)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The `SharedAccessKey` of a policy, from its connection string.
    pub fn policy_key(&self, policy: &str) -> Option<String> {
        let text = self.policies.get(policy).or_else(|| {
            self.service_connection_string
                .contains(&format!("SharedAccessKeyName={policy};"))
                .then_some(&self.service_connection_string)
        })?;
        text.split(';').find_map(|part| {
            let (key, value) = part.split_once('=')?;
            key.eq_ignore_ascii_case("SharedAccessKey")
                .then(|| value.to_owned())
        })
    }
}

/// A Shoal this process started; stopped with SIGTERM when dropped.
#[derive(Debug)]
pub struct ShoalProcess {
    child: Child,
    /// Its data directory (a temporary one).
    pub data_dir: tempfile::TempDir,
    /// Its endpoints.
    pub endpoints: Endpoints,
    log_path: PathBuf,
}

/// Where the Shoal binary is: `$SHOAL_BIN`, else `target/release/shoal` of this workspace
/// (honouring `CARGO_TARGET_DIR`).
pub fn shoal_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("SHOAL_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("SHOAL_BIN={} does not exist", path.display());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("perf/ is inside the workspace")
        .to_owned();
    let mut candidates = vec![workspace.join("target/release/shoal")];
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.insert(0, PathBuf::from(dir).join("release/shoal"));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow!(
            "no Shoal binary: build one with `cargo build --release --bin shoal` or set SHOAL_BIN"
        )
    })
}

/// A free TCP port on loopback (bound and released; good enough for a local run).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl ShoalProcess {
    /// Starts `binary serve` on a temporary data directory with free ports, pinned to
    /// `cpu` if given, and waits for its endpoints.json.
    pub fn start(binary: &Path, cpu: Option<usize>) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("shoal-perf-")
            .tempdir()
            .context("creating a temporary data directory")?;
        let log_path = data_dir.path().join("shoal.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--https-port")
            .arg(free_port()?.to_string())
            .arg("--mqtt-port")
            .arg(free_port()?.to_string())
            .arg("--amqp-port")
            .arg(free_port()?.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(cpu) = cpu {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: the closure only calls async-signal-safe functions (sched_setaffinity)
            // on memory it owns, as `pre_exec` requires.
            unsafe {
                command.pre_exec(move || {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let deadline = Instant::now() + Duration::from_mins(1);
        let endpoints = loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("Shoal exited ({status}) before it listened:\n{log}");
            }
            if let Ok(endpoints) = Endpoints::read(data_dir.path()) {
                break endpoints;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("Shoal did not write endpoints.json within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(Self {
            child,
            data_dir,
            endpoints,
            log_path,
        })
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ShoalProcess {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_json_as_shoal_writes_it() {
        let text = r#"{
            "policies": {"iothubowner": "HostName=localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=b3duZXI=",
                         "service": "HostName=localhost:8443;SharedAccessKeyName=service;SharedAccessKey=c2VydmljZQ=="},
            "hostname": "localhost", "hub_name": "shoal", "partition_count": 4,
            "ca_cert_path": "/d/tls/ca.pem", "cert_path": "/d/tls/server.pem",
            "service_connection_string": "HostName=localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=b3duZXI=",
            "rest_base_url": "https://localhost:8443", "https_port": 8443, "mqtt_port": 8883,
            "amqp_port": 5671, "bind_address": "0.0.0.0", "pid": 4242
        }"#;
        let e: Endpoints = serde_json::from_str(text).expect("parses");
        assert_eq!(e.mqtt_port, 8883);
        assert_eq!(e.pid, 4242);
        assert_eq!(e.partition_count, Some(4));
        assert_eq!(e.policy_key("service").as_deref(), Some("c2VydmljZQ=="));
        assert_eq!(e.policy_key("iothubowner").as_deref(), Some("b3duZXI="));
        assert_eq!(e.policy_key("nobody"), None);
    }
}
