//! The Event Hubs consumer over a real socket, against the `eventhub_stub` example of
//! `dataplane-amqp` (plain TCP, the emulator mode), before Shoal's AMQP endpoint exists.
//!
//! Build the stub and point the test at it:
//! ```text
//! cargo build -p dataplane-amqp --example eventhub_stub
//! SHOAL_EVENTHUB_STUB=$CARGO_TARGET_DIR/debug/examples/eventhub_stub \
//!     cargo test -p perf --test consumer_stub -- --ignored
//! ```

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use perf::consumer::amqp::{EventHub, ReceiverParams};
use perf::consumer::{Consumer, ConsumerConfig};
use perf::schedule::LatencyOrigin;

/// A stub with 4 partitions of 5 generated events each, read from the start (`-1`).
///
/// Expectation: all four receivers authenticate through `$cbs`, attach with their
/// selector and receive the 20 events; the events carry no generator header, so they are
/// counted as foreign and none is measured.
#[test]
#[ignore = "needs SHOAL_EVENTHUB_STUB (see the module docs)"]
fn consumer_reads_every_partition_of_the_eventhub_stub() {
    let binary = std::env::var("SHOAL_EVENTHUB_STUB").expect("SHOAL_EVENTHUB_STUB names the stub");
    let key = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";
    let mut stub = Command::new(binary)
        .args([
            "--port",
            "0",
            "--hub",
            "hub",
            "--partitions",
            "4",
            "--events",
            "5",
        ])
        .args(["--key-name", "RootManageSharedAccessKey", "--key", key])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the stub starts");
    let mut line = String::new();
    BufReader::new(stub.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the stub prints its port");
    let port: u16 = line
        .trim()
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse().ok())
        .expect("LISTENING <port>");
    let hub = EventHub {
        host: "localhost".into(),
        audience_host: format!("localhost:{port}"),
        hub: "hub".into(),
        consumer_group: "$Default".into(),
        policy: "RootManageSharedAccessKey".into(),
        key: key.into(),
    };
    let expiry = perf::clock::unix_secs() + 3600;
    let config = ConsumerConfig {
        address: ([127, 0, 0, 1], port).into(),
        tls: None,
        partitions: (0..4)
            .map(|p| ReceiverParams::for_partition(&hub, p, "-1", expiry, 3))
            .collect(),
        origin: LatencyOrigin::Sent,
        window_start_ns: Arc::new(AtomicU64::new(0)),
        devices: 1,
        pin_core: None,
    };
    let consumer = Consumer::start(&config).expect("threads start");
    let attached = consumer.wait_attached(Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while consumer
        .shared
        .foreign
        .load(std::sync::atomic::Ordering::Relaxed)
        < 20
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let results = consumer.finish(0, Duration::from_millis(100));
    let _ = stub.kill();
    let _ = stub.wait();
    attached.expect("every partition attached");
    for r in &results {
        assert_eq!(r.error, None, "partition {}", r.partition);
        assert_eq!(r.foreign, 5, "partition {}", r.partition);
        assert_eq!(r.received, 0);
        assert!(r.latency.is_empty());
    }
}
