//! Every performative the server writes during a conversation carries every field, with the
//! descriptor as smallulong and doff 2, as pyamqp needs.

mod common;

use common::{Peer, Received, attach_frame, detach_frame, field_count, flow_frame, frame_bytes};
use dataplane_amqp::Condition;
use dataplane_amqp::performative::{EndFields, Role};
use fe2o3_amqp_types::performatives::Performative;

/// Setup: open, begin, a receiver link with credit, a transfer, a management request
/// with its disposition, a refused link, a detach, an end and a close.
/// Expectation: field counts 10/8/14/11/11/6/3/1/1, and end/close without an error are
/// exactly `00 53 17 c0 02 01 40` / `00 53 18 c0 02 01 40`.
#[test]
fn server_performatives_have_every_field() {
    let mut peer = Peer::new();
    let mut bytes = dataplane_amqp::frame::SASL_HEADER.to_vec();
    dataplane_amqp::performative::write_sasl_init(&mut bytes, "ANONYMOUS", Some(&[]), None);
    peer.send(&bytes);
    peer.events();
    peer.conn
        .complete_sasl(dataplane_amqp::sasl::SaslOutcome::Ok)
        .expect("pending");
    let mut bytes = dataplane_amqp::frame::AMQP_HEADER.to_vec();
    bytes.extend(common::open_frame(None, 1 << 20));
    bytes.extend(common::begin_frame(1, 65_536));
    peer.send(&bytes);
    let mut seen = peer.recv();
    peer.events();

    let link = peer.attach_receiver(
        1,
        "amqps://h/hub/ConsumerGroups/$Default/Partitions/0",
        None,
    );
    peer.conn.accept_link(link).expect("pending");
    peer.send(&flow_frame(1, 1, Some(0), 10, 0));
    peer.conn
        .send_message(link, &[0x00, 0x53, 0x75, 0xa0, 0x01, 0x07], true)
        .expect("credit");
    answer_one_cbs_request(&mut peer);
    seen.extend(peer.recv());
    let refused = peer.attach_receiver(
        3,
        "amqps://h/hub/ConsumerGroups/$Default/Partitions/9",
        None,
    );
    peer.conn
        .refuse_link(refused, Condition::NotFound, "no partition 9")
        .expect("pending");
    seen.extend(peer.recv());
    peer.send(&detach_frame(1, 1));
    peer.send(&frame_bytes(1, &EndFields { error: None }));
    peer.send(&common::close_frame());
    seen.extend(peer.recv());

    let mut counts = std::collections::BTreeMap::new();
    for received in &seen {
        let Received::Amqp {
            performative, raw, ..
        } = received
        else {
            continue;
        };
        let name = dataplane_amqp::performative::name(performative);
        let count = field_count(raw);
        assert_eq!(*counts.entry(name).or_insert(count), count, "{name} varies");
        if matches!(performative, Performative::End(_)) {
            assert_eq!(raw, &[0x00, 0x53, 0x17, 0xc0, 0x02, 0x01, 0x40]);
        }
        if matches!(performative, Performative::Close(_)) {
            assert_eq!(raw, &[0x00, 0x53, 0x18, 0xc0, 0x02, 0x01, 0x40]);
        }
    }
    let expected = [
        ("open", 10),
        ("begin", 8),
        ("attach", 14),
        ("flow", 11),
        ("transfer", 11),
        ("disposition", 6),
        ("detach", 3),
        ("end", 1),
        ("close", 1),
    ];
    for (name, count) in expected {
        assert_eq!(counts.get(name), Some(&count), "{name}: {counts:?}");
    }
}

/// A `$cbs` request that the caller answers, so a disposition goes out.
fn answer_one_cbs_request(peer: &mut Peer) {
    peer.send(&attach_frame(1, 7, Role::Sender, "$cbs", None, &[], None));
    peer.send(&attach_frame(1, 8, Role::Receiver, "$cbs", None, &[], None));
    peer.send(&flow_frame(1, 8, Some(0), 10, 0));
    let message = common::request_message(&[0x53, 0x01], &[("operation", "put-token")], Some("t"));
    peer.send(&common::transfer_frame(
        1,
        7,
        Some(0),
        false,
        false,
        &message,
    ));
    let request = peer
        .events()
        .iter()
        .find_map(|e| match e {
            dataplane_amqp::Event::ManagementRequest(r) => Some(r.request),
            _ => None,
        })
        .expect("a request");
    peer.conn
        .respond(request, 200, "OK", None)
        .expect("answerable");
}
