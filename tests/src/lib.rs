//! System-test harness: starts the real `shoal` binary on a fresh data directory and free
//! ports, and gives tests what they need to reach it. Links no server code: the server is the
//! built binary, driven over its sockets and its CLI.
//!
//! The binary is `$SHOAL_BIN`, else `shoal` next to the test executable's `deps/` directory
//! (`target/debug/shoal` after `cargo build --bin shoal`; `tests/run.sh` builds it first).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// How long a server may take to start (it pre-faults its partition segments).
const STARTUP_TIMEOUT: Duration = Duration::from_mins(1);

/// The `shoal` binary under test.
pub fn shoal_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOAL_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let binary = profile_dir.join("shoal");
    assert!(
        binary.exists(),
        "{} does not exist: build it first with `cargo build --bin shoal` (tests/run.sh does)",
        binary.display()
    );
    binary
}

/// A free TCP port on loopback (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("loopback has free ports")
}

/// A running server on its own data directory.
pub struct Server {
    child: Option<Child>,
    /// The data directory (deleted when the server is dropped).
    pub data_dir: tempfile::TempDir,
    /// `endpoints.json`.
    pub endpoints: Value,
    /// Extra environment the server runs with.
    environment: Vec<(String, String)>,
}

impl Server {
    /// Starts a server with default settings on free ports.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `SHOAL_*` environment settings.
    pub fn start_with(environment: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let mut environment: Vec<(String, String)> = environment
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        for (name, value) in [
            ("SHOAL_LISTENERS_HTTPS_PORT", free_port().to_string()),
            ("SHOAL_LISTENERS_MQTT_PORT", free_port().to_string()),
            ("SHOAL_LISTENERS_AMQP_PORT", free_port().to_string()),
            // Small segments: tests start many servers, each pre-faulting its partitions.
            ("SHOAL_LOG_SEGMENT_MIB", "8".to_owned()),
        ] {
            if !environment.iter().any(|(known, _)| known == name) {
                environment.push((name.to_owned(), value));
            }
        }
        let mut server = Self {
            child: None,
            data_dir,
            endpoints: Value::Null,
            environment,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let endpoints_path = self.data_dir.path().join("endpoints.json");
        let log = std::fs::File::create(self.data_dir.path().join("server.log"))?;
        let mut command = Command::new(shoal_binary());
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (name, value) in &self.environment {
            command.env(name, value);
        }
        let mut child = command.spawn().context("spawning shoal")?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("shoal exited with {status} while starting:\n{}", self.log());
            }
            if let Ok(text) = std::fs::read_to_string(&endpoints_path)
                && let Ok(endpoints) = serde_json::from_str::<Value>(&text)
                && endpoints["pid"].as_u64() == Some(u64::from(child.id()))
            {
                self.endpoints = endpoints;
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "shoal did not start within {STARTUP_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process is still running (it must never die of bad input).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Stops the server with SIGTERM and returns its exit code.
    pub fn stop(&mut self) -> anyhow::Result<Option<i32>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                child.kill()?;
                bail!("shoal did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (crash tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data directory and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Starts the server again after a kill.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn()
    }

    /// A port from endpoints.json.
    pub fn port(&self, key: &str) -> u16 {
        self.endpoints[key]
            .as_u64()
            .expect("endpoints.json has the port") as u16
    }

    /// Runs the `shoal` CLI against this server and returns its standard output.
    pub fn cli(&self, arguments: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(shoal_binary())
            .args(arguments)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .output()?;
        if !output.status.success() {
            bail!(
                "shoal {}: {}",
                arguments.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Registers a device with SAS keys; returns its primary key (base64).
    pub fn create_device(&self, device_id: &str) -> anyhow::Result<String> {
        let created: Value = serde_json::from_str(&self.cli(&["device", "create", device_id])?)?;
        created["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .map(str::to_owned)
            .context("the created device has a primary key")
    }

    /// Every committed record, through `shoal events tail --json --no-follow`.
    pub fn events(&self) -> anyhow::Result<Vec<Value>> {
        let text = self.cli(&[
            "events",
            "tail",
            "--from",
            "earliest",
            "--json",
            "--no-follow",
        ])?;
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).map_err(Into::into))
            .collect()
    }

    /// A TLS connection to the MQTT listener, trusting the development CA.
    pub fn mqtt_tls(&self) -> anyhow::Result<TlsStream> {
        self.tls_to("mqtt_port")
    }

    /// A TLS connection to the AMQP listener (the Event Hubs-compatible endpoint), trusting
    /// the development CA.
    pub fn amqp_tls(&self) -> anyhow::Result<TlsStream> {
        self.tls_to("amqp_port")
    }

    /// A TLS connection to the listener on the port `port_key` of endpoints.json.
    fn tls_to(&self, port_key: &str) -> anyhow::Result<TlsStream> {
        let ca_path = self.endpoints["ca_cert_path"]
            .as_str()
            .context("endpoints.json names the CA")?;
        let ca = std::fs::read(ca_path)?;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots.add(certificate?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
        let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
        let socket = TcpStream::connect(("127.0.0.1", self.port(port_key)))?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        socket.set_nodelay(true)?;
        Ok(rustls::StreamOwned::new(connection, socket))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking TLS client stream.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A device SAS token for `{host}/devices/{device_id}`, valid for `ttl_secs`.
pub fn device_token(host: &str, device_id: &str, key_base64: &str, ttl_secs: u64) -> String {
    let key = dataplane_wire::sas::decode_key(key_base64).expect("keys are base64");
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + ttl_secs;
    dataplane_wire::sas::generate(&format!("{host}/devices/{device_id}"), &key, expiry, None)
}

/// Reads until the peer closes the connection or `timeout` passes; returns whether it closed
/// (and the bytes read meanwhile).
pub fn wait_for_close(stream: &mut TlsStream, timeout: Duration) -> (bool, Vec<u8>) {
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let _ = stream
        .sock
        .set_read_timeout(Some(Duration::from_millis(100)));
    while Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return (true, received),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (true, received),
        }
    }
    (false, received)
}

/// Writes all of `bytes`, ignoring a peer that already closed.
pub fn send(stream: &mut TlsStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes)?;
    stream.flush()
}
