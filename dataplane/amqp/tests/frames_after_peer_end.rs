//! pyamqp ends its management session, then detaches the session's `$cbs` links on the
//! channel it just ended, then closes. Those late frames are dropped; anything else on a
//! channel without a session is still a connection error.

mod common;

use common::{Peer, Received, attach_frame, begin_frame, detach_frame, frame_bytes};
use dataplane_amqp::performative::{EndFields, Role};
use dataplane_amqp::{CloseReason, Event};

/// Setup: a session with a `$cbs` link pair; the client sends `end`, then detaches on the
/// ended channel, then `close`.
/// Expectation: our `end`, nothing for the late detaches, then our `close` without error and
/// a peer-closed reason.
#[test]
fn detaches_after_the_clients_end_are_dropped() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&attach_frame(1, 3, Role::Sender, "$cbs", None, &[], None));
    peer.send(&attach_frame(1, 4, Role::Receiver, "$cbs", None, &[], None));
    peer.recv();
    peer.send(&frame_bytes(1, &EndFields { error: None }));
    let names: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(names, ["end"]);
    peer.send(&detach_frame(1, 3));
    peer.send(&detach_frame(1, 4));
    assert!(peer.recv().is_empty(), "late detaches are dropped");
    assert!(peer.conn.is_open());
    peer.send(&common::close_frame());
    let received = peer.recv();
    assert_eq!(
        received.iter().map(Received::name).collect::<Vec<_>>(),
        ["close"]
    );
    assert!(common::error_conditions(&received).is_empty());
    assert!(peer.events().iter().any(|event| matches!(
        event,
        Event::Closed(CloseReason::PeerClosed { error: None })
    )));
}

/// Setup: a detach on a channel that never had a session, and an attach on an ended one.
/// Expectation: both still close the connection with an error.
#[test]
fn frames_on_channels_that_never_had_a_session_still_close_the_connection() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&detach_frame(7, 1));
    assert!(peer.conn.is_closed());
    assert_eq!(
        common::error_conditions(&peer.recv()).len(),
        1,
        "a close with an error"
    );

    let mut peer = Peer::new();
    peer.open();
    peer.send(&frame_bytes(1, &EndFields { error: None }));
    peer.recv();
    peer.send(&attach_frame(1, 3, Role::Sender, "$cbs", None, &[], None));
    assert!(peer.conn.is_closed(), "an attach needs a session");

    // A new begin on the ended channel makes it a live session again.
    let mut peer = Peer::new();
    peer.open();
    peer.send(&frame_bytes(1, &EndFields { error: None }));
    peer.recv();
    peer.send(&begin_frame(1, 100));
    peer.send(&attach_frame(1, 3, Role::Sender, "$cbs", None, &[], None));
    let names: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(names, ["begin", "attach", "flow"]);
}
