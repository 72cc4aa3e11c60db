//! What a message between two shards costs, to size the accept-model decision in
//! ARCHITECTURE.md: a connection that moves to its home shard pays one such hop once; a
//! connection that forwarded its appends instead would pay a round trip (batch there,
//! acknowledgements back) for every batch, for its whole life.
//!
//! Two glommio executors exchange a small message over the same channel mesh the shards use,
//! `ROUND_TRIPS` times per measured iteration. With `SHOAL_MESH_HOP_PIN=1` the two executors
//! are pinned to CPUs 0 and 1 (the production shape); by default they float, so the bench also
//! runs on one CPU.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

/// Round trips per measured iteration.
const ROUND_TRIPS: u64 = 1_000;

/// A batch of D2C work as a forwarding design would send it: a few records' worth of bytes.
type Batch = Vec<u8>;

fn placement(cpu: usize) -> Placement {
    if std::env::var_os("SHOAL_MESH_HOP_PIN").is_some() {
        Placement::Fixed(cpu)
    } else {
        Placement::Unbound
    }
}

/// Runs `round_trips` ping-pongs of `payload_bytes` between two executors; returns the time.
fn ping_pong(round_trips: u64, payload_bytes: usize) -> Duration {
    let mesh = MeshBuilder::<Batch, _>::full(2, 64);
    let echo_mesh = mesh.clone();
    let echo = LocalExecutorBuilder::new(placement(1))
        .name("echo")
        .spawn(move || async move {
            let (senders, receivers) = echo_mesh.join().await.expect("the mesh forms");
            let peer = 1 - senders.peer_id();
            for _ in 0..round_trips {
                let batch = receivers
                    .recv_from(peer)
                    .await
                    .expect("a receiver from the other shard")
                    .expect("the other shard is alive");
                senders
                    .send_to(peer, batch)
                    .await
                    .expect("the other shard is alive");
            }
        })
        .expect("an executor starts");
    let driver = LocalExecutorBuilder::new(placement(0))
        .name("driver")
        .spawn(move || async move {
            let (senders, receivers) = mesh.join().await.expect("the mesh forms");
            let peer = 1 - senders.peer_id();
            let started = Instant::now();
            for _ in 0..round_trips {
                senders
                    .send_to(peer, vec![0u8; payload_bytes])
                    .await
                    .expect("the other shard is alive");
                let batch = receivers
                    .recv_from(peer)
                    .await
                    .expect("a receiver from the other shard")
                    .expect("the other shard is alive");
                assert_eq!(batch.len(), payload_bytes, "the batch comes back whole");
            }
            started.elapsed()
        })
        .expect("an executor starts");
    let elapsed = driver.join().expect("the driver finishes");
    echo.join().expect("the echo finishes");
    elapsed
}

fn mesh_hop(c: &mut Criterion) {
    let mut group = c.benchmark_group("mesh_hop");
    for payload_bytes in [64, 4096] {
        group.bench_function(format!("round_trip_{payload_bytes}B"), |b| {
            b.iter_custom(|iterations| {
                let elapsed = ping_pong(ROUND_TRIPS * iterations, payload_bytes);
                elapsed / u32::try_from(ROUND_TRIPS).expect("small")
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = mesh_hop
}
criterion_main!(benches);
