//! pyamqp writes `close` and drops the socket at once; the `close` often never arrives. EOF
//! must end the connection quietly: one event, nothing sent.

mod common;

use common::{Peer, Received};
use dataplane_amqp::Event;
use dataplane_amqp::connection::CloseReason;

/// Setup: an open connection with an attached receiver; the socket reaches EOF.
/// Expectation: exactly one Closed(Eof) event, no frames written, further input ignored,
/// and a second EOF changes nothing.
#[test]
fn eof_without_close_is_one_quiet_event() {
    let mut peer = Peer::new();
    peer.open();
    let _link = peer.receiver_with_credit(1, 300);
    peer.conn.handle_eof();
    assert_eq!(peer.events(), [Event::Closed(CloseReason::Eof)]);
    assert!(peer.recv_bytes().is_empty());
    peer.send(&common::close_frame());
    peer.conn.handle_eof();
    assert!(peer.events().is_empty());
    assert!(peer.recv_bytes().is_empty());
    assert!(peer.conn.is_closed());
}

/// Setup: the client's close does arrive, cut in two reads.
/// Expectation: we answer with close (no error) and report PeerClosed; a later EOF adds
/// nothing.
#[test]
fn a_close_is_answered_and_reported_once() {
    let mut peer = Peer::new();
    peer.open();
    let close = common::close_frame();
    peer.send(&close[..5]);
    assert!(peer.events().is_empty());
    peer.send(&close[5..]);
    let received = peer.recv();
    assert!(matches!(&received[..], [r @ Received::Amqp { .. }] if r.name() == "close"));
    assert_eq!(
        peer.events(),
        [Event::Closed(CloseReason::PeerClosed { error: None })]
    );
    peer.conn.handle_eof();
    assert!(peer.events().is_empty());
}

/// Setup: the caller closes with an error.
/// Expectation: a close carrying it, then nothing more is accepted.
#[test]
fn a_local_close_carries_the_error() {
    let mut peer = Peer::new();
    peer.open();
    peer.conn.close(Some((
        dataplane_amqp::Condition::ConnectionForced,
        "shutting down",
    )));
    let received = peer.recv();
    assert_eq!(
        common::error_conditions(&received),
        ["amqp:connection:forced"]
    );
    assert_eq!(peer.events(), [Event::Closed(CloseReason::Local)]);
}
