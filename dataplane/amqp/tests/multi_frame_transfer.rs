//! Messages larger than a frame: split on the way out at the peer's max-frame-size, and
//! reassembled on the way in within our max-message-size.

mod common;

use common::{Peer, Received, attach_frame, error_conditions, transfer_frame};
use dataplane_amqp::performative::Role;
use dataplane_amqp::{Config, Event};
use fe2o3_amqp_types::performatives::Performative;

/// Setup: the client's max-frame-size is 512; we send a 2000-byte message.
/// Expectation: several transfer frames, each at most 512 bytes, the same delivery id and
/// tag on all, `more` on all but the last, payloads that join to the message, and one
/// delivery's worth of credit used.
#[test]
fn outgoing_messages_are_split_at_the_peers_max_frame_size() {
    let mut peer = Peer::new();
    peer.open_with(None, 512, 65_536);
    let link = peer.receiver_with_credit(1, 10);
    let message: Vec<u8> = (0..2000_u32).map(|i| i as u8).collect();
    let delivery = peer
        .conn
        .send_message(link, &message, true)
        .expect("credit");
    let bytes = peer.recv_bytes();
    let mut rest = &bytes[..];
    let mut joined = Vec::new();
    let mut frames = 0;
    while !rest.is_empty() {
        let size = u32::from_be_bytes(rest[..4].try_into().expect("4")) as usize;
        assert!(size <= 512, "frame of {size} bytes");
        let [
            Received::Amqp {
                performative: Performative::Transfer(transfer),
                payload,
                ..
            },
        ] = &common::parse_output(&rest[..size])[..]
        else {
            panic!("not a transfer")
        };
        assert_eq!(transfer.delivery_id, Some(delivery));
        frames += 1;
        joined.extend_from_slice(payload);
        rest = &rest[size..];
        assert_eq!(transfer.more, !rest.is_empty());
    }
    assert!(frames >= 4);
    assert_eq!(joined, message);
    assert_eq!(peer.conn.link_credit(link), Ok(9));
}

fn c2d_link(peer: &mut Peer) -> dataplane_amqp::LinkId {
    peer.send(&attach_frame(
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
    attach.link
}

/// Setup: a client sends one message in three frames (`more` on the first two; the
/// continuation frames leave out delivery-id, as AMQP allows).
/// Expectation: one Message event with the joined payload and the first frame's id.
#[test]
fn incoming_transfers_are_reassembled() {
    let mut peer = Peer::new();
    peer.open();
    let link = c2d_link(&mut peer);
    peer.send(&transfer_frame(1, 0, Some(4), false, true, b"hello "));
    peer.send(&transfer_frame(1, 0, None, false, true, b"big "));
    assert!(peer.events().is_empty());
    peer.send(&transfer_frame(1, 0, None, false, false, b"world"));
    let events = peer.events();
    let [Event::Message(message)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(message.link, link);
    assert_eq!(message.delivery_id, 4);
    assert!(!message.settled);
    assert_eq!(message.payload, b"hello big world");
}

/// Setup: max-message-size 1000; a client streams 3 x 400 bytes.
/// Expectation: the link is detached with `amqp:link:message-size-exceeded` at the third
/// frame, before it is buffered; the caller is told.
#[test]
fn oversized_incoming_messages_detach_the_link() {
    let mut peer = Peer::with_config(Config {
        message_size_max: 1000,
        ..Config::default()
    });
    peer.open();
    let link = c2d_link(&mut peer);
    peer.send(&transfer_frame(1, 0, Some(0), false, true, &[0; 400]));
    peer.send(&transfer_frame(1, 0, None, false, true, &[0; 400]));
    peer.send(&transfer_frame(1, 0, None, false, false, &[0; 400]));
    assert_eq!(
        error_conditions(&peer.recv()),
        ["amqp:link:message-size-exceeded"]
    );
    let events = peer.events();
    assert!(matches!(&events[..], [Event::LinkDetached { link: l, error: Some(_) }] if *l == link));
}

/// Setup: a client sends on a link where it has no credit left (window 1).
/// Expectation: `amqp:link:transfer-limit-exceeded`.
#[test]
fn transfers_beyond_credit_detach_the_link() {
    let mut peer = Peer::with_config(Config {
        receiver_window: 1,
        ..Config::default()
    });
    peer.open();
    c2d_link(&mut peer);
    peer.send(&transfer_frame(1, 0, Some(0), false, false, b"one"));
    peer.send(&transfer_frame(1, 0, Some(1), false, false, b"two"));
    assert_eq!(
        error_conditions(&peer.recv()),
        ["amqp:link:transfer-limit-exceeded"]
    );
}

/// Setup: a client sends a transfer on a link the caller has not accepted yet (no credit).
/// Expectation: our attach goes out before the detach (a detach needs an attach), with
/// `amqp:link:transfer-limit-exceeded`.
#[test]
fn a_transfer_before_the_caller_accepted_gets_attach_then_detach() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&attach_frame(
        1,
        0,
        Role::Sender,
        "amqps://h/messages/devicebound",
        None,
        &[],
        None,
    ));
    assert!(matches!(peer.events()[..], [Event::SenderAttach(_)]));
    peer.send(&transfer_frame(1, 0, Some(0), true, false, b"early"));
    let received = peer.recv();
    let names: Vec<&str> = received.iter().map(Received::name).collect();
    assert_eq!(names, ["attach", "detach"]);
    assert_eq!(
        error_conditions(&received),
        ["amqp:link:transfer-limit-exceeded"]
    );
}
