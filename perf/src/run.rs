//! From a scenario to a report: find or start the server, register devices, build the
//! plan, start the consumer, run the load thread, and compute the report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use crate::clock::unix_secs;
use crate::consumer::amqp::{EventHub, ReceiverParams};
use crate::consumer::{Consumer, ConsumerConfig};
use crate::driver::{self, ConnectPlan, Identity, Plan, TlsClient};
use crate::payload::PayloadSizes;
use crate::registry::{self, Registration};
use crate::report::{Report, ReportInputs, TargetInfo};
use crate::scenario::{Scenario, TargetKind};
use crate::schedule::LatencyOrigin;
use crate::shoal::{Endpoints, ShoalProcess};

/// A run's report, and the Shoal it started (kept until the caller is done with it).
#[derive(Debug)]
pub struct Finished {
    /// The report.
    pub report: Report,
    /// The Shoal started for the run, if any; dropping it stops the server.
    pub shoal: Option<ShoalProcess>,
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}:{port}"))?
        .next()
        .ok_or_else(|| anyhow!("{host}:{port} resolves to nothing"))
}

/// A status line on stderr, unless the run is quiet.
fn say(scenario: &Scenario, text: &str) {
    if scenario.output.progress {
        eprintln!("{text}");
    }
}

/// Runs a scenario.
pub fn execute(scenario: &Scenario) -> anyhow::Result<Finished> {
    let mut scenario = scenario.clone();
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let cores = crate::procfs::online_cpus();
    let shoal = if scenario.target.start_shoal {
        let binary = crate::shoal::shoal_binary()?;
        // The reference layout: server on core 0, load on core 1.
        let server_cpu = (cores >= 2).then_some(0);
        if cores >= 2 && scenario.runner.pin_core.is_none() {
            scenario.runner.pin_core = Some(1);
        }
        say(
            &scenario,
            &format!(
                "starting {} (pinned to CPU {server_cpu:?})",
                binary.display()
            ),
        );
        Some(ShoalProcess::start(&binary, server_cpu)?)
    } else {
        None
    };
    let endpoints = match (&shoal, &scenario.target.data_dir) {
        (Some(process), _) => Some(process.endpoints.clone()),
        (None, Some(dir)) if scenario.target.kind == TargetKind::Shoal => {
            Some(Endpoints::read(dir)?)
        }
        _ => None,
    };
    if scenario.target.kind == TargetKind::Shoal {
        let Some(e) = &endpoints else {
            bail!("target.kind = shoal needs --data-dir (a running Shoal's) or --start-shoal");
        };
        let t = &mut scenario.target;
        if t.port == 0 {
            t.port = e.mqtt_port;
        }
        if t.ca.is_none() {
            t.ca.clone_from(&e.ca_cert_path);
        }
        if t.server_name.is_none() {
            t.server_name = Some(e.hostname.clone());
        }
        if t.server_pid.is_none() {
            t.server_pid = Some(e.pid);
        }
        let c = &mut scenario.consumer;
        if c.port == 0 {
            c.port = e.amqp_port;
        }
        if c.hub.is_empty() {
            c.hub = e.hub_name.clone().unwrap_or_else(|| "shoal".into());
        }
        if c.partitions == 0 {
            c.partitions = e.partition_count.unwrap_or(4);
        }
        if c.key.is_empty() {
            c.key = e.policy_key(&c.policy).unwrap_or_default();
        }
        if c.audience_host.is_empty() {
            c.audience_host.clone_from(&e.hostname);
        }
    }
    scenario.validate()?;
    let devices = scenario.devices.count;
    let tls_on = scenario.target.uses_tls();
    let address = resolve(&scenario.target.host, scenario.target.port)?;

    // Identities (and registration).
    let run_secs = (scenario.publish.duration.ns() + scenario.publish.warmup.ns()) / 1_000_000_000;
    let expiry = unix_secs() + 3600 + 2 * run_secs;
    let (identities, registration): (Vec<Identity>, Option<Registration>) = match scenario
        .target
        .kind
    {
        TargetKind::Mqtt => ((0..devices).map(registry::peer_identity).collect(), None),
        TargetKind::Shoal => {
            let e = endpoints.as_ref().expect("checked above");
            say(
                &scenario,
                &format!(
                    "registering {devices} devices ({:?})",
                    scenario.devices.register
                ),
            );
            let (keys, registration) = registry::register(
                &e.service_connection_string,
                e.ca_cert_path.as_deref(),
                &scenario.devices.prefix,
                devices,
                scenario.devices.register,
            )?;
            let host = &e.hostname;
            let ids = keys
                .iter()
                .enumerate()
                .map(|(n, key)| {
                    let id = registry::device_id(&scenario.devices.prefix, n as u32);
                    registry::iothub_identity(host, &id, key, expiry, &scenario.publish.properties)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            (ids, Some(registration))
        }
    };

    let server_name = scenario
        .target
        .server_name
        .clone()
        .unwrap_or_else(|| scenario.target.host.clone());
    let tls_config = if tls_on {
        let ca = scenario
            .target
            .ca
            .as_deref()
            .ok_or_else(|| anyhow!("TLS needs a CA"))?;
        Some((
            crate::tls::client_config(
                ca,
                scenario.target.tls_versions,
                scenario.target.tls_resumption,
            )?,
            crate::tls::server_name(&server_name)?,
        ))
    } else {
        None
    };
    let source_ips: Vec<IpAddr> = match address.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && scenario.devices.source_ips > 0 => {
            (1..=scenario.devices.source_ips)
                .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
                .collect()
        }
        _ => Vec::new(),
    };
    let wanted_fds = u64::from(devices) + 1024;
    let limit = crate::net::raise_nofile_limit(wanted_fds);
    if limit < wanted_fds {
        // Always said: the run will fail with connect errors otherwise.
        eprintln!(
            "warning: open-file limit {limit} is below the {wanted_fds} this run needs; raise it with `ulimit -n {wanted_fds}`"
        );
    }

    let origin = if scenario.open_loop_rate().is_some() {
        LatencyOrigin::Intended
    } else {
        LatencyOrigin::Sent
    };
    let window_start = Arc::new(AtomicU64::new(u64::MAX));
    let consumer = if scenario.consumer.enabled {
        let c = &scenario.consumer;
        let amqp_host = c
            .host
            .clone()
            .unwrap_or_else(|| scenario.target.host.clone());
        let amqp_address = resolve(&amqp_host, c.port)?;
        let hostname = endpoints
            .as_ref()
            .map_or(amqp_host.clone(), |e| e.hostname.clone());
        let hub = EventHub {
            host: hostname.clone(),
            audience_host: c.audience_host.clone(),
            hub: c.hub.clone(),
            consumer_group: c.consumer_group.clone(),
            policy: c.policy.clone(),
            key: c.key.clone(),
        };
        let params = (0..c.partitions)
            .map(|pid| ReceiverParams::for_partition(&hub, pid, &c.start, expiry, c.credit))
            .collect();
        let tls = if c.tls {
            let ca = scenario
                .target
                .ca
                .as_deref()
                .ok_or_else(|| anyhow!("the consumer's TLS needs a CA"))?;
            Some((
                crate::tls::client_config(ca, crate::tls::TlsVersions::Any, false)?,
                crate::tls::server_name(&hostname)?,
            ))
        } else {
            None
        };
        let config = ConsumerConfig {
            address: amqp_address,
            tls,
            partitions: params,
            origin,
            window_start_ns: window_start.clone(),
            devices,
            pin_core: scenario.runner.pin_core,
        };
        say(
            &scenario,
            &format!(
                "attaching the Event Hubs consumer to {} partitions at {amqp_address}",
                c.partitions
            ),
        );
        let consumer = Consumer::start(&config)?;
        consumer
            .wait_attached(Duration::from_secs(30))
            .context("the Event Hubs consumer could not attach (is Shoal's AMQP endpoint up?)")?;
        Some(consumer)
    } else {
        None
    };

    let payload = PayloadSizes::parse(&scenario.publish.payload).map_err(|e| anyhow!(e))?;
    let p = &scenario.publish;
    let progress_extra: Option<Box<dyn Fn() -> String + Send>> = consumer.as_ref().map(|c| {
        let shared = c.shared.clone();
        let f: Box<dyn Fn() -> String + Send> = Box::new(move || {
            format!(
                "consumed {}",
                driver::si(shared.received.load(std::sync::atomic::Ordering::Relaxed) as f64)
            )
        });
        f
    });
    let plan = Plan {
        address,
        source_ips,
        tls: tls_config.map(|(config, server_name)| TlsClient {
            config,
            server_name,
        }),
        identities,
        clean_session: scenario.devices.clean_session,
        keep_alive_s: scenario.devices.keep_alive_s,
        connect: ConnectPlan {
            rate: scenario.connect.rate,
            concurrency: scenario.connect.concurrency,
            timeout_ns: scenario.connect.timeout.ns(),
            retries: scenario.connect.retries,
            backoff_ns: scenario.connect.retry_backoff.ns(),
        },
        qos: p.qos,
        payload,
        open_rate: scenario.open_loop_rate(),
        inflight: p.inflight,
        duration_ns: p.duration.ns(),
        messages: p.messages,
        warmup_ns: p.warmup.ns(),
        drain_timeout_ns: p.drain_timeout.ns(),
        storms: scenario.storms.clone(),
        idle: p.idle,
        progress: scenario.output.progress,
        server_pid: scenario.target.server_pid,
        seed: p.seed,
        progress_extra,
        spin_ns: scenario.runner.spin_us(scenario.consumer.enabled) * 1_000,
        window_start: Some(window_start),
    };
    let server_executable = scenario
        .target
        .server_pid
        .and_then(crate::procfs::executable);
    let pin = scenario.runner.pin_core;
    let outcome = std::thread::Builder::new()
        .name("load".into())
        .spawn(move || {
            if let Some(cpu) = pin {
                crate::net::pin_current_thread(cpu)
                    .with_context(|| format!("pinning the load thread to CPU {cpu}"))?;
            }
            driver::run(&plan)
        })
        .context("starting the load thread")?
        .join()
        .map_err(|_| anyhow!("the load thread panicked"))??;
    // QoS 0 is never acknowledged: every message sent is one to wait for.
    let delivered = if scenario.publish.qos == 0 {
        outcome.publish.sent
    } else {
        outcome.publish.acked
    };
    let consumer_results = consumer.map(|c| c.finish(delivered, Duration::from_secs(3)));
    let label = if scenario.output.label.is_empty() {
        match scenario.target.kind {
            TargetKind::Shoal => "shoal".to_owned(),
            TargetKind::Mqtt => "mqtt".to_owned(),
        }
    } else {
        scenario.output.label.clone()
    };
    let report = Report::build(
        &outcome,
        ReportInputs {
            scenario: &scenario,
            target: TargetInfo {
                kind: match scenario.target.kind {
                    TargetKind::Shoal => "shoal".into(),
                    TargetKind::Mqtt => "mqtt".into(),
                },
                address: address.to_string(),
                tls: tls_on,
                server_pid: scenario.target.server_pid,
                label,
                server_executable,
            },
            registration,
            consumer: consumer_results,
            started_at,
        },
    );
    Ok(Finished { report, shoal })
}
