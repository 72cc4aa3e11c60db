//! Session-level violations end that session with the condition and leave the connection
//! and other sessions alone.

mod common;

use common::{Peer, Received, attach_frame, error_conditions, transfer_frame};
use dataplane_amqp::performative::Role;
use dataplane_amqp::{Config, Event};

/// Setup: a transfer on a handle that was never attached.
/// Expectation: `end` with `amqp:session:unattached-handle`; the connection stays open and
/// frames for that session are discarded until the client's end.
#[test]
fn a_transfer_on_an_unattached_handle_ends_the_session() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&transfer_frame(1, 42, Some(0), true, false, b"x"));
    let received = peer.recv();
    assert_eq!(
        error_conditions(&received),
        ["amqp:session:unattached-handle"]
    );
    assert!(peer.conn.is_open());
    peer.send(&attach_frame(1, 1, Role::Sender, "$cbs", None, &[], None));
    assert!(peer.recv().is_empty(), "discarded while ending");
    peer.send(&common::frame_bytes(
        1,
        &dataplane_amqp::performative::EndFields { error: None },
    ));
    peer.send(&common::begin_frame(1, 10));
    let names: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(names, ["begin"], "the channel is free again");
}

/// Setup: an attach reusing a live handle, and one above our handle-max.
/// Expectation: `amqp:session:handle-in-use` and `amqp:resource-limit-exceeded`.
#[test]
fn handle_reuse_and_handle_max_end_the_session() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&attach_frame(1, 1, Role::Sender, "$cbs", None, &[], None));
    peer.recv();
    peer.send(&attach_frame(1, 1, Role::Sender, "$cbs", None, &[], None));
    assert_eq!(
        error_conditions(&peer.recv()),
        ["amqp:session:handle-in-use"]
    );

    let mut peer = Peer::with_config(Config {
        handle_max: 3,
        ..Config::default()
    });
    peer.open();
    peer.send(&attach_frame(1, 4, Role::Sender, "$cbs", None, &[], None));
    assert_eq!(
        error_conditions(&peer.recv()),
        ["amqp:resource-limit-exceeded"]
    );
}

/// Setup: our incoming window is 4; a client sends transfers without waiting for our flow.
/// Expectation: we widen the window with a flow at half of it, so a well-behaved client
/// never runs into a violation.
#[test]
fn the_incoming_window_is_refilled_at_half() {
    let mut peer = Peer::with_config(Config {
        incoming_window: 4,
        ..Config::default()
    });
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
    let Some(Event::SenderAttach(attach)) = peer.events().pop() else {
        panic!()
    };
    peer.conn.accept_link(attach.link).expect("pending");
    peer.recv();
    peer.send(&transfer_frame(1, 0, Some(0), true, false, b"a"));
    assert!(peer.recv().is_empty());
    peer.send(&transfer_frame(1, 0, Some(1), true, false, b"b"));
    let flows: Vec<_> = peer
        .recv()
        .into_iter()
        .filter(|r| r.name() == "flow")
        .collect();
    assert_eq!(flows.len(), 1);
    assert_eq!(peer.events().len(), 2);
}

/// Setup: links beyond the connection's bound.
/// Expectation: the session ends with `amqp:resource-limit-exceeded`; the caller learns
/// its links there are gone.
#[test]
fn links_beyond_the_bound_end_the_session() {
    let mut peer = Peer::with_config(Config {
        links_max: 1,
        ..Config::default()
    });
    peer.open();
    let link = peer.attach_receiver(
        1,
        "amqps://h/hub/ConsumerGroups/$Default/Partitions/0",
        None,
    );
    peer.conn.accept_link(link).expect("pending");
    peer.recv();
    peer.send(&attach_frame(
        1,
        2,
        Role::Receiver,
        "amqps://h/hub/ConsumerGroups/$Default/Partitions/1",
        None,
        &[],
        None,
    ));
    assert_eq!(
        error_conditions(&peer.recv()),
        ["amqp:resource-limit-exceeded"]
    );
    assert!(
        matches!(&peer.events()[..], [Event::LinkDetached { link: l, error: Some(_) }] if *l == link)
    );
}
