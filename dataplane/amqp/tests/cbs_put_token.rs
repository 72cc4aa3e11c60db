//! `$cbs` put-token as azure-eventhub sends it: uuid message-id, answered with the same uuid
//! as correlation-id, an int status-code, both description keys, on the paired receiver.

mod common;

use common::{Peer, Received, attach_frame, flow_frame, transfer_frame};
use dataplane_amqp::Event;
use dataplane_amqp::codec;
use dataplane_amqp::management::{ManagementNode, PutToken};
use dataplane_amqp::message::Sections;
use dataplane_amqp::performative::Role;
use fe2o3_amqp_types::messaging::{DeliveryState, MessageId};
use fe2o3_amqp_types::performatives::Performative;

const UUID: [u8; 16] = [0x5a; 16];

fn put_token_request() -> Vec<u8> {
    let mut message = Vec::new();
    codec::put_descriptor(&mut message, 0x73);
    let list = codec::Compound::begin_list(&mut message);
    codec::put_uuid(&mut message, &UUID);
    list.end(&mut message, 1);
    codec::put_descriptor(&mut message, 0x74);
    let map = codec::Compound::begin_map(&mut message);
    for (key, value) in [
        ("name", "sb://localhost:15672/hub"),
        ("operation", "put-token"),
        ("type", "servicebus.windows.net:sastoken"),
    ] {
        codec::put_str(&mut message, key);
        codec::put_str(&mut message, value);
    }
    codec::put_str(&mut message, "expiration");
    codec::put_timestamp(&mut message, 1_700_003_600_000);
    map.end(&mut message, 8);
    codec::put_descriptor(&mut message, 0x77);
    codec::put_str(
        &mut message,
        "SharedAccessSignature sr=sb%3A%2F%2Flocalhost%3A15672%2Fhub&sig=x&se=1700003600&skn=root",
    );
    message
}

/// Setup: the two `$cbs` links pyamqp attaches (sender handle 1, receiver handle 2), its
/// flows granting 10000 credit, then an unsettled put-token.
/// Expectation: both links are accepted and the request link gets credit without the
/// caller; the request surfaces with its uuid and the put-token fields; `respond(200)`
/// writes a settled accepted disposition, then a settled transfer on the receiver link whose
/// correlation-id is the same uuid and whose status-code is an AMQP int (0x71).
#[test]
fn put_token_is_answered_on_the_paired_receiver_with_the_uuid() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&attach_frame(1, 1, Role::Sender, "$cbs", None, &[], None));
    peer.send(&attach_frame(1, 2, Role::Receiver, "$cbs", None, &[], None));
    let replies = peer.recv();
    let names: Vec<&str> = replies.iter().map(Received::name).collect();
    assert_eq!(names, ["attach", "flow", "attach"]);
    let Some(Performative::Flow(flow)) = replies[1].performative() else {
        unreachable!()
    };
    assert!(
        flow.link_credit.unwrap_or(0) > 0,
        "the request link needs credit"
    );
    assert!(
        peer.events().is_empty(),
        "management links are handled inside"
    );

    peer.send(&flow_frame(1, 2, Some(0), 10_000, 0));
    peer.send(&transfer_frame(
        1,
        1,
        Some(0),
        false,
        false,
        &put_token_request(),
    ));
    let events = peer.events();
    let [Event::ManagementRequest(request)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(request.node, ManagementNode::Cbs);
    assert!(matches!(&request.message_id, Some(MessageId::Uuid(u)) if u.as_inner() == &UUID));
    let put = PutToken::from_request(request).expect("a put-token");
    assert_eq!(put.audience, "sb://localhost:15672/hub");
    assert_eq!(put.token_type, PutToken::SAS_TOKEN_TYPE);
    assert_eq!(put.expiration_ms, Some(1_700_003_600_000));
    assert!(put.token.starts_with("SharedAccessSignature sr="));

    peer.conn
        .respond(request.request, 200, "OK", None)
        .expect("answerable");
    let received = peer.recv();
    let names: Vec<&str> = received.iter().map(Received::name).collect();
    assert_eq!(names[..2], ["disposition", "transfer"]);
    let Some(Performative::Disposition(disposition)) = received[0].performative() else {
        unreachable!()
    };
    assert!(disposition.settled);
    assert_eq!(disposition.first, 0);
    assert!(matches!(
        disposition.state,
        Some(DeliveryState::Accepted(_))
    ));
    let Received::Amqp {
        performative: Performative::Transfer(transfer),
        payload,
        ..
    } = &received[1]
    else {
        unreachable!()
    };
    assert_eq!(
        transfer.handle.0, 1,
        "our handle of the client's receiver link"
    );
    assert_eq!(transfer.settled, Some(true));
    let sections = Sections::split(payload).expect("well-formed");
    let mut expected_id = vec![0x98];
    expected_id.extend_from_slice(&UUID);
    assert_eq!(
        sections.properties_field(5),
        Some(&expected_id[..]),
        "correlation-id"
    );
    let app = sections.application_properties.expect("present");
    let status = [&[0xa1, 11][..], b"status-code", &[0x71, 0, 0, 0, 200]].concat();
    assert!(
        app.windows(status.len()).any(|w| w == status),
        "status-code must be int 0x71"
    );
    let properties = sections.decode_application_properties().expect("decodes");
    let keys: Vec<&str> = properties.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["status-code", "status-description", "statusDescription"]
    );
}

/// Setup: a put-token with a bad signature.
/// Expectation: the caller answers 401; the delivery is still accepted (a rejected
/// disposition trips a pyamqp bug and a 60 s hang) and the status carries the
/// failure.
#[test]
fn a_failed_put_token_is_accepted_and_answered_with_401() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&attach_frame(1, 1, Role::Sender, "$cbs", None, &[], None));
    peer.send(&attach_frame(1, 2, Role::Receiver, "$cbs", None, &[], None));
    peer.send(&flow_frame(1, 2, Some(0), 10_000, 0));
    peer.recv();
    peer.send(&transfer_frame(
        1,
        1,
        Some(0),
        false,
        false,
        &put_token_request(),
    ));
    let Some(Event::ManagementRequest(request)) = peer.events().pop() else {
        panic!()
    };
    peer.conn
        .respond(request.request, 401, "InvalidSignature", None)
        .expect("answerable");
    let received = peer.recv();
    let Some(Performative::Disposition(disposition)) = received[0].performative() else {
        panic!()
    };
    assert!(matches!(
        disposition.state,
        Some(DeliveryState::Accepted(_))
    ));
    let Received::Amqp { payload, .. } = &received[1] else {
        panic!()
    };
    let sections = Sections::split(payload).expect("well-formed");
    let properties = sections.decode_application_properties().expect("decodes");
    assert_eq!(
        properties[0].1,
        fe2o3_amqp_types::primitives::SimpleValue::Int(401)
    );
}

/// Setup: the response link has no credit yet when the caller answers.
/// Expectation: the response waits, and goes out with the client's flow.
#[test]
fn a_response_waits_for_credit_on_the_receiver_link() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&attach_frame(1, 1, Role::Sender, "$cbs", None, &[], None));
    peer.send(&attach_frame(1, 2, Role::Receiver, "$cbs", None, &[], None));
    peer.recv();
    peer.send(&transfer_frame(
        1,
        1,
        Some(0),
        false,
        false,
        &put_token_request(),
    ));
    let Some(Event::ManagementRequest(request)) = peer.events().pop() else {
        panic!()
    };
    peer.conn
        .respond(request.request, 200, "OK", None)
        .expect("answerable");
    let names: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(names, ["disposition"]);
    peer.send(&flow_frame(1, 2, Some(0), 100, 0));
    let names: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(names, ["transfer"]);
    assert_eq!(
        peer.conn.respond(request.request, 200, "OK", None),
        Err(dataplane_amqp::ApiError::UnknownRequest)
    );
}
