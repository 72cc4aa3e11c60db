//! The IoT Hub service SDK's CBS path (uamqp): SASL MSSBCBS without an initial response, a
//! put-token whose message-id is a ulong, and a response whose correlation-id is the same
//! ulong and whose status-code is an AMQP int.

mod common;

use common::{Peer, Received, attach_frame, flow_frame, request_message, transfer_frame};
use dataplane_amqp::Event;
use dataplane_amqp::frame::SASL_HEADER;
use dataplane_amqp::message::Sections;
use dataplane_amqp::performative::{self, Role};
use dataplane_amqp::sasl::Mechanism;
use fe2o3_amqp_types::messaging::MessageId;

/// Setup: the sasl-init uamqp sends: MSSBCBS, no initial response, the host name.
/// Expectation: the caller sees MSSBCBS and no credentials.
#[test]
fn mssbcbs_init_without_initial_response_reaches_the_caller() {
    let mut peer = Peer::new();
    let mut bytes = SASL_HEADER.to_vec();
    performative::write_sasl_init(&mut bytes, "MSSBCBS", None, Some("localhost"));
    peer.send(&bytes);
    let events = peer.events();
    let [Event::SaslInit(init)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(init.mechanism, Mechanism::MsSbCbs);
    assert_eq!(init.plain, None);
}

/// Setup: put-tokens whose message-id is a ulong in each encoding a client may choose
/// (ulong0, smallulong, 8-byte ulong).
/// Expectation: the event carries `MessageId::Ulong`, and the response's correlation-id is
/// the identical encoding; status-code is `71 00 00 00 c8`.
#[test]
fn ulong_message_ids_are_echoed_byte_for_byte() {
    for (encoded, value) in [
        (vec![0x44], 0_u64),
        (vec![0x53, 0x07], 7),
        (vec![0x80, 0, 0, 0, 0, 0, 0, 1, 0], 256),
    ] {
        let mut peer = Peer::new();
        peer.open();
        peer.send(&attach_frame(1, 0, Role::Sender, "$cbs", None, &[], None));
        peer.send(&attach_frame(1, 1, Role::Receiver, "$cbs", None, &[], None));
        peer.send(&flow_frame(1, 1, Some(0), 100, 0));
        peer.recv();
        let message = request_message(
            &encoded,
            &[
                ("name", "https://localhost"),
                ("operation", "put-token"),
                ("type", "servicebus.windows.net:sastoken"),
            ],
            Some("SharedAccessSignature sr=localhost&sig=x&se=1&skn=iothubowner"),
        );
        peer.send(&transfer_frame(1, 0, Some(0), false, false, &message));
        let events = peer.events();
        let [Event::ManagementRequest(request)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(request.message_id, Some(MessageId::Ulong(value)));
        peer.conn
            .respond(request.request, 200, "OK", None)
            .expect("answerable");
        let received = peer.recv();
        let Received::Amqp { payload, .. } = &received[1] else {
            panic!("{received:?}")
        };
        let sections = Sections::split(payload).expect("well-formed");
        assert_eq!(sections.properties_field(5), Some(&encoded[..]));
        let app = sections.application_properties.expect("present");
        assert!(app.windows(5).any(|w| w == [0x71, 0, 0, 0, 200]));
    }
}
