//! How fast one Event Hubs consumer reads one partition: the data plane (one shard) serves a
//! partition filled beforehand, and one AMQP receiver over TLS reads it from the start.
//!
//! ```text
//! cargo run --release -p dataplane --example eventhub_read -- \
//!     [--events 1000000] [--payload 256] [--runs 3] [--plain] [--server-cpu 0] [--client-cpu 1]
//! ```
//!
//! The server is the real data plane (`DataPlane::start`, the AMQP listener, TLS, SASL PLAIN
//! with a policy key, the partition reader, the event encoder), started in this process with
//! one shard pinned to `--server-cpu`. The consumer is a minimal AMQP client on one thread
//! pinned to `--client-cpu`: it keeps credit and the session window open and counts transfer
//! frames without decoding them. Each run attaches a new receiver at the start of the
//! partition and reads every event. Prints events/s, MB/s of payload and the CPU time of the
//! shard and of the consumer per event.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use dataplane::{DataPlane, DataPlaneConfig, Limits, ListenerConfig};
use dataplane_amqp::codec::{self, Compound};
use dataplane_amqp::frame::{AMQP_HEADER, SASL_HEADER};
use dataplane_amqp::performative::{
    AttachFields, BeginFields, FlowFields, LinkFlowFields, OpenFields, Role, write_frame,
    write_sasl_init,
};
use dataplane_log::{Partition, PartitionConfig, PartitionId, RecordInput};
use schemas::plane::{ControlMessage, HubSnapshot, PolicyGrant};

const HUB: &str = "bench";
const POLICY: &str = "service";
const KEY: &str = "YmVuY2gta2V5LWJlbmNoLWtleS1iZW5jaC1rZXktMzI=";
/// Credit granted to the receiver; topped up when half is used.
const CREDIT: u32 = 20_000;
/// Session window in transfer frames; reopened with every credit top-up.
const WINDOW: u32 = 65_536;
const RECEIVER_HANDLE: u32 = 0;

struct Options {
    events: u64,
    payload: usize,
    runs: usize,
    plain: bool,
    server_cpu: usize,
    client_cpu: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        events: 1_000_000,
        payload: 256,
        runs: 3,
        plain: false,
        server_cpu: 0,
        client_cpu: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().context("a value after the flag");
        match flag.as_str() {
            "--events" => options.events = value()?.parse()?,
            "--payload" => options.payload = value()?.parse()?,
            "--runs" => options.runs = value()?.parse()?,
            "--plain" => options.plain = true,
            "--server-cpu" => options.server_cpu = value()?.parse()?,
            "--client-cpu" => options.client_cpu = value()?.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let dir = tempfile::tempdir()?;
    let log = PartitionConfig {
        segment_bytes: 256 << 20,
        ..PartitionConfig::default()
    };
    let filled = Instant::now();
    fill(
        &dir.path().join("hubs").join(HUB).join("events").join("0"),
        &log,
        &options,
    )?;
    eprintln!(
        "filled partition 0 with {} events of {} B in {:.1} s",
        options.events,
        options.payload,
        filled.elapsed().as_secs_f64()
    );

    let (certificate, tls) = tls_configs()?;
    let address: SocketAddr = "127.0.0.1:0".parse()?;
    let config = DataPlaneConfig {
        spin_before_park: std::time::Duration::ZERO,
        applied_versions: None,
        shard_count: 1,
        cpus: vec![options.server_cpu],
        data_dir: dir.path().to_owned(),
        accepted_hosts: vec!["localhost".into()],
        mqtt: Vec::new(),
        amqp: vec![ListenerConfig {
            address,
            tls: (!options.plain).then(|| Arc::clone(&tls)),
        }],
        hub_created_ms: 0,
        log,
        limits: Limits::default(),
        retention_interval: Duration::from_hours(1),
    };
    let listeners = dataplane::bind_listeners(&config)
        .map_err(|(address, error)| anyhow::anyhow!("{address}: {error}"))?;
    let port = local_port(&listeners[0].amqp[0].0)?;
    let (control, subscription) = crossbeam_channel::unbounded();
    control.send(ControlMessage::Snapshot(Arc::new(HubSnapshot {
        version: 1,
        hub_name: HUB.into(),
        partition_count: 2,
        identities: Vec::new(),
        policies: vec![PolicyGrant {
            name: POLICY.into(),
            primary_key: KEY.into(),
            secondary_key: KEY.into(),
            device_connect: false,
            service_connect: true,
        }],
        consumer_groups: vec!["$Default".into()],
    })))?;
    let (reports, _report_receiver) = crossbeam_channel::unbounded();
    let data_plane = DataPlane::start(config, vec![subscription], &reports, listeners)?;

    let client_tls = (!options.plain)
        .then(|| client_config(&certificate))
        .transpose()?;
    let mut rates = Vec::new();
    for run in 1..=options.runs {
        let shard_before = shard_cpu()?;
        let outcome = {
            let client_tls = client_tls.clone();
            let events = options.events;
            let cpu = options.client_cpu;
            std::thread::spawn(move || consume(port, client_tls, events, cpu))
                .join()
                .map_err(|_| anyhow::anyhow!("the consumer panicked"))??
        };
        let shard = shard_cpu()?.saturating_sub(shard_before);
        let seconds = outcome.elapsed.as_secs_f64();
        let rate = options.events as f64 / seconds;
        rates.push(rate);
        println!(
            "run {run}: {:.0} events/s, {:.1} MB/s of payload, shard {:.2} us/event, consumer {:.2} us/event ({} events in {:.2} s, {} over {})",
            rate,
            rate * options.payload as f64 / 1e6,
            shard.as_secs_f64() * 1e6 / options.events as f64,
            outcome.cpu.as_secs_f64() * 1e6 / options.events as f64,
            options.events,
            seconds,
            options.payload,
            if options.plain { "plain TCP" } else { "TLS" },
        );
    }
    rates.sort_by(f64::total_cmp);
    println!("median: {:.0} events/s", rates[rates.len() / 2]);
    data_plane.stop();
    Ok(())
}

/// Writes `events` records of `payload` bytes, shaped like device telemetry.
fn fill(dir: &std::path::Path, config: &PartitionConfig, options: &Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (mut partition, _) = Partition::open(dir, PartitionId(0), config.clone())?;
    let payload = vec![b'x'; options.payload];
    let properties = [("temperatureAlert", "false")];
    let record = RecordInput {
        message_id: Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
        content_type: Some("application/json"),
        content_encoding: Some("utf-8"),
        connection_device_id: Some("bench-device-0001"),
        auth_method: Some(
            r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#,
        ),
        auth_generation_id: Some("638000000000000001"),
        message_source: Some("Telemetry"),
        properties: &properties,
        payload: &payload,
        ..RecordInput::default()
    };
    let batch = vec![record; 1000];
    let mut written = 0;
    let now_ms = 1_700_000_000_000;
    while written < options.events {
        let count = (options.events - written).min(batch.len() as u64) as usize;
        partition.append(&batch[..count], now_ms)?;
        written += count as u64;
        if written % 100_000 == 0 {
            partition.flush_now()?;
        }
    }
    partition.flush_now()?;
    Ok(())
}

fn local_port(socket: &std::os::fd::OwnedFd) -> anyhow::Result<u16> {
    let socket = socket2::SockRef::from(socket);
    socket
        .local_addr()?
        .as_socket()
        .map(|address| address.port())
        .context("an IP listener")
}

fn tls_configs() -> anyhow::Result<(Vec<u8>, Arc<rustls::ServerConfig>)> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let der = certified.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![der.clone().into()], key)?;
    Ok((der, Arc::new(config)))
}

fn client_config(certificate: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.to_vec().into())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// CPU time of the shard thread so far.
fn shard_cpu() -> anyhow::Result<Duration> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        if !std::fs::read_to_string(path.join("comm"))?.starts_with("shard-0") {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        return Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64));
    }
    bail!("no shard-0 thread")
}

fn thread_cpu() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid timespec for the call to fill.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut time);
    }
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set);
    }
}

struct Outcome {
    elapsed: Duration,
    cpu: Duration,
}

/// Either side of the consumer's socket.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.read(buffer),
            Self::Tls(stream) => stream.read(buffer),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(socket) => socket.write_all(bytes),
            Self::Tls(stream) => stream.write_all(bytes),
        }
    }
}

fn consume(
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    events: u64,
    cpu: usize,
) -> anyhow::Result<Outcome> {
    pin_to(cpu);
    let socket = TcpStream::connect(("127.0.0.1", port))?;
    socket.set_nodelay(true)?;
    let mut stream = match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
            let connection = rustls::ClientConnection::new(config, name)?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(connection, socket)))
        }
        None => Stream::Plain(socket),
    };
    stream.write_all(&handshake())?;

    let mut input = vec![0u8; 256 * 1024];
    let mut pending: Vec<u8> = Vec::with_capacity(512 * 1024);
    let mut received: u64 = 0;
    let mut granted_at: u64 = 0;
    let mut first: Option<(Instant, Duration)> = None;
    let mut flow = Vec::with_capacity(64);
    while received < events {
        let read = stream.read(&mut input)?;
        if read == 0 {
            bail!("the server closed the connection after {received} events");
        }
        pending.extend_from_slice(&input[..read]);
        let mut at = 0;
        loop {
            let rest = &pending[at..];
            if rest.starts_with(b"AMQP") && rest.len() >= 8 {
                at += 8;
                continue;
            }
            if rest.len() < 8 {
                break;
            }
            let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if rest.len() < size {
                break;
            }
            let body = &rest[usize::from(rest[4]) * 4..size];
            match body.get(2) {
                // transfer
                Some(0x14) => {
                    received += 1;
                    if first.is_none() {
                        first = Some((Instant::now(), thread_cpu()));
                    }
                }
                // detach or close: the server refused something
                Some(0x16 | 0x18) => bail!("the server detached or closed: {body:02x?}"),
                _ => {}
            }
            at += size;
        }
        pending.drain(..at);
        if received - granted_at >= u64::from(CREDIT / 2) {
            granted_at = received;
            flow.clear();
            write_flow(&mut flow, received);
            stream.write_all(&flow)?;
        }
    }
    let (started, cpu_at_start) = first.context("no event arrived")?;
    Ok(Outcome {
        elapsed: started.elapsed(),
        cpu: thread_cpu().saturating_sub(cpu_at_start),
    })
}

/// SASL PLAIN with the policy key, open, begin, a receiver from the start of partition 0,
/// and its first credit.
fn handshake() -> Vec<u8> {
    let mut bytes = SASL_HEADER.to_vec();
    let response = format!("\0{POLICY}\0{KEY}");
    write_sasl_init(
        &mut bytes,
        "PLAIN",
        Some(response.as_bytes()),
        Some("localhost"),
    );
    bytes.extend_from_slice(&AMQP_HEADER);
    write_frame(
        &mut bytes,
        0,
        &OpenFields {
            container_id: "eventhub-read-bench",
            hostname: Some("localhost"),
            max_frame_size: 1 << 20,
            channel_max: 1,
            idle_timeout_ms: None,
            offered_capabilities: None,
            properties: None,
        },
    );
    write_frame(
        &mut bytes,
        0,
        &BeginFields {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: WINDOW,
            outgoing_window: WINDOW,
            handle_max: 8,
        },
    );
    let mut source = Vec::new();
    codec::put_descriptor(&mut source, 0x28);
    let list = Compound::begin_list(&mut source);
    codec::put_str(
        &mut source,
        &format!("amqps://localhost/{HUB}/ConsumerGroups/$Default/Partitions/0"),
    );
    // durable, expiry-policy, timeout, dynamic, dynamic-node-properties, distribution-mode
    for _ in 0..6 {
        codec::put_null(&mut source);
    }
    let filters = Compound::begin_map(&mut source);
    codec::put_sym(&mut source, "apache.org:selector-filter:string");
    // A described value with a symbolic descriptor: 0x00, the symbol, the value.
    source.push(0x00);
    codec::put_sym(&mut source, "apache.org:selector-filter:string");
    codec::put_str(&mut source, "amqp.annotation.x-opt-offset > '-1'");
    filters.end(&mut source, 2);
    list.end(&mut source, 8);
    let mut target = Vec::new();
    codec::put_descriptor(&mut target, 0x29);
    let list = Compound::begin_list(&mut target);
    codec::put_str(&mut target, "eventhub-read-bench");
    list.end(&mut target, 1);
    write_frame(
        &mut bytes,
        0,
        &AttachFields {
            name: "eventhub-read-bench",
            handle: RECEIVER_HANDLE,
            role: Role::Receiver,
            snd_settle_mode: 0,
            rcv_settle_mode: 0,
            source: Some(&source),
            target: Some(&target),
            initial_delivery_count: None,
            max_message_size: Some(1 << 20),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        },
    );
    write_flow(&mut bytes, 0);
    bytes
}

/// A flow that reopens the session window and grants [`CREDIT`] from `received` on.
fn write_flow(bytes: &mut Vec<u8>, received: u64) {
    write_frame(
        bytes,
        0,
        &FlowFields {
            next_incoming_id: Some(received as u32),
            incoming_window: WINDOW,
            next_outgoing_id: 0,
            outgoing_window: WINDOW,
            link: Some(LinkFlowFields {
                handle: RECEIVER_HANDLE,
                delivery_count: Some(received as u32),
                link_credit: Some(CREDIT),
                available: None,
                drain: false,
            }),
            echo: false,
        },
    );
}

#[cfg(test)]
mod tests {
    /// Setup: the bytes the consumer sends first. Expectation: every AMQP frame among them
    /// decodes as a performative.
    #[test]
    fn the_handshake_decodes() {
        let bytes = super::handshake();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            if rest.starts_with(b"AMQP") {
                rest = &rest[8..];
                continue;
            }
            let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let body = &rest[8..size];
            if rest[5] == 0 {
                let decoded = dataplane_amqp::performative::decode(body);
                assert!(decoded.is_ok(), "{body:02x?}: {decoded:?}");
            }
            rest = &rest[size..];
        }
    }
}
