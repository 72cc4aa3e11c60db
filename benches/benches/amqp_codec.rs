//! AMQP codec costs on the Event Hubs read path and the frame decoder.
//!
//! The target is one consumer reading 500k events/s of 256 B from one partition, so the
//! per-event work (encode the message, write the transfer frame, hand the bytes over) has to
//! stay far below 2 us. `cargo test --benches` runs each once so they cannot rot.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane_amqp::codec::{self, Compound};
use dataplane_amqp::event::{
    EventFields, EventProperties, IotHubAnnotations, MessageIdRef, RuntimeMetrics, encode_event,
};
use dataplane_amqp::frame::{self, AMQP_HEADER, SASL_HEADER};
use dataplane_amqp::message::C2dMessage;
use dataplane_amqp::performative::{
    self, AttachFields, BeginFields, Encode, FlowFields, LinkFlowFields, OpenFields, Role,
    TransferFields, write_frame,
};
use dataplane_amqp::sasl::SaslOutcome;
use dataplane_amqp::{Config, Connection, Event, LinkId};

const AUTH_METHOD: &str =
    r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#;

fn typical_event<'a>(body: &'a [u8], metrics: Option<RuntimeMetrics<'a>>) -> EventFields<'a> {
    EventFields {
        sequence_number: 1_234_567,
        offset: "632345600",
        enqueued_time_ms: 1_700_000_000_123,
        partition_key: None,
        iothub: IotHubAnnotations {
            device_id: Some("sensor-000123"),
            module_id: None,
            auth_method: Some(AUTH_METHOD),
            auth_generation_id: Some("638000000000000000"),
            enqueued_time_ms: Some(1_700_000_000_100),
            message_source: Some("Telemetry"),
        },
        extra_annotations: &[],
        properties: EventProperties {
            message_id: Some(MessageIdRef::String("3f2c8a1e-0d1b-4e55-9a77-1c2d3e4f5a6b")),
            content_type: Some("application/json"),
            content_encoding: Some("utf-8"),
            ..EventProperties::default()
        },
        application_properties: &[("temperatureAlert", "false"), ("site", "plant-7")],
        body,
        runtime_metrics: metrics,
    }
}

fn bench_encode_event(c: &mut Criterion) {
    let body = [b'x'; 256];
    let mut group = c.benchmark_group("encode_event");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(1024);
    group.bench_function("256B_iothub_annotations", |b| {
        b.iter(|| {
            out.clear();
            encode_event(black_box(&typical_event(&body, None)), &mut out);
            black_box(out.len())
        });
    });
    let metrics = RuntimeMetrics {
        last_enqueued_sequence_number: 1_300_000,
        last_enqueued_offset: "665600000",
        last_enqueued_time_ms: 1_700_000_100_000,
        retrieval_time_ms: 1_700_000_100_010,
    };
    group.bench_function("256B_with_runtime_metrics", |b| {
        b.iter(|| {
            out.clear();
            encode_event(black_box(&typical_event(&body, Some(metrics))), &mut out);
            black_box(out.len())
        });
    });
    group.finish();
}

fn bench_transfer(c: &mut Criterion) {
    let body = [b'x'; 256];
    let mut message = Vec::new();
    encode_event(&typical_event(&body, None), &mut message);
    let mut group = c.benchmark_group("transfer");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(4096);
    group.bench_function("write_frame_256B_event", |b| {
        let mut delivery = 0_u32;
        b.iter(|| {
            out.clear();
            delivery = delivery.wrapping_add(1);
            let tag = delivery.to_be_bytes();
            let start = frame::begin_frame(&mut out, frame::TYPE_AMQP, 0);
            TransferFields {
                handle: 0,
                delivery_id: Some(delivery),
                delivery_tag: Some(&tag),
                message_format: Some(0),
                settled: Some(true),
                more: false,
                aborted: false,
            }
            .encode(&mut out);
            out.extend_from_slice(black_box(&message));
            frame::end_frame(&mut out, start);
            black_box(out.len())
        });
    });
    let (mut connection, link) = connection_with_receiver();
    let mut transmit = Vec::with_capacity(1 << 16);
    group.bench_function("connection_send_message_256B_event", |b| {
        b.iter(|| {
            connection
                .send_message(link, black_box(&message), true)
                .expect("credit");
            transmit.clear();
            connection.poll_transmit(Instant::now(), &mut transmit);
            black_box(transmit.len())
        });
    });
    let mut scratch = Vec::with_capacity(1024);
    group.bench_function("encode_and_send_256B_event", |b| {
        b.iter(|| {
            scratch.clear();
            encode_event(&typical_event(&body, None), &mut scratch);
            connection
                .send_message(link, &scratch, true)
                .expect("credit");
            transmit.clear();
            connection.poll_transmit(Instant::now(), &mut transmit);
            black_box(transmit.len())
        });
    });
    group.finish();
}

/// A server connection with one accepted partition receiver whose credit and session window
/// are effectively unlimited.
fn connection_with_receiver() -> (Connection, LinkId) {
    let now = Instant::now();
    let mut connection = Connection::new(Config::default(), now);
    let mut input = SASL_HEADER.to_vec();
    performative::write_sasl_init(&mut input, "ANONYMOUS", Some(&[]), None);
    connection.handle_bytes(&input, now);
    connection.complete_sasl(SaslOutcome::Ok).expect("pending");
    let mut input = AMQP_HEADER.to_vec();
    let open = OpenFields {
        container_id: "bench",
        hostname: None,
        max_frame_size: 1 << 20,
        channel_max: 1,
        idle_timeout_ms: None,
        offered_capabilities: None,
        properties: None,
    };
    write_frame(&mut input, 0, &open);
    let begin = BeginFields {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: u32::MAX,
        outgoing_window: u32::MAX,
        handle_max: 7,
    };
    write_frame(&mut input, 0, &begin);
    let mut source = Vec::new();
    codec::put_descriptor(&mut source, 0x28);
    let list = Compound::begin_list(&mut source);
    codec::put_str(
        &mut source,
        "amqps://h/hub/ConsumerGroups/$Default/Partitions/0",
    );
    list.end(&mut source, 1);
    let mut target = Vec::new();
    codec::put_descriptor(&mut target, 0x29);
    let list = Compound::begin_list(&mut target);
    codec::put_str(&mut target, "receiver");
    list.end(&mut target, 1);
    let attach = AttachFields {
        name: "bench",
        handle: 0,
        role: Role::Receiver,
        snd_settle_mode: 0,
        rcv_settle_mode: 0,
        source: Some(&source),
        target: Some(&target),
        initial_delivery_count: None,
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    write_frame(&mut input, 0, &attach);
    connection.handle_bytes(&input, now);
    let link = std::iter::from_fn(|| connection.poll_event())
        .find_map(|event| match event {
            Event::ReceiverAttach(attach) => Some(attach.link),
            _ => None,
        })
        .expect("a receiver attach");
    connection.accept_link(link).expect("pending");
    let flow = FlowFields {
        next_incoming_id: Some(0),
        incoming_window: u32::MAX,
        next_outgoing_id: 0,
        outgoing_window: u32::MAX,
        link: Some(LinkFlowFields {
            handle: 0,
            delivery_count: Some(0),
            link_credit: Some(u32::MAX),
            available: None,
            drain: false,
        }),
        echo: false,
    };
    let mut input = Vec::new();
    write_frame(&mut input, 0, &flow);
    connection.handle_bytes(&input, now);
    let mut discard = Vec::new();
    connection.poll_transmit(now, &mut discard);
    (connection, link)
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let flow = FlowFields {
        next_incoming_id: Some(300),
        incoming_window: 65_536,
        next_outgoing_id: 1,
        outgoing_window: 65_536,
        link: Some(LinkFlowFields {
            handle: 1,
            delivery_count: Some(300),
            link_credit: Some(300),
            available: None,
            drain: false,
        }),
        echo: false,
    };
    let mut frame_bytes = Vec::new();
    write_frame(&mut frame_bytes, 1, &flow);
    group.bench_function("flow_frame", |b| {
        b.iter(|| {
            let (frame, _) = frame::split_frame(black_box(&frame_bytes), 1 << 20)
                .expect("valid")
                .expect("complete");
            black_box(performative::decode(frame.body).expect("decodes"))
        });
    });
    let body = [b'x'; 256];
    let mut transfer = Vec::new();
    let start = frame::begin_frame(&mut transfer, frame::TYPE_AMQP, 1);
    TransferFields {
        handle: 0,
        delivery_id: Some(7),
        delivery_tag: Some(&[0, 0, 0, 7]),
        message_format: Some(0),
        settled: Some(false),
        more: false,
        aborted: false,
    }
    .encode(&mut transfer);
    let mut c2d = Vec::new();
    codec::put_descriptor(&mut c2d, 0x73);
    let list = Compound::begin_list(&mut c2d);
    codec::put_str(&mut c2d, "3f2c8a1e-0d1b-4e55-9a77-1c2d3e4f5a6b");
    codec::put_null(&mut c2d);
    codec::put_str(&mut c2d, "/devices/sensor-000123/messages/devicebound");
    list.end(&mut c2d, 3);
    codec::put_descriptor(&mut c2d, 0x74);
    let map = Compound::begin_map(&mut c2d);
    codec::put_str(&mut c2d, "iothub-ack");
    codec::put_str(&mut c2d, "full");
    map.end(&mut c2d, 2);
    codec::put_descriptor(&mut c2d, 0x75);
    codec::put_binary(&mut c2d, &body);
    transfer.extend_from_slice(&c2d);
    frame::end_frame(&mut transfer, start);
    group.bench_function("transfer_frame_256B_c2d_message", |b| {
        b.iter(|| {
            let (frame, _) = frame::split_frame(black_box(&transfer), 1 << 20)
                .expect("valid")
                .expect("complete");
            let (performative, len) = performative::decode(frame.body).expect("decodes");
            black_box(performative);
            black_box(C2dMessage::decode(&frame.body[len..]).expect("decodes"))
        });
    });
    group.finish();
}

criterion_group!(benches, bench_encode_event, bench_transfer, bench_decode);
criterion_main!(benches);
