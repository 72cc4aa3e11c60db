//! One packet type per file: the decoder for what a device sends, the encoder for what the
//! server sends.

pub(crate) mod connack;
pub(crate) mod connect;
pub(crate) mod ping;
pub(crate) mod puback;
pub(crate) mod publish;
pub(crate) mod suback;
pub(crate) mod subscribe;
pub(crate) mod unsuback;
pub(crate) mod unsubscribe;

use super::codec::FixedHeader;
use super::{Error, PacketType, QoS};

/// The same fixed header, as mqttbytes' decoders take it.
pub(crate) fn to_mqttbytes(header: &FixedHeader) -> mqttbytes::FixedHeader {
    mqttbytes::FixedHeader::new(
        header.byte1,
        header.header_bytes - 1,
        header.remaining_bytes,
    )
}

pub(crate) const fn from_mqttbytes_qos(qos: mqttbytes::QoS) -> QoS {
    match qos {
        mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// Turns an mqttbytes failure into ours, keeping the reason a person can act on.
pub(crate) fn from_mqttbytes(packet_type: PacketType, error: mqttbytes::Error) -> Error {
    use mqttbytes::Error as E;
    let detail = match error {
        E::TopicNotUtf8 => "a string field is not UTF-8",
        E::BoundaryCrossed(_) | E::MalformedPacket | E::InsufficientBytes(_) => {
            "a field runs past the end of the packet"
        }
        E::InvalidQoS(_) => "a QoS field is 3",
        E::IncorrectPacketFormat => "will flags are set without the will flag",
        E::PacketIdZero => "the packet identifier is 0",
        E::InvalidProtocol | E::InvalidProtocolLevel(_) => "the protocol name or level is wrong",
        _ => "the packet does not follow MQTT 3.1.1",
    };
    Error::Malformed {
        packet_type,
        detail,
    }
}

/// Reads a big-endian u16 at `at`, or says the packet is too short.
pub(crate) fn read_u16(body: &[u8], at: usize, packet_type: PacketType) -> Result<u16, Error> {
    match body.get(at..at + 2) {
        Some(&[high, low]) => Ok(u16::from_be_bytes([high, low])),
        _ => Err(Error::Malformed {
            packet_type,
            detail: "a field runs past the end of the packet",
        }),
    }
}
