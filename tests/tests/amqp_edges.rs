//! The edges of the AMQP listener, driven with hand-written AMQP 1.0 bytes over real TLS
//! against the real binary: malformed, oversized and unknown frames end that connection with
//! a `close` carrying the right `amqp:*` condition, a PLAIN login with a wrong key ends with
//! the SASL auth outcome, never a panic, and never at the cost of another connection.
//!
//! Each test starts its own server (dropping it kills the process) and checks at its end that
//! the server process is still alive and that a new connection still gets through SASL and
//! `open`.

use std::io::Read as _;
use std::time::Duration;

use system_tests::{Server, TlsStream, send, wait_for_close};

const SASL_HEADER: &[u8] = b"AMQP\x03\x01\x00\x00";
const AMQP_HEADER: &[u8] = b"AMQP\x00\x01\x00\x00";

fn server() -> Server {
    Server::start().expect("the server starts")
}

/// A frame: size, data offset 2, type, channel, body.
fn frame(frame_type: u8, channel: u16, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(8 + body.len()).expect("small frames");
    let mut bytes = size.to_be_bytes().to_vec();
    bytes.extend([2, frame_type]);
    bytes.extend(channel.to_be_bytes());
    bytes.extend(body);
    bytes
}

/// A described list8: `00 53 <descriptor> c0 <size> <count> <fields>`.
fn performative(descriptor: u8, count: u8, fields: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x53, descriptor, 0xc0];
    bytes.push(u8::try_from(fields.len() + 1).expect("short list"));
    bytes.push(count);
    bytes.extend(fields);
    bytes
}

fn str8(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xa1, u8::try_from(text.len()).expect("short string")];
    bytes.extend(text.as_bytes());
    bytes
}

/// SASL ANONYMOUS, then the AMQP header and an `open` (max-frame-size 64 KiB).
fn handshake() -> Vec<u8> {
    let mut bytes = SASL_HEADER.to_vec();
    let mut init = vec![0xa3, 9];
    init.extend(b"ANONYMOUS");
    init.extend([0xa0, 0]);
    bytes.extend(frame(1, 0, &performative(0x41, 2, &init)));
    bytes.extend(AMQP_HEADER);
    let mut open = str8("edge-test");
    open.extend(str8("localhost"));
    open.extend([0x70, 0x00, 0x01, 0x00, 0x00]);
    bytes.extend(frame(0, 0, &performative(0x10, 3, &open)));
    bytes
}

/// A connection that finished SASL and `open` (the server's answers are read and checked).
fn opened(server: &Server) -> TlsStream {
    let mut stream = server.amqp_tls().expect("TLS to the AMQP listener");
    send(&mut stream, &handshake()).expect("handshake sent");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !frames(&received)
        .iter()
        .any(|(frame_type, body)| *frame_type == 0 && body.get(2) == Some(&0x10))
    {
        let read = stream
            .read(&mut buffer)
            .expect("the server answers the handshake");
        assert!(read > 0, "the server closed during the handshake");
        received.extend_from_slice(&buffer[..read]);
    }
    stream
}

/// The frames in `bytes` as (type, body), skipping protocol headers; stops at a partial frame.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut found = Vec::new();
    loop {
        if bytes.starts_with(b"AMQP") && bytes.len() >= 8 {
            bytes = &bytes[8..];
            continue;
        }
        let Some(header) = bytes.get(..8) else {
            return found;
        };
        let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let offset = usize::from(header[4]) * 4;
        if size < offset || bytes.len() < size {
            return found;
        }
        found.push((header[5], bytes[offset..size].to_vec()));
        bytes = &bytes[size..];
    }
}

/// The condition and description of the `close` frame in `bytes`, if there is one.
fn close_error(bytes: &[u8]) -> Option<(String, String)> {
    let (_, body) = frames(bytes)
        .into_iter()
        .find(|(frame_type, body)| *frame_type == 0 && body.starts_with(&[0x00, 0x53, 0x18]))?;
    let error_at = body.windows(3).position(|w| w == [0x00, 0x53, 0x1d])? + 3;
    let list = &body[error_at..];
    // list8 (c0 size count) or list32 (d0 size4 count4).
    let fields = match list.first()? {
        0xc0 => &list[3..],
        0xd0 => &list[9..],
        _ => return None,
    };
    let (condition, rest) = text(fields)?;
    let description = text(rest).map(|(description, _)| description);
    Some((condition, description.unwrap_or_default()))
}

/// A sym8/sym32/str8/str32 at the start of `bytes`, and what follows it.
fn text(bytes: &[u8]) -> Option<(String, &[u8])> {
    let (length, start) = match bytes.first()? {
        0xa3 | 0xa1 => (usize::from(*bytes.get(1)?), 2),
        0xb3 | 0xb1 => (
            u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?) as usize,
            5,
        ),
        _ => return None,
    };
    let value = bytes.get(start..start + length)?;
    Some((
        String::from_utf8_lossy(value).into_owned(),
        &bytes[start + length..],
    ))
}

/// Sends `bad` on an opened connection; returns the close's condition and description after
/// checking that the server ended the connection.
fn close_after(server: &Server, bad: &[u8]) -> (String, String) {
    let mut stream = opened(server);
    send(&mut stream, bad).expect("bad bytes sent");
    let (closed, received) = wait_for_close(&mut stream, Duration::from_secs(10));
    assert!(closed, "the server kept the connection open");
    close_error(&received).unwrap_or_else(|| panic!("no close with an error in {received:02x?}"))
}

fn assert_still_serving(server: &mut Server) {
    assert!(server.is_running(), "the server died:\n{}", server.log());
    drop(opened(server));
}

/// Setup: a frame header declaring 16 MiB, far above the 256 KiB the server accepts.
/// Expectation: `close` with `amqp:connection:framing-error` before any of the body is sent.
#[test]
fn an_oversized_frame_closes_with_a_framing_error() {
    let mut server = server();
    let mut bad = (16u32 << 20).to_be_bytes().to_vec();
    bad.extend([2, 0, 0, 0]);
    let (condition, description) = close_after(&server, &bad);
    assert_eq!(condition, "amqp:connection:framing-error");
    assert!(description.contains("exceeds"), "{description}");
    assert_still_serving(&mut server);
}

/// Setup: a frame whose data offset (1) points inside its own header.
/// Expectation: `close` with `amqp:connection:framing-error`.
#[test]
fn a_frame_with_a_bad_data_offset_closes_with_a_framing_error() {
    let mut server = server();
    let bad = [0, 0, 0, 8, 1, 0, 0, 0];
    let (condition, _) = close_after(&server, &bad);
    assert_eq!(condition, "amqp:connection:framing-error");
    assert_still_serving(&mut server);
}

/// Setup: a frame of an unknown type (7) after `open`.
/// Expectation: `close` with `amqp:connection:framing-error`.
#[test]
fn a_frame_of_an_unknown_type_closes_with_a_framing_error() {
    let mut server = server();
    let bad = frame(7, 0, &performative(0x11, 0, &[]));
    let (condition, _) = close_after(&server, &bad);
    assert_eq!(condition, "amqp:connection:framing-error");
    assert_still_serving(&mut server);
}

/// Setup: an AMQP frame whose descriptor (0x77) names no performative.
/// Expectation: `close` with `amqp:decode-error`.
#[test]
fn an_unknown_performative_closes_with_a_decode_error() {
    let mut server = server();
    let bad = frame(0, 0, &performative(0x77, 0, &[]));
    let (condition, _) = close_after(&server, &bad);
    assert_eq!(condition, "amqp:decode-error");
    assert_still_serving(&mut server);
}

/// Setup: a `begin` whose list claims more bytes than the frame holds.
/// Expectation: `close` with `amqp:decode-error`.
#[test]
fn a_malformed_performative_closes_with_a_decode_error() {
    let mut server = server();
    let bad = frame(0, 1, &[0x00, 0x53, 0x11, 0xc0, 0xf0, 0x04, 0x40]);
    let (condition, _) = close_after(&server, &bad);
    assert_eq!(condition, "amqp:decode-error");
    assert_still_serving(&mut server);
}

/// Setup: a `transfer` on a channel that has no session.
/// Expectation: `close` with `amqp:illegal-state` naming the channel.
#[test]
fn a_frame_on_a_channel_without_a_session_closes_with_illegal_state() {
    let mut server = server();
    let bad = frame(0, 9, &performative(0x14, 1, &[0x43]));
    let (condition, description) = close_after(&server, &bad);
    assert_eq!(condition, "amqp:illegal-state");
    assert!(description.contains('9'), "{description}");
    assert_still_serving(&mut server);
}

/// Setup: an HTTP request instead of an AMQP protocol header.
/// Expectation: the server answers with the header it speaks and closes; no frame follows.
#[test]
fn a_foreign_protocol_header_gets_ours_and_the_connection_ends() {
    let mut server = server();
    let mut stream = server.amqp_tls().expect("TLS to the AMQP listener");
    send(&mut stream, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("sent");
    let (closed, received) = wait_for_close(&mut stream, Duration::from_secs(10));
    assert!(closed, "the server kept the connection open");
    assert!(received.starts_with(b"AMQP"), "{received:02x?}");
    assert!(frames(&received).is_empty(), "{received:02x?}");
    assert_still_serving(&mut server);
}

/// Setup: connections that end without `close`, in every phase: after TLS, mid-frame, after
/// `open`.
/// Expectation: the server forgets them quietly and keeps serving.
#[test]
fn connections_that_end_without_close_leave_the_server_serving() {
    let mut server = server();
    drop(server.amqp_tls().expect("TLS to the AMQP listener"));
    let mut stream = server.amqp_tls().expect("TLS to the AMQP listener");
    let handshake = handshake();
    send(&mut stream, &handshake[..handshake.len() - 5]).expect("partial handshake sent");
    drop(stream);
    drop(opened(&server));
    assert_still_serving(&mut server);
}

/// The outcome code of the `sasl-outcome` in `bytes`, if there is one.
fn sasl_outcome(bytes: &[u8]) -> Option<u8> {
    let (_, body) = frames(bytes)
        .into_iter()
        .find(|(frame_type, body)| *frame_type == 1 && body.starts_with(&[0x00, 0x53, 0x44]))?;
    // 00 53 44 c0 <size> <count> 50 <code>
    match body.get(6..8)? {
        [0x50, code] => Some(*code),
        _ => None,
    }
}

fn plain_login(server: &Server, password: &str) -> (bool, Vec<u8>) {
    let mut stream = server.amqp_tls().expect("TLS to the AMQP listener");
    let mut init = vec![0xa3, 5];
    init.extend(b"PLAIN");
    let response = format!("\0service\0{password}");
    init.extend([0xa0, u8::try_from(response.len()).expect("short")]);
    init.extend(response.as_bytes());
    let mut bytes = SASL_HEADER.to_vec();
    bytes.extend(frame(1, 0, &performative(0x41, 2, &init)));
    send(&mut stream, &bytes).expect("sent");
    wait_for_close(&mut stream, Duration::from_secs(2))
}

/// Setup: SASL PLAIN with the `service` policy's name and a wrong key, then with its key.
/// Expectation: the wrong key gets outcome 1 (auth) and the connection ends; the right key
/// gets outcome 0 and the connection stays open for the AMQP layer.
#[test]
fn a_plain_login_is_checked_against_the_policy_keys() {
    let mut server = server();
    let (closed, received) = plain_login(&server, "bm90IHRoZSBrZXk=");
    assert!(closed, "the server kept a refused login open");
    assert_eq!(sasl_outcome(&received), Some(1), "{received:02x?}");

    let service = server.endpoints["policies"]["service"]
        .as_str()
        .expect("endpoints.json has the service policy");
    let key = service
        .split(';')
        .find_map(|part| part.strip_prefix("SharedAccessKey="))
        .expect("a key");
    let (closed, received) = plain_login(&server, key);
    assert!(!closed, "the server closed an accepted login");
    assert_eq!(sasl_outcome(&received), Some(0), "{received:02x?}");
    assert_still_serving(&mut server);
}
