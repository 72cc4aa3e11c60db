//! Tiny workloads against the floor broker, in process: every message sent must be
//! acknowledged or counted as an error, and the broker must have seen exactly what the
//! generator says it sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use perf::floor::{FloorBroker, FloorCounters};
use perf::scenario::{Duration, Scenario, Storm, TargetKind};

struct Floor {
    port: u16,
    counters: Arc<FloorCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Floor {
    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let broker = FloorBroker::bind(SocketAddr::from(([127, 0, 0, 1], 0)), tls).expect("bind");
        let port = broker.port();
        let counters = broker.counters.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || broker.run(&flag).expect("floor broker runs"));
        Self {
            port,
            counters,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn scenario(port: u16) -> Scenario {
    let mut s = Scenario {
        name: "test".into(),
        ..Scenario::default()
    };
    s.target.kind = TargetKind::Mqtt;
    s.target.port = port;
    s.target.server_pid = Some(std::process::id());
    s.devices.count = 10;
    s.publish.inflight = 4;
    s.publish.warmup = Duration(0);
    s.publish.drain_timeout = Duration::secs(5);
    s.output.progress = false;
    s
}

/// 10 devices, 4 in flight each, closed loop until 5000 messages.
///
/// Expectation: exactly 5000 sent, all acknowledged, no errors; the broker counted 5000
/// publishes and answered 10 CONNECTs.
#[test]
fn closed_loop_counts_add_up_against_the_floor_broker() {
    let floor = Floor::start(None);
    let mut s = scenario(floor.port);
    s.publish.duration = Duration(0);
    s.publish.messages = 5_000;
    let report = perf::run::execute(&s).expect("runs").report;
    let p = &report.results.publish;
    assert_eq!(p.counts.sent, 5_000);
    assert_eq!(p.counts.sent, p.counts.acked + p.counts.errors.total());
    assert_eq!(p.counts.errors.total(), 0);
    assert!(p.counts_add_up);
    assert_eq!(
        p.puback.count, 5_000,
        "every message is in the latency histogram"
    );
    assert_eq!(floor.counters.publishes.load(Ordering::Relaxed), 5_000);
    assert_eq!(floor.counters.connects.load(Ordering::Relaxed), 10);
    assert_eq!(report.results.connections.connected, 10);
    assert!(
        report.results.server.is_some(),
        "the server pid was sampled"
    );
}

/// Open loop at 2000 msgs/s for 1 s over 10 devices, with a 64-1024 B size range.
///
/// Expectation: the schedule makes 2000 messages due and all are sent and acknowledged;
/// latency is measured from the intended time; the generator's lag is recorded for each.
#[test]
fn open_loop_sends_exactly_the_schedule() {
    let floor = Floor::start(None);
    let mut s = scenario(floor.port);
    s.publish.rate = 2_000.0;
    s.publish.duration = Duration::secs(1);
    s.publish.payload = "64-1024".into();
    let report = perf::run::execute(&s).expect("runs").report;
    let p = &report.results.publish;
    assert_eq!(p.counts.sent, 2_000);
    assert_eq!(p.counts.acked, 2_000);
    assert_eq!(p.unsent_due, 0);
    assert_eq!(p.latency_origin, perf::schedule::LatencyOrigin::Intended);
    assert_eq!(p.generator_lag.count, 2_000);
    assert!(
        (p.msgs_per_s - 2_000.0).abs() < 100.0,
        "rate {}",
        p.msgs_per_s
    );
    let mean = p.mb_per_s * 1e6 / p.msgs_per_s;
    assert!((300.0..800.0).contains(&mean), "mean payload {mean}");
}

/// A graceful reconnect storm of half the devices in the middle of a 2 s run.
///
/// Expectation: 5 devices are dropped after their in-flight messages are acked and
/// reconnect; no message is lost, so the counts still add up without errors.
#[test]
fn graceful_storm_loses_nothing_and_reconnects() {
    let floor = Floor::start(None);
    let mut s = scenario(floor.port);
    s.publish.rate = 1_000.0;
    s.publish.duration = Duration::secs(2);
    s.storms.push(Storm {
        at: Duration(500_000_000),
        fraction: 0.5,
        every: Duration(0),
        abrupt: false,
    });
    let report = perf::run::execute(&s).expect("runs").report;
    let p = &report.results.publish;
    let c = &report.results.connections;
    assert_eq!(c.storm_drops, 5);
    assert_eq!(c.reconnect.count, 5);
    assert_eq!(p.counts.errors.total(), 0);
    assert_eq!(p.counts.sent, 2_000);
    assert_eq!(p.counts.sent, p.counts.acked);
    assert_eq!(floor.counters.connects.load(Ordering::Relaxed), 15);
}

/// An abrupt storm (TCP reset) with messages in flight.
///
/// Expectation: whatever was in flight on the dropped connections is counted as
/// lost_in_storm, and still sent == acked + errors.
#[test]
fn abrupt_storm_counts_what_it_loses() {
    let floor = Floor::start(None);
    let mut s = scenario(floor.port);
    s.publish.duration = Duration::secs(1);
    s.storms.push(Storm {
        at: Duration(300_000_000),
        fraction: 1.0,
        every: Duration(0),
        abrupt: true,
    });
    let report = perf::run::execute(&s).expect("runs").report;
    let p = &report.results.publish;
    assert!(p.counts.sent > 0);
    assert_eq!(p.counts.sent, p.counts.acked + p.counts.errors.total());
    assert_eq!(report.results.connections.storm_drops, 10);
}

/// QoS 1 over TLS with a certificate from a throw-away CA.
///
/// Expectation: TLS handshakes are measured and the counts add up.
#[test]
fn tls_run_against_the_floor_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let ca_path = write("ca.pem", ca.pem());
    let cert_path = write("server.pem", cert.pem());
    let key_path = write("server.key", key.serialize_pem());
    let tls = perf::tls::server_config(&cert_path, &key_path).expect("server config");
    let floor = Floor::start(Some(tls));
    let mut s = scenario(floor.port);
    s.target.tls = Some(true);
    s.target.ca = Some(ca_path);
    s.target.server_name = Some("localhost".into());
    s.publish.duration = Duration(0);
    s.publish.messages = 2_000;
    let report = perf::run::execute(&s).expect("runs").report;
    let p = &report.results.publish;
    assert_eq!(p.counts.sent, 2_000);
    assert_eq!(p.counts.acked, 2_000);
    assert_eq!(report.results.connections.tls_handshake.count, 10);
    assert_eq!(floor.counters.publishes.load(Ordering::Relaxed), 2_000);
}

/// Nothing listens on the port.
///
/// Expectation: the run fails with a message that names the refusal.
#[test]
fn refused_connections_are_reported_by_kind() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut s = scenario(port);
    s.devices.count = 3;
    s.connect.retries = 1;
    s.connect.retry_backoff = Duration(10_000_000);
    let error = perf::run::execute(&s).expect_err("nothing listens");
    let text = format!("{error:#}");
    assert!(text.contains("6 x connect_refused"), "{text}");
}

/// QoS 0, closed loop, 1 s: nothing is acknowledged, so the generator can only count what
/// it wrote.
///
/// Expectation: the broker eventually parses exactly as many publishes as were sent, no
/// latency is recorded, and the rate is computed from sends.
#[test]
fn qos0_sends_are_all_seen_by_the_broker() {
    let floor = Floor::start(None);
    let mut s = scenario(floor.port);
    s.publish.qos = 0;
    s.publish.duration = Duration::secs(1);
    let report = perf::run::execute(&s).expect("runs").report;
    let p = &report.results.publish;
    assert!(p.counts.sent > 1_000, "sent {}", p.counts.sent);
    assert_eq!(p.counts.acked, 0);
    assert_eq!(p.puback.count, 0);
    assert!(p.msgs_per_s > 0.0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while floor.counters.publishes.load(Ordering::Relaxed) < p.counts.sent
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        floor.counters.publishes.load(Ordering::Relaxed),
        p.counts.sent
    );
    assert_eq!(floor.counters.pubacks.load(Ordering::Relaxed), 0);
}

/// QoS 0 by message count: nothing is acknowledged, so the window cannot end at the last
/// acknowledgement.
///
/// Expectation: every message is sent and the rate is computed over the time the sends
/// took: positive and finite, not divided by an empty window.
#[test]
fn qos0_count_runs_report_a_rate_over_their_sends() {
    let floor = Floor::start(None);
    let mut s = scenario(floor.port);
    s.publish.qos = 0;
    s.publish.duration = Duration(0);
    s.publish.messages = 20_000;
    let report = perf::run::execute(&s).expect("runs").report;
    let p = &report.results.publish;
    assert_eq!(p.counts.sent, 20_000);
    assert!(
        p.msgs_per_s.is_finite() && p.msgs_per_s > 0.0,
        "rate {}",
        p.msgs_per_s
    );
    // 20k messages cannot have been written in under a microsecond each on any machine
    // this runs on: a rate beyond this is a window that collapsed.
    assert!(p.msgs_per_s < 20e6, "rate {}", p.msgs_per_s);
}

/// Forwards its first `admitted` connections to `upstream` and closes every later one at
/// once: a broker that some devices can never reach.
fn start_gate(upstream: u16, admitted: usize) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { continue };
            if n >= admitted {
                continue; // dropped: the device sees its connection closed
            }
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            for (mut from, mut to) in [
                (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                ),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

/// Open loop by message count, 10 devices, 3 of which can never connect and give up.
///
/// Expectation: the run ends (the schedule's share of those devices is counted as abandoned
/// rather than waited for), the other devices send and have acknowledged their whole share,
/// and the report says how many scheduled messages were abandoned.
#[test]
fn an_open_loop_count_run_ends_when_devices_give_up() {
    let floor = Floor::start(None);
    let gate = start_gate(floor.port, 7);
    let mut s = scenario(gate);
    s.connect.retries = 0;
    s.connect.concurrency = 1;
    s.publish.duration = Duration(0);
    s.publish.messages = 1_000;
    s.publish.rate = 20_000.0;
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(perf::run::execute(&s));
    });
    let report = outcome
        .recv_timeout(std::time::Duration::from_mins(1))
        .expect("the run ends")
        .expect("runs")
        .report;
    assert_eq!(report.results.connections.gave_up, 3);
    let p = &report.results.publish;
    assert_eq!(p.abandoned_due, 300, "each device's share is 100");
    assert_eq!(p.counts.sent, 700);
    assert_eq!(p.counts.acked, 700);
    assert_eq!(p.unsent_due, 0);
    assert_eq!(floor.counters.publishes.load(Ordering::Relaxed), 700);
}
