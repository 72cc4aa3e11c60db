//! Append throughput (written mode, both write paths, swept over record size and batch size),
//! body encoding cost (forward encoder versus a reused FlatBufferBuilder), and the latency of a
//! durable 64 KiB append (append + fdatasync) on each write path.
//!
//! Timed regions contain only `append` (and `flush_now` for the durable bench): preparing the
//! next segment and retention run between them, as a shard runs them on a background queue.

#[path = "log_common/mod.rs"]
mod log_common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use dataplane_log::record::{self, BuilderEncoder, RecordInput};
use dataplane_log::{AckMode, WritePath};
use log_common::{
    Shape, bench_dir, config, housekeeping, measuring, open, segment_bytes, write_path_name,
};

fn append_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append");
    if measuring() {
        group
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
    }
    let cases = [
        (Shape::Payload(256), [1usize, 16, 256].as_slice()),
        (Shape::Payload(16 * 1024), [1, 16, 256].as_slice()),
        (Shape::IotHub(256), [256].as_slice()),
    ];
    for write_path in [WritePath::Pwrite, WritePath::Mmap] {
        for (shape, batches) in cases {
            for &batch in batches {
                let dir = bench_dir("log-append");
                let mut partition =
                    open(&dir, config(write_path, AckMode::Written, segment_bytes()));
                let payload = vec![0x42u8; shape.payload_bytes()];
                let inputs: Vec<RecordInput<'_>> =
                    (0..batch).map(|_| shape.input(&payload)).collect();
                let batch_bytes = shape.record_bytes() * batch;
                // Chunks of at most 64 MiB between housekeeping: at most one roll per chunk, and
                // its segment is already prepared.
                let chunk = ((64 << 20) / batch_bytes).max(1) as u64;
                group.throughput(Throughput::Elements(batch as u64));
                let id = BenchmarkId::new(
                    format!("{}/{}", write_path_name(write_path), shape.name()),
                    batch,
                );
                group.bench_function(id, |b| {
                    b.iter_custom(|iterations| {
                        let mut elapsed = Duration::ZERO;
                        let mut done = 0;
                        while done < iterations {
                            housekeeping(&mut partition);
                            let n = chunk.min(iterations - done);
                            let start = Instant::now();
                            for i in 0..n {
                                partition.append(&inputs, i as i64).expect("append");
                            }
                            elapsed += start.elapsed();
                            done += n;
                        }
                        elapsed
                    });
                });
                assert_eq!(
                    partition.stats().segments_prepared_inline,
                    0,
                    "no roll prepared inline"
                );
            }
        }
    }
    group.finish();
}

fn encode_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_encode");
    group.throughput(Throughput::Elements(1));
    for shape in [
        Shape::Payload(256),
        Shape::IotHub(256),
        Shape::IotHubPnp(256),
    ] {
        let payload = vec![0x42u8; shape.payload_bytes()];
        let input = shape.input(&payload);
        let body_bytes = record::body_bytes(&input);
        let mut out = vec![0u8; record::record_bytes(body_bytes)];
        let place = record::RecordPlace {
            sequence: dataplane_log::SequenceNumber(7),
            offset: dataplane_log::Offset(64),
            enqueued_ms: 0,
        };
        group.bench_function(BenchmarkId::new("forward_record", shape.name()), |b| {
            b.iter(|| {
                let body_bytes = record::body_bytes(std::hint::black_box(&input));
                record::encode_record(&input, body_bytes, place, &mut out)
            });
        });
        let mut body = vec![0u8; body_bytes];
        group.bench_function(BenchmarkId::new("forward_body", shape.name()), |b| {
            b.iter(|| record::encode_body(std::hint::black_box(&input), &mut body));
        });
        let covered = vec![0x5Au8; record::record_bytes(body_bytes) - 4];
        group.bench_function(BenchmarkId::new("crc32c_one_of_three", shape.name()), |b| {
            b.iter(|| {
                record::crc32c_x3(
                    [&covered, &covered, &covered].map(|c| std::hint::black_box(c.as_slice())),
                )
            });
        });
        group.bench_function(BenchmarkId::new("crc32c_single", shape.name()), |b| {
            b.iter(|| {
                let mut out = [0u32; 3];
                for (i, crc) in out.iter_mut().enumerate() {
                    *crc = record::crc32c_x3([std::hint::black_box(&covered[i..]), &[], &[]])[0];
                }
                out
            });
        });
        let mut builder = BuilderEncoder::default();
        group.bench_function(BenchmarkId::new("builder_body", shape.name()), |b| {
            b.iter(|| builder.encode(std::hint::black_box(&input)).len());
        });
        group.bench_function(BenchmarkId::new("builder_body_copied", shape.name()), |b| {
            b.iter(|| {
                let encoded = builder.encode(std::hint::black_box(&input));
                body[..encoded.len().min(body_bytes)]
                    .copy_from_slice(&encoded[..encoded.len().min(body_bytes)]);
            });
        });
    }
    group.finish();
}

fn durable_flush_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_flush");
    if measuring() {
        group
            .measurement_time(Duration::from_secs(6))
            .warm_up_time(Duration::from_secs(1));
    }
    // 186 records of 256 B payload: 63,984 bytes on disk, one 64 KiB durable batch.
    let shape = Shape::Payload(256);
    let records = (64 * 1024) / shape.record_bytes();
    for write_path in [WritePath::Pwrite, WritePath::Mmap] {
        let dir = bench_dir("log-flush");
        let segment = if measuring() { 64 << 20 } else { 4 << 20 };
        let mut partition = open(&dir, config(write_path, AckMode::Durable, segment));
        let payload = vec![0x42u8; shape.payload_bytes()];
        let inputs: Vec<RecordInput<'_>> = (0..records).map(|_| shape.input(&payload)).collect();
        group.throughput(Throughput::Bytes((records * shape.record_bytes()) as u64));
        group.bench_function(
            BenchmarkId::new(write_path_name(write_path), "durable_64KiB"),
            |b| {
                b.iter_custom(|iterations| {
                    let mut elapsed = Duration::ZERO;
                    for i in 0..iterations {
                        housekeeping(&mut partition);
                        let start = Instant::now();
                        partition.append(&inputs, i as i64).expect("append");
                        partition.flush_now().expect("flush");
                        elapsed += start.elapsed();
                    }
                    elapsed
                });
            },
        );
    }
    group.finish();
}

/// Flush latency of the write-path variants measured round-robin, one flush of each in turn, so
/// that the large swings of a shared disk's latency hit every variant alike (criterion measures
/// one variant after the other). Prints percentiles; run with
/// `SHOAL_FLUSH_COMPARE=<iterations> cargo bench -p benches --bench log_append -- log_flush`.
fn interleaved_flush_comparison(iterations: usize) {
    let shape = Shape::Payload(256);
    let records = (64 * 1024) / shape.record_bytes();
    let payload = vec![0x42u8; shape.payload_bytes()];
    let inputs: Vec<RecordInput<'_>> = (0..records).map(|_| shape.input(&payload)).collect();
    let variants = [
        ("pwrite, zero-filled segments", WritePath::Pwrite, true),
        ("pwrite, fallocated segments", WritePath::Pwrite, false),
        (
            "mmap, write-prefaulted and synced segments",
            WritePath::Mmap,
            false,
        ),
    ];
    let dirs: Vec<_> = variants
        .iter()
        .map(|_| bench_dir("log-flush-compare"))
        .collect();
    let mut partitions: Vec<_> = variants
        .iter()
        .zip(&dirs)
        .map(|((_, write_path, zero_fill), dir)| {
            let config = dataplane_log::PartitionConfig {
                zero_fill: *zero_fill,
                ..config(*write_path, AckMode::Durable, 64 << 20)
            };
            open(dir, config)
        })
        .collect();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(iterations); variants.len()];
    for i in 0..iterations {
        for (partition, samples) in partitions.iter_mut().zip(&mut samples) {
            housekeeping(partition);
            let start = Instant::now();
            partition.append(&inputs, i as i64).expect("append");
            partition.flush_now().expect("flush");
            samples.push(start.elapsed());
        }
    }
    let bytes = records * shape.record_bytes();
    println!("durable append of {bytes} bytes + fdatasync, {iterations} round-robin iterations:");
    for ((name, ..), samples) in variants.iter().zip(&mut samples) {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!(
            "  {name:<44} p50 {:>9.1?}  p90 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        );
    }
}

criterion_group!(
    benches,
    append_throughput,
    encode_cost,
    durable_flush_latency
);

fn main() {
    if let Some(iterations) = std::env::var("SHOAL_FLUSH_COMPARE")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        interleaved_flush_comparison(iterations);
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
