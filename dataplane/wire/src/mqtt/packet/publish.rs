//! PUBLISH, both ways: D2C telemetry, twin and method traffic from the device; C2D, method
//! requests and twin traffic to it. The hot path, decoded without mqttbytes (see the module
//! docs of [`crate::mqtt`]).
//!
//! ```text
//! ┌─────────────────────────┬─────────────┬───────────────────────┬─────────────────┬─────────┐
//! │ 0011 │ DUP │ QoS │ RET  │ remaining   │ topic len (u16)       │ packet id (u16) │ payload │
//! │ 4 b  │ 1 b │ 2 b │ 1 b  │ length 1..4 │ topic (UTF-8, 1..)    │ QoS 1 only      │ 0..     │
//! └─────────────────────────┴─────────────┴───────────────────────┴─────────────────┴─────────┘
//! ```
//!
//! Refused: QoS 2 ([`Error::QoS2NotSupported`]), both QoS bits set, DUP on QoS 0, packet id 0,
//! an empty or non-UTF-8 topic. Wildcards are not refused in topic names: IoT Hub device ids
//! may contain `#` and `+`, and the IoT Hub topic grammar decides what a topic means.

use std::fmt;

use bytes::{Buf, BufMut, Bytes};

use super::read_u16;
use crate::mqtt::codec::{
    FixedHeader, REMAINING_BYTES_LIMIT, put_fixed_header, remaining_length_bytes,
};
use crate::mqtt::{Error, PacketId, PacketType, QoS};

/// How a PUBLISH is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// QoS 0: no packet id, no acknowledgement, never DUP.
    AtMostOnce,
    /// QoS 1: acknowledged with PUBACK carrying `pkid`.
    AtLeastOnce {
        /// The id the PUBACK carries.
        pkid: PacketId,
        /// Set on a redelivery of a message that may have arrived before.
        dup: bool,
    },
}

impl Delivery {
    /// The QoS on the wire.
    pub const fn qos(self) -> QoS {
        match self {
            Self::AtMostOnce => QoS::AtMostOnce,
            Self::AtLeastOnce { .. } => QoS::AtLeastOnce,
        }
    }

    /// The packet id to acknowledge, for QoS 1.
    pub const fn pkid(self) -> Option<PacketId> {
        match self {
            Self::AtMostOnce => None,
            Self::AtLeastOnce { pkid, .. } => Some(pkid),
        }
    }

    const fn flags(self) -> u8 {
        match self {
            Self::AtMostOnce => 0,
            Self::AtLeastOnce { dup: false, .. } => 0b0010,
            Self::AtLeastOnce { dup: true, .. } => 0b1010,
        }
    }
}

/// A PUBLISH from a device. Topic and payload are slices of the received frame, which it
/// holds with one reference count: decoding and dropping cost one atomic increment and one
/// decrement, and nothing is copied.
///
/// # Invariants
///
/// `body[..topic_bytes]` is the topic: non-empty, valid UTF-8, at most 65,535 bytes.
/// `body[payload_at..]` is the payload, with `payload_at` being `topic_bytes` plus 2 for the
/// packet id at QoS 1. The QoS is 0 or 1. [`Publish::encode`] writes back exactly the bytes
/// it was decoded from.
#[derive(Clone, PartialEq, Eq)]
pub struct Publish {
    /// The frame from the first topic byte to the end of the payload.
    body: Bytes,
    topic_bytes: u16,
    payload_at: u32,
    delivery: Delivery,
    retain: bool,
}

impl Publish {
    /// The topic name.
    pub fn topic(&self) -> &str {
        let topic = &self.body[..usize::from(self.topic_bytes)];
        // SAFETY: `decode` checked that these bytes are UTF-8, and `Bytes` never changes its
        // contents.
        unsafe { std::str::from_utf8_unchecked(topic) }
    }

    /// The message body.
    pub fn payload(&self) -> &[u8] {
        &self.body[self.payload_at as usize..]
    }

    /// The message body as a slice of the receive buffer, to keep past this packet. Costs a
    /// reference-count increment; [`Publish::into_payload`] does not.
    pub fn payload_bytes(&self) -> Bytes {
        self.body.slice(self.payload_at as usize..)
    }

    /// The message body as a slice of the receive buffer, without copying or counting.
    pub fn into_payload(mut self) -> Bytes {
        self.body.advance(self.payload_at as usize);
        self.body
    }

    /// QoS, and the packet id to acknowledge.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The retain flag. IoT Hub keeps no retained messages; it forwards the flag as the
    /// application property `mqtt-retain`.
    pub fn retain(&self) -> bool {
        self.retain
    }

    /// Appends the packet to `out` as it was received.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<usize, Error> {
        OutgoingPublish {
            topic: self.topic(),
            payload: self.payload(),
            delivery: self.delivery,
            retain: self.retain,
        }
        .encode(out)
    }
}

impl fmt::Debug for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("topic", &self.topic())
            .field("payload_bytes", &self.payload().len())
            .field("delivery", &self.delivery)
            .field("retain", &self.retain)
            .finish_non_exhaustive()
    }
}

/// A PUBLISH the server sends: C2D, module input, method request, twin response or desired
/// patch. The topic comes from the `iothub::write_*` builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingPublish<'a> {
    /// The topic name; not empty.
    pub topic: &'a str,
    /// The message body.
    pub payload: &'a [u8],
    /// QoS 0 or 1; C2D goes at QoS 1 so the device acknowledges it.
    pub delivery: Delivery,
    /// Always false from IoT Hub, which keeps no retained messages.
    pub retain: bool,
}

impl OutgoingPublish<'_> {
    /// Appends the packet to `out` and returns its length.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<usize, Error> {
        debug_assert!(!self.topic.is_empty(), "MQTT topics are never empty");
        let topic_bytes = self.topic.len();
        let topic_len =
            u16::try_from(topic_bytes).map_err(|_| Error::TopicTooLong { bytes: topic_bytes })?;
        let pkid_bytes = match self.delivery {
            Delivery::AtMostOnce => 0,
            Delivery::AtLeastOnce { .. } => 2,
        };
        let remaining_bytes = 2 + topic_bytes + pkid_bytes + self.payload.len();
        if remaining_bytes > REMAINING_BYTES_LIMIT {
            return Err(Error::PacketTooLargeToEncode { remaining_bytes });
        }
        let byte1 = 0x30 | self.delivery.flags() | u8::from(self.retain);
        put_fixed_header(out, byte1, remaining_bytes);
        out.put_u16(topic_len);
        out.put_slice(self.topic.as_bytes());
        if let Some(pkid) = self.delivery.pkid() {
            out.put_u16(pkid.get());
        }
        out.put_slice(self.payload);
        Ok(1 + remaining_length_bytes(remaining_bytes) + remaining_bytes)
    }
}

/// Decodes a PUBLISH frame (fixed header included) without copying or allocating.
pub(crate) fn decode(header: &FixedHeader, mut frame: Bytes) -> Result<Publish, Error> {
    let malformed = |detail| Error::Malformed {
        packet_type: PacketType::Publish,
        detail,
    };
    let dup = header.byte1 & 0b1000 != 0;
    let retain = header.byte1 & 0b0001 != 0;
    let qos =
        QoS::from_bits((header.byte1 >> 1) & 0b11).ok_or(malformed("both QoS bits are set"))?;
    match qos {
        QoS::AtMostOnce if dup => return Err(malformed("DUP is set on a QoS 0 PUBLISH")),
        QoS::ExactlyOnce => return Err(Error::QoS2NotSupported),
        QoS::AtMostOnce | QoS::AtLeastOnce => {}
    }
    let body = &frame[header.header_bytes..];
    let topic_bytes = usize::from(read_u16(body, 0, PacketType::Publish)?);
    let topic_end = 2 + topic_bytes;
    let topic = body
        .get(2..topic_end)
        .ok_or(malformed("the topic runs past the end of the packet"))?;
    if topic.is_empty() {
        return Err(malformed("the topic is empty"));
    }
    if std::str::from_utf8(topic).is_err() {
        return Err(malformed("the topic is not UTF-8"));
    }
    let delivery = if qos == QoS::AtLeastOnce {
        let pkid = read_u16(body, topic_end, PacketType::Publish)?;
        let pkid = PacketId::new(pkid).ok_or(malformed("the packet identifier is 0"))?;
        Delivery::AtLeastOnce { pkid, dup }
    } else {
        Delivery::AtMostOnce
    };
    let payload_at = if delivery == Delivery::AtMostOnce {
        topic_bytes
    } else {
        topic_bytes + 2
    };
    frame.advance(header.header_bytes + 2);
    Ok(Publish {
        body: frame,
        topic_bytes: topic_bytes as u16,
        payload_at: payload_at as u32,
        delivery,
        retain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{Decoded, Decoder, Packet};
    use bytes::BytesMut;

    /// A D2C topic as the device SDK publishes it.
    const OBSERVED_TOPIC: &str = "devices/dev1/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.uid=uid&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00%2B00%3A00&a%20b=x%2Fy%26z&b=2";

    fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
        Decoder::default().decode(&mut BytesMut::from(bytes))
    }

    fn decode_publish(bytes: &[u8]) -> Publish {
        match decode(bytes) {
            Ok(Decoded::Packet(Packet::Publish(publish))) => publish,
            other => panic!("not a PUBLISH: {other:?}"),
        }
    }

    /// The SDK's telemetry PUBLISH: QoS 1, no retain, no DUP, packet id 1.
    fn sdk_publish(payload: &[u8]) -> Vec<u8> {
        let remaining = 2 + OBSERVED_TOPIC.len() + 2 + payload.len();
        let mut bytes = vec![
            0x32,
            (remaining % 128) as u8 | 0x80,
            (remaining / 128) as u8,
        ];
        bytes.extend_from_slice(&(OBSERVED_TOPIC.len() as u16).to_be_bytes());
        bytes.extend_from_slice(OBSERVED_TOPIC.as_bytes());
        bytes.extend_from_slice(&[0x00, 0x01]);
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn the_sdk_telemetry_publish_decodes_and_re_encodes_to_the_same_bytes() {
        let bytes = sdk_publish(b"{\"t\":21}");
        let publish = decode_publish(&bytes);
        assert_eq!(publish.topic(), OBSERVED_TOPIC);
        assert_eq!(publish.payload(), b"{\"t\":21}");
        assert_eq!(
            publish.delivery(),
            Delivery::AtLeastOnce {
                pkid: PacketId::new(1).unwrap(),
                dup: false
            }
        );
        assert!(!publish.retain());
        let mut out = Vec::new();
        assert_eq!(publish.encode(&mut out), Ok(bytes.len()));
        assert_eq!(out, bytes);
    }

    #[test]
    fn a_qos0_publish_with_retain_and_no_payload_round_trips() {
        let bytes = [0x31, 0x05, 0x00, 0x03, b'a', b'/', b'b'];
        let publish = decode_publish(&bytes);
        assert_eq!(publish.topic(), "a/b");
        assert!(publish.payload().is_empty());
        assert_eq!(publish.delivery(), Delivery::AtMostOnce);
        assert!(publish.retain());
        let mut out = BytesMut::new();
        publish.encode(&mut out).unwrap();
        assert_eq!(out.as_ref(), bytes);
    }

    #[test]
    fn payload_shares_the_receive_buffer() {
        let bytes = sdk_publish(&[7; 256]);
        let mut buffer = BytesMut::from(&bytes[..]);
        let start = buffer.as_ptr() as usize;
        let Ok(Decoded::Packet(Packet::Publish(publish))) = Decoder::default().decode(&mut buffer)
        else {
            panic!("should decode")
        };
        assert_eq!(
            publish.payload().as_ptr() as usize,
            start + bytes.len() - 256,
            "the payload was copied"
        );
        assert_eq!(publish.topic().as_ptr() as usize, start + 5);
        let payload = publish.into_payload();
        assert_eq!(payload.as_ptr() as usize, start + bytes.len() - 256);
        assert_eq!(payload.len(), 256);
    }

    #[test]
    fn qos2_is_detected_and_answered_with_a_disconnect() {
        let bytes = [0x34, 0x05, 0x00, 0x01, b'a', 0x00, 0x01];
        assert_eq!(decode(&bytes), Err(Error::QoS2NotSupported));
        assert_eq!(
            Error::QoS2NotSupported.reaction(),
            crate::mqtt::Reaction::Disconnect
        );
    }

    #[test]
    fn bad_publishes_are_malformed_with_a_reason() {
        for (bytes, detail) in [
            (
                &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01][..],
                "both QoS bits are set",
            ),
            (
                &[0x38, 0x03, 0x00, 0x01, b'a'],
                "DUP is set on a QoS 0 PUBLISH",
            ),
            (
                &[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00],
                "the packet identifier is 0",
            ),
            (&[0x30, 0x03, 0x00, 0x01, 0xFF], "the topic is not UTF-8"),
            (&[0x30, 0x02, 0x00, 0x00], "the topic is empty"),
            (
                &[0x30, 0x03, 0x00, 0x05, b'a'],
                "the topic runs past the end of the packet",
            ),
            (
                &[0x30, 0x01, 0x00],
                "a field runs past the end of the packet",
            ),
            (
                &[0x32, 0x04, 0x00, 0x01, b'a', 0x00],
                "a field runs past the end of the packet",
            ),
        ] {
            assert_eq!(
                decode(bytes),
                Err(Error::Malformed {
                    packet_type: PacketType::Publish,
                    detail
                }),
                "{bytes:x?}"
            );
        }
    }

    #[test]
    fn outgoing_publish_encodes_c2d_at_qos1_with_dup_on_redelivery() {
        let mut out = Vec::new();
        let written = OutgoingPublish {
            topic: "t",
            payload: b"hi",
            delivery: Delivery::AtLeastOnce {
                pkid: PacketId::new(0x0102).unwrap(),
                dup: true,
            },
            retain: false,
        }
        .encode(&mut out)
        .unwrap();
        assert_eq!(out, [0x3A, 0x07, 0x00, 0x01, b't', 0x01, 0x02, b'h', b'i']);
        assert_eq!(written, out.len());
    }

    #[test]
    fn an_outgoing_topic_over_65535_bytes_is_not_sent() {
        let topic = "a".repeat(65_536);
        let mut out = Vec::new();
        let error = OutgoingPublish {
            topic: &topic,
            payload: b"",
            delivery: Delivery::AtMostOnce,
            retain: false,
        }
        .encode(&mut out)
        .unwrap_err();
        assert_eq!(error, Error::TopicTooLong { bytes: 65_536 });
        assert_eq!(error.reaction(), crate::mqtt::Reaction::NotSent);
        assert!(out.is_empty(), "nothing is written on error");
    }
}
