//! Link credit and session windows on a link we send on, the way pyamqp grants them:
//! flow(credit 0), flow(credit 300), and a new 300 only when its credit reaches 0.

mod common;

use common::{Peer, Received, flow_frame, session_flow};
use dataplane_amqp::{ApiError, Event};
use fe2o3_amqp_types::performatives::Performative;

const EVENT: &[u8] = &[0x00, 0x53, 0x75, 0xa0, 0x03, 1, 2, 3];

/// Setup: an accepted receiver; the client grants 0 then 300.
/// Expectation: 300 sends succeed, the 301st is refused; delivery ids and tags count up;
/// a flow with delivery-count 300 and credit 300 opens 300 more.
#[test]
fn credit_is_used_one_per_message_and_refreshed_by_flows() {
    let mut peer = Peer::new();
    peer.open();
    let link = peer.attach_receiver(
        1,
        "amqps://h/hub/ConsumerGroups/$Default/Partitions/0",
        None,
    );
    peer.conn.accept_link(link).expect("pending");
    peer.recv();
    peer.send(&flow_frame(1, 1, Some(0), 0, 0));
    assert!(matches!(
        peer.events()[..],
        [Event::LinkCredit { credit: 0, .. }]
    ));
    peer.send(&flow_frame(1, 1, Some(0), 300, 0));
    assert!(matches!(
        peer.events()[..],
        [Event::LinkCredit {
            credit: 300,
            drain: false,
            ..
        }]
    ));
    assert_eq!(peer.conn.link_credit(link), Ok(300));
    for expected in 0..300 {
        assert_eq!(peer.conn.send_message(link, EVENT, true), Ok(expected));
    }
    assert_eq!(peer.conn.link_credit(link), Ok(0));
    assert_eq!(
        peer.conn.send_message(link, EVENT, true),
        Err(ApiError::NoCredit)
    );
    let received = peer.recv();
    assert_eq!(received.len(), 300);
    let Some(Performative::Transfer(last)) = received[299].performative() else {
        panic!()
    };
    assert_eq!(last.delivery_id, Some(299));
    assert_eq!(
        last.delivery_tag.as_ref().map(|t| t.to_vec()),
        Some(299_u32.to_be_bytes().to_vec())
    );
    assert_eq!(last.settled, Some(true));
    assert!(!last.more);

    peer.send(&flow_frame(1, 1, Some(300), 300, 300));
    assert!(matches!(
        peer.events()[..],
        [Event::LinkCredit { credit: 300, .. }]
    ));
    assert_eq!(peer.conn.send_message(link, EVENT, true), Ok(300));
}

/// Setup: the client's session incoming window is 3 frames; it has credit for 10.
/// Expectation: 3 messages go, the 4th reports a closed window; the client's session flow
/// reopens it and wakes the caller with LinkCredit.
#[test]
fn a_closed_session_window_blocks_and_a_session_flow_reopens_it() {
    let mut peer = Peer::new();
    peer.open();
    let link = peer.receiver_with_credit(1, 10);
    peer.send(&session_flow(1, 0, 3));
    peer.events();
    assert_eq!(peer.conn.link_credit(link), Ok(3));
    for _ in 0..3 {
        peer.conn.send_message(link, EVENT, true).expect("window");
    }
    assert_eq!(
        peer.conn.send_message(link, EVENT, true),
        Err(ApiError::WindowClosed)
    );
    assert_eq!(peer.recv().len(), 3);
    peer.send(&session_flow(1, 3, 100));
    assert!(matches!(
        peer.events()[..],
        [Event::LinkCredit { credit: 7, .. }]
    ));
    assert_eq!(peer.conn.link_credit(link), Ok(7));
    peer.conn
        .send_message(link, EVENT, true)
        .expect("window reopened");
}

/// Setup: a receiver asks to drain.
/// Expectation: the caller is told; finish_drain uses up the credit and says so in a flow.
#[test]
fn drain_is_completed_by_the_caller() {
    let mut peer = Peer::new();
    peer.open();
    let link = peer.receiver_with_credit(1, 5);
    peer.conn.send_message(link, EVENT, true).expect("credit");
    peer.recv();
    let mut drain = Vec::new();
    dataplane_amqp::performative::write_frame(
        &mut drain,
        1,
        &dataplane_amqp::performative::FlowFields {
            next_incoming_id: Some(1),
            incoming_window: 65_536,
            next_outgoing_id: 0,
            outgoing_window: 65_536,
            link: Some(dataplane_amqp::performative::LinkFlowFields {
                handle: 1,
                delivery_count: Some(1),
                link_credit: Some(4),
                available: None,
                drain: true,
            }),
            echo: false,
        },
    );
    peer.send(&drain);
    assert!(matches!(
        peer.events()[..],
        [Event::LinkCredit {
            credit: 4,
            drain: true,
            ..
        }]
    ));
    peer.conn.finish_drain(link).expect("draining");
    let received = peer.recv();
    let [
        Received::Amqp {
            performative: Performative::Flow(flow),
            ..
        },
    ] = &received[..]
    else {
        panic!("{received:?}")
    };
    assert_eq!(flow.delivery_count, Some(5));
    assert_eq!(flow.link_credit, Some(0));
    assert_eq!(peer.conn.link_credit(link), Ok(0));
}

/// Setup: unsettled sends; the client accepts two with one disposition range.
/// Expectation: one DeliveryUpdated per delivery, settled, with the accepted state.
#[test]
fn unsettled_deliveries_are_reported_when_the_peer_settles_them() {
    let mut peer = Peer::new();
    peer.open();
    let link = peer.receiver_with_credit(1, 5);
    let first = peer.conn.send_message(link, EVENT, false).expect("credit");
    let second = peer.conn.send_message(link, EVENT, false).expect("credit");
    peer.recv();
    let accepted = dataplane_amqp::performative::Outcome::Accepted;
    let mut disposition = Vec::new();
    dataplane_amqp::performative::write_frame(
        &mut disposition,
        1,
        &dataplane_amqp::performative::DispositionFields {
            role: dataplane_amqp::performative::Role::Receiver,
            first,
            last: Some(second),
            settled: true,
            state: Some(&accepted),
        },
    );
    peer.send(&disposition);
    let events = peer.events();
    assert_eq!(events.len(), 2);
    for (event, id) in events.iter().zip([first, second]) {
        let Event::DeliveryUpdated {
            delivery_id,
            settled: true,
            state: Some(_),
            link: l,
        } = event
        else {
            panic!("{event:?}")
        };
        assert_eq!((*delivery_id, *l), (id, link));
    }
}
