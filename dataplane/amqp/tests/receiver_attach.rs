//! Partition receivers: the attach as the client sends it, the reply, refusal and epoch
//! takeover.

mod common;

use common::{
    Peer, Received, attach_frame, error_conditions, field_count, flow_frame, frame_bytes,
};
use dataplane_amqp::address::{PartitionAddress, StartPosition};
use dataplane_amqp::codec::{self, Compound};
use dataplane_amqp::performative::{AttachFields, Role};
use dataplane_amqp::{Condition, Event, ReceiverAttach};
use fe2o3_amqp_types::performatives::Performative;

const ADDRESS: &str = "amqps://localhost/hub/ConsumerGroups/$Default/Partitions/0";

/// The receiver attach azure-eventhub was observed to send, rebuilt from its key pieces:
/// list32 with 14 fields, the symbolic selector filter, `40 40 40` gaps, a 9-byte ulong
/// max-message-size, desired capabilities as an array8 of **sym32**, and
/// `com.microsoft:timeout` as a smalllong 0.
fn golden_attach() -> Vec<u8> {
    let mut source = vec![0x00, 0x53, 0x28];
    let list = Compound::begin_list(&mut source);
    codec::put_str(&mut source, ADDRESS);
    source.extend_from_slice(&[0x40; 6]);
    source.extend_from_slice(&[0xc1, 0x6d, 0x02, 0xa3, 0x21]);
    source.extend_from_slice(b"apache.org:selector-filter:string");
    source.extend_from_slice(&[0x00, 0xa3, 0x21]);
    source.extend_from_slice(b"apache.org:selector-filter:string");
    source.extend_from_slice(&[0xa1, 0x23]);
    source.extend_from_slice(b"amqp.annotation.x-opt-offset > '-1'");
    source.extend_from_slice(&[0x40, 0x40, 0x40]);
    list.end(&mut source, 11);
    let mut target = vec![0x00, 0x53, 0x29];
    let list = Compound::begin_list(&mut target);
    codec::put_str(
        &mut target,
        "receiver-link-b8c4a2d6-6a66-4ed2-8a3c-3b1a5f7e9d10",
    );
    target.extend_from_slice(&[0x40; 6]);
    list.end(&mut target, 7);

    let mut body = vec![0x00, 0x53, 0x12, 0xd0, 0, 0, 0, 0, 0, 0, 0, 0x0e];
    codec::put_str(&mut body, "b8c4a2d6-6a66-4ed2-8a3c-3b1a5f7e9d10");
    body.extend_from_slice(&[0x52, 0x03, 0x56, 0x01, 0x50, 0x00, 0x50, 0x00]);
    body.extend_from_slice(&source);
    body.extend_from_slice(&target);
    body.extend_from_slice(&[0x40, 0x40, 0x40]);
    body.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0x10, 0, 0]);
    body.push(0x40);
    body.extend_from_slice(&[0xe0, 0x22, 0x01, 0xb3, 0, 0, 0, 0x1c]);
    body.extend_from_slice(b"com.microsoft:georeplication");
    body.extend_from_slice(&[0xc1, 0x1a, 0x02, 0xa3, 0x15]);
    body.extend_from_slice(b"com.microsoft:timeout");
    body.extend_from_slice(&[0x55, 0x00]);
    let size = (body.len() - 8) as u32;
    body[4..8].copy_from_slice(&size.to_be_bytes());
    assert_eq!(
        codec::value_len(&body[3..]),
        Ok(body.len() - 3),
        "the rebuilt attach is well-formed"
    );

    let mut frame = Vec::new();
    let start = dataplane_amqp::frame::begin_frame(&mut frame, 0, 1);
    frame.extend_from_slice(&body);
    dataplane_amqp::frame::end_frame(&mut frame, start);
    frame
}

fn receiver_attach(peer: &mut Peer) -> ReceiverAttach {
    match peer.events().pop() {
        Some(Event::ReceiverAttach(attach)) => attach,
        other => panic!("{other:?}"),
    }
}

/// Setup: the golden attach, as azure-eventhub sends it.
/// Expectation: it decodes into a receiver attach of partition 0 from the start of the
/// stream, with the georeplication capability and no epoch.
#[test]
fn the_captured_receiver_attach_decodes() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&golden_attach());
    let attach = receiver_attach(&mut peer);
    assert_eq!(attach.name, "b8c4a2d6-6a66-4ed2-8a3c-3b1a5f7e9d10");
    assert_eq!(attach.address.as_deref(), Some(ADDRESS));
    assert_eq!(
        PartitionAddress::parse(ADDRESS)
            .expect("a partition")
            .partition,
        "0"
    );
    assert_eq!(attach.start_position(), Ok(Some(StartPosition::Start)));
    assert_eq!(
        attach.desired_capabilities,
        ["com.microsoft:georeplication"]
    );
    assert_eq!(attach.epoch, None);
    assert_eq!(attach.max_message_size, Some(1 << 20));
    assert!(!attach.wants_runtime_metric());
}

/// Setup: accept the golden attach.
/// Expectation: our attach has 14 fields, echoes the name and the source bytes exactly
/// (filter included), has a target, role sender and initial-delivery-count 0.
#[test]
fn accepting_echoes_source_and_target_with_initial_delivery_count() {
    let mut peer = Peer::new();
    peer.open();
    let golden = golden_attach();
    peer.send(&golden);
    let attach = receiver_attach(&mut peer);
    peer.conn.accept_link(attach.link).expect("pending");
    let received = peer.recv();
    let [
        Received::Amqp {
            performative: Performative::Attach(reply),
            raw,
            channel,
            ..
        },
    ] = &received[..]
    else {
        panic!("{received:?}")
    };
    assert_eq!(*channel, 0, "our channel for the client's channel 1");
    assert_eq!(field_count(raw), 14);
    assert_eq!(reply.name, attach.name);
    assert_eq!(reply.role, fe2o3_amqp_types::definitions::Role::Sender);
    assert_eq!(reply.initial_delivery_count, Some(0));
    let filter = b"amqp.annotation.x-opt-offset > '-1'";
    assert!(
        raw.windows(filter.len()).any(|w| w == filter),
        "the filter is echoed"
    );
    let source = reply.source.as_ref().expect("source");
    assert_eq!(source.address.as_deref(), Some(ADDRESS));
    assert!(reply.target.is_some());
}

/// Setup: the numeric selector descriptor other SDKs use, a sequence-number filter, an
/// epoch and the runtime-metric capability.
/// Expectation: all of it reaches the caller parsed.
#[test]
fn numeric_filter_descriptor_epoch_and_runtime_metric_are_parsed() {
    let mut source = vec![0x00, 0x53, 0x28];
    let list = Compound::begin_list(&mut source);
    codec::put_str(&mut source, ADDRESS);
    source.extend_from_slice(&[0x40; 6]);
    let map = Compound::begin_map(&mut source);
    codec::put_sym(&mut source, "selector");
    source.extend_from_slice(&[0x00, 0x80, 0x00, 0x00, 0x46, 0x8c, 0x00, 0x00, 0x00, 0x04]);
    codec::put_str(&mut source, "amqp.annotation.x-opt-sequence-number >= '5'");
    map.end(&mut source, 2);
    list.end(&mut source, 8);
    let mut target = vec![0x00, 0x53, 0x29];
    let list = Compound::begin_list(&mut target);
    codec::put_str(&mut target, "receiver");
    list.end(&mut target, 1);
    let mut capabilities = Vec::new();
    codec::put_sym_array(
        &mut capabilities,
        &[
            "com.microsoft:georeplication",
            ReceiverAttach::RUNTIME_METRIC,
        ],
    );
    let mut properties = Vec::new();
    let map = Compound::begin_map(&mut properties);
    codec::put_sym(&mut properties, "com.microsoft:epoch");
    codec::put_long(&mut properties, 7);
    map.end(&mut properties, 2);
    let attach = frame_bytes(
        1,
        &AttachFields {
            name: "numeric",
            handle: 5,
            role: Role::Receiver,
            snd_settle_mode: 0,
            rcv_settle_mode: 0,
            source: Some(&source),
            target: Some(&target),
            initial_delivery_count: None,
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: Some(&capabilities),
            properties: Some(&properties),
        },
    );
    let mut peer = Peer::new();
    peer.open();
    peer.send(&attach);
    let attach = receiver_attach(&mut peer);
    assert_eq!(
        attach.start_position(),
        Ok(Some(StartPosition::SequenceNumber {
            sequence_number: 5,
            inclusive: true
        }))
    );
    assert_eq!(attach.epoch, Some(7));
    assert!(attach.wants_runtime_metric());
}

/// Setup: the caller refuses an attach to a partition that does not exist.
/// Expectation: our attach (echoing source and target, which pyamqp needs before it will
/// read the detach), then a closing detach with `amqp:not-found`; the client's answering
/// detach frees the link without another event.
#[test]
fn refusing_sends_attach_then_detach_with_the_condition() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&attach_frame(
        1,
        1,
        Role::Receiver,
        "amqps://h/hub/ConsumerGroups/$Default/Partitions/99",
        None,
        &[],
        None,
    ));
    let attach = receiver_attach(&mut peer);
    peer.conn
        .refuse_link(attach.link, Condition::NotFound, "no partition 99")
        .expect("pending");
    let received = peer.recv();
    let names: Vec<&str> = received.iter().map(Received::name).collect();
    assert_eq!(names, ["attach", "detach"]);
    let Some(Performative::Attach(reply)) = received[0].performative() else {
        unreachable!()
    };
    assert!(reply.source.is_some() && reply.target.is_some());
    assert_eq!(error_conditions(&received), ["amqp:not-found"]);
    peer.send(&common::detach_frame(1, 1));
    assert!(peer.recv().is_empty());
    assert!(peer.events().is_empty());
    assert_eq!(
        peer.conn.accept_link(attach.link),
        Err(dataplane_amqp::ApiError::UnknownLink)
    );
}

/// Setup: an accepted receiver with credit, then a higher-epoch reader takes the partition.
/// Expectation: `detach_link(LinkStolen)` writes a closing detach with `amqp:link:stolen`;
/// sending on it fails afterwards; the handle is reusable once the client answers.
#[test]
fn epoch_takeover_detaches_with_link_stolen() {
    let mut peer = Peer::new();
    peer.open();
    let link = peer.receiver_with_credit(1, 300);
    peer.conn
        .detach_link(link, Some((Condition::LinkStolen, "epoch 2 took over")))
        .expect("attached");
    let received = peer.recv();
    assert_eq!(error_conditions(&received), ["amqp:link:stolen"]);
    assert!(peer.conn.send_message(link, b"x", true).is_err());
    peer.send(&common::detach_frame(1, 1));
    assert!(peer.events().is_empty());
    let again = peer.attach_receiver(1, ADDRESS, None);
    assert_ne!(again, link, "a new link id for a reused handle");
    peer.conn.accept_link(again).expect("pending");
    peer.send(&flow_frame(1, 1, Some(0), 1, 0));
    assert!(matches!(
        peer.events()[..],
        [Event::LinkCredit { credit: 1, .. }]
    ));
}

/// Setup: the client detaches a receiver.
/// Expectation: we answer with a detach, and the caller gets LinkDetached.
#[test]
fn a_client_detach_is_answered_and_reported() {
    let mut peer = Peer::new();
    peer.open();
    let link = peer.receiver_with_credit(1, 10);
    peer.send(&common::detach_frame(1, 1));
    let names: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(names, ["detach"]);
    assert_eq!(peer.events(), [Event::LinkDetached { link, error: None }]);
}
