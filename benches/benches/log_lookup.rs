//! Lookup latency: creating a cursor at a random sequence number, offset or enqueued time of a
//! partition spread over many segments, and reading the first record there.

#[path = "log_common/mod.rs"]
mod log_common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dataplane_log::{Offset, SequenceNumber, StartPosition};
use log_common::{Shape, bench_dir, filled, measuring};

/// xorshift64*: deterministic keys without a dependency.
fn keys(count: usize, below: u64) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_lookup");
    if measuring() {
        group
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
    }
    let shape = Shape::Payload(256);
    let records = if measuring() { 1_000_000 } else { 20_000 };
    let dir = bench_dir("log-lookup");
    // 16 MiB segments: about 20 of them, so the segment search matters too.
    let partition = filled(
        &dir,
        shape,
        records,
        if measuring() { 16 << 20 } else { 1 << 20 },
    );
    let reader = partition.reader();
    let end = reader.committed().end;
    let last_ms = reader.committed().last.expect("records").enqueued_ms;
    let sequences = keys(4096, end.sequence.0);
    let offsets = keys(4096, end.offset.0);
    let times: Vec<i64> = keys(4096, (last_ms - 1_000) as u64)
        .into_iter()
        .map(|t| 1_000 + t as i64)
        .collect();

    let mut i = 0usize;
    group.bench_function(BenchmarkId::new("first_record", "sequence"), |b| {
        b.iter(|| {
            i = (i + 1) % sequences.len();
            let mut cursor = reader.cursor(StartPosition::Sequence(SequenceNumber(sequences[i])));
            cursor.next().expect("read").map(|r| r.offset())
        });
    });
    group.bench_function(BenchmarkId::new("first_record", "offset"), |b| {
        b.iter(|| {
            i = (i + 1) % offsets.len();
            let mut cursor = reader.cursor(StartPosition::Offset {
                offset: Offset(offsets[i]),
                inclusive: true,
            });
            cursor.next().expect("read").map(|r| r.sequence())
        });
    });
    group.bench_function(BenchmarkId::new("first_record", "enqueued_time"), |b| {
        b.iter(|| {
            i = (i + 1) % times.len();
            let mut cursor = reader.cursor(StartPosition::EnqueuedTime(times[i]));
            cursor.next().expect("read").map(|r| r.sequence())
        });
    });
    group.bench_function(BenchmarkId::new("committed", "snapshot"), |b| {
        b.iter(|| reader.committed());
    });
    group.bench_function(BenchmarkId::new("committed", "has_records_after"), |b| {
        b.iter(|| reader.has_records_after(std::hint::black_box(end.offset)));
    });
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
