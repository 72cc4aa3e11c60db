//! The IoT Hub service SDK sending a cloud-to-device message: a sender link to
//! `amqps://{host}/messages/devicebound` with rcv-settle-mode second, an unsettled transfer,
//! and an accepted settlement.

mod common;

use common::{Peer, Received, frame_bytes, transfer_frame};
use dataplane_amqp::address::NodeAddress;
use dataplane_amqp::codec::{self, Compound};
use dataplane_amqp::message::C2dMessage;
use dataplane_amqp::performative::{AttachFields, Outcome, Role};
use dataplane_amqp::{ApiError, Event};
use fe2o3_amqp_types::messaging::{DeliveryState, MessageId};
use fe2o3_amqp_types::performatives::Performative;
use fe2o3_amqp_types::primitives::SimpleValue;

fn service_message() -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_descriptor(&mut out, 0x73);
    let list = Compound::begin_list(&mut out);
    codec::put_str(&mut out, "mid-9");
    codec::put_null(&mut out);
    codec::put_str(&mut out, "/devices/dev1/messages/devicebound");
    codec::put_null(&mut out);
    codec::put_null(&mut out);
    codec::put_str(&mut out, "corr-9");
    codec::put_sym(&mut out, "application/json");
    codec::put_sym(&mut out, "utf-8");
    codec::put_timestamp(&mut out, 1_700_000_360_000);
    list.end(&mut out, 9);
    codec::put_descriptor(&mut out, 0x74);
    let map = Compound::begin_map(&mut out);
    for (k, v) in [("iothub-ack", "full"), ("custom", "v")] {
        codec::put_str(&mut out, k);
        codec::put_str(&mut out, v);
    }
    map.end(&mut out, 4);
    codec::put_descriptor(&mut out, 0x75);
    codec::put_binary(&mut out, b"hello");
    out
}

/// Setup: the service SDK's sender link and one unsettled C2D message.
/// Expectation: a SenderAttach for the devicebound node; accepting answers with
/// rcv-settle-mode first and grants credit; the message decodes into plain fields; settling
/// it accepted writes a settled accepted disposition for its delivery id.
#[test]
fn a_service_c2d_message_is_received_decoded_and_accepted() {
    let mut source = vec![0x00, 0x53, 0x28];
    let list = Compound::begin_list(&mut source);
    codec::put_str(&mut source, "3d1c9a4e-1111-2222-3333-444455556666");
    list.end(&mut source, 1);
    let mut target = vec![0x00, 0x53, 0x29];
    let list = Compound::begin_list(&mut target);
    codec::put_str(&mut target, "amqps://localhost/messages/devicebound");
    list.end(&mut target, 1);
    let attach = frame_bytes(
        1,
        &AttachFields {
            name: "sender-link-3d1c9a4e",
            handle: 0,
            role: Role::Sender,
            snd_settle_mode: 0,
            rcv_settle_mode: 1,
            source: Some(&source),
            target: Some(&target),
            initial_delivery_count: Some(0),
            max_message_size: Some(1 << 20),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        },
    );
    let mut peer = Peer::new();
    peer.open();
    peer.send(&attach);
    let events = peer.events();
    let [Event::SenderAttach(attach)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(attach.node, NodeAddress::ServiceDeviceBound);
    peer.conn.accept_link(attach.link).expect("pending");
    let received = peer.recv();
    let Some(Performative::Attach(reply)) = received[0].performative() else {
        panic!()
    };
    assert_eq!(reply.role, fe2o3_amqp_types::definitions::Role::Receiver);
    assert_eq!(
        reply.rcv_settle_mode,
        fe2o3_amqp_types::definitions::ReceiverSettleMode::First
    );
    let Some(Performative::Flow(flow)) = received[1].performative() else {
        panic!()
    };
    assert_eq!(flow.link_credit, Some(100));

    peer.send(&transfer_frame(
        1,
        0,
        Some(0),
        false,
        false,
        &service_message(),
    ));
    let events = peer.events();
    let [Event::Message(message)] = &events[..] else {
        panic!("{events:?}")
    };
    let c2d = C2dMessage::decode(&message.payload).expect("decodes");
    assert_eq!(c2d.message_id, Some(MessageId::String("mid-9".into())));
    assert_eq!(
        c2d.to.as_deref(),
        Some("/devices/dev1/messages/devicebound")
    );
    assert_eq!(c2d.correlation_id, Some(MessageId::String("corr-9".into())));
    assert_eq!(c2d.content_type.as_deref(), Some("application/json"));
    assert_eq!(c2d.content_encoding.as_deref(), Some("utf-8"));
    assert_eq!(c2d.absolute_expiry_time_ms, Some(1_700_000_360_000));
    assert_eq!(
        c2d.application_properties[0],
        ("iothub-ack".into(), SimpleValue::String("full".into()))
    );
    assert_eq!(c2d.body, b"hello");

    peer.conn
        .settle(message.link, message.delivery_id, &Outcome::Accepted)
        .expect("unsettled");
    let received = peer.recv();
    let [
        Received::Amqp {
            performative: Performative::Disposition(disposition),
            ..
        },
    ] = &received[..]
    else {
        panic!("{received:?}")
    };
    assert_eq!(disposition.first, 0);
    assert!(disposition.settled);
    assert!(matches!(
        disposition.state,
        Some(DeliveryState::Accepted(_))
    ));
    assert_eq!(
        peer.conn
            .settle(message.link, message.delivery_id, &Outcome::Accepted),
        Err(ApiError::UnknownDelivery)
    );
}

/// Setup: the caller rejects a message.
/// Expectation: a settled rejected disposition carrying the condition.
#[test]
fn a_c2d_message_can_be_rejected_with_a_condition() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&common::attach_frame(
        1,
        0,
        Role::Sender,
        "amqps://h/messages/devicebound",
        None,
        &[],
        None,
    ));
    let Some(Event::SenderAttach(attach)) = peer.events().pop() else {
        panic!()
    };
    peer.conn.accept_link(attach.link).expect("pending");
    peer.recv();
    peer.send(&transfer_frame(
        1,
        0,
        Some(3),
        false,
        false,
        &service_message(),
    ));
    let Some(Event::Message(message)) = peer.events().pop() else {
        panic!()
    };
    let outcome = Outcome::Rejected {
        condition: dataplane_amqp::Condition::NotFound,
        description: Some("device dev1 not found".into()),
    };
    peer.conn
        .settle(message.link, 3, &outcome)
        .expect("unsettled");
    let received = peer.recv();
    let Some(Performative::Disposition(disposition)) = received[0].performative() else {
        panic!()
    };
    assert!(matches!(
        disposition.state,
        Some(DeliveryState::Rejected(_))
    ));
}
