//! UNSUBSCRIBE, decoded by mqttbytes with the checks it leaves out.
//!
//! ```text
//! ┌──────┬─────────────┬─────────────────┬──────────────────────────────────────────┐
//! │ 0xA2 │ remaining   │ packet id (u16) │ { filter len (u16), filter (UTF-8) }       │
//! │      │ length 1..4 │ never 0         │ one or more times                          │
//! └──────┴─────────────┴─────────────────┴──────────────────────────────────────────┘
//! ```

use bytes::Bytes;

use super::{from_mqttbytes, to_mqttbytes};
use crate::mqtt::codec::FixedHeader;
use crate::mqtt::{Error, PacketId, PacketType};

/// A request to drop subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The id the UNSUBACK must carry.
    pub pkid: PacketId,
    /// The filters to drop, in order; never empty.
    pub filters: Vec<String>,
}

pub(crate) fn decode(header: &FixedHeader, frame: Bytes) -> Result<Unsubscribe, Error> {
    let packet = mqttbytes::v4::Unsubscribe::read(to_mqttbytes(header), frame)
        .map_err(|error| from_mqttbytes(PacketType::Unsubscribe, error))?;
    let pkid = PacketId::new(packet.pkid).ok_or(Error::Malformed {
        packet_type: PacketType::Unsubscribe,
        detail: "the packet identifier is 0",
    })?;
    if packet.topics.is_empty() {
        return Err(Error::Malformed {
            packet_type: PacketType::Unsubscribe,
            detail: "no topic filter",
        });
    }
    Ok(Unsubscribe {
        pkid,
        filters: packet.topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{Decoded, Decoder, Packet};
    use bytes::BytesMut;

    fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
        Decoder::default().decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn unsubscribe_decodes_its_filters_in_order() {
        let bytes = [
            0xA2, 0x0A, 0x00, 0x03, 0x00, 0x01, b'a', 0x00, 0x03, b'b', b'/', b'#',
        ];
        assert_eq!(
            decode(&bytes),
            Ok(Decoded::Packet(Packet::Unsubscribe(Unsubscribe {
                pkid: PacketId::new(3).unwrap(),
                filters: vec!["a".to_owned(), "b/#".to_owned()],
            })))
        );
    }

    #[test]
    fn unsubscribe_without_filters_or_with_packet_id_zero_is_malformed() {
        assert!(matches!(
            decode(&[0xA2, 0x02, 0x00, 0x01]),
            Err(Error::Malformed {
                detail: "no topic filter",
                ..
            })
        ));
        assert!(matches!(
            decode(&[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a']),
            Err(Error::Malformed {
                detail: "the packet identifier is 0",
                ..
            })
        ));
    }
}
