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
use dataplane_log::{AckMode, SegmentPrep, WritePath};
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

/// Group commit as the data plane sees it with many sessions of one message in flight each:
/// 100 appends of one record (256 B payload), then one flush, in durable mode on the pwrite
/// path. `per_append` writes each append at once (`staged_bytes_max = 0`, one `pwrite` per
/// append), `staged` writes the 100 records with one `pwrite` when the flush request is taken.
/// `request` times the owner thread's work (appends, taking the request, completing it; the
/// data plane runs the `fdatasync` on io_uring), `fdatasync` adds the sync (`flush_now`).
fn group_commit_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_group_commit");
    if measuring() {
        group
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
    }
    let shape = Shape::Payload(256);
    let payload = vec![0x42u8; shape.payload_bytes()];
    let input = [shape.input(&payload)];
    let appends = 100u64;
    group.throughput(Throughput::Elements(appends));
    for (name, staged_bytes_max) in [("per_append", 0), ("staged", 1 << 20)] {
        for sync in [false, true] {
            let dir = bench_dir("log-group-commit");
            let segment = if measuring() { 64 << 20 } else { 4 << 20 };
            let config = dataplane_log::PartitionConfig {
                staged_bytes_max,
                ..config(WritePath::Pwrite, AckMode::Durable, segment)
            };
            let mut partition = open(&dir, config);
            let id = BenchmarkId::new(
                format!("{name}/{}", if sync { "fdatasync" } else { "request" }),
                format!("{appends}x1"),
            );
            group.bench_function(id, |b| {
                b.iter_custom(|iterations| {
                    let mut elapsed = Duration::ZERO;
                    for i in 0..iterations {
                        housekeeping(&mut partition);
                        let start = Instant::now();
                        for _ in 0..appends {
                            partition.append(&input, i as i64).expect("append");
                        }
                        if sync {
                            partition.flush_now().expect("flush");
                        } else {
                            let request = partition
                                .take_flush_request()
                                .expect("write")
                                .expect("request");
                            partition.flush_complete(request).expect("complete");
                        }
                        elapsed += start.elapsed();
                    }
                    elapsed
                });
            });
            // (Nothing ran when criterion only lists or filters the bench out.)
            let stats = partition.stats();
            if stats.flushes_requested > 0 {
                let writes_per_flush = stats.record_writes as f64 / stats.flushes_requested as f64;
                assert!(
                    (staged_bytes_max == 0 && writes_per_flush >= appends as f64)
                        || (staged_bytes_max > 0 && writes_per_flush <= 1.01),
                    "{name}: {writes_per_flush} writes per flush"
                );
            }
        }
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

/// `log_group_commit` with the `fdatasync`, measured round-robin like
/// [`interleaved_flush_comparison`]: 100 single-record appends then `flush_now`, one iteration
/// of each variant in turn. Prints percentiles; run with
/// `SHOAL_GROUP_COMMIT_COMPARE=<iterations> cargo bench -p benches --bench log_append -- --list`.
fn interleaved_group_commit_comparison(iterations: usize) {
    let shape = Shape::Payload(256);
    let payload = vec![0x42u8; shape.payload_bytes()];
    let input = [shape.input(&payload)];
    let variants = [("pwrite per append", 0u32), ("staged, one pwrite", 1 << 20)];
    let dirs: Vec<_> = variants
        .iter()
        .map(|_| bench_dir("log-group-commit-compare"))
        .collect();
    let mut partitions: Vec<_> = variants
        .iter()
        .zip(&dirs)
        .map(|((_, staged_bytes_max), dir)| {
            let config = dataplane_log::PartitionConfig {
                staged_bytes_max: *staged_bytes_max,
                ..config(WritePath::Pwrite, AckMode::Durable, 64 << 20)
            };
            open(dir, config)
        })
        .collect();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(iterations); variants.len()];
    for i in 0..iterations {
        for (partition, samples) in partitions.iter_mut().zip(&mut samples) {
            housekeeping(partition);
            let start = Instant::now();
            for _ in 0..100 {
                partition.append(&input, i as i64).expect("append");
            }
            partition.flush_now().expect("flush");
            samples.push(start.elapsed());
        }
    }
    println!(
        "100 single-record appends + one flush (fdatasync), {iterations} round-robin iterations:"
    );
    for ((name, _), samples) in variants.iter().zip(&mut samples) {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!(
            "  {name:<20} p50 {:>9.1?}  p90 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        );
    }
}

/// Resident set size of this process, from `/proc/self/status` (0 where unavailable).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Appends (at full speed, or paced to a byte rate) while a second thread prepares segments,
/// as a shard's blocking pool does: the request is handed over as soon as
/// `next_segment_request` gives one, the prepared segment installed after the first append
/// that finds it ready. Reports, per rate, write path and `prepare_next_at_percent`, the
/// resident memory right after open (with the first request, if any, already served), how many
/// rolls had to prepare inline, the append rate reached and the mean preparation time. Run
/// with `SHOAL_PREPARE_AHEAD=<rolls> [SHOAL_PREPARE_AHEAD_SEGMENT_MIB=128]
/// [SHOAL_PREPARE_AHEAD_MBPS=0,400,100] cargo bench -p benches --bench log_append -- --list`
/// (0 MB/s is full speed; the comparison runs before criterion, and `--list` skips the rest).
fn prepare_ahead_comparison(rolls: u64) {
    let segment_mib: u64 = std::env::var("SHOAL_PREPARE_AHEAD_SEGMENT_MIB")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128);
    let rates: Vec<u64> = std::env::var("SHOAL_PREPARE_AHEAD_MBPS")
        .unwrap_or_else(|_| "0".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    for rate in rates {
        prepare_ahead_at_rate(rolls, segment_mib, rate);
    }
}

fn prepare_ahead_at_rate(rolls: u64, segment_mib: u64, rate_mbps: u64) {
    let shape = Shape::Payload(256);
    let payload = vec![0x42u8; shape.payload_bytes()];
    let inputs: Vec<RecordInput<'_>> = (0..256).map(|_| shape.input(&payload)).collect();
    let pace = if rate_mbps == 0 {
        "at full speed".to_owned()
    } else {
        format!("paced to {rate_mbps} MB/s")
    };
    println!(
        "written-mode appends of 256 x {} B records {pace}, {segment_mib} MiB segments, \
         {rolls} rolls, segments prepared on a second thread:",
        shape.record_bytes()
    );
    let batch_bytes = (inputs.len() * shape.record_bytes()) as f64;
    for write_path in [WritePath::Pwrite, WritePath::Mmap] {
        for percent in [0u8, 50, 75] {
            let dir = bench_dir("log-prepare-ahead");
            let config = dataplane_log::PartitionConfig {
                prepare_next_at_percent: percent,
                retention_bytes: Some(3 * (segment_mib << 20)),
                ..config(write_path, AckMode::Written, segment_mib << 20)
            };
            let resident_before = resident_bytes();
            let mut partition = open(&dir, config);
            let (requests, preparer_inbox) = std::sync::mpsc::channel::<SegmentPrep>();
            let (preparer_outbox, prepared) = std::sync::mpsc::channel();
            let preparer = std::thread::spawn(move || {
                for prep in preparer_inbox {
                    let start = Instant::now();
                    let result = prep.prepare();
                    if preparer_outbox.send((result, start.elapsed())).is_err() {
                        break;
                    }
                }
            });
            let mut preparing = false;
            let mut prepare_times = Vec::new();
            let mut service = |partition: &mut dataplane_log::Partition, wait: bool| {
                if preparing {
                    let ready = if wait {
                        prepared.recv().ok()
                    } else {
                        prepared.try_recv().ok()
                    };
                    if let Some((result, took)) = ready {
                        preparing = false;
                        prepare_times.push(took);
                        partition
                            .install_prepared(result.expect("prepare"))
                            .expect("install");
                    }
                }
                if let Some(prep) = partition.next_segment_request() {
                    requests.send(prep).expect("preparer alive");
                    preparing = true;
                }
            };
            // A shard starts the first preparation right after open, when the log asks for one.
            service(&mut partition, false);
            service(&mut partition, true);
            let resident_open = resident_bytes().saturating_sub(resident_before);
            let start = Instant::now();
            let mut appended = 0u64;
            let mut now_ms = 0;
            while partition.stats().segments_rolled < rolls {
                partition.append(&inputs, now_ms).expect("append");
                appended += inputs.len() as u64;
                now_ms += 1;
                if rate_mbps > 0 {
                    let due = Duration::from_secs_f64(
                        (now_ms as f64) * batch_bytes / (rate_mbps as f64 * 1e6),
                    );
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                service(&mut partition, false);
                if partition.stats().segments_rolled > partition.stats().segments_deleted + 2 {
                    partition.enforce_retention(now_ms).expect("retention");
                }
            }
            let elapsed = start.elapsed();
            let stats = partition.stats();
            drop(requests);
            preparer.join().expect("preparer thread");
            let mean_prepare = prepare_times.iter().sum::<Duration>()
                / u32::try_from(prepare_times.len().max(1)).expect("few preparations");
            println!(
                "  {:<6} prepare at {percent:>2} %: resident after open {:>4} MiB, {} of {} rolls \
                 prepared inline, {:>5.2} M records/s ({:>5.0} MB/s), mean preparation {:>6.1?}",
                write_path_name(write_path),
                resident_open >> 20,
                stats.segments_prepared_inline,
                stats.segments_rolled,
                appended as f64 / elapsed.as_secs_f64() / 1e6,
                (appended as usize * shape.record_bytes()) as f64 / elapsed.as_secs_f64() / 1e6,
                mean_prepare,
            );
        }
    }
}

criterion_group!(
    benches,
    append_throughput,
    encode_cost,
    durable_flush_latency,
    group_commit_cost
);

fn main() {
    if let Some(iterations) = std::env::var("SHOAL_FLUSH_COMPARE")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        interleaved_flush_comparison(iterations);
    }
    if let Some(iterations) = std::env::var("SHOAL_GROUP_COMMIT_COMPARE")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        interleaved_group_commit_comparison(iterations);
    }
    if let Some(rolls) = std::env::var("SHOAL_PREPARE_AHEAD")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        prepare_ahead_comparison(rolls);
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
