//! `shoal-perf`: the load generator's command line.
//!
//! ```text
//! shoal-perf                               the canonical run: two lines (msgs/s, PUBACK p50/p99/p999)
//! shoal-perf run [--scenario F] [flags]    any scenario against Shoal or an MQTT broker
//! shoal-perf floor-broker --port P [--tls] the do-nothing broker
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context as _, anyhow};
use clap::{Args, Parser, Subcommand};
use perf::report::Report;
use perf::scenario::{Duration, Register, Scenario, Storm, TargetKind};
use perf::tls::TlsVersions;

#[derive(Debug, Parser)]
#[command(
    name = "shoal-perf",
    version,
    about = "MQTT device-swarm load generator for Shoal and peer brokers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The canonical workload against a Shoal started on a temporary data directory
    /// ($SHOAL_BIN or target/release/shoal): 100 registered devices, 256 B, QoS 1, TLS, one
    /// in flight per device, 10 s after a 1 s warm-up. Prints two lines.
    Canonical(CanonicalArgs),
    /// Run a scenario (TOML file and/or flags; flags win).
    Run(Box<RunArgs>),
    /// Serve the do-nothing MQTT broker.
    FloorBroker(FloorArgs),
    /// Print the side-by-side table of JSON reports (what compare.sh shows).
    CompareTable(CompareArgs),
    /// Wait until the machine is quiet: other processes use less than --max-cores over a
    /// one-second sample (for shared machines; compare.sh --wait-quiet).
    WaitQuiet(WaitQuietArgs),
}

#[derive(Debug, Args)]
struct WaitQuietArgs {
    /// Busy cores allowed (summed over every CPU).
    #[arg(long, default_value_t = 0.1)]
    max_cores: f64,
    /// Give up after this long (exit status 1).
    #[arg(long, default_value = "300s")]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The title line.
    #[arg(long, default_value = "comparison")]
    title: String,
    /// The row the ratios are computed from.
    #[arg(long, default_value = "shoal")]
    baseline: String,
    /// `label=report.json` or `label=!reason` (a run that failed), in row order.
    #[arg(required = true)]
    rows: Vec<String>,
}

#[derive(Debug, Default, Args)]
struct CanonicalArgs {
    /// Also write the JSON report here (`-` = stderr is not used; stdout stays two lines).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the SVG report here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Show the progress line on stderr.
    #[arg(long)]
    progress: bool,
}

#[derive(Debug, Default, Args)]
#[allow(clippy::option_option)]
struct RunArgs {
    /// A scenario file, or the name of one in perf/scenarios/.
    #[arg(long, short = 's')]
    scenario: Option<PathBuf>,
    /// A name for reports.
    #[arg(long)]
    name: Option<String>,
    /// shoal (IoT Hub semantics) or mqtt (any broker, `perf-{n}` on `perf/{n}`).
    #[arg(long, value_enum)]
    target: Option<TargetKind>,
    /// Host to connect to.
    #[arg(long)]
    host: Option<String>,
    /// MQTT port (Shoal: from endpoints.json).
    #[arg(long)]
    port: Option<u16>,
    /// Use TLS.
    #[arg(long, overrides_with = "no_tls")]
    tls: bool,
    /// Use plain TCP.
    #[arg(long)]
    no_tls: bool,
    /// CA certificate (PEM) to trust.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Name to verify in the server certificate.
    #[arg(long)]
    server_name: Option<String>,
    /// TLS versions: any, 1.2, 1.3.
    #[arg(long)]
    tls_versions: Option<TlsVersions>,
    /// Resume TLS sessions on reconnect.
    #[arg(long)]
    tls_resumption: bool,
    /// A running Shoal's data directory (its endpoints.json).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Start a Shoal ($SHOAL_BIN or target/release/shoal) on a temporary data directory.
    #[arg(long)]
    start_shoal: bool,
    /// The server process to measure (CPU, RSS).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Number of devices.
    #[arg(long)]
    devices: Option<u32>,
    /// Shoal registration: create, upsert, existing.
    #[arg(long, value_enum)]
    register: Option<Register>,
    /// Device id prefix (Shoal).
    #[arg(long)]
    prefix: Option<String>,
    /// MQTT clean-session flag.
    #[arg(long)]
    clean_session: Option<bool>,
    /// MQTT keep-alive, seconds.
    #[arg(long)]
    keep_alive: Option<u16>,
    /// Spread connections over source addresses 127.0.0.1..=N.
    #[arg(long)]
    source_ips: Option<u8>,
    /// New connections per second during the connect phase (0 = unlimited).
    #[arg(long)]
    connect_rate: Option<f64>,
    /// Connection set-ups in progress at once.
    #[arg(long)]
    connect_concurrency: Option<u32>,
    /// TCP connect to CONNACK time-out.
    #[arg(long)]
    connect_timeout: Option<Duration>,
    /// Retries after a failed connect.
    #[arg(long)]
    connect_retries: Option<u32>,
    /// QoS 0 or 1.
    #[arg(long)]
    qos: Option<u8>,
    /// Payload size: 256, 64-1024 (uniform) or 64:3,4096:1 (weighted).
    #[arg(long)]
    payload: Option<String>,
    /// Total messages per second, open loop (0 = closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Messages per second per device, open loop.
    #[arg(long)]
    device_rate: Option<f64>,
    /// QoS 1 messages in flight per device.
    #[arg(long)]
    inflight: Option<u32>,
    /// Publishing time after the warm-up (0 = until --messages).
    #[arg(long)]
    duration: Option<Duration>,
    /// Stop after this many messages.
    #[arg(long)]
    messages: Option<u64>,
    /// Warm-up excluded from the figures.
    #[arg(long)]
    warmup: Option<Duration>,
    /// Time allowed for outstanding acks at the end.
    #[arg(long)]
    drain_timeout: Option<Duration>,
    /// Property bag appended to Shoal's telemetry topic.
    #[arg(long)]
    properties: Option<String>,
    /// Hold the connections without publishing (soak).
    #[arg(long)]
    idle: bool,
    /// Seed for payload sizes.
    #[arg(long)]
    seed: Option<u64>,
    /// A reconnect storm: at=5s,fraction=0.5[,every=10s][,abrupt] (repeatable).
    #[arg(long)]
    storm: Vec<Storm>,
    /// Read every partition over the Event Hubs-compatible endpoint (Shoal only).
    #[arg(long)]
    consumer: bool,
    /// AMQP port for the consumer (Shoal: from endpoints.json).
    #[arg(long)]
    amqp_port: Option<u16>,
    /// The consumer speaks plain TCP (emulator mode) instead of TLS.
    #[arg(long)]
    consumer_plain: bool,
    /// Partitions to read (Shoal: from endpoints.json).
    #[arg(long)]
    partitions: Option<u32>,
    /// Write the JSON report here (`-` = stdout; the table then goes to stderr).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the SVG report here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// A label for the server in reports (e.g. mosquitto).
    #[arg(long)]
    label: Option<String>,
    /// Pin the load thread to this CPU.
    #[arg(long)]
    pin_core: Option<usize>,
    /// Poll instead of sleeping when the next timer is this close (microseconds; 0 = never).
    #[arg(long)]
    spin_us: Option<u64>,
}

#[derive(Debug, Args)]
struct FloorArgs {
    /// Port to listen on (0 = any; the chosen one is printed).
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    /// Serve MQTT over TLS (needs --cert and --key).
    #[arg(long)]
    tls: bool,
    /// Certificate chain (PEM).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Pin to this CPU.
    #[arg(long)]
    pin_core: Option<usize>,
}

fn apply(args: &RunArgs, s: &mut Scenario) {
    macro_rules! set {
        ($field:expr, $value:expr) => {
            if let Some(v) = $value.clone() {
                $field = v;
            }
        };
    }
    set!(s.name, args.name);
    set!(s.target.kind, args.target);
    set!(s.target.host, args.host);
    set!(s.target.port, args.port);
    if args.tls {
        s.target.tls = Some(true);
    }
    if args.no_tls {
        s.target.tls = Some(false);
    }
    if args.ca.is_some() {
        s.target.ca.clone_from(&args.ca);
    }
    if args.server_name.is_some() {
        s.target.server_name.clone_from(&args.server_name);
    }
    set!(s.target.tls_versions, args.tls_versions);
    s.target.tls_resumption |= args.tls_resumption;
    if args.data_dir.is_some() {
        s.target.data_dir.clone_from(&args.data_dir);
        s.target.kind = TargetKind::Shoal;
    }
    if args.start_shoal {
        s.target.start_shoal = true;
        s.target.kind = TargetKind::Shoal;
    }
    if args.server_pid.is_some() {
        s.target.server_pid = args.server_pid;
    }
    set!(s.devices.count, args.devices);
    set!(s.devices.register, args.register);
    set!(s.devices.prefix, args.prefix);
    set!(s.devices.clean_session, args.clean_session);
    set!(s.devices.keep_alive_s, args.keep_alive);
    set!(s.devices.source_ips, args.source_ips);
    set!(s.connect.rate, args.connect_rate);
    set!(s.connect.concurrency, args.connect_concurrency);
    set!(s.connect.timeout, args.connect_timeout);
    set!(s.connect.retries, args.connect_retries);
    set!(s.publish.qos, args.qos);
    set!(s.publish.payload, args.payload);
    set!(s.publish.rate, args.rate);
    set!(s.publish.device_rate, args.device_rate);
    set!(s.publish.inflight, args.inflight);
    set!(s.publish.duration, args.duration);
    set!(s.publish.messages, args.messages);
    set!(s.publish.warmup, args.warmup);
    set!(s.publish.drain_timeout, args.drain_timeout);
    set!(s.publish.properties, args.properties);
    set!(s.publish.seed, args.seed);
    s.publish.idle |= args.idle;
    s.storms.extend(args.storm.iter().cloned());
    s.consumer.enabled |= args.consumer;
    set!(s.consumer.port, args.amqp_port);
    set!(s.consumer.partitions, args.partitions);
    if args.consumer_plain {
        s.consumer.tls = false;
    }
    if args.json.is_some() {
        s.output.json.clone_from(&args.json);
    }
    if args.svg.is_some() {
        s.output.svg.clone_from(&args.svg);
    }
    if args.quiet {
        s.output.progress = false;
    }
    set!(s.output.label, args.label);
    if args.pin_core.is_some() {
        s.runner.pin_core = args.pin_core;
    }
    if args.spin_us.is_some() {
        s.runner.spin_us = args.spin_us;
    }
}

/// The canonical workload, the one the performance targets refer to.
fn canonical_scenario(args: &CanonicalArgs) -> Scenario {
    let mut s = Scenario {
        name: "canonical".into(),
        description: "100 devices, QoS 1, 256 B, TLS, 1 in flight, 10 s".into(),
        ..Scenario::default()
    };
    s.target.kind = TargetKind::Shoal;
    s.target.start_shoal = true;
    s.target.tls = Some(true);
    s.devices.count = 100;
    s.publish.qos = 1;
    s.publish.payload = "256".into();
    s.publish.inflight = 1;
    s.publish.duration = Duration::secs(10);
    s.publish.warmup = Duration::secs(1);
    s.output.progress = args.progress;
    s.output.json.clone_from(&args.json);
    s.output.svg.clone_from(&args.svg);
    s
}

fn write_outputs(report: &Report, scenario: &Scenario) -> anyhow::Result<()> {
    if let Some(path) = &scenario.output.json {
        let text = serde_json::to_string_pretty(report)?;
        if path.as_os_str() == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if let Some(path) = &scenario.output.svg {
        std::fs::write(path, perf::svg::render(report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::default(),
    };
    apply(args, &mut scenario);
    let finished = perf::run::execute(&scenario)?;
    let report = &finished.report;
    let text = report.render_text();
    let json_to_stdout = scenario
        .output
        .json
        .as_ref()
        .is_some_and(|p| p.as_os_str() == "-");
    if json_to_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    write_outputs(report, &scenario)?;
    Ok(())
}

fn canonical(args: &CanonicalArgs) -> anyhow::Result<()> {
    let scenario = canonical_scenario(args);
    let finished = perf::run::execute(&scenario).map_err(|error| {
        anyhow!("{error:#}\n(the canonical run needs a Shoal whose MQTT listener accepts devices)")
    })?;
    let report = &finished.report;
    let [rate, latency] = report.canonical_lines();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{rate}")?;
    writeln!(stdout, "{latency}")?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    write_outputs(report, &scenario)?;
    Ok(())
}

fn floor_broker(args: &FloorArgs) -> anyhow::Result<()> {
    if let Some(cpu) = args.pin_core {
        perf::net::pin_current_thread(cpu).with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    perf::net::raise_nofile_limit(1 << 20);
    let tls = if args.tls {
        let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
            return Err(anyhow!("--tls needs --cert and --key"));
        };
        Some(perf::tls::server_config(cert, key)?)
    } else {
        None
    };
    let broker =
        perf::floor::FloorBroker::bind(std::net::SocketAddr::new(args.bind, args.port), tls)
            .with_context(|| format!("binding {}:{}", args.bind, args.port))?;
    println!(
        "floor broker listening on {}:{} ({})",
        args.bind,
        broker.port(),
        if args.tls { "TLS" } else { "plain TCP" }
    );
    std::io::stdout().flush()?;
    broker.run(&AtomicBool::new(false))?;
    Ok(())
}

fn wait_quiet(args: &WaitQuietArgs) -> anyhow::Result<()> {
    let deadline = perf::clock::now_ns() + args.timeout.ns();
    loop {
        let before = perf::procfs::sample_machine();
        let t0 = perf::clock::now_ns();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let after = perf::procfs::sample_machine();
        let busy = after.busy_ns.saturating_sub(before.busy_ns) as f64
            / (perf::clock::now_ns() - t0) as f64;
        if busy <= args.max_cores {
            eprintln!("machine quiet: {busy:.2} cores busy");
            return Ok(());
        }
        if perf::clock::now_ns() > deadline {
            return Err(anyhow!(
                "the machine stayed busy ({busy:.2} cores > {:.2}) for {}",
                args.max_cores,
                args.timeout
            ));
        }
        eprintln!("waiting for a quiet machine: {busy:.2} cores busy");
    }
}

fn compare_table(args: &CompareArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for spec in &args.rows {
        let (label, what) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("'{spec}' is not label=report.json or label=!reason"))?;
        let row = if let Some(reason) = what.strip_prefix('!') {
            Err(reason.to_owned())
        } else {
            std::fs::read_to_string(what)
                .map_err(|e| format!("{what}: {e}"))
                .and_then(|text| serde_json::from_str(&text).map_err(|e| format!("{what}: {e}")))
                .and_then(|json| {
                    perf::compare::Row::from_report(label, &json)
                        .ok_or_else(|| format!("{what}: not a shoal-perf report"))
                })
        };
        rows.push((label.to_owned(), row));
    }
    print!(
        "{}",
        perf::compare::table(&args.title, &rows, &args.baseline)
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        None => canonical(&CanonicalArgs::default()),
        Some(Command::Canonical(args)) => canonical(args),
        Some(Command::Run(args)) => run(args),
        Some(Command::FloorBroker(args)) => floor_broker(args),
        Some(Command::CompareTable(args)) => compare_table(args),
        Some(Command::WaitQuiet(args)) => wait_quiet(args),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
