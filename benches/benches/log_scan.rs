//! Scan throughput: a cursor reading every committed record of a partition in place, with and
//! without the CRC check, touching the payload or verifying the whole body; and a plain memcpy
//! of the same bytes as the memory-bandwidth reference.

#[path = "log_common/mod.rs"]
mod log_common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane_log::StartPosition;
use log_common::{Shape, bench_dir, filled, measuring};

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

criterion_group!(benches, scan);
criterion_main!(benches);
