//! The report: computed once from a run's raw measurements, then printed for people, written
//! as JSON for machines, and drawn as SVG.
//!
//! Definitions used everywhere:
//! - **Window**: from the end of the warm-up to the end of publishing (count-limited runs:
//!   to the last ack). Rates and CPU figures are over the window only.
//! - **msgs/s**: QoS 1 acknowledgements received inside the window per second (QoS 0:
//!   messages written); **MB/s**: their payload bytes (10^6 bytes) per second.
//! - **PUBACK latency**: ack time minus intended send time in open-loop runs (corrected for
//!   coordinated omission), minus actual send time in closed-loop runs; every message whose
//!   origin time falls inside the window, including those acknowledged during the drain.
//! - **Server CPU per message**: the server's user + system CPU over the window divided by
//!   the window's messages.
//! - **Memory per connection**: server RSS after the connect phase minus before it, divided
//!   by the connections established.

use serde::Serialize;

use crate::clock::human_ns;
use crate::consumer::PartitionResult;
use crate::driver::{Outcome, Snapshot};
use crate::procfs::Machine;
use crate::registry::Registration;
use crate::scenario::Scenario;
use crate::schedule::LatencyOrigin;
use crate::stats::{
    ErrorCounts, LatencyHistogram, PercentilePoint, PublishCounts, Summary, TimelinePoint,
};

/// Above this share of a core, the generator may be what limits the figures.
pub const GENERATOR_BUSY_WARN_PCT: f64 = 90.0;
/// Other processes using more than this share of a core make a run noisy.
pub const OTHER_CPU_WARN_PCT: f64 = 10.0;

/// Who ran what, where.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// Always "shoal-perf".
    pub tool: &'static str,
    /// Its version.
    pub version: &'static str,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// `git rev-parse HEAD` of the checkout (`-dirty` when it has changes).
    pub git_commit: Option<String>,
    /// The machine.
    pub machine: Machine,
}

/// The server being measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// "shoal" or "mqtt".
    pub kind: String,
    /// Host and port connected to.
    pub address: String,
    /// TLS in use.
    pub tls: bool,
    /// The measured process, if any.
    pub server_pid: Option<u32>,
    /// A label (e.g. "mosquitto").
    pub label: String,
    /// The measured process's executable.
    pub server_executable: Option<crate::procfs::Executable>,
}

/// Connection figures.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// Devices in the run.
    pub devices: u64,
    /// Connected at the end of the connect phase.
    pub connected: u64,
    /// Connect attempts.
    pub attempts: u64,
    /// Devices that gave up.
    pub gave_up: u64,
    /// Seconds the connect phase took.
    pub connect_phase_s: f64,
    /// Connections per second during the connect phase.
    pub connects_per_s: f64,
    /// TCP connect to CONNACK.
    pub connect: Summary,
    /// TCP connect to the end of the TLS handshake.
    pub tls_handshake: Summary,
    /// Reconnects (storms, drops): disconnect to CONNACK.
    pub reconnect: Summary,
    /// Connections dropped by storms.
    pub storm_drops: u64,
    /// Failed attempts and dropped sessions.
    pub errors: ErrorCounts,
}

/// Publish figures.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    /// Every message of the run.
    pub counts: PublishCounts,
    /// The identity `sent == acked + errors` holds (QoS 1).
    pub counts_add_up: bool,
    /// Measured window, seconds.
    pub window_s: f64,
    /// Messages in the window (acks, or sends for QoS 0).
    pub window_messages: u64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Where latency is measured from.
    pub latency_origin: LatencyOrigin,
    /// PUBACK latency.
    pub puback: Summary,
    /// Ack minus actual send time.
    pub service_time: Summary,
    /// Open loop: how late the generator released due messages.
    pub generator_lag: Summary,
    /// Open loop: messages due before the stop that were never sent.
    pub unsent_due: u64,
    /// Open loop: messages scheduled for devices that gave up connecting, never sent.
    pub abandoned_due: u64,
    /// PUBLISH packets received from the server (none expected).
    pub received_publishes: u64,
}

/// Publish-to-consume figures.
#[derive(Debug, Clone, Serialize)]
pub struct EndToEndReport {
    /// Partitions read.
    pub partitions: usize,
    /// Events from this run.
    pub received: u64,
    /// Events without our header.
    pub foreign: u64,
    /// Acknowledged messages not (yet) consumed when the consumer stopped.
    pub missing: u64,
    /// Latency from the latency origin.
    pub latency: Summary,
    /// Latency from the actual send time.
    pub from_send: Summary,
    /// Receivers that failed, with the reason.
    pub errors: Vec<String>,
}

/// The server's cost.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// The pid measured.
    pub pid: u32,
    /// CPU seconds over the window.
    pub cpu_s: f64,
    /// Cores used on average over the window.
    pub cores: f64,
    /// Microseconds of CPU per message.
    pub cpu_us_per_msg: Option<f64>,
    /// RSS before connecting.
    pub rss_before_connect_bytes: u64,
    /// RSS after connecting.
    pub rss_after_connect_bytes: u64,
    /// RSS at the end of the window.
    pub rss_end_bytes: u64,
    /// Highest RSS (VmHWM or the highest sample).
    pub rss_peak_bytes: u64,
    /// (after − before) / connections.
    pub rss_per_connection_bytes: Option<f64>,
    /// Server CPU during the connect phase per connection (TCP accept, TLS handshake,
    /// CONNECT, authentication), in microseconds.
    pub connect_cpu_us_per_connection: Option<f64>,
}

/// The generator's own cost, so a reader can tell whether it was the bottleneck.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorReport {
    /// The load thread's CPU over the window, percent of one core, spinning included.
    pub load_thread_cpu_pct: f64,
    /// The same without the time spent spinning on empty polls just before due times:
    /// how busy the thread was with work. This is what says whether the generator could
    /// have gone faster.
    pub load_thread_busy_pct: f64,
    /// The whole process (load thread, consumer threads, main), cores.
    pub process_cores: f64,
    /// Generator RSS growth per connection.
    pub rss_per_connection_bytes: Option<f64>,
    /// CPU used by everything else on the machine over the window, cores.
    pub other_processes_cores: Option<f64>,
    /// CPU stolen by the hypervisor over the window, cores.
    pub steal_cores: f64,
    /// Share of the window the machine's disk(s) had I/O in flight, percent (summed over
    /// disks). Anyone's I/O: the server's durable writes, or another process's.
    pub disk_busy_pct: f64,
    /// Bytes written to the machine's disks during the window (by anyone).
    pub disk_written_bytes: u64,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Connections.
    pub connections: ConnectionReport,
    /// Publishing.
    pub publish: PublishReport,
    /// Publish-to-consume, when the consumer ran.
    pub end_to_end: Option<EndToEndReport>,
    /// The server, when measured.
    pub server: Option<ServerReport>,
    /// The generator.
    pub generator: GeneratorReport,
    /// Percentile distributions for plots.
    pub distributions: Distributions,
}

/// Percentile distributions.
#[derive(Debug, Clone, Serialize)]
pub struct Distributions {
    /// PUBACK latency.
    pub puback: Vec<PercentilePoint>,
    /// Service time.
    pub service_time: Vec<PercentilePoint>,
    /// Connect time.
    pub connect: Vec<PercentilePoint>,
    /// Publish-to-consume latency.
    pub end_to_end: Vec<PercentilePoint>,
}

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Who, when, where.
    pub provenance: Provenance,
    /// The scenario as run.
    pub config: Scenario,
    /// The server.
    pub target: TargetInfo,
    /// Shoal device registration, when done.
    pub registration: Option<Registration>,
    /// The figures.
    pub results: Results,
    /// One point per second.
    pub timeline: Vec<TimelinePoint>,
    /// Things a reader must know before trusting the figures.
    pub warnings: Vec<String>,
}

/// Inputs to [`Report::build`] besides the outcome.
#[derive(Debug)]
pub struct ReportInputs<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// The server.
    pub target: TargetInfo,
    /// Registration, if any.
    pub registration: Option<Registration>,
    /// Consumer results, if it ran.
    pub consumer: Option<Vec<PartitionResult>>,
    /// When the run started (RFC 3339).
    pub started_at: String,
}

fn cpu_delta(a: &Snapshot, b: &Snapshot) -> Option<u64> {
    Some(b.server?.cpu_ns.saturating_sub(a.server?.cpu_ns))
}

impl Report {
    /// Computes every figure from a run.
    pub fn build(outcome: &Outcome, inputs: ReportInputs<'_>) -> Self {
        let scenario = inputs.scenario;
        let (w0, w1) = outcome.window_ns;
        let window_ns = w1.saturating_sub(w0).max(1);
        let window_s = window_ns as f64 / 1e9;
        let qos0 = scenario.publish.qos == 0;
        let window_messages = if qos0 {
            outcome.window_sent
        } else {
            outcome.window_acked
        };
        let counts = outcome.publish;
        let counts_add_up = qos0 || counts.sent == counts.acked + counts.errors.total();
        let publish = PublishReport {
            counts,
            counts_add_up,
            window_s,
            window_messages,
            msgs_per_s: window_messages as f64 / window_s,
            mb_per_s: outcome.window_payload_bytes as f64 / window_s / 1e6,
            latency_origin: outcome.latency_origin,
            puback: outcome.latency.summary(),
            service_time: outcome.service.summary(),
            generator_lag: outcome.generator_lag.summary(),
            unsent_due: outcome.unsent_due,
            abandoned_due: outcome.abandoned_due,
            received_publishes: outcome.received_publishes,
        };
        let c = &outcome.connections;
        let connect_phase_s = outcome
            .after_connect
            .at_ns
            .saturating_sub(outcome.before_connect.at_ns) as f64
            / 1e9;
        let connections = ConnectionReport {
            devices: u64::from(scenario.devices.count),
            connected: c.connected_after_ramp,
            attempts: c.attempts,
            gave_up: c.gave_up,
            connect_phase_s,
            connects_per_s: c.connected_after_ramp as f64 / connect_phase_s.max(1e-9),
            connect: c.connect.summary(),
            tls_handshake: c.tls_handshake.summary(),
            reconnect: c.reconnect.summary(),
            storm_drops: c.storm_drops,
            errors: c.errors,
        };
        // CPU, disk and machine figures are rates over the span between the two snapshots,
        // which in count runs also covers the drain after the last acknowledgement.
        let sampled_ns = outcome
            .window_end
            .at_ns
            .saturating_sub(outcome.window_start.at_ns)
            .max(1);
        let server = inputs.target.server_pid.and_then(|pid| {
            let cpu_ns = cpu_delta(&outcome.window_start, &outcome.window_end)?;
            let before = outcome.before_connect.server?;
            let after = outcome.after_connect.server?;
            let end = outcome.window_end.server?;
            Some(ServerReport {
                pid,
                cpu_s: cpu_ns as f64 / 1e9,
                cores: cpu_ns as f64 / sampled_ns as f64,
                cpu_us_per_msg: (window_messages > 0)
                    .then(|| cpu_ns as f64 / 1e3 / window_messages as f64),
                rss_before_connect_bytes: before.rss_bytes,
                rss_after_connect_bytes: after.rss_bytes,
                rss_end_bytes: end.rss_bytes,
                rss_peak_bytes: end.rss_peak_bytes.max(outcome.server_rss_peak_bytes),
                rss_per_connection_bytes: (c.connected_after_ramp > 0).then(|| {
                    (after.rss_bytes as f64 - before.rss_bytes as f64)
                        / c.connected_after_ramp as f64
                }),
                connect_cpu_us_per_connection: (c.connected_after_ramp > 0).then(|| {
                    after.cpu_ns.saturating_sub(before.cpu_ns) as f64
                        / 1e3
                        / c.connected_after_ramp as f64
                }),
            })
        });
        let (ws, we) = (&outcome.window_start, &outcome.window_end);
        let process_ns = we
            .generator_process_cpu_ns
            .saturating_sub(ws.generator_process_cpu_ns);
        let machine_ns = we.machine.busy_ns.saturating_sub(ws.machine.busy_ns);
        let server_ns = cpu_delta(ws, we);
        let generator = GeneratorReport {
            load_thread_cpu_pct: 100.0
                * we.generator_thread_cpu_ns
                    .saturating_sub(ws.generator_thread_cpu_ns) as f64
                / sampled_ns as f64,
            load_thread_busy_pct: 100.0
                * (we.generator_thread_cpu_ns
                    - we.generator_spin_ns.min(we.generator_thread_cpu_ns))
                .saturating_sub(
                    ws.generator_thread_cpu_ns
                        - ws.generator_spin_ns.min(ws.generator_thread_cpu_ns),
                ) as f64
                / sampled_ns as f64,
            process_cores: process_ns as f64 / sampled_ns as f64,
            rss_per_connection_bytes: (c.connected_after_ramp > 0).then(|| {
                (outcome.after_connect.generator_rss_bytes as f64
                    - outcome.before_connect.generator_rss_bytes as f64)
                    / c.connected_after_ramp as f64
            }),
            other_processes_cores: (machine_ns > 0).then(|| {
                machine_ns.saturating_sub(process_ns + server_ns.unwrap_or(0)) as f64
                    / sampled_ns as f64
            }),
            steal_cores: we.machine.steal_ns.saturating_sub(ws.machine.steal_ns) as f64
                / sampled_ns as f64,
            disk_busy_pct: 100.0
                * we.machine
                    .disk_busy_ns
                    .saturating_sub(ws.machine.disk_busy_ns) as f64
                / sampled_ns as f64,
            disk_written_bytes: we
                .machine
                .disk_written_bytes
                .saturating_sub(ws.machine.disk_written_bytes),
        };
        let mut e2e_latency = LatencyHistogram::new();
        let end_to_end = inputs.consumer.as_ref().map(|parts| {
            let mut from_send = LatencyHistogram::new();
            for p in parts {
                e2e_latency.merge(&p.latency);
                from_send.merge(&p.from_send);
            }
            let received: u64 = parts.iter().map(|p| p.received).sum();
            EndToEndReport {
                partitions: parts.len(),
                received,
                foreign: parts.iter().map(|p| p.foreign).sum(),
                missing: counts.acked.saturating_sub(received),
                latency: e2e_latency.summary(),
                from_send: from_send.summary(),
                errors: parts
                    .iter()
                    .filter_map(|p| {
                        p.error
                            .as_ref()
                            .map(|e| format!("partition {}: {e}", p.partition))
                    })
                    .collect(),
            }
        });
        let distributions = Distributions {
            puback: outcome.latency.distribution(),
            service_time: outcome.service.distribution(),
            connect: c.connect.distribution(),
            end_to_end: e2e_latency.distribution(),
        };
        let results = Results {
            connections,
            publish,
            end_to_end,
            server,
            generator,
            distributions,
        };
        let warnings = warnings(scenario, &results);
        Self {
            provenance: Provenance {
                tool: "shoal-perf",
                version: env!("CARGO_PKG_VERSION"),
                started_at: inputs.started_at,
                git_commit: crate::procfs::git_commit(std::path::Path::new(env!(
                    "CARGO_MANIFEST_DIR"
                ))),
                machine: crate::procfs::machine(),
            },
            config: scenario.clone(),
            target: inputs.target,
            registration: inputs.registration,
            results,
            timeline: outcome.timeline.clone(),
            warnings,
        }
    }

    /// The two lines of the canonical run: throughput, then PUBACK percentiles.
    pub fn canonical_lines(&self) -> [String; 2] {
        let p = &self.results.publish;
        let ms = |ns: u64| ns as f64 / 1e6;
        [
            format!("{:.0} msgs/s", p.msgs_per_s),
            format!(
                "PUBACK p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms",
                ms(p.puback.p50_ns),
                ms(p.puback.p99_ns),
                ms(p.puback.p999_ns)
            ),
        ]
    }

    /// The report as a table for people.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let s = &self.config;
        let results = &self.results;
        let p = &results.publish;
        let machine = &self.provenance.machine;
        let name = if s.name.is_empty() { "run" } else { &s.name };
        let _ = writeln!(
            out,
            "shoal-perf  {name}  {} {} ({})  commit {}",
            self.target.kind,
            self.target.address,
            if self.target.tls { "TLS" } else { "plain TCP" },
            self.provenance
                .git_commit
                .as_deref()
                .map_or("unknown", |c| &c[..c.len().min(12)])
        );
        let _ = writeln!(
            out,
            "machine     {} x {}, kernel {}, {:.1} GiB",
            machine.cores,
            machine.cpu_model,
            machine.kernel,
            machine.memory_bytes as f64 / f64::from(1 << 30)
        );
        let mode = match s.open_loop_rate() {
            Some(rate) => format!("open loop {rate:.0} msgs/s"),
            None if s.publish.idle => "idle soak".into(),
            None => "closed loop (as fast as acks allow)".into(),
        };
        let _ = writeln!(
            out,
            "workload    {} devices, QoS {}, payload {} B, {}, {} in flight/device, window {:.2} s after {} warm-up",
            s.devices.count,
            s.publish.qos,
            s.publish.payload,
            mode,
            s.publish.inflight,
            p.window_s,
            s.publish.warmup
        );
        let c = &results.connections;
        let _ = writeln!(
            out,
            "connect     {}/{} connected in {:.2} s ({:.0}/s), {} attempts, {} gave up",
            c.connected, c.devices, c.connect_phase_s, c.connects_per_s, c.attempts, c.gave_up
        );
        let _ = writeln!(out, "  connect   {}", summary_line(&c.connect));
        if c.tls_handshake.count > 0 {
            let _ = writeln!(out, "  tls       {}", summary_line(&c.tls_handshake));
        }
        if c.reconnect.count > 0 || c.storm_drops > 0 {
            let _ = writeln!(
                out,
                "  reconnect {}  ({} storm drops)",
                summary_line(&c.reconnect),
                c.storm_drops
            );
        }
        if !s.publish.idle {
            let _ = writeln!(
                out,
                "throughput  {:.0} msgs/s  {:.2} MB/s  ({} in the window)",
                p.msgs_per_s, p.mb_per_s, p.window_messages
            );
            if s.publish.qos == 1 {
                let origin = match p.latency_origin {
                    LatencyOrigin::Intended => {
                        "from intended send time, corrected for coordinated omission"
                    }
                    LatencyOrigin::Sent => "from send time, closed loop",
                };
                let _ = writeln!(out, "PUBACK      {}  ({origin})", summary_line(&p.puback));
                let _ = writeln!(
                    out,
                    "  service   {}  (from actual send)",
                    summary_line(&p.service_time)
                );
            }
            if p.latency_origin == LatencyOrigin::Intended {
                let _ = writeln!(
                    out,
                    "  gen lag   {}  (generator timer lateness)",
                    summary_line(&p.generator_lag)
                );
            }
        }
        if let Some(e) = &results.end_to_end {
            let _ = writeln!(
                out,
                "end-to-end  {}  ({} received from {} partitions, {} missing, {} foreign)",
                summary_line(&e.latency),
                e.received,
                e.partitions,
                e.missing,
                e.foreign
            );
        }
        let counts = &p.counts;
        let _ = writeln!(
            out,
            "messages    sent {} = acked {} + errors {}{}",
            counts.sent,
            counts.acked,
            counts.errors.total(),
            if p.counts_add_up {
                ""
            } else {
                "  (DOES NOT ADD UP)"
            }
        );
        let mut errors: Vec<String> = counts
            .errors
            .nonzero()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        errors.extend(c.errors.nonzero().iter().map(|(k, n)| format!("{k} {n}")));
        let _ = writeln!(
            out,
            "errors      {}",
            if errors.is_empty() {
                "none".to_owned()
            } else {
                errors.join(", ")
            }
        );
        if let Some(sv) = &results.server {
            let _ = writeln!(
                out,
                "server      pid {}: {:.2} cores, {} CPU/msg, RSS {} -> {} (peak {}), {} per connection",
                sv.pid,
                sv.cores,
                sv.cpu_us_per_msg
                    .map_or("-".into(), |us| format!("{us:.2} us")),
                mb(sv.rss_before_connect_bytes),
                mb(sv.rss_end_bytes),
                mb(sv.rss_peak_bytes),
                sv.rss_per_connection_bytes
                    .map_or("-".into(), |b| format!("{:.1} KiB", b / 1024.0))
            );
            if results.connections.connected < 1000 {
                let _ = writeln!(
                    out,
                    "  memory    below ~1000 connections the per-connection figure is mostly fixed start-up cost; use the soak scenario"
                );
            }
            // /proc CPU times have 10 ms resolution: below ~1000 connections the figure
            // would be mostly rounding.
            if let Some(us) = sv
                .connect_cpu_us_per_connection
                .filter(|_| results.connections.connected >= 1000)
            {
                let _ = writeln!(
                    out,
                    "  connect   server CPU {us:.0} us per connection (TCP, TLS handshake, CONNECT)"
                );
            }
        } else {
            let _ = writeln!(out, "server      not measured (no pid)");
        }
        let g = &results.generator;
        let _ = writeln!(
            out,
            "generator   load thread {:.0}% busy ({:.0}% of a core with spinning), process {:.2} cores{}",
            g.load_thread_busy_pct,
            g.load_thread_cpu_pct,
            g.process_cores,
            g.rss_per_connection_bytes
                .map_or(String::new(), |b| format!(
                    ", {:.1} KiB RSS per connection",
                    b / 1024.0
                ))
        );
        let _ = writeln!(
            out,
            "machine     other processes {} cores, steal {:.2} cores, disk busy {:.0}% of the window, {:.1} MB written to disk",
            g.other_processes_cores
                .map_or("-".into(), |c| format!("{c:.2}")),
            g.steal_cores,
            g.disk_busy_pct,
            g.disk_written_bytes as f64 / 1e6
        );
        for warning in &self.warnings {
            let _ = writeln!(out, "WARNING     {warning}");
        }
        out
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `p50 … p90 … p99 … p99.9 … max … (n)`.
pub fn summary_line(s: &Summary) -> String {
    if s.count == 0 {
        return "no samples".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
        human_ns(s.p50_ns),
        human_ns(s.p90_ns),
        human_ns(s.p99_ns),
        human_ns(s.p999_ns),
        human_ns(s.max_ns),
        s.count
    )
}

fn warnings(scenario: &Scenario, r: &Results) -> Vec<String> {
    let mut w = Vec::new();
    let p = &r.publish;
    if !p.counts_add_up {
        w.push(format!(
            "sent ({}) != acked ({}) + errors ({}): a bug in the generator; do not trust this run",
            p.counts.sent,
            p.counts.acked,
            p.counts.errors.total()
        ));
    }
    if r.generator.load_thread_busy_pct > GENERATOR_BUSY_WARN_PCT {
        w.push(format!(
            "the load thread was {:.0}% busy: the generator may be the bottleneck, not the server",
            r.generator.load_thread_busy_pct
        ));
    }
    if let Some(other) = r.generator.other_processes_cores
        && other * 100.0 > OTHER_CPU_WARN_PCT
    {
        let writeback = if r.generator.disk_written_bytes > 10_000_000 {
            " (kernel threads writing back disk data count here, the server's included)"
        } else {
            ""
        };
        w.push(format!(
            "other processes used {other:.2} cores during the window{writeback}: the machine was not quiet"
        ));
    }
    if r.generator.disk_busy_pct > 50.0 {
        w.push(format!(
            "the disk was busy {:.0}% of the window: durable acknowledgements may have waited on it (the server's own writes, or another process's)",
            r.generator.disk_busy_pct
        ));
    }
    if r.generator.steal_cores > 0.02 {
        w.push(format!(
            "the hypervisor stole {:.2} cores during the window",
            r.generator.steal_cores
        ));
    }
    if p.latency_origin == LatencyOrigin::Intended && p.generator_lag.p99_ns > 1_000_000 {
        w.push(format!(
            "the generator released 1% of messages more than {} late: its own lateness is inside the latency figures",
            human_ns(p.generator_lag.p99_ns)
        ));
    }
    if p.unsent_due > 0 {
        w.push(format!(
            "{} scheduled messages were never sent before the drain time-out: the offered rate was not sustained",
            p.unsent_due
        ));
    }
    if p.abandoned_due > 0 {
        w.push(format!(
            "{} scheduled messages belonged to devices that gave up connecting and were never sent",
            p.abandoned_due
        ));
    }
    if let Some(rate) = scenario.open_loop_rate()
        && !scenario.publish.idle
        && p.msgs_per_s < rate * 0.95
    {
        w.push(format!(
            "achieved {:.0} msgs/s of the {rate:.0} offered: the system is saturated; latency reflects queueing",
            p.msgs_per_s
        ));
    }
    if p.counts.errors.total() > 0 || r.connections.errors.total() > 0 {
        w.push("errors occurred; see the errors line".into());
    }
    if r.connections.gave_up > 0 {
        w.push(format!("{} devices never connected", r.connections.gave_up));
    }
    if !scenario.publish.idle && p.window_messages == 0 {
        w.push("no message was acknowledged in the window".into());
    }
    if p.received_publishes > 0 {
        w.push(format!(
            "the server sent {} PUBLISH packets to devices",
            p.received_publishes
        ));
    }
    if let Some(e) = &r.end_to_end {
        if !e.errors.is_empty() {
            w.push(format!("consumer errors: {}", e.errors.join("; ")));
        }
        if e.missing > 0 {
            w.push(format!(
                "{} acknowledged messages were not consumed",
                e.missing
            ));
        }
    }
    if r.server.is_none() {
        w.push(
            "the server process was not measured (pass --server-pid): no CPU or memory figures"
                .into(),
        );
    }
    w
}
