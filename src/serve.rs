//! `shoal serve`: prepares TLS, binds every listener, starts the planes, prints how to reach
//! them, and runs until SIGINT or SIGTERM.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use controlplane::tls::{TlsFiles, ensure_development_certificates};
use controlplane::{ControlPlane, ControlPlaneConfig};
use serde_json::json;

use crate::config::Config;

/// The file scripts and tests read to find a running server.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// Binds a listener, turning the usual failures into one line that says what to do.
pub fn bind(address: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).map_err(|error| bind_error(&error, address, what, flag))
}

/// Turns a bind failure into one line that says what to do.
fn bind_error(
    error: &std::io::Error,
    address: SocketAddr,
    what: &str,
    flag: &str,
) -> anyhow::Error {
    let port = address.port();
    match error.kind() {
        ErrorKind::AddrInUse => anyhow!(
            "port {port} ({what}) is already in use: stop the process holding it, or choose another port with {flag}"
        ),
        ErrorKind::PermissionDenied => anyhow!(
            "port {port} ({what}) is privileged: run as root, grant the binary CAP_NET_BIND_SERVICE (sudo setcap cap_net_bind_service=+ep \"$(command -v shoal)\"), or choose a port of 1024 or above with {flag}"
        ),
        ErrorKind::AddrNotAvailable => anyhow!(
            "cannot bind {address} ({what}): the address is not on this machine; set [server] bind_address"
        ),
        _ => anyhow!("cannot bind {address} ({what}): {error}"),
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        // `./shoal-data` prints as `/cwd/shoal-data`, not `/cwd/./shoal-data`.
        Ok(std::env::current_dir()
            .context("reading the current directory")?
            .join(path.strip_prefix(".").unwrap_or(path)))
    }
}

/// Runs the server until a signal asks it to stop.
pub fn serve(config: &Config) -> anyhow::Result<()> {
    let data_dir = absolute(&config.server.data_dir)?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let _lock = lock_data_dir(&data_dir)?;
    let endpoints_path = data_dir.join(ENDPOINTS_FILE);
    // A stale file from a crashed run must not send scripts to a dead server.
    let _ = std::fs::remove_file(&endpoints_path);

    let host_names = config.host_names();
    let tls_files = if config.tls.cert_path.as_os_str().is_empty() {
        ensure_development_certificates(&data_dir.join("tls"), &host_names)
            .context("preparing the development certificates")?
    } else {
        TlsFiles {
            cert_path: absolute(&config.tls.cert_path)?,
            key_path: absolute(&config.tls.key_path)?,
            ca_path: None,
        }
    };
    let https_tls = controlplane::tls::server_config(&tls_files, &[b"http/1.1"])
        .context("loading the TLS certificate")?;

    let bind_address = config.server.bind_address;
    let https_listener = bind(
        SocketAddr::new(bind_address, config.listeners.https_port),
        "HTTPS",
        "--https-port",
    )?;
    https_listener.set_nonblocking(true)?;
    let mut data_plane_config = data_plane_config(config, &data_dir, &tls_files)?;
    let applied_versions = std::sync::Arc::new(schemas::plane::AppliedVersions::new(
        data_plane_config.shard_count,
    ));
    data_plane_config.applied_versions = Some(std::sync::Arc::clone(&applied_versions));
    let shard_listeners =
        dataplane::bind_listeners(&data_plane_config).map_err(|(address, error)| {
            let listeners = &config.listeners;
            let (what, flag) = match address.port() {
                port if port == listeners.mqtt_port => ("MQTT", "--mqtt-port"),
                port if port == listeners.amqp_port => ("AMQP", "--amqp-port"),
                port if port == listeners.amqp_plain_port => {
                    ("AMQP over plain TCP", "SHOAL_LISTENERS_AMQP_PLAIN_PORT")
                }
                _ => ("MQTT over plain TCP", "SHOAL_LISTENERS_MQTT_PLAIN_PORT"),
            };
            bind_error(&error, address, what, flag)
        })?;

    let control = ControlPlane::open(&ControlPlaneConfig {
        data_dir: data_dir.clone(),
        hub_name: config.hub.name.clone(),
        partition_count: config.hub.partition_count,
        accepted_hosts: host_names,
        event_hub_endpoint: format!("sb://{}/", config.server.hostname),
        retention_days: config.log.retention_hours.div_ceil(24),
        applied: Some(std::sync::Arc::clone(&applied_versions)),
    })?;
    if control.hub.partition_count != config.hub.partition_count {
        tracing::warn!(
            configured = config.hub.partition_count,
            actual = control.hub.partition_count,
            "hub.partition_count is fixed when the hub is created; keeping the existing count"
        );
    }

    data_plane_config.hub_created_ms = control.hub.created_ms;

    let (report_sender, reports) = crossbeam_channel::unbounded();
    let report_sink = controlplane::sync::spawn_report_sink(
        std::sync::Arc::clone(&control.store),
        control.hub.name.clone(),
        reports,
    )
    .context("starting the connection-report thread")?;
    let subscriptions = (0..data_plane_config.shard_count)
        .map(|_| control.publisher.subscribe())
        .collect();
    let shard_count = data_plane_config.shard_count;
    let data_plane = dataplane::DataPlane::start(
        data_plane_config,
        subscriptions,
        &report_sender,
        shard_listeners,
    )
    .context("starting the data plane")?;
    drop(report_sender);
    tracing::info!(shards = shard_count, "data plane started");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("control-plane")
        .enable_all()
        .build()
        .context("starting the control plane's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(https_listener)?;
        let (shutdown_sender, shutdown) = tokio::sync::watch::channel(false);
        let https = tokio::spawn(controlplane::server::serve_https(
            listener,
            https_tls,
            control.router(),
            shutdown,
        ));

        let endpoints = endpoints(config, &control, &tls_files)?;
        let text = serde_json::to_string_pretty(&endpoints)?;
        std::fs::write(&endpoints_path, text)
            .with_context(|| format!("writing {}", endpoints_path.display()))?;
        print_banner(config, &endpoints, &endpoints_path);

        wait_for_signal().await?;
        tracing::info!("shutting down");
        let _ = shutdown_sender.send(true);
        let _ = https.await;
        anyhow::Ok(())
    })?;
    data_plane.stop();
    // The shards sent their last reports before they stopped; the sink applies them and ends.
    report_sink.stop();
    let _ = std::fs::remove_file(&endpoints_path);
    Ok(())
}

fn data_plane_config(
    config: &Config,
    data_dir: &Path,
    tls_files: &TlsFiles,
) -> anyhow::Result<dataplane::DataPlaneConfig> {
    use crate::config::{AckSetting, WritePathSetting};
    let cpus = dataplane::allowed_cpus();
    let shard_count = match config.dataplane.shards {
        0 => cpus.len().max(1),
        shards => shards as usize,
    };
    let mqtt_tls = controlplane::tls::server_config(tls_files, &[b"mqtt"])
        .context("loading the TLS certificate")?;
    let bind_address = config.server.bind_address;
    let mut mqtt = vec![dataplane::ListenerConfig {
        address: SocketAddr::new(bind_address, config.listeners.mqtt_port),
        tls: Some(mqtt_tls),
    }];
    if config.listeners.mqtt_plain_port != 0 {
        mqtt.push(dataplane::ListenerConfig {
            address: SocketAddr::new(bind_address, config.listeners.mqtt_plain_port),
            tls: None,
        });
    }
    // AMQP clients (azure-eventhub, uamqp) offer no ALPN protocol.
    let amqp_tls =
        controlplane::tls::server_config(tls_files, &[]).context("loading the TLS certificate")?;
    let mut amqp = vec![dataplane::ListenerConfig {
        address: SocketAddr::new(bind_address, config.listeners.amqp_port),
        tls: Some(amqp_tls),
    }];
    if config.listeners.amqp_plain_port != 0 {
        amqp.push(dataplane::ListenerConfig {
            address: SocketAddr::new(bind_address, config.listeners.amqp_plain_port),
            tls: None,
        });
    }
    let log = &config.log;
    let ack = match config.dataplane.ack {
        AckSetting::Durable => dataplane_log::AckMode::Durable,
        AckSetting::Written => dataplane_log::AckMode::Written,
    };
    let hours_ms = u64::from(log.retention_hours) * 3_600_000;
    Ok(dataplane::DataPlaneConfig {
        shard_count,
        spin_before_park: std::time::Duration::from_micros(u64::from(
            config.dataplane.spin_before_park_us,
        )),
        cpus: if config.dataplane.pin_cpus {
            cpus
        } else {
            Vec::new()
        },
        data_dir: data_dir.to_owned(),
        accepted_hosts: config.host_names(),
        mqtt,
        amqp,
        // Set once the control plane has opened the hub.
        hub_created_ms: 0,
        log: dataplane_log::PartitionConfig {
            segment_bytes: u64::from(log.segment_mib) << 20,
            write_path: match log.write_path {
                WritePathSetting::Pwrite => dataplane_log::WritePath::Pwrite,
                WritePathSetting::Mmap => dataplane_log::WritePath::Mmap,
            },
            ack,
            retention_ms: (hours_ms > 0).then_some(hours_ms),
            // `Config::validate` keeps this below u64::MAX bytes.
            retention_bytes: (log.retention_mib > 0).then_some(log.retention_mib << 20),
            ..dataplane_log::PartitionConfig::default()
        },
        limits: dataplane::Limits {
            inflight_per_connection: config.dataplane.inflight_per_connection as usize,
            inflight_per_shard: config.dataplane.inflight_per_shard as usize,
            connections_per_shard: config.dataplane.connections_per_shard as usize,
            connect_timeout: std::time::Duration::from_secs(u64::from(
                config.dataplane.connect_timeout_secs,
            )),
            ..dataplane::Limits::default()
        },
        retention_interval: std::time::Duration::from_mins(1),
        applied_versions: None,
    })
}

/// Holds an exclusive lock on `{data_dir}/lock` for the life of the server: two servers on
/// one data directory would corrupt each other's partition logs.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow!(
            "the data directory {} is in use by another shoal process: stop it, or start this one with another --data-dir",
            data_dir.display()
        )),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", path.display()))
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {},
        _ = interrupt.recv() => {},
    }
    Ok(())
}

/// The REST host as the service SDK wants it: the port only when it is not 443.
fn rest_host(config: &Config) -> String {
    match config.listeners.https_port {
        443 => config.server.hostname.clone(),
        port => format!("{}:{port}", config.server.hostname),
    }
}

fn endpoints(
    config: &Config,
    control: &ControlPlane,
    tls: &TlsFiles,
) -> anyhow::Result<serde_json::Value> {
    let owner = control.hub.policy("iothubowner").with_context(|| {
        format!(
            "hub '{}' has no iothubowner policy in {}: the registry was changed by hand; restore it from a backup",
            control.hub.name,
            config.server.data_dir.display()
        )
    })?;
    let service_connection_string = format!(
        "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
        rest_host(config),
        owner.name,
        owner.primary_key
    );
    let policies: serde_json::Map<String, serde_json::Value> = control
        .hub
        .policies
        .iter()
        .map(|policy| {
            let text = format!(
                "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
                rest_host(config),
                policy.name,
                policy.primary_key
            );
            (policy.name.clone(), serde_json::Value::String(text))
        })
        .collect();
    let eventhub_connection_string = control.hub.policy("service").map(|policy| {
        format!(
            "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={};EntityPath={}",
            config.server.hostname, policy.name, policy.primary_key, control.hub.name
        )
    });
    Ok(json!({
        "policies": policies,
        "eventhub_connection_string": eventhub_connection_string,
        "hostname": config.server.hostname,
        "hub_name": control.hub.name,
        "partition_count": control.hub.partition_count,
        "ca_cert_path": tls.ca_path,
        "cert_path": tls.cert_path,
        "service_connection_string": service_connection_string,
        "rest_base_url": format!("https://{}", rest_host(config)),
        "https_port": config.listeners.https_port,
        "mqtt_port": config.listeners.mqtt_port,
        "mqtt_plain_port": config.listeners.mqtt_plain_port,
        "amqp_port": config.listeners.amqp_port,
        "amqp_plain_port": config.listeners.amqp_plain_port,
        "bind_address": config.server.bind_address,
        "pid": std::process::id(),
    }))
}

fn print_banner(config: &Config, endpoints: &serde_json::Value, endpoints_path: &Path) {
    let text = |key: &str| endpoints[key].as_str().unwrap_or_default().to_owned();
    let bind = config.server.bind_address;
    println!(
        "Shoal {} is serving hub '{}'",
        env!("CARGO_PKG_VERSION"),
        text("hub_name")
    );
    println!(
        "  service REST API     {}  (listening on {bind}:{})",
        text("rest_base_url"),
        config.listeners.https_port
    );
    if let Some(ca) = endpoints["ca_cert_path"].as_str() {
        println!("  development CA       {ca}");
        println!(
            "                       trust it with REQUESTS_CA_BUNDLE, SSL_CERT_FILE, server_verification_cert or connection_verify"
        );
    }
    println!(
        "  MQTT (devices)       mqtts://{}:{}  (listening on {bind}:{})",
        text("hostname"),
        config.listeners.mqtt_port,
        config.listeners.mqtt_port
    );
    if config.listeners.mqtt_plain_port != 0 {
        println!(
            "  MQTT, plain TCP      mqtt://{}:{}  (no TLS: credentials travel in clear text)",
            text("hostname"),
            config.listeners.mqtt_plain_port
        );
    }
    println!(
        "  AMQP (Event Hubs)    amqps://{}:{}  (listening on {bind}:{})",
        text("hostname"),
        config.listeners.amqp_port,
        config.listeners.amqp_port
    );
    if config.listeners.amqp_plain_port != 0 {
        println!(
            "  AMQP, plain TCP      amqp://{}:{}  (no TLS; Event Hubs clients add UseDevelopmentEmulator=true and the port to Endpoint)",
            text("hostname"),
            config.listeners.amqp_plain_port
        );
    }
    println!(
        "  service connection   {}",
        text("service_connection_string")
    );
    println!(
        "  Event Hubs endpoint  {}",
        text("eventhub_connection_string")
    );
    println!("  endpoints as JSON    {}", endpoints_path.display());
    println!("Stop with Ctrl-C.");
}
