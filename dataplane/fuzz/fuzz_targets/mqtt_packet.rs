//! Arbitrary bytes as a device's stream into the MQTT decoder.
//!
//! Invariants, beyond not panicking:
//! - every decoded packet fits the decoder's bound, and an incomplete packet never asks the
//!   caller to buffer past it, nor loses bytes;
//! - every decoded PUBLISH re-encodes to exactly the bytes it was decoded from;
//! - how reads cut the stream changes nothing: decoding it in pieces yields the same packets
//!   and the same error as decoding it whole;
//! - every error has a reason and a reaction.

#![no_main]

use dataplane_wire::bytes::BytesMut;
use dataplane_wire::mqtt::{Decoded, Decoder, Error, Packet};
use libfuzzer_sys::fuzz_target;

/// Small enough that the fuzzer reaches it, large enough for every fixed-size packet.
const PACKET_BYTES_MAX: usize = 1024;

fuzz_target!(|input: &[u8]| {
    let Some((&piece_bytes, stream)) = input.split_first() else {
        return;
    };
    let decoder = Decoder::new(PACKET_BYTES_MAX);
    let whole = decode_in_pieces(decoder, stream, stream.len().max(1));
    let pieces = decode_in_pieces(decoder, stream, usize::from(piece_bytes % 16) + 1);
    assert_eq!(
        whole, pieces,
        "the read boundaries changed what was decoded"
    );
});

/// Feeds `stream` to the decoder `piece_bytes` at a time, checking every answer.
fn decode_in_pieces(
    decoder: Decoder,
    stream: &[u8],
    piece_bytes: usize,
) -> (Vec<Packet>, Option<Error>) {
    let mut buffer = BytesMut::new();
    let mut packets = Vec::new();
    let mut consumed = 0;
    for piece in stream.chunks(piece_bytes) {
        buffer.extend_from_slice(piece);
        loop {
            let buffered = buffer.len();
            match decoder.decode(&mut buffer) {
                Ok(Decoded::Packet(packet)) => {
                    let frame = &stream[consumed..consumed + buffered - buffer.len()];
                    consumed += frame.len();
                    assert!(frame.len() <= PACKET_BYTES_MAX);
                    if let Packet::Publish(publish) = &packet {
                        let mut again = Vec::new();
                        publish
                            .encode(&mut again)
                            .expect("a decoded PUBLISH encodes");
                        assert_eq!(again, frame, "the PUBLISH did not re-encode to its bytes");
                    }
                    packets.push(packet);
                }
                Ok(Decoded::Incomplete { bytes_needed }) => {
                    assert!(bytes_needed >= 1);
                    assert!(buffer.len() + bytes_needed <= PACKET_BYTES_MAX);
                    assert_eq!(buffer.len(), buffered, "an incomplete packet lost bytes");
                    break;
                }
                Err(error) => {
                    assert!(!error.to_string().is_empty());
                    let _ = error.reaction();
                    return (packets, Some(error));
                }
            }
        }
    }
    (packets, None)
}
