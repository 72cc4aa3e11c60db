//! The load loop: every simulated device, on one thread, over one epoll set.
//!
//! ```text
//!   ┌──────────── one turn of the loop ────────────────────────────────────────────┐
//!   │ epoll_pwait2(until the next due message / tick / storm / stop)                │
//!   │ for each ready socket: one read, parse CONNACK/PUBACK/PINGRESP, record, refill │
//!   │                        the device's window, one write                          │
//!   │ open loop: every message now due goes to its device; devices with room send    │
//!   │ connect ramp, reconnect storms, time-outs, keep-alives, the 1 s tick           │
//!   └──────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Phases: **connect** (all devices, ramped, with retries) → **publish** (warm-up, then the
//! measured window) → **drain** (wait for outstanding acks) → disconnect. Server CPU and the
//! generator's own CPU are sampled exactly at the edges of the measured window.
//!
//! Per device, QoS 1 packet ids index a small slot table ([`Inflight`]); a PUBACK finds its
//! message in O(1) whatever order acks arrive in.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::pki_types::ServerName;

use crate::clock::{self, NS_PER_S, now_ns};
use crate::mqtt;
use crate::net::{self, Epoll, FdIo};
use crate::payload::{Header, PayloadSizes, Rng};
use crate::procfs::{self, MachineCpu, ProcessSample};
use crate::scenario::Storm;
use crate::schedule::{LatencyOrigin, OpenLoop};
use crate::stats::{ErrorCounts, ErrorKind, LatencyHistogram, PublishCounts, TimelinePoint};

/// How one device identifies itself and where it publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// MQTT client id.
    pub client_id: String,
    /// MQTT user name.
    pub username: Option<String>,
    /// MQTT password.
    pub password: Option<String>,
    /// The topic of its publishes.
    pub topic: Vec<u8>,
}

/// TLS settings for the devices.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// The client configuration (trust, versions, resumption).
    pub config: Arc<rustls::ClientConfig>,
    /// The name verified in the certificate and sent as SNI.
    pub server_name: ServerName<'static>,
}

/// Connection set-up settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectPlan {
    /// New connections per second during the connect phase; 0 = unlimited.
    pub rate: f64,
    /// Set-ups in progress at once.
    pub concurrency: u32,
    /// TCP connect to CONNACK.
    pub timeout_ns: u64,
    /// Extra attempts after a failure.
    pub retries: u32,
    /// Wait before a retry.
    pub backoff_ns: u64,
}

/// Everything the loop needs, resolved: no files, no names left to look up.
pub struct Plan {
    /// Where to connect.
    pub address: SocketAddr,
    /// Source addresses to spread connections over (empty = kernel's choice).
    pub source_ips: Vec<IpAddr>,
    /// TLS, or plain TCP.
    pub tls: Option<TlsClient>,
    /// One per device.
    pub identities: Vec<Identity>,
    /// Clean-session flag.
    pub clean_session: bool,
    /// Keep-alive in seconds.
    pub keep_alive_s: u16,
    /// Connection set-up.
    pub connect: ConnectPlan,
    /// 0 or 1.
    pub qos: u8,
    /// Payload sizes.
    pub payload: PayloadSizes,
    /// Total open-loop rate; `None` = closed loop.
    pub open_rate: Option<f64>,
    /// QoS 1 messages in flight per device.
    pub inflight: u32,
    /// Publishing time after the warm-up; 0 = until `messages`.
    pub duration_ns: u64,
    /// Message limit; 0 = none.
    pub messages: u64,
    /// Warm-up, excluded from the figures.
    pub warmup_ns: u64,
    /// How long to wait for outstanding acks at the end.
    pub drain_timeout_ns: u64,
    /// Reconnect storms.
    pub storms: Vec<Storm>,
    /// Hold connections without publishing.
    pub idle: bool,
    /// Print a progress line every second.
    pub progress: bool,
    /// The server process to measure.
    pub server_pid: Option<u32>,
    /// Seed for payload sizes.
    pub seed: u64,
    /// When the next thing to do is at most this far away, poll without sleeping: a sleep
    /// and wake-up costs more than the wait (tens of microseconds of CPU on a VM) and
    /// would make open-loop sends late. 0 = always sleep.
    pub spin_ns: u64,
    /// Extra text for the progress line (the consumer's counts).
    pub progress_extra: Option<Box<dyn Fn() -> String + Send>>,
    /// Set to the start of the measured window once publishing starts (for the consumer).
    pub window_start: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("address", &self.address)
            .field("devices", &self.identities.len())
            .field("tls", &self.tls.is_some())
            .field("qos", &self.qos)
            .field("open_rate", &self.open_rate)
            .field("inflight", &self.inflight)
            .finish_non_exhaustive()
    }
}

/// A reading of the server, the generator and the machine at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// When (monotonic ns).
    pub at_ns: u64,
    /// The server, if it is being measured and alive.
    pub server: Option<ProcessSample>,
    /// The load thread's CPU time.
    pub generator_thread_cpu_ns: u64,
    /// Of which spent spinning on empty polls just before a due time (not work).
    pub generator_spin_ns: u64,
    /// This process's CPU time (load thread + consumer threads + main).
    pub generator_process_cpu_ns: u64,
    /// This process's resident memory.
    pub generator_rss_bytes: u64,
    /// The machine.
    pub machine: MachineCpu,
}

impl Snapshot {
    fn take(server_pid: Option<u32>, spin_ns: u64) -> Self {
        Self {
            at_ns: now_ns(),
            server: server_pid.and_then(procfs::sample_process),
            generator_thread_cpu_ns: clock::thread_cpu_ns(),
            generator_spin_ns: spin_ns,
            generator_process_cpu_ns: clock::process_cpu_ns(),
            generator_rss_bytes: procfs::sample_process(std::process::id())
                .map_or(0, |s| s.rss_bytes),
            machine: procfs::sample_machine(),
        }
    }
}

/// Connection figures of a run.
#[derive(Debug, Clone, Default)]
pub struct ConnectionStats {
    /// Connect attempts started.
    pub attempts: u64,
    /// Attempts that reached CONNACK 0.
    pub established: u64,
    /// Devices that gave up after every retry failed.
    pub gave_up: u64,
    /// Most connections up at once.
    pub peak_connected: u64,
    /// Connected at the end of the connect phase.
    pub connected_after_ramp: u64,
    /// Failed attempts and dropped sessions, by kind.
    pub errors: ErrorCounts,
    /// TCP connect to CONNACK, first connection of each device.
    pub connect: LatencyHistogram,
    /// TCP connect to the end of the TLS handshake.
    pub tls_handshake: LatencyHistogram,
    /// Disconnect to CONNACK, for storm and drop reconnects.
    pub reconnect: LatencyHistogram,
    /// Connections dropped on purpose by storms.
    pub storm_drops: u64,
}

/// What a run measured. Times are monotonic ns.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Where latency is measured from.
    pub latency_origin: LatencyOrigin,
    /// Connections.
    pub connections: ConnectionStats,
    /// Every message of the run (warm-up included).
    pub publish: PublishCounts,
    /// Ack latency of messages in the measured window (from intended or sent time).
    pub latency: LatencyHistogram,
    /// Ack minus actual send time, same messages.
    pub service: LatencyHistogram,
    /// Open loop: how late the generator noticed each due message (its own timer lag).
    pub generator_lag: LatencyHistogram,
    /// Acks received inside the measured window.
    pub window_acked: u64,
    /// QoS 0: messages sent inside the measured window.
    pub window_sent: u64,
    /// Payload bytes of those.
    pub window_payload_bytes: u64,
    /// Start and end of the measured window.
    pub window_ns: (u64, u64),
    /// Open loop: messages the schedule made due in the window but that were never sent.
    pub unsent_due: u64,
    /// Scheduled messages of devices that gave up connecting: never sent.
    pub abandoned_due: u64,
    /// PUBLISH packets the server sent to devices (not expected in these workloads).
    pub received_publishes: u64,
    /// Before connecting.
    pub before_connect: Snapshot,
    /// After the connect phase.
    pub after_connect: Snapshot,
    /// At the start of the measured window.
    pub window_start: Snapshot,
    /// At its end.
    pub window_end: Snapshot,
    /// Highest server RSS seen.
    pub server_rss_peak_bytes: u64,
    /// One point per second.
    pub timeline: Vec<TimelinePoint>,
    /// When publishing started (timeline origin).
    pub publish_start_ns: u64,
}

/// Per-device QoS 1 messages awaiting PUBACK, indexed by packet id.
///
/// # Invariants
/// - A slot holds the message whose packet id is congruent to the slot index modulo the
///   table size, or is empty (`pid == 0`); so in-flight packet ids are unique.
/// - `count <= window < slots.len()`, so a free packet id always exists.
#[derive(Debug)]
struct Inflight {
    slots: Box<[Slot]>,
    mask: usize,
    count: u32,
    next_pid: u16,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    pid: u16,
    size: u32,
    intended_ns: u64,
    sent_ns: u64,
}

impl Inflight {
    fn new(window: u32) -> Self {
        if window == 0 {
            return Self {
                slots: Box::new([]),
                mask: 0,
                count: 0,
                next_pid: 1,
            };
        }
        let size = (window as usize).next_power_of_two() * 2;
        assert!(size <= 32_768, "window is at most 16384");
        Self {
            slots: vec![Slot::default(); size].into_boxed_slice(),
            mask: size - 1,
            count: 0,
            next_pid: 1,
        }
    }

    #[inline]
    fn insert(&mut self, size: u32, intended_ns: u64, sent_ns: u64) -> u16 {
        assert!(
            (self.count as usize) < self.slots.len(),
            "window below table size"
        );
        loop {
            let pid = self.next_pid;
            self.next_pid = if pid == u16::MAX { 1 } else { pid + 1 };
            let slot = &mut self.slots[usize::from(pid) & self.mask];
            if slot.pid == 0 {
                *slot = Slot {
                    pid,
                    size,
                    intended_ns,
                    sent_ns,
                };
                self.count += 1;
                return pid;
            }
        }
    }

    #[inline]
    fn take(&mut self, pid: u16) -> Option<Slot> {
        if self.slots.is_empty() || pid == 0 {
            return None;
        }
        let slot = &mut self.slots[usize::from(pid) & self.mask];
        if slot.pid != pid {
            return None;
        }
        self.count -= 1;
        Some(std::mem::take(slot))
    }

    /// Forgets everything in flight; returns how many there were.
    fn clear(&mut self) -> u32 {
        let n = self.count;
        if n > 0 {
            self.slots.fill(Slot::default());
            self.count = 0;
        }
        n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not connected; queued for a connect, waiting for a retry, or given up.
    Down,
    /// Waiting to retry after a failure.
    Backoff { until_ns: u64 },
    /// TCP connect in progress.
    Connecting,
    /// TCP up; TLS handshake and/or CONNECT sent, waiting for CONNACK.
    Handshaking,
    /// Publishing.
    Ready,
    /// A storm will drop this connection once its in-flight messages are acked.
    StormDraining,
    /// Done for good (gave up, or the run ended).
    Finished,
}

struct Conn {
    fd: RawFd,
    generation: u32,
    state: State,
    tls: Option<Box<rustls::ClientConnection>>,
    /// Partial input (a packet split across reads).
    inbuf: Vec<u8>,
    /// Output not yet handed to TLS or the socket; `out_at` bytes of it already written
    /// (plain TCP).
    out: Vec<u8>,
    out_at: usize,
    /// EPOLLOUT is registered.
    want_out: bool,
    inflight: Inflight,
    /// Messages this device has sent (its index into the open-loop schedule).
    sent_k: u64,
    attempt_start_ns: u64,
    failures: u32,
    /// Ran out of connect retries: sends nothing more.
    gave_up: bool,
    /// Set when the device lost its connection (drop or storm): time of the loss.
    down_since_ns: Option<u64>,
    handshake_recorded: bool,
    last_tx_ns: u64,
}

impl Conn {
    fn new(window: u32) -> Self {
        Self {
            fd: -1,
            generation: 0,
            state: State::Down,
            tls: None,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_at: 0,
            want_out: false,
            inflight: Inflight::new(window),
            sent_k: 0,
            attempt_start_ns: 0,
            failures: 0,
            gave_up: false,
            down_since_ns: None,
            handshake_recorded: false,
            last_tx_ns: 0,
        }
    }

    fn token(&self, index: usize) -> u64 {
        (u64::from(self.generation) << 32) | index as u64
    }
}

/// Output beyond this is not added to in QoS 0 closed loop (the socket is the limit).
const QOS0_OUT_BYTES_HIGH: usize = 64 * 1024;
/// How often time-outs, retries and keep-alives are checked.
const SWEEP_NS: u64 = 100_000_000;
/// Largest MQTT packet accepted from a server.
const PACKET_BYTES_MAX: usize = 1 << 20;

/// Mutable state of the loop other than the connections.
struct Ctx {
    epoll: Epoll,
    now: u64,
    /// Time spent in empty polls while spinning towards a due time.
    spin_ns: u64,
    scratch: Vec<u8>,
    rng: Rng,
    origin: LatencyOrigin,
    // Phase.
    publishing: bool,
    measure_start_ns: u64,
    stop_ns: u64,
    schedule: Option<OpenLoop>,
    due_total: u64,
    total_sent: u64,
    // Connections.
    to_connect: VecDeque<u32>,
    setting_up: u32,
    connected: u64,
    backing_off: u32,
    ramp_start_ns: u64,
    ramp_started: u64,
    ramp_limited: bool,
    inflight_total: u64,
    // Figures.
    conn: ConnectionStats,
    publish: PublishCounts,
    latency: LatencyHistogram,
    service: LatencyHistogram,
    lag: LatencyHistogram,
    window_acked: u64,
    window_sent: u64,
    window_bytes: u64,
    last_ack_ns: u64,
    received_publishes: u64,
    // The current second.
    interval: LatencyHistogram,
    interval_sent: u64,
    interval_acked: u64,
    interval_errors: u64,
}

impl Ctx {
    fn message_error(&mut self, kind: ErrorKind, n: u64) {
        self.publish.errors.add(kind, n);
        self.interval_errors += n;
    }

    fn connection_error(&mut self, kind: ErrorKind) {
        self.conn.errors.add(kind, 1);
        self.interval_errors += 1;
    }
}

fn classify_connect_error(error: &io::Error) -> ErrorKind {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
        _ => ErrorKind::ConnectFailed,
    }
}

/// Runs a plan to completion.
pub fn run(plan: &Plan) -> anyhow::Result<Outcome> {
    assert!(!plan.identities.is_empty(), "a plan has devices");
    assert!(plan.qos <= 1);
    net::tighten_timer_slack();
    let devices = plan.identities.len();
    let window = if plan.qos == 1 { plan.inflight } else { 0 };
    let mut conns: Vec<Conn> = (0..devices).map(|_| Conn::new(window)).collect();
    let mut ctx = Ctx {
        epoll: Epoll::new()?,
        now: now_ns(),
        spin_ns: 0,
        scratch: vec![0; 64 * 1024],
        rng: Rng::new(plan.seed),
        origin: if plan.open_rate.is_some() {
            LatencyOrigin::Intended
        } else {
            LatencyOrigin::Sent
        },
        publishing: false,
        measure_start_ns: u64::MAX,
        stop_ns: u64::MAX,
        schedule: None,
        due_total: 0,
        total_sent: 0,
        to_connect: (0..devices as u32).collect(),
        setting_up: 0,
        connected: 0,
        backing_off: 0,
        ramp_start_ns: 0,
        ramp_started: 0,
        ramp_limited: plan.connect.rate > 0.0,
        inflight_total: 0,
        conn: ConnectionStats::default(),
        publish: PublishCounts::default(),
        latency: LatencyHistogram::new(),
        service: LatencyHistogram::new(),
        lag: LatencyHistogram::new(),
        window_acked: 0,
        window_sent: 0,
        window_bytes: 0,
        last_ack_ns: 0,
        received_publishes: 0,
        interval: LatencyHistogram::new(),
        interval_sent: 0,
        interval_acked: 0,
        interval_errors: 0,
    };
    let mut events = net::event_buffer(1024);
    let mut timeline = Vec::new();
    let mut ticker = Ticker::new(plan.server_pid);

    // Connect phase.
    let before_connect = Snapshot::take(plan.server_pid, ctx.spin_ns);
    ctx.now = now_ns();
    ctx.ramp_start_ns = ctx.now;
    ticker.start(ctx.now, 0);
    let mut next_sweep = ctx.now + SWEEP_NS;
    while !ctx.to_connect.is_empty() || ctx.setting_up > 0 || ctx.backing_off > 0 {
        start_connects(plan, &mut ctx, &mut conns);
        let wake = next_sweep.min(ticker.next_ns).min(ramp_next_ns(plan, &ctx));
        turn(plan, &mut ctx, &mut conns, &mut events, wake)?;
        if ctx.now >= next_sweep {
            sweep(plan, &mut ctx, &mut conns);
            next_sweep = ctx.now + SWEEP_NS;
        }
        if ctx.now >= ticker.next_ns {
            timeline.push(ticker.tick(plan, &mut ctx, None));
        }
    }
    ctx.ramp_limited = false;
    ctx.conn.connected_after_ramp = ctx.connected;
    let after_connect = Snapshot::take(plan.server_pid, ctx.spin_ns);
    if ctx.connected == 0 {
        let kinds: Vec<String> = ctx
            .conn
            .errors
            .nonzero()
            .iter()
            .map(|(k, n)| format!("{n} x {k}"))
            .collect();
        anyhow::bail!(
            "no device could connect to {} ({}): {}",
            plan.address,
            if plan.tls.is_some() {
                "TLS"
            } else {
                "plain TCP"
            },
            kinds.join(", ")
        );
    }

    // Publish phase.
    let publish_start = now_ns();
    ctx.now = publish_start;
    ctx.publishing = !plan.idle;
    ctx.measure_start_ns = publish_start + plan.warmup_ns;
    if let Some(shared) = &plan.window_start {
        shared.store(ctx.measure_start_ns, Ordering::Relaxed);
    }
    if plan.duration_ns > 0 {
        ctx.stop_ns = ctx.measure_start_ns + plan.duration_ns;
    }
    let limit = (plan.messages > 0).then_some(plan.messages);
    if let Some(rate) = plan.open_rate.filter(|_| !plan.idle) {
        ctx.schedule = Some(OpenLoop::new(
            publish_start,
            rate,
            devices as u32,
            (ctx.stop_ns != u64::MAX).then_some(ctx.stop_ns),
            limit,
        ));
    }
    for t in &mut timeline {
        t.t_s -= (publish_start - ticker.origin_ns) as f64 / 1e9;
    }
    // Ticks restart with publishing, so timeline points fall on whole seconds of it.
    ticker.start(publish_start, ctx.spin_ns);
    ctx.interval.reset();
    ctx.interval_sent = 0;
    ctx.interval_acked = 0;
    ctx.interval_errors = 0;
    let mut storms = StormClock::new(&plan.storms, publish_start, devices);
    let mut window_start = None;
    let count_mode = plan.duration_ns == 0;
    // What the devices that gave up were scheduled to send and never will; recounted when
    // another device gives up.
    let mut abandoned = Abandoned::default();
    if ctx.schedule.is_none() && ctx.publishing {
        for (i, c) in conns.iter_mut().enumerate() {
            fill(plan, &mut ctx, c, i);
            flush(&mut ctx, c, i);
        }
    }
    loop {
        if window_start.is_none() && ctx.now >= ctx.measure_start_ns {
            window_start = Some(Snapshot::take(plan.server_pid, ctx.spin_ns));
        }
        abandoned.recount(&ctx, &conns);
        if ctx.now >= ctx.stop_ns
            || (count_mode && ctx.total_sent + abandoned.messages >= plan.messages)
        {
            break;
        }
        if abandoned.devices == conns.len() as u64 {
            // Nobody is left to send: the window ends now, not at the planned stop.
            if !count_mode {
                ctx.stop_ns = ctx.now.max(ctx.measure_start_ns);
            }
            break;
        }
        if let Some(schedule) = ctx.schedule {
            release_due(plan, &mut ctx, &mut conns, &schedule);
        } else if plan.qos == 0 && ctx.publishing {
            for (i, c) in conns.iter_mut().enumerate() {
                fill(plan, &mut ctx, c, i);
                flush(&mut ctx, c, i);
            }
        }
        storms.fire(&mut ctx, &mut conns);
        start_connects(plan, &mut ctx, &mut conns);
        let mut wake = next_sweep
            .min(ticker.next_ns)
            .min(storms.next_ns())
            .min(if window_start.is_none() {
                ctx.measure_start_ns
            } else {
                u64::MAX
            })
            .min(ctx.stop_ns);
        if let Some(schedule) = ctx.schedule {
            wake = wake.min(schedule.next_due_ns(ctx.due_total).unwrap_or(u64::MAX));
        }
        if plan.qos == 0 && ctx.publishing && ctx.schedule.is_none() {
            wake = ctx.now;
        }
        turn(plan, &mut ctx, &mut conns, &mut events, wake)?;
        if ctx.now >= next_sweep {
            sweep(plan, &mut ctx, &mut conns);
            next_sweep = ctx.now + SWEEP_NS;
        }
        if ctx.now >= ticker.next_ns {
            let extra = plan.progress_extra.as_ref().map(|f| f());
            timeline.push(ticker.tick(plan, &mut ctx, extra.as_deref()));
        }
    }
    // The measured window ends here for duration runs. Open loop: every message due before
    // the stop is still owed, so devices keep sending their backlog during the drain, and
    // those late messages are measured with the lateness they really had.
    let mut window_end = (!count_mode).then(|| Snapshot::take(plan.server_pid, ctx.spin_ns));
    let owed = if let Some(schedule) = ctx.schedule {
        release_due(plan, &mut ctx, &mut conns, &schedule);
        schedule.total().unwrap_or(ctx.due_total)
    } else {
        ctx.publishing = false;
        ctx.total_sent
    };

    // Drain phase: wait for outstanding acks (and the open-loop backlog).
    let drain_deadline = ctx.now + plan.drain_timeout_ns;
    while (ctx.inflight_total > 0
        || ctx.total_sent + abandoned.messages < owed
        || output_pending(&conns))
        && ctx.now < drain_deadline
    {
        let wake = next_sweep.min(ticker.next_ns).min(drain_deadline);
        start_connects(plan, &mut ctx, &mut conns);
        turn(plan, &mut ctx, &mut conns, &mut events, wake)?;
        // Before the loop's condition: a device that just gave up owes nothing more.
        abandoned.recount(&ctx, &conns);
        if ctx.now >= next_sweep {
            sweep(plan, &mut ctx, &mut conns);
            next_sweep = ctx.now + SWEEP_NS;
        }
        if ctx.now >= ticker.next_ns {
            let extra = plan.progress_extra.as_ref().map(|f| f());
            timeline.push(ticker.tick(plan, &mut ctx, extra.as_deref()));
        }
    }
    ctx.publishing = false;
    abandoned.recount(&ctx, &conns);
    let unsent_due = owed.saturating_sub(ctx.total_sent + abandoned.messages);
    if count_mode {
        // Count runs measure until the last acknowledgement, or for QoS 0 (nothing is
        // acknowledged) until the last message was handed to the socket.
        let last = if plan.qos == 0 {
            ctx.now
        } else {
            ctx.last_ack_ns
        };
        ctx.stop_ns = last.max(ctx.measure_start_ns);
        window_end = Some(Snapshot::take(plan.server_pid, ctx.spin_ns));
    }
    if plan.progress {
        ticker.finish_line();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let left = c.inflight.clear();
        if left > 0 {
            ctx.message_error(ErrorKind::AckTimeout, u64::from(left));
            ctx.inflight_total -= u64::from(left);
        }
        if c.fd >= 0 {
            if c.state == State::Ready || c.state == State::StormDraining {
                // Whatever is still buffered (only if the drain timed out) goes first.
                c.out.extend_from_slice(&mqtt::DISCONNECT_PACKET);
                flush(&mut ctx, c, i);
            }
            let _ = ctx.epoll.delete(c.fd);
            net::close(c.fd);
            c.fd = -1;
        }
        c.state = State::Finished;
    }
    debug_assert_eq!(ctx.inflight_total, 0);
    let window_start = window_start.unwrap_or(after_connect);
    let window_end = window_end.expect("set for both kinds of run");
    Ok(Outcome {
        latency_origin: ctx.origin,
        connections: ctx.conn,
        publish: ctx.publish,
        latency: ctx.latency,
        service: ctx.service,
        generator_lag: ctx.lag,
        window_acked: ctx.window_acked,
        window_sent: ctx.window_sent,
        window_payload_bytes: ctx.window_bytes,
        window_ns: (ctx.measure_start_ns, ctx.stop_ns),
        unsent_due,
        abandoned_due: abandoned.messages,
        received_publishes: ctx.received_publishes,
        before_connect,
        after_connect,
        window_start,
        window_end,
        server_rss_peak_bytes: ticker.server_rss_peak,
        timeline,
        publish_start_ns: publish_start,
    })
}

/// Whether any established connection still has output the socket has not taken (QoS 0
/// messages count as sent when buffered; the drain waits until they are written).
fn output_pending(conns: &[Conn]) -> bool {
    conns.iter().any(|c| {
        c.fd >= 0
            && matches!(c.state, State::Ready | State::StormDraining)
            && (c.out.len() > c.out_at || c.tls.as_ref().is_some_and(|t| t.wants_write()))
    })
}

/// The earliest time the connect ramp allows another connection.
fn ramp_next_ns(plan: &Plan, ctx: &Ctx) -> u64 {
    if !ctx.ramp_limited || ctx.to_connect.is_empty() {
        return u64::MAX;
    }
    ctx.ramp_start_ns + (ctx.ramp_started as f64 * 1e9 / plan.connect.rate) as u64
}

/// Starts queued connects as far as the concurrency limit and the ramp allow.
fn start_connects(plan: &Plan, ctx: &mut Ctx, conns: &mut [Conn]) {
    while ctx.setting_up < plan.connect.concurrency {
        if ctx.ramp_limited && ramp_next_ns(plan, ctx) > ctx.now {
            break;
        }
        let Some(i) = ctx.to_connect.pop_front() else {
            break;
        };
        ctx.ramp_started += 1;
        start_connect(plan, ctx, &mut conns[i as usize], i as usize);
    }
}

fn start_connect(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, i: usize) {
    debug_assert!(c.fd < 0);
    c.generation = c.generation.wrapping_add(1);
    c.inbuf.clear();
    c.out.clear();
    c.out_at = 0;
    c.tls = None;
    c.handshake_recorded = false;
    ctx.conn.attempts += 1;
    ctx.now = now_ns();
    c.attempt_start_ns = ctx.now;
    let source = (!plan.source_ips.is_empty()).then(|| plan.source_ips[i % plan.source_ips.len()]);
    match net::connect_nonblocking(&plan.address, source) {
        Ok(fd) => {
            c.fd = fd;
            c.state = State::Connecting;
            c.want_out = true;
            ctx.setting_up += 1;
            if let Err(error) = ctx.epoll.add(fd, c.token(i), net::IN | net::OUT) {
                // Out of epoll memory: treat as a failed attempt.
                let _ = error;
                fail_attempt(plan, ctx, c, ErrorKind::ConnectFailed);
            }
        }
        Err(error) => {
            ctx.setting_up += 1;
            c.state = State::Connecting;
            fail_attempt(plan, ctx, c, classify_connect_error(&error));
        }
    }
}

/// The share of the run that devices which gave up will never send.
#[derive(Debug, Default)]
struct Abandoned {
    /// Devices that gave up.
    devices: u64,
    /// Open loop: what the schedule still owed them when they gave up. Closed loop: 0 (the
    /// other devices send their share).
    messages: u64,
}

impl Abandoned {
    fn recount(&mut self, ctx: &Ctx, conns: &[Conn]) {
        if ctx.conn.gave_up == self.devices {
            return;
        }
        self.devices = ctx.conn.gave_up;
        let total = ctx
            .schedule
            .and_then(|schedule| schedule.total().map(|total| (schedule, total)));
        self.messages = match total {
            Some((schedule, total)) => conns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.gave_up)
                .map(|(i, c)| {
                    schedule
                        .device_due(i as u32, total)
                        .saturating_sub(c.sent_k)
                })
                .sum(),
            None => 0,
        };
    }
}

/// A connect attempt failed: count it, close, and retry or give up.
fn fail_attempt(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, kind: ErrorKind) {
    debug_assert!(matches!(c.state, State::Connecting | State::Handshaking));
    ctx.connection_error(kind);
    ctx.setting_up -= 1;
    close_fd(ctx, c);
    c.failures += 1;
    if c.failures > plan.connect.retries {
        c.state = State::Finished;
        c.gave_up = true;
        ctx.conn.gave_up += 1;
    } else {
        c.state = State::Backoff {
            until_ns: ctx.now + plan.connect.backoff_ns,
        };
        ctx.backing_off += 1;
    }
}

fn close_fd(ctx: &mut Ctx, c: &mut Conn) {
    if c.fd >= 0 {
        let _ = ctx.epoll.delete(c.fd);
        net::close(c.fd);
        c.fd = -1;
    }
    c.want_out = false;
    c.tls = None;
}

/// An established session ended (server close, reset, protocol error, or a storm).
fn lose_session(
    ctx: &mut Ctx,
    c: &mut Conn,
    kind: Option<ErrorKind>,
    lost_kind: ErrorKind,
    i: usize,
    abort: bool,
) {
    debug_assert!(matches!(c.state, State::Ready | State::StormDraining));
    if let Some(kind) = kind {
        ctx.connection_error(kind);
    }
    let lost = c.inflight.clear();
    if lost > 0 {
        ctx.message_error(lost_kind, u64::from(lost));
        ctx.inflight_total -= u64::from(lost);
    }
    if abort && c.fd >= 0 {
        let _ = ctx.epoll.delete(c.fd);
        net::abort(c.fd);
        c.fd = -1;
        c.tls = None;
        c.want_out = false;
    } else {
        close_fd(ctx, c);
    }
    ctx.connected -= 1;
    c.down_since_ns = Some(ctx.now);
    c.failures = 0;
    c.state = State::Down;
    ctx.to_connect.push_back(i as u32);
}

/// Waits for readiness until `wake_ns` (or less) and handles every event.
fn turn(
    plan: &Plan,
    ctx: &mut Ctx,
    conns: &mut [Conn],
    events: &mut [net::EpollEvent],
    wake_ns: u64,
) -> anyhow::Result<()> {
    let now = now_ns();
    let timeout = wake_ns.saturating_sub(now);
    // Spin only towards a near timer. Spinning while acks are awaited was measured and
    // rejected: polls then return one event at a time, and the thread does more work per
    // message than when it sleeps and wakes to a batch of ready sockets.
    let spin = timeout > 0 && timeout <= plan.spin_ns;
    // Spin time is thread CPU, not wall time: on a busy machine the thread may be
    // descheduled in the middle of a poll, and that is neither work nor spinning.
    let cpu_before = if spin { clock::thread_cpu_ns() } else { 0 };
    let n = ctx
        .epoll
        .wait(events, Some(if spin { 0 } else { timeout }))?;
    if spin && n == 0 {
        ctx.spin_ns += clock::thread_cpu_ns().saturating_sub(cpu_before);
    }
    ctx.now = now_ns();
    for event in &events[..n] {
        let token = event.u64;
        let ready = event.events;
        let i = (token & 0xffff_ffff) as usize;
        let generation = (token >> 32) as u32;
        let Some(c) = conns.get_mut(i) else { continue };
        if c.generation != generation || c.fd < 0 {
            continue;
        }
        on_ready(plan, ctx, c, i, ready);
    }
    Ok(())
}

fn on_ready(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, i: usize, ready: u32) {
    if c.state == State::Connecting {
        if ready & (net::OUT | net::ERR) == 0 {
            return;
        }
        if let Err(error) = net::take_socket_error(c.fd) {
            fail_attempt(plan, ctx, c, classify_connect_error(&error));
            return;
        }
        tcp_connected(plan, ctx, c, i);
        return;
    }
    if ready & (net::IN | net::ERR) != 0 {
        ctx.now = now_ns();
        read_input(plan, ctx, c, i);
    }
    if c.fd >= 0 && ready & net::OUT != 0 {
        flush(ctx, c, i);
    }
}

fn tcp_connected(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, i: usize) {
    let identity = &plan.identities[i];
    c.out.clear();
    c.out_at = 0;
    mqtt::put_connect(
        &mut c.out,
        &mqtt::Connect {
            client_id: &identity.client_id,
            username: identity.username.as_deref(),
            password: identity.password.as_deref(),
            keep_alive_s: plan.keep_alive_s,
            clean_session: plan.clean_session,
        },
    );
    if let Some(tls) = &plan.tls {
        match rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone()) {
            Ok(conn) => c.tls = Some(Box::new(conn)),
            Err(_) => {
                fail_attempt(plan, ctx, c, ErrorKind::Tls);
                return;
            }
        }
    }
    c.state = State::Handshaking;
    flush(ctx, c, i);
}

/// Writes what is pending; registers for writability when the socket is full.
fn flush(ctx: &mut Ctx, c: &mut Conn, i: usize) {
    if c.fd < 0 {
        return;
    }
    let result = if let Some(tls) = c.tls.as_deref_mut() {
        flush_tls(tls, c.fd, &mut c.out)
    } else {
        flush_plain(c.fd, &mut c.out, &mut c.out_at)
    };
    match result {
        Ok(blocked) => {
            if blocked != c.want_out {
                let events = if blocked { net::IN | net::OUT } else { net::IN };
                let _ = ctx.epoll.modify(c.fd, c.token(i), events);
                c.want_out = blocked;
            }
            c.last_tx_ns = ctx.now;
        }
        Err(_) => {
            // The read side reports the failure with its reason; make sure it looks.
            if !c.want_out {
                let _ = ctx.epoll.modify(c.fd, c.token(i), net::IN | net::OUT);
                c.want_out = true;
            }
        }
    }
}

/// Returns whether output is left over (the socket is full).
fn flush_plain(fd: RawFd, out: &mut Vec<u8>, at: &mut usize) -> io::Result<bool> {
    while *at < out.len() {
        match net::write(fd, &out[*at..]) {
            Ok(n) => *at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.clear();
    *at = 0;
    Ok(false)
}

fn flush_tls(tls: &mut rustls::ClientConnection, fd: RawFd, out: &mut Vec<u8>) -> io::Result<bool> {
    if !out.is_empty() {
        let n = tls.writer().write(out)?;
        if n == out.len() {
            out.clear();
        } else {
            out.drain(..n);
        }
    }
    let mut io = FdIo(fd);
    while tls.wants_write() {
        match tls.write_tls(&mut io) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(!out.is_empty())
}

enum ReadEnd {
    /// More may come.
    Open,
    /// The peer closed (EOF or close_notify).
    Eof,
    /// A socket error.
    Failed,
    /// TLS failed.
    Tls,
}

fn read_input(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, i: usize) {
    let mut scratch = std::mem::take(&mut ctx.scratch);
    let end = if let Some(tls) = c.tls.as_deref_mut() {
        let mut io = FdIo(c.fd);
        match tls.read_tls(&mut io) {
            Ok(0) => ReadEnd::Eof,
            Ok(_) => match tls.process_new_packets() {
                Ok(_) => ReadEnd::Open,
                Err(_) => ReadEnd::Tls,
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                ReadEnd::Open
            }
            Err(_) => ReadEnd::Failed,
        }
    } else {
        ReadEnd::Open
    };
    if !matches!(end, ReadEnd::Open) {
        ctx.scratch = scratch;
        read_failed(plan, ctx, c, i, &end);
        return;
    }
    let mut end = ReadEnd::Open;
    if c.tls.is_some() {
        if !c.handshake_recorded && c.tls.as_ref().is_some_and(|t| !t.is_handshaking()) {
            c.handshake_recorded = true;
            if c.down_since_ns.is_none() {
                ctx.conn.tls_handshake.record(ctx.now - c.attempt_start_ns);
            }
        }
        // Decrypted bytes are already in memory: drain them all.
        loop {
            let tls = c.tls.as_deref_mut().expect("checked");
            match tls.reader().read(&mut scratch) {
                Ok(0) => {
                    end = ReadEnd::Eof;
                    break;
                }
                Ok(n) => {
                    if !handle_bytes(plan, ctx, c, i, &scratch[..n]) {
                        ctx.scratch = scratch;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    end = ReadEnd::Eof;
                    break;
                }
            }
        }
    } else {
        match net::read(c.fd, &mut scratch) {
            Ok(0) => end = ReadEnd::Eof,
            Ok(n) => {
                if !handle_bytes(plan, ctx, c, i, &scratch[..n]) {
                    ctx.scratch = scratch;
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => end = ReadEnd::Failed,
        }
    }
    ctx.scratch = scratch;
    if !matches!(end, ReadEnd::Open) {
        read_failed(plan, ctx, c, i, &end);
        return;
    }
    // Acks may have opened the window; one write carries everything this read caused.
    if matches!(c.state, State::Ready) {
        fill(plan, ctx, c, i);
    }
    if c.state == State::StormDraining && c.inflight.count == 0 {
        storm_drop(ctx, c, i, false);
        return;
    }
    flush(ctx, c, i);
}

fn read_failed(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, i: usize, end: &ReadEnd) {
    match c.state {
        State::Connecting | State::Handshaking => {
            let kind = match end {
                ReadEnd::Tls => ErrorKind::Tls,
                ReadEnd::Failed if c.tls.as_ref().is_some_and(|t| t.is_handshaking()) => {
                    ErrorKind::Tls
                }
                _ => ErrorKind::ClosedBeforeConnack,
            };
            fail_attempt(plan, ctx, c, kind);
        }
        State::Ready | State::StormDraining => {
            let kind = match end {
                ReadEnd::Tls => ErrorKind::Tls,
                ReadEnd::Failed => ErrorKind::ConnectionReset,
                _ => ErrorKind::ConnectionClosed,
            };
            lose_session(ctx, c, Some(kind), ErrorKind::LostOnDisconnect, i, false);
        }
        _ => close_fd(ctx, c),
    }
}

/// Parses and handles every complete packet; returns false if the connection was closed.
fn handle_bytes(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, i: usize, data: &[u8]) -> bool {
    let mut inbuf = std::mem::take(&mut c.inbuf);
    let owned = !inbuf.is_empty();
    if owned {
        inbuf.extend_from_slice(data);
    }
    let bytes: &[u8] = if owned { &inbuf } else { data };
    let mut at = 0;
    let mut alive = true;
    while at < bytes.len() {
        match mqtt::split_packet(&bytes[at..], PACKET_BYTES_MAX) {
            Ok(Some((packet, used))) => {
                at += used;
                if !handle_packet(plan, ctx, c, i, &packet) {
                    alive = false;
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => {
                protocol_error(plan, ctx, c, i);
                alive = false;
                break;
            }
        }
    }
    if alive {
        if owned {
            inbuf.drain(..at);
        } else {
            inbuf.clear();
            inbuf.extend_from_slice(&data[at..]);
        }
        c.inbuf = inbuf;
    }
    alive
}

fn protocol_error(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, i: usize) {
    match c.state {
        State::Connecting | State::Handshaking => fail_attempt(plan, ctx, c, ErrorKind::Protocol),
        State::Ready | State::StormDraining => {
            lose_session(
                ctx,
                c,
                Some(ErrorKind::Protocol),
                ErrorKind::LostOnDisconnect,
                i,
                false,
            );
        }
        _ => close_fd(ctx, c),
    }
}

fn handle_packet(
    plan: &Plan,
    ctx: &mut Ctx,
    c: &mut Conn,
    i: usize,
    packet: &mqtt::Packet<'_>,
) -> bool {
    match packet.kind {
        mqtt::PUBACK => {
            let Ok(pid) = mqtt::puback_id(packet.body) else {
                protocol_error(plan, ctx, c, i);
                return false;
            };
            match c.inflight.take(pid) {
                Some(slot) => on_ack(ctx, &slot),
                None => ctx.connection_error(ErrorKind::UnexpectedPuback),
            }
            true
        }
        mqtt::CONNACK if c.state == State::Handshaking => match mqtt::connack_code(packet.body) {
            Ok(0) => {
                on_connected(plan, ctx, c, i);
                true
            }
            _ => {
                fail_attempt(plan, ctx, c, ErrorKind::ConnackRefused);
                false
            }
        },
        mqtt::PINGRESP | mqtt::SUBACK => true,
        mqtt::PUBLISH => {
            ctx.received_publishes += 1;
            match mqtt::parse_publish(packet) {
                Ok(info) if info.qos == 1 => {
                    mqtt::put_puback(&mut c.out, info.packet_id);
                    true
                }
                Ok(_) => true,
                Err(_) => {
                    protocol_error(plan, ctx, c, i);
                    false
                }
            }
        }
        _ => {
            protocol_error(plan, ctx, c, i);
            false
        }
    }
}

#[inline]
fn on_ack(ctx: &mut Ctx, slot: &Slot) {
    let now = ctx.now;
    ctx.inflight_total -= 1;
    ctx.publish.acked += 1;
    ctx.last_ack_ns = now;
    ctx.interval_acked += 1;
    let latency = ctx.origin.latency_ns(slot.intended_ns, slot.sent_ns, now);
    ctx.interval.record(latency);
    let start = match ctx.origin {
        LatencyOrigin::Intended => slot.intended_ns,
        LatencyOrigin::Sent => slot.sent_ns,
    };
    if start >= ctx.measure_start_ns {
        ctx.latency.record(latency);
        ctx.service.record(now.saturating_sub(slot.sent_ns));
    }
    if now >= ctx.measure_start_ns && now <= ctx.stop_ns {
        ctx.window_acked += 1;
        ctx.window_bytes += u64::from(slot.size);
    }
}

fn on_connected(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, i: usize) {
    ctx.setting_up -= 1;
    ctx.connected += 1;
    ctx.conn.established += 1;
    ctx.conn.peak_connected = ctx.conn.peak_connected.max(ctx.connected);
    c.state = State::Ready;
    c.failures = 0;
    match c.down_since_ns.take() {
        Some(since) => ctx.conn.reconnect.record(ctx.now - since),
        None => ctx.conn.connect.record(ctx.now - c.attempt_start_ns),
    }
    fill(plan, ctx, c, i);
}

/// Adds as many publishes as the device's window and the workload allow.
#[inline]
fn fill(plan: &Plan, ctx: &mut Ctx, c: &mut Conn, i: usize) {
    if c.state != State::Ready || !ctx.publishing {
        return;
    }
    let device = i as u32;
    let topic = &plan.identities[i].topic;
    loop {
        if plan.qos == 1 {
            if c.inflight.count >= plan.inflight {
                break;
            }
        } else if c.out.len() - c.out_at >= QOS0_OUT_BYTES_HIGH {
            break;
        }
        let intended = match &ctx.schedule {
            Some(schedule) => {
                if c.sent_k >= schedule.device_due(device, ctx.due_total) {
                    break;
                }
                schedule.device_intended_ns(device, c.sent_k)
            }
            None => {
                if ctx.now >= ctx.stop_ns || (plan.messages > 0 && ctx.total_sent >= plan.messages)
                {
                    break;
                }
                ctx.now
            }
        };
        let size = plan.payload.sample(&mut ctx.rng);
        let pid = if plan.qos == 1 {
            ctx.inflight_total += 1;
            c.inflight.insert(size as u32, intended, ctx.now)
        } else {
            0
        };
        mqtt::put_publish_header(&mut c.out, plan.qos, topic, pid, size);
        Header {
            device,
            sequence: c.sent_k,
            intended_ns: intended,
            sent_ns: ctx.now,
        }
        .write_payload(&mut c.out, size);
        c.sent_k += 1;
        ctx.total_sent += 1;
        ctx.publish.sent += 1;
        ctx.interval_sent += 1;
        if plan.qos == 0 && ctx.now >= ctx.measure_start_ns && ctx.now <= ctx.stop_ns {
            ctx.window_sent += 1;
            ctx.window_bytes += size as u64;
        }
    }
}

/// Open loop: hands every message now due to its device, and records how late the
/// generator noticed it.
fn release_due(plan: &Plan, ctx: &mut Ctx, conns: &mut [Conn], schedule: &OpenLoop) {
    let now = now_ns();
    ctx.now = now;
    let due = schedule.due(now);
    if due <= ctx.due_total {
        return;
    }
    let first = ctx.due_total;
    ctx.due_total = due;
    let devices = conns.len() as u64;
    // Past one full round every device has something due; visit each once.
    let visit = (due - first).min(devices);
    for m in first..due {
        let intended = schedule.intended_ns(m);
        if intended >= ctx.measure_start_ns {
            ctx.lag.record(now - intended);
        }
    }
    for m in first..first + visit {
        let i = schedule.device_of(m) as usize;
        let c = &mut conns[i];
        if c.state == State::Ready {
            fill(plan, ctx, c, i);
            flush(ctx, c, i);
        }
    }
}

/// Time-outs, retries and keep-alives.
fn sweep(plan: &Plan, ctx: &mut Ctx, conns: &mut [Conn]) {
    let now = now_ns();
    ctx.now = now;
    let keep_alive_ns = u64::from(plan.keep_alive_s) * NS_PER_S / 2;
    let check_setups = ctx.setting_up > 0 || ctx.backing_off > 0;
    let check_pings = keep_alive_ns > 0;
    if !check_setups && !check_pings {
        return;
    }
    for (i, c) in conns.iter_mut().enumerate() {
        match c.state {
            State::Connecting | State::Handshaking
                if check_setups && now - c.attempt_start_ns > plan.connect.timeout_ns =>
            {
                fail_attempt(plan, ctx, c, ErrorKind::ConnectTimeout);
            }
            State::Backoff { until_ns } if now >= until_ns => {
                ctx.backing_off -= 1;
                c.state = State::Down;
                ctx.to_connect.push_back(i as u32);
            }
            State::Ready if check_pings && now - c.last_tx_ns > keep_alive_ns => {
                c.out.extend_from_slice(&mqtt::PINGREQ_PACKET);
                flush(ctx, c, i);
            }
            _ => {}
        }
    }
}

fn storm_drop(ctx: &mut Ctx, c: &mut Conn, i: usize, abrupt: bool) {
    ctx.conn.storm_drops += 1;
    lose_session(ctx, c, None, ErrorKind::LostInStorm, i, abrupt);
}

/// Fires reconnect storms at their times.
struct StormClock {
    /// `(next time, storm index)`.
    next: Vec<(u64, usize)>,
    storms: Vec<Storm>,
    cursor: usize,
    devices: usize,
}

impl StormClock {
    fn new(storms: &[Storm], start_ns: u64, devices: usize) -> Self {
        Self {
            next: storms
                .iter()
                .enumerate()
                .map(|(k, s)| (start_ns + s.at.ns(), k))
                .collect(),
            storms: storms.to_vec(),
            cursor: 0,
            devices,
        }
    }

    fn next_ns(&self) -> u64 {
        self.next.iter().map(|(t, _)| *t).min().unwrap_or(u64::MAX)
    }

    fn fire(&mut self, ctx: &mut Ctx, conns: &mut [Conn]) {
        let now = ctx.now;
        for entry in &mut self.next {
            if entry.0 > now {
                continue;
            }
            let storm = &self.storms[entry.1];
            entry.0 = if storm.every.ns() > 0 {
                entry.0 + storm.every.ns()
            } else {
                u64::MAX
            };
            // Storms take consecutive devices, continuing where the last one stopped, so
            // repeated storms spread over the fleet.
            let count = (storm.fraction * self.devices as f64).round() as usize;
            for _ in 0..count {
                let i = self.cursor % self.devices;
                self.cursor += 1;
                let c = &mut conns[i];
                if c.state != State::Ready {
                    continue;
                }
                if storm.abrupt || c.inflight.count == 0 {
                    ctx.conn.storm_drops += 1;
                    lose_session(ctx, c, None, ErrorKind::LostInStorm, i, storm.abrupt);
                } else {
                    c.state = State::StormDraining;
                }
            }
        }
    }
}

/// The once-a-second tick: timeline point, progress line, server sample.
struct Ticker {
    origin_ns: u64,
    next_ns: u64,
    last: Option<(u64, u64, Option<u64>)>,
    server_pid: Option<u32>,
    server_rss_peak: u64,
    tty: bool,
}

impl Ticker {
    fn new(server_pid: Option<u32>) -> Self {
        Self {
            origin_ns: 0,
            next_ns: u64::MAX,
            last: None,
            server_pid,
            server_rss_peak: 0,
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    /// Restarts the ticks at `now`; `spin_ns` is the spin time so far (see [`Ctx`]).
    fn start(&mut self, now: u64, spin_ns: u64) {
        self.origin_ns = now;
        self.next_ns = now + NS_PER_S;
        let busy = clock::thread_cpu_ns().saturating_sub(spin_ns);
        self.last = Some((now, busy, self.server_cpu()));
    }

    fn server_cpu(&mut self) -> Option<u64> {
        let sample = self.server_pid.and_then(procfs::sample_process)?;
        self.server_rss_peak = self.server_rss_peak.max(sample.rss_bytes);
        Some(sample.cpu_ns)
    }

    fn tick(&mut self, plan: &Plan, ctx: &mut Ctx, extra: Option<&str>) -> TimelinePoint {
        let now = now_ns();
        // The load thread's busy time: CPU minus spinning on empty polls.
        let thread_cpu = clock::thread_cpu_ns().saturating_sub(ctx.spin_ns);
        let server_sample = self.server_pid.and_then(procfs::sample_process);
        if let Some(s) = server_sample {
            self.server_rss_peak = self.server_rss_peak.max(s.rss_bytes);
        }
        let (last_t, last_cpu, last_server) = self.last.unwrap_or((now, thread_cpu, None));
        let wall = (now - last_t).max(1) as f64;
        let server_cpu_pct = match (server_sample, last_server) {
            (Some(s), Some(prev)) => Some(100.0 * s.cpu_ns.saturating_sub(prev) as f64 / wall),
            _ => None,
        };
        let summary = ctx.interval.summary();
        let point = TimelinePoint {
            t_s: (now as f64 - self.origin_ns as f64) / 1e9,
            connected: ctx.connected,
            sent: ctx.interval_sent,
            acked: ctx.interval_acked,
            acked_per_s: ctx.interval_acked as f64 * 1e9 / wall,
            errors: ctx.interval_errors,
            p50_ns: summary.p50_ns,
            p99_ns: summary.p99_ns,
            max_ns: summary.max_ns,
            server_cpu_pct,
            server_rss_bytes: server_sample.map(|s| s.rss_bytes),
            generator_cpu_pct: 100.0 * thread_cpu.saturating_sub(last_cpu) as f64 / wall,
        };
        if plan.progress {
            self.print(plan, ctx, &point, extra);
        }
        ctx.interval.reset();
        ctx.interval_sent = 0;
        ctx.interval_acked = 0;
        ctx.interval_errors = 0;
        self.last = Some((now, thread_cpu, server_sample.map(|s| s.cpu_ns)));
        self.next_ns = (self.next_ns + NS_PER_S).max(now + NS_PER_S / 2);
        point
    }

    fn print(&self, plan: &Plan, ctx: &Ctx, p: &TimelinePoint, extra: Option<&str>) {
        let phase = if ctx.measure_start_ns == u64::MAX {
            "connect"
        } else if ctx.now < ctx.measure_start_ns {
            "warmup"
        } else if plan.idle && ctx.now < ctx.stop_ns {
            "idle"
        } else if ctx.publishing && ctx.now < ctx.stop_ns {
            "publish"
        } else {
            "drain"
        };
        let mut line = format!(
            "[{:>6.1}s] {phase:<7} conn {}/{}  sent {}  acked {}  {}/s",
            p.t_s,
            p.connected,
            plan.identities.len(),
            si(ctx.publish.sent as f64),
            si(ctx.publish.acked as f64),
            si(p.acked_per_s
                .max(if plan.qos == 0 { p.sent as f64 } else { 0.0 })),
        );
        if p.acked > 0 {
            let _ = write!(
                line,
                "  p50 {} p99 {} max {}",
                clock::human_ns(p.p50_ns),
                clock::human_ns(p.p99_ns),
                clock::human_ns(p.max_ns)
            );
        }
        let errors = ctx.publish.errors.total() + ctx.conn.errors.total();
        let _ = write!(line, "  err {errors}");
        if let Some(cpu) = p.server_cpu_pct {
            let _ = write!(line, "  server {cpu:.0}%");
        }
        if let Some(rss) = p.server_rss_bytes {
            let _ = write!(line, " {:.1}MB", rss as f64 / 1e6);
        }
        let _ = write!(line, "  gen {:.0}%", p.generator_cpu_pct);
        if let Some(extra) = extra {
            line.push_str("  ");
            line.push_str(extra);
        }
        if self.tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish_line(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// `12.3k`, `1.25M`: three significant digits for progress lines.
pub fn si(value: f64) -> String {
    let (scaled, unit) = if value >= 1e9 {
        (value / 1e9, "G")
    } else if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        return format!("{value:.0}");
    };
    if scaled >= 100.0 {
        format!("{scaled:.0}{unit}")
    } else if scaled >= 10.0 {
        format!("{scaled:.1}{unit}")
    } else {
        format!("{scaled:.2}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_ids_are_unique_and_acks_find_their_message_in_any_order() {
        let mut inflight = Inflight::new(4);
        let a = inflight.insert(10, 1, 2);
        let b = inflight.insert(20, 3, 4);
        let c = inflight.insert(30, 5, 6);
        assert_eq!(inflight.count, 3);
        assert!(a != b && b != c && a != c);
        let slot = inflight.take(b).expect("in flight");
        assert_eq!((slot.size, slot.intended_ns, slot.sent_ns), (20, 3, 4));
        assert!(inflight.take(b).is_none(), "an id is acknowledged once");
        assert!(inflight.take(0).is_none());
        assert!(inflight.take(999).is_none());
        assert_eq!(inflight.clear(), 2);
        assert!(inflight.take(a).is_none());
    }

    #[test]
    fn inflight_skips_ids_whose_slot_is_still_taken() {
        // Window 1 → table of 2 slots. Keep id 1 outstanding while ids cycle through the
        // whole u16 space: every id mapping to slot 1 must be skipped.
        let mut inflight = Inflight::new(1);
        let stuck = inflight.insert(0, 0, 0);
        assert_eq!(stuck, 1);
        for _ in 0..100_000 {
            let id = inflight.insert(0, 0, 0);
            assert_ne!(id & 1, 1, "slot 1 is occupied by id 1");
            assert_ne!(id, 0);
            inflight.take(id).expect("just inserted");
        }
        assert!(inflight.take(stuck).is_some());
    }

    #[test]
    fn si_formats_three_digits() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(123_456.0), "123k");
        assert_eq!(si(12_345_678.0), "12.3M");
    }
}
