//! MQTT 3.1.1, the packets a device and IoT Hub exchange.
//!
//! [`Decoder`] turns the bytes a device sends into [`Packet`]s; the encoders write the packets a
//! server sends ([`ConnAck`], [`PubAck`], [`SubAck`], [`UnsubAck`], [`PingResp`] and
//! [`OutgoingPublish`]) into a caller's buffer, any [`bytes::BufMut`] (`Vec<u8>` or
//! `BytesMut`), so a session reuses one buffer and allocates nothing per packet.
//!
//! The decoder is for the server side only: packets that only a server sends (CONNACK, SUBACK,
//! UNSUBACK, PINGRESP) and the QoS 2 handshake (PUBREC, PUBREL, PUBCOMP) are protocol errors
//! when a device sends them, because IoT Hub supports QoS 0 and 1 only.
//!
//! # PUBLISH has its own decoder; everything else goes through mqttbytes
//!
//! `mqttbytes` 0.6 decodes a PUBLISH into a `String` topic: one heap allocation, one copy and a
//! UTF-8 check per message, on the path every D2C message takes. [`Publish`] instead keeps the
//! frame as one [`bytes::Bytes`] slice of the receive buffer and reads the topic (validated
//! once) and the payload out of it, so decoding a PUBLISH allocates nothing and costs one
//! reference-count increment. On the shared 2-core dev machine, for a QoS 1 PUBLISH with the
//! SDK's telemetry topic (three properties) and a 256 B payload, `mqttbytes::v4::read` took a
//! median of 78-82 ns and one allocation, [`Decoder::decode`] 45 ns and none, when the machine
//! was lightly loaded; the gap held in every loaded run too (126 vs 70 ns)
//! (`cargo bench -p dataplane-wire --bench publish_decode`; the allocation counts are asserted
//! in `tests/allocation.rs`). CONNECT, SUBSCRIBE and UNSUBSCRIBE arrive a few times
//! per connection, so they keep mqttbytes, behind checks it leaves out (protocol level,
//! reserved flags, empty filter lists, packet id 0).
//!
//! Errors are terminal: after [`Decoder::decode`] returns an [`Error`], the connection is done
//! and [`Error::reaction`] says whether the device gets a CONNACK first.

pub(crate) mod codec;
mod error;
mod packet;

pub use codec::{Decoded, Decoder, PACKET_BYTES_MAX_DEFAULT, REMAINING_BYTES_LIMIT};
pub use error::{Error, Reaction};
pub use packet::connack::{ConnAck, ConnectReturnCode};
pub use packet::connect::{Connect, Will};
pub use packet::ping::PingResp;
pub use packet::puback::PubAck;
pub use packet::publish::{Delivery, OutgoingPublish, Publish};
pub use packet::suback::{SubAck, SubscribeReturnCode};
pub use packet::subscribe::{Subscribe, SubscribeFilter};
pub use packet::unsuback::UnsubAck;
pub use packet::unsubscribe::Unsubscribe;

use std::fmt;
use std::num::NonZeroU16;

/// The control packet types of MQTT 3.1.1, the high nibble of a packet's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect.
    Connect = 1,
    /// Connect acknowledgement.
    ConnAck = 2,
    /// Publish message.
    Publish = 3,
    /// QoS 1 publish acknowledgement.
    PubAck = 4,
    /// QoS 2 publish received.
    PubRec = 5,
    /// QoS 2 publish release.
    PubRel = 6,
    /// QoS 2 publish complete.
    PubComp = 7,
    /// Subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgement.
    SubAck = 9,
    /// Unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgement.
    UnsubAck = 11,
    /// Keep-alive request.
    PingReq = 12,
    /// Keep-alive response.
    PingResp = 13,
    /// Clean disconnect.
    Disconnect = 14,
}

impl PacketType {
    /// The packet type for a fixed header's high nibble; `None` for the reserved values 0 and 15.
    pub const fn from_nibble(nibble: u8) -> Option<Self> {
        Some(match nibble {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            _ => return None,
        })
    }

    /// The name the specification uses, for log lines.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Quality of service. IoT Hub delivers at QoS 0 and 1 only; QoS 2 appears in requests
/// (SUBSCRIBE, a will) and is answered with at most QoS 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum QoS {
    /// Fire and forget.
    AtMostOnce = 0,
    /// Acknowledged with PUBACK; may be delivered twice.
    AtLeastOnce = 1,
    /// The four-packet handshake IoT Hub does not support.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit field; `None` for 3, which the specification forbids.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// A packet identifier. MQTT 3.1.1 forbids 0 wherever a packet carries one (§2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// `None` for 0.
    pub const fn new(value: u16) -> Option<Self> {
        match NonZeroU16::new(value) {
            Some(value) => Some(Self(value)),
            None => None,
        }
    }

    /// The identifier as it goes on the wire.
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A packet a device sends to the server, as [`Decoder::decode`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// The first packet of a connection; boxed because it is rare and three times the size
    /// of a PUBLISH, which every decode would otherwise move around.
    Connect(Box<Connect>),
    /// An application message at QoS 0 or 1.
    Publish(Publish),
    /// The device acknowledges a QoS 1 message the server sent.
    PubAck(PacketId),
    /// Subscription request.
    Subscribe(Subscribe),
    /// Unsubscription request.
    Unsubscribe(Unsubscribe),
    /// Keep-alive; answer with [`PingResp`].
    PingReq,
    /// The device closes the connection cleanly; its will is discarded.
    Disconnect,
}

impl Packet {
    /// The packet's type, for log lines and metrics.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::PingReq => PacketType::PingReq,
            Self::Disconnect => PacketType::Disconnect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nibble_maps_to_its_packet_type_and_back() {
        for nibble in 0..16u8 {
            match PacketType::from_nibble(nibble) {
                Some(packet_type) => assert_eq!(packet_type as u8, nibble),
                None => assert!(nibble == 0 || nibble == 15, "{nibble} should be a type"),
            }
        }
    }

    #[test]
    fn packet_id_zero_does_not_exist() {
        assert_eq!(PacketId::new(0), None);
        assert_eq!(PacketId::new(7).map(PacketId::get), Some(7));
    }
}
