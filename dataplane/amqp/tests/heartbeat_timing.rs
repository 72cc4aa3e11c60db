//! Idle time-outs: empty frames at half the peer's time-out, and closing a silent peer.

mod common;

use std::time::Duration;

use common::{Peer, Received, error_conditions};
use dataplane_amqp::connection::CloseReason;
use dataplane_amqp::error::ConnectionError;
use dataplane_amqp::frame::EMPTY_FRAME;
use dataplane_amqp::{Config, Event};

/// Setup: the client's open says idle-time-out 10 s; we last sent at t0.
/// Expectation: the next timeout is t0 + 5 s; nothing is sent before it; at it, exactly one
/// empty frame; after sending it, the next is 5 s later.
#[test]
fn empty_frames_go_out_at_half_the_peers_idle_timeout() {
    let mut peer = Peer::with_config(Config {
        idle_timeout_ms: None,
        ..Config::default()
    });
    peer.open_with(Some(10_000), 1 << 20, 65_536);
    let sent_at = peer.now;
    assert_eq!(
        peer.conn.next_timeout(),
        Some(sent_at + Duration::from_secs(5))
    );
    peer.advance(Duration::from_millis(4_999));
    peer.conn.handle_timeout(peer.now);
    assert!(peer.recv_bytes().is_empty());
    peer.advance(Duration::from_millis(1));
    peer.conn.handle_timeout(peer.now);
    assert_eq!(peer.recv_bytes(), EMPTY_FRAME);
    assert_eq!(
        peer.conn.next_timeout(),
        Some(peer.now + Duration::from_secs(5))
    );
}

/// Setup: our idle time-out is 2 s; the client sends a heartbeat after 1.5 s, then nothing.
/// Expectation: the heartbeat pushes the deadline back; at 3.5 s we close with
/// `amqp:resource-limit-exceeded` and report IdleTimeout.
#[test]
fn a_silent_peer_is_closed_after_our_idle_timeout() {
    let mut peer = Peer::with_config(Config {
        idle_timeout_ms: Some(2_000),
        ..Config::default()
    });
    peer.open();
    peer.advance(Duration::from_millis(1_500));
    peer.send(&EMPTY_FRAME);
    peer.advance(Duration::from_secs(1));
    peer.conn.handle_timeout(peer.now);
    assert!(!peer.conn.is_closed());
    peer.advance(Duration::from_secs(1));
    assert!(peer.conn.next_timeout().is_some_and(|t| t <= peer.now));
    peer.conn.handle_timeout(peer.now);
    assert!(peer.conn.is_closed());
    let received = peer.recv();
    assert!(matches!(received.last(), Some(r) if r.name() == "close"));
    assert_eq!(
        error_conditions(&received),
        ["amqp:resource-limit-exceeded"]
    );
    assert_eq!(
        peer.events(),
        [Event::Closed(CloseReason::Error(
            ConnectionError::IdleTimeout {
                idle_timeout_ms: 2_000
            }
        ))]
    );
    assert_eq!(peer.conn.next_timeout(), None);
}

/// Setup: a client connects and never finishes the handshake.
/// Expectation: after the handshake time-out the connection ends.
#[test]
fn a_stalled_handshake_times_out() {
    let mut peer = Peer::with_config(Config {
        handshake_timeout_ms: 1_000,
        ..Config::default()
    });
    peer.send(&dataplane_amqp::frame::SASL_HEADER);
    peer.recv();
    peer.advance(Duration::from_secs(1));
    peer.conn.handle_timeout(peer.now);
    assert_eq!(
        peer.events(),
        [Event::Closed(CloseReason::HandshakeTimeout)]
    );
    assert!(
        !peer
            .recv()
            .iter()
            .any(|r| matches!(r, Received::Amqp { .. }))
    );
}
