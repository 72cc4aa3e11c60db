//! What can go wrong on an MQTT connection, and what the device sees when it does.

use super::{ConnectReturnCode, PacketType};

/// An MQTT protocol failure.
///
/// Every decoding variant is terminal for the connection: the server answers as
/// [`Error::reaction`] says and closes it. The encoding variants ([`Error::TopicTooLong`],
/// [`Error::PacketTooLargeToEncode`]) concern one outgoing packet, which is not written; the
/// connection carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The fixed header announces a packet longer than the decoder's bound. Detected from the
    /// first 2-5 bytes, before the rest is buffered. Terminal; the device is disconnected.
    #[error("a packet of {frame_bytes} bytes exceeds the limit of {max} bytes")]
    PacketTooLarge {
        /// The whole packet as announced: fixed header plus remaining length.
        frame_bytes: usize,
        /// The decoder's bound.
        max: usize,
    },
    /// The packet type nibble is 0 or 15, which MQTT 3.1.1 reserves. Terminal; disconnect.
    #[error("packet type {nibble} is reserved")]
    ReservedPacketType {
        /// The high nibble of the first byte.
        nibble: u8,
    },
    /// A valid packet that a device must not send to IoT Hub: one only servers send, or part
    /// of the QoS 2 handshake. Terminal; disconnect.
    #[error("a device may not send {packet_type} to this server")]
    UnexpectedPacket {
        /// What arrived.
        packet_type: PacketType,
    },
    /// The packet breaks the MQTT 3.1.1 encoding rules. Terminal; disconnect.
    #[error("malformed {packet_type}: {detail}")]
    Malformed {
        /// The packet it was.
        packet_type: PacketType,
        /// Which rule it breaks.
        detail: &'static str,
    },
    /// CONNECT asks for a protocol level other than 4 (MQTT 3.1.1), e.g. 3 for MQTT 3.1 or 5
    /// for MQTT 5. Terminal; the device gets CONNACK 1 (unacceptable protocol version).
    #[error("protocol level {level} is not supported; this server speaks MQTT 3.1.1 (level 4)")]
    UnsupportedProtocolLevel {
        /// The level the device asked for.
        level: u8,
    },
    /// CONNECT names a protocol other than "MQTT" (or "MQIsdp", MQTT 3.1). Terminal; the
    /// device is disconnected without a CONNACK, as §3.1.2.1 allows.
    #[error("the CONNECT protocol name is not \"MQTT\"")]
    UnknownProtocolName,
    /// A PUBLISH at QoS 2, which IoT Hub does not support. Terminal; disconnect.
    #[error("QoS 2 is not supported; publish at QoS 0 or 1")]
    QoS2NotSupported,
    /// An outgoing topic is longer than the 65,535 bytes an MQTT string holds. The packet is
    /// not written; the device sees nothing.
    #[error("a topic of {bytes} bytes is longer than the 65535 bytes MQTT allows")]
    TopicTooLong {
        /// The topic's length.
        bytes: usize,
    },
    /// An outgoing packet would be longer than MQTT's remaining-length field can express. The
    /// packet is not written; the device sees nothing.
    #[error("a packet with {remaining_bytes} remaining bytes cannot be encoded")]
    PacketTooLargeToEncode {
        /// The packet's remaining length.
        remaining_bytes: usize,
    },
}

/// What the server does about an error, as the device sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Send CONNACK with this refusal code, then close the connection.
    ConnAck(ConnectReturnCode),
    /// Close the connection at once. MQTT 3.1.1 has no packet that tells a device why.
    Disconnect,
    /// Nothing reaches the device: the outgoing packet is dropped and the failure goes back
    /// to whoever asked to send it.
    NotSent,
}

impl Error {
    /// What the device sees.
    pub const fn reaction(&self) -> Reaction {
        match self {
            Self::UnsupportedProtocolLevel { .. } => {
                Reaction::ConnAck(ConnectReturnCode::UnacceptableProtocolVersion)
            }
            Self::PacketTooLarge { .. }
            | Self::ReservedPacketType { .. }
            | Self::UnexpectedPacket { .. }
            | Self::Malformed { .. }
            | Self::UnknownProtocolName
            | Self::QoS2NotSupported => Reaction::Disconnect,
            Self::TopicTooLong { .. } | Self::PacketTooLargeToEncode { .. } => Reaction::NotSent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of a variant's row in the table below. The match has no wildcard, so a new
    /// variant does not compile until it has a row.
    fn row(error: &Error) -> usize {
        match error {
            Error::PacketTooLarge { .. } => 0,
            Error::ReservedPacketType { .. } => 1,
            Error::UnexpectedPacket { .. } => 2,
            Error::Malformed { .. } => 3,
            Error::UnsupportedProtocolLevel { .. } => 4,
            Error::UnknownProtocolName => 5,
            Error::QoS2NotSupported => 6,
            Error::TopicTooLong { .. } => 7,
            Error::PacketTooLargeToEncode { .. } => 8,
        }
    }

    /// Every variant, with the reaction a device must see. A connect-time refusal that
    /// MQTT 3.1.1 gives a code for gets a CONNACK; anything else after CONNECT is a disconnect,
    /// and encoding failures never reach the device.
    #[test]
    fn every_variant_is_mapped_to_what_the_device_sees() {
        let table = [
            (
                Error::PacketTooLarge {
                    frame_bytes: 2,
                    max: 1,
                },
                Reaction::Disconnect,
            ),
            (
                Error::ReservedPacketType { nibble: 0 },
                Reaction::Disconnect,
            ),
            (
                Error::UnexpectedPacket {
                    packet_type: PacketType::PubRel,
                },
                Reaction::Disconnect,
            ),
            (
                Error::Malformed {
                    packet_type: PacketType::Publish,
                    detail: "x",
                },
                Reaction::Disconnect,
            ),
            (
                Error::UnsupportedProtocolLevel { level: 5 },
                Reaction::ConnAck(ConnectReturnCode::UnacceptableProtocolVersion),
            ),
            (Error::UnknownProtocolName, Reaction::Disconnect),
            (Error::QoS2NotSupported, Reaction::Disconnect),
            (Error::TopicTooLong { bytes: 70_000 }, Reaction::NotSent),
            (
                Error::PacketTooLargeToEncode {
                    remaining_bytes: usize::MAX,
                },
                Reaction::NotSent,
            ),
        ];
        let mut seen = [false; 9];
        for (error, reaction) in &table {
            assert_eq!(error.reaction(), *reaction, "{error}");
            assert!(!error.to_string().is_empty());
            seen[row(error)] = true;
        }
        assert!(
            seen.iter().all(|&seen| seen),
            "a variant has no row: {seen:?}"
        );
    }
}
