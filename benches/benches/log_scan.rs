//! Scan throughput: a cursor reading every committed record of a partition in place, with and
//! without the CRC check, touching the payload or verifying the whole body; and a plain memcpy
//! of the same bytes as the memory-bandwidth reference. `log_follow`: what a read-only
//! `Follower` (the `shoal events tail` view) costs next to the writer: opening and reading a
//! whole partition, an idle refresh, and catching up on a batch the writer just appended.

#[path = "log_common/mod.rs"]
mod log_common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane_log::{Follower, RecordInput, StartPosition};
use log_common::{Shape, bench_dir, filled, housekeeping, measuring};

fn scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_scan");
    if measuring() {
        group
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
    }
    for shape in [
        Shape::Payload(256),
        Shape::IotHub(256),
        Shape::Payload(16 * 1024),
    ] {
        let total_bytes: usize = if measuring() { 256 << 20 } else { 1 << 20 };
        let records = total_bytes / shape.record_bytes();
        let dir = bench_dir("log-scan");
        let partition = filled(
            &dir,
            shape,
            records,
            if measuring() { 128 << 20 } else { 4 << 20 },
        );
        let reader = partition.reader();
        let bytes = (records * shape.record_bytes()) as u64;
        group.throughput(Throughput::Bytes(bytes));

        group.bench_function(BenchmarkId::new("crc", shape.name()), |b| {
            b.iter(|| {
                let mut cursor = reader.cursor(StartPosition::Earliest);
                let mut seen = 0usize;
                while let Some(record) = cursor.next().expect("read") {
                    seen += record.raw().len();
                }
                seen
            });
        });
        group.bench_function(BenchmarkId::new("no_crc", shape.name()), |b| {
            b.iter(|| {
                let mut cursor = reader.cursor(StartPosition::Earliest).verify_crc(false);
                let mut seen = 0usize;
                while let Some(record) = cursor.next().expect("read") {
                    seen += record.raw().len();
                }
                seen
            });
        });
        group.bench_function(BenchmarkId::new("crc_payload", shape.name()), |b| {
            b.iter(|| {
                let mut cursor = reader.cursor(StartPosition::Earliest);
                let mut sum = 0u64;
                while let Some(record) = cursor.next().expect("read") {
                    let payload = record.payload().expect("payload");
                    sum += u64::from(payload[0]) + payload.len() as u64;
                }
                sum
            });
        });
        group.bench_function(BenchmarkId::new("crc_verified_body", shape.name()), |b| {
            b.iter(|| {
                let mut cursor = reader.cursor(StartPosition::Earliest);
                let mut sum = 0u64;
                while let Some(record) = cursor.next().expect("read") {
                    let body = record.body().expect("body");
                    sum += body.payload().len() as u64
                        + body.properties().map_or(0, |p| p.len() as u64);
                }
                sum
            });
        });
        if matches!(shape, Shape::Payload(256)) {
            let source = vec![0x42u8; bytes as usize];
            let mut target = vec![0u8; bytes as usize];
            group.bench_function("memcpy_reference", |b| {
                b.iter(|| target.copy_from_slice(std::hint::black_box(&source)));
            });
        }
    }
    group.finish();
}

fn follow(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_follow");
    if measuring() {
        group
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
    }
    let shape = Shape::Payload(256);
    let total_bytes: usize = if measuring() { 256 << 20 } else { 1 << 20 };
    let records = total_bytes / shape.record_bytes();
    let dir = bench_dir("log-follow");
    let segment_bytes = if measuring() { 128 << 20 } else { 4 << 20 };
    let partition = filled(&dir, shape, records, segment_bytes);
    let bytes = (records * shape.record_bytes()) as u64;

    // The writer holds the lock the whole time; the follower never asks for it.
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(BenchmarkId::new("open_and_read", shape.name()), |b| {
        b.iter(|| {
            let follower = Follower::open(dir.path()).expect("follow");
            let mut cursor = follower.cursor(StartPosition::Earliest);
            let mut seen = 0usize;
            while let Some(record) = cursor.next().expect("read") {
                seen += record.raw().len();
            }
            assert_eq!(seen as u64, bytes);
            seen
        });
    });

    let mut follower = Follower::open(dir.path()).expect("follow");
    group.throughput(Throughput::Elements(1));
    group.bench_function("idle_refresh", |b| {
        b.iter(|| follower.refresh().expect("refresh").records_added);
    });
    drop(follower);
    drop(partition);

    // A writer with size retention (four segments), so that the directory stays bounded while
    // criterion appends; the follower drops what retention deletes.
    let dir = bench_dir("log-follow-catch-up");
    let config = log_common::config(
        dataplane_log::WritePath::Mmap,
        dataplane_log::AckMode::Written,
        segment_bytes / 2,
    );
    let mut partition = log_common::open(&dir, config);
    let mut follower = Follower::open(dir.path()).expect("follow");
    let payload = vec![0x42u8; shape.payload_bytes()];
    let batch: Vec<RecordInput<'_>> = (0..256).map(|_| shape.input(&payload)).collect();
    let mut cursor = follower.cursor(StartPosition::Latest);
    let mut now_ms = 1_000_000;
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function(BenchmarkId::new("catch_up", "256_records"), |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                housekeeping(&mut partition);
                now_ms += 1;
                partition.append(&batch, now_ms).expect("append");
                let start = Instant::now();
                follower.refresh().expect("refresh");
                let mut read = 0;
                while let Some(record) = cursor.next().expect("read") {
                    read += usize::from(!record.raw().is_empty());
                }
                elapsed += start.elapsed();
                assert_eq!(read, batch.len());
            }
            elapsed
        });
    });
    group.finish();
}

criterion_group!(benches, scan, follow);
criterion_main!(benches);
