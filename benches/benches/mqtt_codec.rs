//! The per-message cost of the MQTT front door: decoding a PUBLISH, parsing its IoT Hub topic
//! and property bag, and encoding the PUBACKs that answer a batch.
//!
//! `cargo bench -p benches --bench mqtt_codec` (test mode: `cargo test -p benches --benches`)

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane_wire::bytes::BytesMut;
use dataplane_wire::iothub::{
    ClientId, MessageProperties, PublishTopic, SystemProperty, write_c2d_topic,
};
use dataplane_wire::mqtt::{Decoded, Decoder, Delivery, OutgoingPublish, Packet, PacketId, PubAck};

/// The device SDK's telemetry topic with three system properties, encoded as it writes them.
const TOPIC: &str = "devices/device-0001/messages/events/%24.mid=5d2c4a4e-7f7b-4c1a-9f0e-2b1d3c4e5f60&%24.ct=application%2Fjson&%24.ce=utf-8";
const PAYLOAD_BYTES: usize = 256;
/// Publishes per receive buffer; buffers are filled outside the timed loop.
const BUFFER_PUBLISHES: usize = 1024;
/// PUBACKs answered per flush.
const PUBACK_BATCH: usize = 64;

fn publish_stream() -> Vec<u8> {
    let mut stream = Vec::new();
    for pkid in 1..=BUFFER_PUBLISHES {
        OutgoingPublish {
            topic: TOPIC,
            payload: &[0x5A; PAYLOAD_BYTES],
            delivery: Delivery::AtLeastOnce {
                pkid: PacketId::new(pkid as u16).expect("pkid starts at 1"),
                dup: false,
            },
            retain: false,
        }
        .encode(&mut stream)
        .expect("the topic is short");
    }
    stream
}

/// Times `per_message` over `iters` messages taken from fresh receive buffers.
fn time_messages(iters: u64, stream: &[u8], per_message: impl Fn(&mut BytesMut)) -> Duration {
    let mut total = Duration::ZERO;
    let mut remaining = iters;
    while remaining > 0 {
        let count = remaining.min(BUFFER_PUBLISHES as u64);
        let mut buffer = BytesMut::from(stream);
        let start = Instant::now();
        for _ in 0..count {
            per_message(&mut buffer);
        }
        total += start.elapsed();
        remaining -= count;
    }
    total
}

/// What the session does with a telemetry topic: check it, parse its bag, walk the
/// application properties and check the size.
fn parse_telemetry(topic: &str, client: &ClientId<'_>, body_bytes: usize) -> usize {
    let Ok(PublishTopic::Telemetry { properties }) = PublishTopic::parse(topic, client) else {
        panic!("telemetry expected");
    };
    let properties = MessageProperties::parse(properties).expect("the bag is valid");
    let application = properties.application().count();
    black_box(properties.get(SystemProperty::ContentType));
    properties
        .check_message_size(body_bytes)
        .expect("the message is small")
        + application
}

fn codec(c: &mut Criterion) {
    let stream = publish_stream();
    let decoder = Decoder::default();
    let client = ClientId::parse("device-0001").expect("a valid id");

    let mut group = c.benchmark_group("mqtt_codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("publish_256B_decode", |b| {
        b.iter_custom(|iters| {
            time_messages(iters, &stream, |buffer| {
                black_box(decoder.decode(buffer).expect("valid"));
            })
        });
    });
    group.bench_function("topic_3_properties_parse", |b| {
        b.iter(|| parse_telemetry(black_box(TOPIC), &client, PAYLOAD_BYTES));
    });
    group.bench_function("publish_256B_decode_and_parse", |b| {
        b.iter_custom(|iters| {
            time_messages(iters, &stream, |buffer| {
                let Ok(Decoded::Packet(Packet::Publish(publish))) = decoder.decode(buffer) else {
                    panic!("a PUBLISH expected");
                };
                black_box(parse_telemetry(
                    publish.topic(),
                    &client,
                    publish.payload().len(),
                ));
            })
        });
    });

    let mut c2d_topic = String::new();
    let mut out = Vec::with_capacity(1024);
    group.bench_function("c2d_publish_256B_build_and_encode", |b| {
        b.iter(|| {
            write_c2d_topic(&mut c2d_topic, "device-0001")
                .system(
                    SystemProperty::MessageId,
                    "5d2c4a4e-7f7b-4c1a-9f0e-2b1d3c4e5f60",
                )
                .system(
                    SystemProperty::To,
                    "/devices/device-0001/messages/deviceBound",
                )
                .application("iothub-ack", "full");
            out.clear();
            OutgoingPublish {
                topic: &c2d_topic,
                payload: &[0x5A; PAYLOAD_BYTES],
                delivery: Delivery::AtLeastOnce {
                    pkid: PacketId::new(7).expect("non-zero"),
                    dup: false,
                },
                retain: false,
            }
            .encode(&mut out)
            .expect("the topic is short");
            black_box(out.len())
        });
    });

    group.throughput(Throughput::Elements(PUBACK_BATCH as u64));
    let mut out = Vec::with_capacity(PUBACK_BATCH * PubAck::BYTES);
    group.bench_function("puback_batch_64_encode", |b| {
        b.iter(|| {
            out.clear();
            for pkid in 1..=PUBACK_BATCH as u16 {
                PubAck {
                    pkid: PacketId::new(black_box(pkid)).expect("non-zero"),
                }
                .encode(&mut out);
            }
            black_box(out.len())
        });
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
