//! A driver for fuzzing and property tests: arbitrary input into a server connection with a
//! permissive caller, checking invariants after every step.
//!
//! Invariants checked (each a panic when broken, which is what fuzzers look for):
//! - handling any input never panics;
//! - everything transmitted is protocol headers and complete, well-formed frames: doff 2,
//!   performatives with a `00 53` descriptor that decode, SASL frames that decode;
//! - no frame exceeds the largest frame the peer allows at that point;
//! - buffered input stays within the configured bound plus the chunk just fed;
//! - `Event::Closed` comes at most once and nothing follows it.

use std::time::{Duration, Instant};

use crate::connection::{Config, Connection, Event};
use crate::frame;
use crate::performative;
use crate::sasl::SaslOutcome;

/// What one [`drive`] run exercised, so tests can check that an input reaches the deep
/// handlers rather than failing early.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// `SaslInit` events.
    pub sasl_inits: usize,
    /// `ReceiverAttach` and `SenderAttach` events.
    pub attaches: usize,
    /// `ManagementRequest` events.
    pub requests: usize,
    /// `Message` events.
    pub messages: usize,
    /// Messages sent on links where we send.
    pub sent: usize,
    /// Frames transmitted.
    pub frames: usize,
}

/// Feeds `input` to a fresh server connection. The first byte picks the chunk size, so
/// the same bytes are also tried split at different points; time advances by one second per
/// chunk, so time-outs fire too.
pub fn drive(input: &[u8]) -> Coverage {
    let mut coverage = Coverage::default();
    let Some((&seed, input)) = input.split_first() else {
        return coverage;
    };
    let config = Config {
        max_frame_size: 4096,
        input_buffered_max: 8192,
        ..Config::default()
    };
    let bound = config
        .input_buffered_max
        .max(config.max_frame_size as usize);
    let mut now = Instant::now();
    let mut connection = Connection::new(config, now);
    let mut checker = OutputChecker::default();
    let chunk = usize::from(seed % 64) + 1;
    for piece in input.chunks(chunk) {
        connection.handle_bytes(piece, now);
        assert!(
            connection.buffered_input() <= bound + piece.len(),
            "input buffer unbounded"
        );
        react(&mut connection, &mut checker, &mut coverage);
        now += Duration::from_secs(1);
        connection.handle_timeout(now);
        react(&mut connection, &mut checker, &mut coverage);
    }
    connection.handle_eof();
    react(&mut connection, &mut checker, &mut coverage);
    coverage
}

/// Plays a caller that says yes to everything, and checks what comes out.
fn react(connection: &mut Connection, checker: &mut OutputChecker, coverage: &mut Coverage) {
    while let Some(event) = connection.poll_event() {
        assert!(!checker.closed, "an event after Closed: {event:?}");
        match event {
            Event::SaslInit(_) => {
                coverage.sasl_inits += 1;
                connection
                    .complete_sasl(SaslOutcome::Ok)
                    .expect("a decision is pending");
            }
            Event::ReceiverAttach(attach) => {
                coverage.attaches += 1;
                let _ = connection.accept_link(attach.link);
                let empty = [0x00, 0x53, 0x75, 0xa0, 0x00];
                coverage.sent +=
                    usize::from(connection.send_message(attach.link, &empty, true).is_ok());
            }
            Event::SenderAttach(attach) => {
                coverage.attaches += 1;
                let _ = connection.accept_link(attach.link);
            }
            Event::LinkCredit { link, .. } => {
                let big = vec![0x5a; 9000];
                coverage.sent += usize::from(connection.send_message(link, &big, false).is_ok());
            }
            Event::Message(message) => {
                coverage.messages += 1;
                let _ = connection.settle(
                    message.link,
                    message.delivery_id,
                    &performative::Outcome::Accepted,
                );
            }
            Event::ManagementRequest(request) => {
                coverage.requests += 1;
                let _ = connection.respond(request.request, 200, "OK", request.body.as_ref());
            }
            Event::Closed(_) => checker.closed = true,
            Event::Opened { .. } | Event::DeliveryUpdated { .. } | Event::LinkDetached { .. } => {}
        }
    }
    let mut out = Vec::new();
    connection.poll_transmit(Instant::now(), &mut out);
    coverage.frames += checker.check(&out, connection.peer_max_frame_size());
}

#[derive(Default)]
struct OutputChecker {
    closed: bool,
    partial: Vec<u8>,
}

impl OutputChecker {
    /// Checks transmitted bytes; returns the number of frames in them.
    fn check(&mut self, bytes: &[u8], max_frame_size: u32) -> usize {
        let mut frames = 0;
        self.partial.extend_from_slice(bytes);
        let mut rest = &self.partial[..];
        while !rest.is_empty() {
            if rest.starts_with(b"AMQP") {
                assert!(rest.len() >= 8, "a protocol header split across transmits");
                rest = &rest[8..];
                continue;
            }
            let (frame, size) =
                frame::split_frame(rest, max_frame_size.max(frame::MAX_FRAME_SIZE_MIN))
                    .expect("transmitted frames are well-formed and within the peer's limit")
                    .expect("transmitted frames are complete");
            assert_eq!(frame.header.doff, 2);
            if frame.header.frame_type == frame::TYPE_SASL {
                performative::decode_sasl(frame.body).expect("our SASL frames decode");
            } else if !frame.body.is_empty() {
                assert_eq!(&frame.body[..2], &[0x00, 0x53]);
                performative::decode(frame.body).expect("our performatives decode");
            }
            rest = &rest[size..];
            frames += 1;
        }
        self.partial.clear();
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driving_empty_and_tiny_inputs_is_fine() {
        let _ = drive(&[]);
        let _ = drive(&[0]);
        let _ = drive(b"\x07AMQP\x03\x01\x00\x00");
        let _ = drive(b"\x00garbage that is not amqp at all");
    }
}
