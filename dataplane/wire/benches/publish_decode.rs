//! The PUBLISH fast path against mqttbytes, on the same bytes: the evidence for keeping a
//! decoder of our own for the one packet every D2C message is.
//!
//! `cargo bench -p dataplane-wire --bench publish_decode`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane_wire::mqtt::{Decoder, Delivery, OutgoingPublish, PacketId};

/// The device SDK's telemetry topic with three properties, as it writes them.
const TOPIC: &str = "devices/device-0001/messages/events/%24.mid=5d2c4a4e-7f7b-4c1a-9f0e-2b1d3c4e5f60&%24.ct=application%2Fjson&%24.ce=utf-8";

/// Publishes per receive buffer: the buffer is refilled outside the timed loop.
const BATCH: usize = 1024;

fn stream() -> (Vec<u8>, usize) {
    let mut stream = Vec::new();
    let mut frame_bytes = 0;
    for pkid in 1..=BATCH {
        frame_bytes = OutgoingPublish {
            topic: TOPIC,
            payload: &[0x5A; 256],
            delivery: Delivery::AtLeastOnce {
                pkid: PacketId::new(pkid as u16).unwrap(),
                dup: false,
            },
            retain: false,
        }
        .encode(&mut stream)
        .unwrap();
    }
    (stream, frame_bytes)
}

/// Times `decode_one` over `iters` packets, refilling a fresh buffer every [`BATCH`].
fn time_decodes(iters: u64, stream: &[u8], decode_one: impl Fn(&mut BytesMut)) -> Duration {
    let mut total = Duration::ZERO;
    let mut remaining = iters;
    while remaining > 0 {
        let count = remaining.min(BATCH as u64);
        let mut buffer = BytesMut::from(stream);
        let start = Instant::now();
        for _ in 0..count {
            decode_one(&mut buffer);
        }
        total += start.elapsed();
        remaining -= count;
    }
    total
}

fn publish_decode(c: &mut Criterion) {
    let (stream, frame_bytes) = stream();
    let mut group = c.benchmark_group("publish_decode_256B");
    group.throughput(Throughput::Elements(1));
    let decoder = Decoder::default();
    group.bench_function("fast_path", |b| {
        b.iter_custom(|iters| {
            time_decodes(iters, &stream, |buffer| {
                black_box(decoder.decode(buffer).unwrap());
            })
        });
    });
    group.bench_function("mqttbytes_v4_read", |b| {
        b.iter_custom(|iters| {
            time_decodes(iters, &stream, |buffer| {
                black_box(mqttbytes::v4::read(buffer, frame_bytes).unwrap());
            })
        });
    });
    group.finish();
}

criterion_group!(benches, publish_decode);
criterion_main!(benches);
