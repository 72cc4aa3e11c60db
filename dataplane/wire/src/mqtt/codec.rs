//! Framing: finding packet boundaries in a byte stream, bounded before anything is buffered.
//!
//! Every MQTT 3.1.1 packet starts with a fixed header of 2 to 5 bytes:
//!
//! ```text
//!   bit     7    6    5    4    3    2    1    0
//!         ┌────────────────────┬────────────────────┐
//! byte 1  │ packet type 1..=14 │ flags, per type    │   PUBLISH: DUP │ QoS(2) │ RETAIN
//!         ├────┬───────────────┴────────────────────┤
//! byte 2  │ C  │ remaining length, bits 0..=6       │
//!         ├────┼────────────────────────────────────┤
//! byte 3  │ C  │ bits 7..=13    (if byte 2 had C=1)  │
//!         ├────┼────────────────────────────────────┤
//! byte 4  │ C  │ bits 14..=20   (if byte 3 had C=1)  │
//!         ├────┼────────────────────────────────────┤
//! byte 5  │ 0  │ bits 21..=27   (if byte 4 had C=1)  │
//!         └────┴────────────────────────────────────┘
//!           remaining length = variable header + payload, at most 268,435,455 bytes
//! ```
//!
//! C is the continuation bit. The remaining length must be in its shortest form (a last byte
//! of 0 after a continuation is refused), which makes every accepted frame re-encode to the
//! same bytes; every client in the wild writes the shortest form.
//!
//! The decoder reads the fixed header, checks the packet type, the flags and the announced
//! size against its bound, and only then reports how many bytes the rest of the packet needs:
//! a peer that announces 200 MB is refused after 5 bytes, and a caller that reserves what
//! [`Decoded::Incomplete`] asks for never reserves more than the bound.

use bytes::{BufMut, BytesMut};

use super::packet::{connect, puback, publish, subscribe, unsubscribe};
use super::{Error, Packet, PacketType};

/// The largest remaining length MQTT can express (four 7-bit groups).
pub const REMAINING_BYTES_LIMIT: usize = 268_435_455;

/// The largest fixed header: one type byte and four length bytes.
const FIXED_HEADER_BYTES_MAX: usize = 5;

/// The largest D2C message body IoT Hub accepts (D2: 256 KiB).
const MESSAGE_BODY_BYTES_MAX: usize = 262_144;

/// The default bound on one packet, fixed header included: a QoS 1 PUBLISH with a 256 KiB
/// body (IoT Hub's D2C limit) under the longest topic an MQTT string holds (65,535 bytes,
/// which also bounds the property bag). Every message IoT Hub would accept fits; anything
/// longer is refused from its fixed header.
pub const PACKET_BYTES_MAX_DEFAULT: usize =
    FIXED_HEADER_BYTES_MAX + 2 + u16::MAX as usize + 2 + MESSAGE_BODY_BYTES_MAX;

const _: () = assert!(PACKET_BYTES_MAX_DEFAULT == 327_688);
const _: () = assert!(PACKET_BYTES_MAX_DEFAULT <= REMAINING_BYTES_LIMIT + FIXED_HEADER_BYTES_MAX);

/// The smallest bound [`Decoder::new`] accepts: every fixed-size packet must fit.
const PACKET_BYTES_MAX_MIN: usize = 64;

/// What one call to [`Decoder::decode`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole packet, removed from the front of the buffer.
    Packet(Packet),
    /// The buffer holds only the start of a packet. Nothing was removed. Read at least
    /// `bytes_needed` more bytes before calling again; once the fixed header is complete this
    /// is exactly what the packet still lacks, and it never takes the buffer past the bound.
    Incomplete {
        /// At least 1.
        bytes_needed: usize,
    },
}

/// Splits packets off the front of a receive buffer.
///
/// # Invariants
///
/// - A frame longer than `packet_bytes_max` is refused from its fixed header, before its body
///   is waited for, so no decoded packet and no [`Decoded::Incomplete`] request exceeds it.
/// - A decoded [`Packet::Publish`] shares the buffer's memory; decoding it allocates nothing.
///   Splitting a buffer that has never been shared allocates its reference count once.
/// - An `Err` is terminal: close the connection. A packet refused from its fixed header stays
///   in the buffer; one refused from its body may have been taken off it.
///
/// ```
/// use dataplane_wire::bytes::BytesMut;
/// use dataplane_wire::mqtt::{Decoded, Decoder, Packet};
///
/// let decoder = Decoder::default();
/// let mut buffer = BytesMut::from(&[0xC0, 0x00, 0xE0][..]); // PINGREQ, then half a DISCONNECT
/// assert_eq!(decoder.decode(&mut buffer), Ok(Decoded::Packet(Packet::PingReq)));
/// assert_eq!(decoder.decode(&mut buffer), Ok(Decoded::Incomplete { bytes_needed: 1 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    packet_bytes_max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(PACKET_BYTES_MAX_DEFAULT)
    }
}

impl Decoder {
    /// A decoder that refuses packets longer than `packet_bytes_max`, fixed header included.
    ///
    /// # Panics
    ///
    /// If the bound is below 64 bytes or above what MQTT can express; both are configuration
    /// bugs that validation should have caught.
    pub const fn new(packet_bytes_max: usize) -> Self {
        assert!(packet_bytes_max >= PACKET_BYTES_MAX_MIN);
        assert!(packet_bytes_max <= REMAINING_BYTES_LIMIT + FIXED_HEADER_BYTES_MAX);
        Self { packet_bytes_max }
    }

    /// The bound on one packet, fixed header included.
    pub const fn packet_bytes_max(&self) -> usize {
        self.packet_bytes_max
    }

    /// Takes the next whole packet off the front of `buffer`.
    pub fn decode(&self, buffer: &mut BytesMut) -> Result<Decoded, Error> {
        let Some(header) = FixedHeader::parse(buffer)? else {
            return Ok(Decoded::Incomplete { bytes_needed: 1 });
        };
        let frame_bytes = header.frame_bytes();
        if frame_bytes > self.packet_bytes_max {
            return Err(Error::PacketTooLarge {
                frame_bytes,
                max: self.packet_bytes_max,
            });
        }
        if buffer.len() < frame_bytes {
            return Ok(Decoded::Incomplete {
                bytes_needed: frame_bytes - buffer.len(),
            });
        }
        let frame = buffer.split_to(frame_bytes).freeze();
        debug_assert_eq!(frame.len(), frame_bytes);
        let packet = match header.packet_type {
            PacketType::Connect => Packet::Connect(Box::new(connect::decode(&header, frame)?)),
            PacketType::Publish => Packet::Publish(publish::decode(&header, frame)?),
            PacketType::PubAck => Packet::PubAck(puback::decode(&frame[header.header_bytes..])?),
            PacketType::Subscribe => Packet::Subscribe(subscribe::decode(&header, frame)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe::decode(&header, frame)?),
            PacketType::PingReq => Packet::PingReq,
            PacketType::Disconnect => Packet::Disconnect,
            PacketType::ConnAck
            | PacketType::PubRec
            | PacketType::PubRel
            | PacketType::PubComp
            | PacketType::SubAck
            | PacketType::UnsubAck
            | PacketType::PingResp => unreachable!("FixedHeader::parse refuses server packets"),
        };
        Ok(Decoded::Packet(packet))
    }
}

/// A parsed fixed header.
///
/// # Invariants
///
/// `packet_type` is one a device may send, its flags are the ones MQTT 3.1.1 fixes for it
/// (PUBLISH flags are checked by the PUBLISH decoder), `header_bytes` is 2..=5,
/// `remaining_bytes` was encoded in its shortest form, and it is right for the fixed-size
/// packets (PUBACK 2, PINGREQ and DISCONNECT 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub(crate) byte1: u8,
    pub(crate) packet_type: PacketType,
    /// The type byte plus the remaining-length bytes.
    pub(crate) header_bytes: usize,
    pub(crate) remaining_bytes: usize,
}

impl FixedHeader {
    /// `Ok(None)` while the header itself is incomplete.
    fn parse(buffer: &[u8]) -> Result<Option<Self>, Error> {
        let Some(&byte1) = buffer.first() else {
            return Ok(None);
        };
        let nibble = byte1 >> 4;
        let packet_type =
            PacketType::from_nibble(nibble).ok_or(Error::ReservedPacketType { nibble })?;
        let flags_required = match packet_type {
            PacketType::Publish => None,
            PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            PacketType::Connect
            | PacketType::PubAck
            | PacketType::PingReq
            | PacketType::Disconnect => Some(0),
            PacketType::ConnAck
            | PacketType::PubRec
            | PacketType::PubRel
            | PacketType::PubComp
            | PacketType::SubAck
            | PacketType::UnsubAck
            | PacketType::PingResp => return Err(Error::UnexpectedPacket { packet_type }),
        };
        if flags_required.is_some_and(|flags| byte1 & 0x0F != flags) {
            return Err(Error::Malformed {
                packet_type,
                detail: "the fixed header flags are not the ones MQTT 3.1.1 fixes for this type",
            });
        }
        let mut remaining_bytes = 0;
        for (index, &byte) in buffer[1..].iter().take(4).enumerate() {
            remaining_bytes |= usize::from(byte & 0x7F) << (7 * index);
            if byte & 0x80 == 0 {
                if index > 0 && byte == 0 {
                    return Err(Error::Malformed {
                        packet_type,
                        detail: "the remaining length is not in its shortest form",
                    });
                }
                let header = Self {
                    byte1,
                    packet_type,
                    header_bytes: index + 2,
                    remaining_bytes,
                };
                header.check_fixed_size()?;
                return Ok(Some(header));
            }
        }
        if buffer.len() >= FIXED_HEADER_BYTES_MAX {
            return Err(Error::Malformed {
                packet_type,
                detail: "the remaining length continues past four bytes",
            });
        }
        Ok(None)
    }

    pub(crate) const fn frame_bytes(&self) -> usize {
        self.header_bytes + self.remaining_bytes
    }

    /// Refuses a fixed-size packet with the wrong remaining length before its body arrives.
    fn check_fixed_size(&self) -> Result<(), Error> {
        let expected = match self.packet_type {
            PacketType::PingReq | PacketType::Disconnect => 0,
            PacketType::PubAck => 2,
            _ => return Ok(()),
        };
        if self.remaining_bytes == expected {
            Ok(())
        } else {
            Err(Error::Malformed {
                packet_type: self.packet_type,
                detail: "the remaining length is wrong for this fixed-size packet",
            })
        }
    }
}

/// The number of bytes `remaining_bytes` takes on the wire.
pub(crate) const fn remaining_length_bytes(remaining_bytes: usize) -> usize {
    match remaining_bytes {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a fixed header. The caller has checked `remaining_bytes` against
/// [`REMAINING_BYTES_LIMIT`].
pub(crate) fn put_fixed_header(out: &mut impl BufMut, byte1: u8, remaining_bytes: usize) {
    assert!(remaining_bytes <= REMAINING_BYTES_LIMIT);
    out.put_u8(byte1);
    let mut value = remaining_bytes;
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{Delivery, OutgoingPublish, PacketId};

    fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
        Decoder::default().decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn remaining_length_round_trips_at_every_width_boundary() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            REMAINING_BYTES_LIMIT,
        ] {
            let mut out = Vec::new();
            put_fixed_header(&mut out, 0x30, value);
            assert_eq!(out.len(), 1 + remaining_length_bytes(value), "{value}");
            let header = FixedHeader::parse(&out).unwrap().unwrap();
            assert_eq!(header.remaining_bytes, value);
            assert_eq!(header.header_bytes, out.len());
        }
    }

    #[test]
    fn spec_examples_of_remaining_length_decode() {
        // MQTT 3.1.1 §2.2.3, Table 2.4: the first and last value of each width.
        for (bytes, value) in [
            (&[0x00][..], 0),
            (&[0x7F], 127),
            (&[0x80, 0x01], 128),
            (&[0xFF, 0x7F], 16_383),
            (&[0x80, 0x80, 0x01], 16_384),
            (&[0xFF, 0xFF, 0x7F], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0xFF, 0xFF, 0xFF, 0x7F], 268_435_455),
        ] {
            let mut header = vec![0x30];
            header.extend_from_slice(bytes);
            assert_eq!(
                FixedHeader::parse(&header)
                    .unwrap()
                    .unwrap()
                    .remaining_bytes,
                value
            );
        }
    }

    #[test]
    fn a_fifth_length_byte_is_malformed_not_incomplete() {
        let error = decode(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap_err();
        assert!(matches!(error, Error::Malformed { detail, .. } if detail.contains("four")));
        // Four continuation bytes are not yet an error: the fifth byte decides.
        assert_eq!(
            decode(&[0x30, 0xFF, 0xFF, 0xFF]),
            Ok(Decoded::Incomplete { bytes_needed: 1 })
        );
    }

    #[test]
    fn a_remaining_length_with_a_trailing_zero_group_is_malformed() {
        // 0 written in two bytes; a decoder that accepted it could not re-encode the frame.
        let error = decode(&[0xC0, 0x80, 0x00]).unwrap_err();
        assert!(matches!(error, Error::Malformed { detail, .. } if detail.contains("shortest")));
    }

    #[test]
    fn truncated_packets_ask_for_exactly_the_missing_bytes() {
        let full = [0x40, 0x02, 0x00, 0x07]; // PUBACK 7
        assert_eq!(decode(&[]), Ok(Decoded::Incomplete { bytes_needed: 1 }));
        assert_eq!(
            decode(&full[..1]),
            Ok(Decoded::Incomplete { bytes_needed: 1 })
        );
        assert_eq!(
            decode(&full[..2]),
            Ok(Decoded::Incomplete { bytes_needed: 2 })
        );
        assert_eq!(
            decode(&full[..3]),
            Ok(Decoded::Incomplete { bytes_needed: 1 })
        );
        assert_eq!(
            decode(&full),
            Ok(Decoded::Packet(Packet::PubAck(PacketId::new(7).unwrap())))
        );
    }

    #[test]
    fn an_oversized_packet_is_refused_from_its_header_alone() {
        // A PUBLISH announcing 268 MB: refused after five bytes, nothing else buffered.
        let mut buffer = BytesMut::from(&[0x32, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        let error = Decoder::default().decode(&mut buffer).unwrap_err();
        assert_eq!(
            error,
            Error::PacketTooLarge {
                frame_bytes: 5 + REMAINING_BYTES_LIMIT,
                max: PACKET_BYTES_MAX_DEFAULT
            }
        );
        assert_eq!(buffer.len(), 5, "an error leaves the buffer alone");
        // One byte over a small bound is refused; exactly the bound is not.
        let decoder = Decoder::new(100);
        let mut at_bound = vec![0x30, 98, 0x00, 0x01, b'a'];
        at_bound.resize(100, 0);
        assert!(matches!(
            decoder.decode(&mut BytesMut::from(&at_bound[..])),
            Ok(Decoded::Packet(Packet::Publish(_)))
        ));
        assert!(matches!(
            decoder.decode(&mut BytesMut::from(&[0x30, 99][..])),
            Err(Error::PacketTooLarge {
                frame_bytes: 101,
                max: 100
            })
        ));
    }

    #[test]
    fn reserved_and_server_only_packet_types_are_refused_at_once() {
        assert_eq!(
            decode(&[0x00]),
            Err(Error::ReservedPacketType { nibble: 0 })
        );
        assert_eq!(
            decode(&[0xF0]),
            Err(Error::ReservedPacketType { nibble: 15 })
        );
        for (byte1, packet_type) in [
            (0x20, PacketType::ConnAck),
            (0x50, PacketType::PubRec),
            (0x62, PacketType::PubRel),
            (0x70, PacketType::PubComp),
            (0x90, PacketType::SubAck),
            (0xB0, PacketType::UnsubAck),
            (0xD0, PacketType::PingResp),
        ] {
            assert_eq!(
                decode(&[byte1]),
                Err(Error::UnexpectedPacket { packet_type })
            );
        }
    }

    #[test]
    fn wrong_fixed_flags_are_malformed() {
        for byte1 in [0x11, 0x41, 0x80, 0xA0, 0xC8, 0xE1] {
            assert!(
                matches!(decode(&[byte1, 0]), Err(Error::Malformed { .. })),
                "{byte1:#x}"
            );
        }
    }

    #[test]
    fn fixed_size_packets_with_the_wrong_length_are_malformed() {
        for bytes in [
            &[0xC0, 0x01, 0x00][..],
            &[0xE0, 0x01, 0x00],
            &[0x40, 0x03],
            &[0x40, 0x01],
        ] {
            assert!(
                matches!(decode(bytes), Err(Error::Malformed { .. })),
                "{bytes:x?}"
            );
        }
        assert_eq!(
            decode(&[0x40, 0x02, 0x00, 0x00]),
            Err(Error::Malformed {
                packet_type: PacketType::PubAck,
                detail: "the packet identifier is 0"
            })
        );
    }

    fn any_publish() -> impl proptest::strategy::Strategy<Value = (String, Vec<u8>, Delivery, bool)>
    {
        use proptest::prelude::*;
        let delivery = proptest::option::of((1u16.., any::<bool>())).prop_map(|id| match id {
            None => Delivery::AtMostOnce,
            Some((pkid, dup)) => Delivery::AtLeastOnce {
                pkid: PacketId::new(pkid).unwrap(),
                dup,
            },
        });
        (
            "\\PC{1,40}",
            proptest::collection::vec(any::<u8>(), 0..300),
            delivery,
            any::<bool>(),
        )
    }

    proptest::proptest! {
        /// Valid packets, split at arbitrary read boundaries, all come out equal to what was
        /// encoded.
        #[test]
        fn encoded_publishes_decode_to_themselves_across_any_split(
            publishes in proptest::collection::vec(any_publish(), 1..6),
            piece_bytes in 1usize..100,
        ) {
            let mut stream = Vec::new();
            for (topic, payload, delivery, retain) in &publishes {
                OutgoingPublish { topic, payload, delivery: *delivery, retain: *retain }
                    .encode(&mut stream)
                    .unwrap();
            }
            let (packets, error) =
                crate::fuzzing::decode_in_pieces(Decoder::default(), &stream, piece_bytes);
            proptest::prop_assert_eq!(error, None);
            proptest::prop_assert_eq!(packets.len(), publishes.len());
            for (packet, (topic, payload, delivery, retain)) in packets.iter().zip(&publishes) {
                let Packet::Publish(publish) = packet else {
                    return Err(proptest::test_runner::TestCaseError::fail("not a PUBLISH"));
                };
                proptest::prop_assert_eq!(publish.topic(), topic.as_str());
                proptest::prop_assert_eq!(publish.payload(), payload.as_slice());
                proptest::prop_assert_eq!(publish.delivery(), *delivery);
                proptest::prop_assert_eq!(publish.retain(), *retain);
            }
        }
    }

    #[test]
    fn several_packets_in_one_buffer_come_out_in_order() {
        let mut buffer = BytesMut::from(&[0xC0, 0x00, 0x40, 0x02, 0x01, 0x02, 0xE0, 0x00][..]);
        let decoder = Decoder::default();
        let mut packets = Vec::new();
        while let Decoded::Packet(packet) = decoder.decode(&mut buffer).unwrap() {
            packets.push(packet);
        }
        assert_eq!(
            packets,
            [
                Packet::PingReq,
                Packet::PubAck(PacketId::new(0x0102).unwrap()),
                Packet::Disconnect
            ]
        );
        assert!(buffer.is_empty());
    }
}
