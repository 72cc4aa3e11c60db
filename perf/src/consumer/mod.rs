//! The Event Hubs-compatible consumer: one receiver per partition, each on its own thread
//! with a blocking socket, measuring publish-to-consume latency from the timestamp header
//! the generator puts in every payload ([`crate::payload`]).
//!
//! Latency is measured from the same origin as PUBACK latency (the intended send time in
//! open-loop runs, the send time otherwise) and, separately, from the actual send time.
//! Events without the header, or from devices outside this run, are counted as foreign.

pub mod amqp;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use rustls::pki_types::ServerName;

use crate::clock::now_ns;
use crate::payload::Header;
use crate::schedule::LatencyOrigin;
use crate::stats::LatencyHistogram;
use amqp::{ClientEvent, ReceiverClient, ReceiverParams};

/// Where and how to consume.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The AMQP endpoint.
    pub address: SocketAddr,
    /// TLS (client config and the name to verify), or plain TCP.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// One per partition.
    pub partitions: Vec<ReceiverParams>,
    /// Where latency is measured from.
    pub origin: LatencyOrigin,
    /// Messages whose origin time is before this (the warm-up) are counted, not measured.
    pub window_start_ns: Arc<AtomicU64>,
    /// Devices in the run (headers naming others are foreign).
    pub devices: u32,
    /// Pin the receiver threads to this CPU.
    pub pin_core: Option<usize>,
}

/// Counters readable while the consumer runs.
#[derive(Debug, Default)]
pub struct Shared {
    /// Partitions attached.
    pub attached: AtomicU32,
    /// Partitions that failed.
    pub failed: AtomicU32,
    /// Events from this run.
    pub received: AtomicU64,
    /// Events without our header.
    pub foreign: AtomicU64,
}

/// What one partition receiver saw.
#[derive(Debug, Clone)]
pub struct PartitionResult {
    /// Which partition.
    pub partition: usize,
    /// Events from this run.
    pub received: u64,
    /// Events without our header or from other devices.
    pub foreign: u64,
    /// Publish-to-consume latency from the latency origin (measured window only).
    pub latency: LatencyHistogram,
    /// From the actual send time.
    pub from_send: LatencyHistogram,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Running receivers.
#[derive(Debug)]
pub struct Consumer {
    threads: Vec<JoinHandle<PartitionResult>>,
    stop: Arc<AtomicBool>,
    /// Live counters.
    pub shared: Arc<Shared>,
    partitions: u32,
}

impl Consumer {
    /// Connects every partition receiver on its own thread.
    pub fn start(config: &ConsumerConfig) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for (partition, params) in config.partitions.iter().enumerate() {
            let config = config.clone();
            let params = params.clone();
            let stop = stop.clone();
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("consumer-{partition}"))
                .spawn(move || {
                    if let Some(cpu) = config.pin_core {
                        let _ = crate::net::pin_current_thread(cpu);
                    }
                    receive(&config, partition, params, &stop, &shared)
                })
                .context("starting a consumer thread")?;
            threads.push(thread);
        }
        Ok(Self {
            threads,
            stop,
            shared,
            partitions: config.partitions.len() as u32,
        })
    }

    /// Waits until every partition is attached; fails if one fails or time runs out.
    pub fn wait_attached(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let attached = self.shared.attached.load(Ordering::Relaxed);
            let failed = self.shared.failed.load(Ordering::Relaxed);
            if failed > 0 {
                return Err(anyhow!(
                    "{failed} of {} partition receivers failed",
                    self.partitions
                ));
            }
            if attached == self.partitions {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(anyhow!(
                    "only {attached} of {} partition receivers attached within {timeout:?}",
                    self.partitions
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Events from this run so far.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// Waits until `expected` events arrived or nothing arrived for `quiet`, then stops
    /// every receiver and returns their results.
    pub fn finish(self, expected: u64, quiet: Duration) -> Vec<PartitionResult> {
        let mut last = self.received();
        let mut last_change = std::time::Instant::now();
        while self.received() < expected && last_change.elapsed() < quiet {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.received();
            if now != last {
                last = now;
                last_change = std::time::Instant::now();
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .enumerate()
            .map(|(partition, t)| {
                t.join().unwrap_or_else(|_| PartitionResult {
                    partition,
                    received: 0,
                    foreign: 0,
                    latency: LatencyHistogram::new(),
                    from_send: LatencyHistogram::new(),
                    error: Some("the receiver thread panicked".into()),
                })
            })
            .collect()
    }
}

/// A socket, with or without TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(buf),
            Self::Tls(s) => {
                s.write_all(buf)?;
                s.flush()
            }
        }
    }
}

fn connect(config: &ConsumerConfig) -> anyhow::Result<Stream> {
    let tcp = TcpStream::connect_timeout(&config.address, Duration::from_secs(5))
        .with_context(|| format!("connecting to AMQP at {}", config.address))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(match &config.tls {
        None => Stream::Plain(tcp),
        Some((tls, name)) => {
            let conn = rustls::ClientConnection::new(tls.clone(), name.clone())?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    })
}

fn receive(
    config: &ConsumerConfig,
    partition: usize,
    params: ReceiverParams,
    stop: &AtomicBool,
    shared: &Shared,
) -> PartitionResult {
    let mut result = PartitionResult {
        partition,
        received: 0,
        foreign: 0,
        latency: LatencyHistogram::new(),
        from_send: LatencyHistogram::new(),
        error: None,
    };
    let mut stream = match connect(config) {
        Ok(stream) => stream,
        Err(error) => {
            result.error = Some(format!("{error:#}"));
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return result;
        }
    };
    let mut client = ReceiverClient::new(params);
    let mut out = Vec::new();
    let mut buf = vec![0_u8; 256 * 1024];
    let mut last_sent = now_ns();
    while !stop.load(Ordering::Relaxed) {
        out.clear();
        client.poll_transmit(&mut out);
        if !out.is_empty() {
            if let Err(error) = stream.write_all(&out) {
                result.error = Some(format!("writing: {error}"));
                break;
            }
            last_sent = now_ns();
        }
        let read = stream.read(&mut buf);
        // Events are stamped when their bytes arrived, not after the whole read is parsed.
        let now = now_ns();
        match read {
            Ok(0) => client.handle_eof(),
            Ok(n) => client.handle_bytes(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                result.error = Some(format!("reading: {e}"));
                break;
            }
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Attached => {
                    shared.attached.fetch_add(1, Ordering::Relaxed);
                }
                ClientEvent::Authorized => {}
                ClientEvent::Message(message) => record(config, &message, now, &mut result, shared),
                ClientEvent::Failed(why) => result.error = Some(why),
            }
        }
        if result.error.is_some() {
            break;
        }
        if let Some(ms) = client.keepalive_interval_ms()
            && now - last_sent > u64::from(ms) * 1_000_000
        {
            client.heartbeat();
        }
    }
    if result.error.is_some() {
        shared.failed.fetch_add(1, Ordering::Relaxed);
    } else {
        client.close();
        out.clear();
        client.poll_transmit(&mut out);
        let _ = stream.write_all(&out);
    }
    result
}

fn record(
    config: &ConsumerConfig,
    message: &[u8],
    now: u64,
    result: &mut PartitionResult,
    shared: &Shared,
) {
    let header = amqp::data_body(message)
        .and_then(Header::parse)
        .filter(|h| h.device < config.devices);
    let Some(header) = header else {
        result.foreign += 1;
        shared.foreign.fetch_add(1, Ordering::Relaxed);
        return;
    };
    result.received += 1;
    shared.received.fetch_add(1, Ordering::Relaxed);
    let origin = match config.origin {
        LatencyOrigin::Intended => header.intended_ns,
        LatencyOrigin::Sent => header.sent_ns,
    };
    if origin >= config.window_start_ns.load(Ordering::Relaxed) {
        result.latency.record(
            config
                .origin
                .latency_ns(header.intended_ns, header.sent_ns, now),
        );
        result.from_send.record(now.saturating_sub(header.sent_ns));
    }
}
