//! Malformed input ends the connection with the right condition, never a panic, and never
//! buffers an oversized frame.

mod common;

use common::{Peer, error_conditions, frame_bytes};
use dataplane_amqp::connection::CloseReason;
use dataplane_amqp::error::{ConnectionError, FrameError};
use dataplane_amqp::frame::SASL_HEADER;
use dataplane_amqp::performative::BeginFields;
use dataplane_amqp::{Config, Event};

fn closed_with(peer: &mut Peer) -> (Vec<String>, Vec<Event>) {
    let received = peer.recv();
    (error_conditions(&received), peer.events())
}

/// Setup: a frame header declaring 16 MiB against our 64 KiB limit, followed by 4 bytes.
/// Expectation: `amqp:connection:framing-error` at once; nothing of it is buffered.
#[test]
fn an_oversized_frame_is_refused_from_its_header() {
    let mut peer = Peer::with_config(Config {
        max_frame_size: 65_536,
        ..Config::default()
    });
    peer.open();
    peer.send(&[0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 1, 2, 3, 4]);
    let (conditions, events) = closed_with(&mut peer);
    assert_eq!(conditions, ["amqp:connection:framing-error"]);
    assert_eq!(
        events,
        [Event::Closed(CloseReason::Error(ConnectionError::Frame(
            FrameError::TooLarge {
                size: 0x0100_0000,
                max: 65_536
            }
        )))]
    );
    assert!(peer.conn.is_closed());
}

/// Setup: a frame whose size field is 4 (smaller than its own header), and one with doff 1.
/// Expectation: framing-error for both.
#[test]
fn frames_with_impossible_sizes_or_offsets_are_framing_errors() {
    for bad in [[0, 0, 0, 4, 2, 0, 0, 0], [0, 0, 0, 8, 1, 0, 0, 0]] {
        let mut peer = Peer::new();
        peer.open();
        peer.send(&bad);
        assert_eq!(closed_with(&mut peer).0, ["amqp:connection:framing-error"]);
    }
}

/// Setup: a well-framed body that is not valid AMQP, and one with an unknown performative
/// descriptor (0x19).
/// Expectation: `amqp:decode-error`.
#[test]
fn undecodable_and_unknown_performatives_are_decode_errors() {
    for body in [
        &[0xff, 0xff, 0xff][..],
        &[0x00, 0x53, 0x19, 0xc0, 0x01, 0x00],
    ] {
        let mut peer = Peer::new();
        peer.open();
        let mut frame = vec![0, 0, 0, 0, 2, 0, 0, 1];
        frame.extend_from_slice(body);
        let size = frame.len() as u32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        peer.send(&frame);
        assert_eq!(closed_with(&mut peer).0, ["amqp:decode-error"]);
    }
}

/// Setup: a SASL frame (type 1) after the AMQP layer started.
/// Expectation: framing-error.
#[test]
fn a_sasl_frame_in_the_amqp_layer_is_a_framing_error() {
    let mut peer = Peer::new();
    peer.open();
    let mut frame = Vec::new();
    dataplane_amqp::performative::write_sasl_outcome(&mut frame, 0);
    peer.send(&frame);
    assert_eq!(closed_with(&mut peer).0, ["amqp:connection:framing-error"]);
}

/// Setup: values nested 100 deep inside a performative.
/// Expectation: a decode error, not a stack overflow.
#[test]
fn deeply_nested_values_are_refused() {
    let mut peer = Peer::new();
    peer.open();
    let mut body = vec![0x00, 0x53, 0x13, 0xc0, 0xff, 0x01];
    for _ in 0..100 {
        body.extend_from_slice(&[0x00, 0x40]);
    }
    body.push(0x40);
    let mut frame = vec![0, 0, 0, 0, 2, 0, 0, 1];
    frame.extend_from_slice(&body);
    let size = frame.len() as u32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    peer.send(&frame);
    assert_eq!(closed_with(&mut peer).0, ["amqp:decode-error"]);
}

/// Setup: a frame on a channel with no session.
/// Expectation: `amqp:illegal-state`.
#[test]
fn a_frame_on_an_unknown_channel_is_illegal() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&common::detach_frame(9, 0));
    assert_eq!(closed_with(&mut peer).0, ["amqp:illegal-state"]);
}

/// Setup: more sessions than allowed.
/// Expectation: `amqp:resource-limit-exceeded`.
#[test]
fn sessions_beyond_the_bound_close_the_connection() {
    let mut peer = Peer::with_config(Config {
        sessions_max: 2,
        ..Config::default()
    });
    peer.open();
    peer.send(&common::begin_frame(2, 100));
    peer.send(&common::begin_frame(3, 100));
    assert_eq!(closed_with(&mut peer).0, ["amqp:resource-limit-exceeded"]);
}

/// Setup: an open whose max-frame-size is 100.
/// Expectation: `amqp:frame-size-too-small`.
#[test]
fn a_peer_max_frame_size_below_512_is_refused() {
    let mut peer = Peer::new();
    let mut bytes = SASL_HEADER.to_vec();
    dataplane_amqp::performative::write_sasl_init(&mut bytes, "ANONYMOUS", None, None);
    peer.send(&bytes);
    peer.conn
        .complete_sasl(dataplane_amqp::sasl::SaslOutcome::Ok)
        .expect("pending");
    let mut bytes = dataplane_amqp::frame::AMQP_HEADER.to_vec();
    bytes.extend(common::open_frame(None, 100));
    peer.send(&bytes);
    assert_eq!(closed_with(&mut peer).0, ["amqp:frame-size-too-small"]);
}

/// Setup: TLS (or HTTP) bytes where the protocol header belongs.
/// Expectation: our SASL header, then the end; one ProtocolMismatch event.
#[test]
fn a_foreign_protocol_header_gets_ours_back() {
    let mut peer = Peer::new();
    peer.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert_eq!(peer.recv_bytes(), SASL_HEADER);
    assert!(matches!(
        peer.events()[..],
        [Event::Closed(CloseReason::ProtocolMismatch(_))]
    ));
}

/// Setup: a begin that claims to answer one of ours (remote-channel set).
/// Expectation: `amqp:illegal-state`: a server never begins sessions.
#[test]
fn a_begin_with_remote_channel_is_illegal() {
    let mut peer = Peer::new();
    peer.open();
    peer.send(&frame_bytes(
        2,
        &BeginFields {
            remote_channel: Some(0),
            next_outgoing_id: 0,
            incoming_window: 1,
            outgoing_window: 1,
            handle_max: 1,
        },
    ));
    assert_eq!(closed_with(&mut peer).0, ["amqp:illegal-state"]);
}
