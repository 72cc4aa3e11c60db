//! SUBSCRIBE, decoded by mqttbytes with the checks it leaves out.
//!
//! ```text
//! ┌──────┬─────────────┬─────────────────┬─────────────────────────────────────────┐
//! │ 0x82 │ remaining   │ packet id (u16) │ { filter len (u16), filter (UTF-8),       │
//! │      │ length 1..4 │ never 0         │   requested QoS (u8) } one or more times  │
//! └──────┴─────────────┴─────────────────┴─────────────────────────────────────────┘
//! ```

use bytes::Bytes;

use super::{from_mqttbytes, from_mqttbytes_qos, to_mqttbytes};
use crate::mqtt::codec::FixedHeader;
use crate::mqtt::{Error, PacketId, PacketType, QoS};

/// A subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The id the SUBACK must carry.
    pub pkid: PacketId,
    /// The requested filters, in order; never empty.
    pub filters: Vec<SubscribeFilter>,
}

/// One requested filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    /// The topic filter, e.g. `devices/dev1/messages/devicebound/#`.
    pub filter: String,
    /// The highest QoS the device wants; IoT Hub grants at most QoS 1.
    pub qos: QoS,
}

pub(crate) fn decode(header: &FixedHeader, frame: Bytes) -> Result<Subscribe, Error> {
    let packet = mqttbytes::v4::Subscribe::read(to_mqttbytes(header), frame)
        .map_err(|error| from_mqttbytes(PacketType::Subscribe, error))?;
    let pkid = PacketId::new(packet.pkid).ok_or(Error::Malformed {
        packet_type: PacketType::Subscribe,
        detail: "the packet identifier is 0",
    })?;
    if packet.filters.is_empty() {
        return Err(Error::Malformed {
            packet_type: PacketType::Subscribe,
            detail: "no topic filter",
        });
    }
    let filters = packet
        .filters
        .into_iter()
        .map(|filter| SubscribeFilter {
            filter: filter.path,
            qos: from_mqttbytes_qos(filter.qos),
        })
        .collect();
    Ok(Subscribe { pkid, filters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{Decoded, Decoder, Packet};
    use bytes::BytesMut;

    fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
        Decoder::default().decode(&mut BytesMut::from(bytes))
    }

    /// The SUBSCRIBE the device SDK sends for C2D: one filter at QoS 1.
    #[test]
    fn sdk_c2d_subscribe_decodes() {
        let filter = b"devices/dev1/messages/devicebound/#";
        let mut bytes = vec![0x82, (2 + 2 + filter.len() + 1) as u8, 0x00, 0x05, 0x00];
        bytes.push(filter.len() as u8);
        bytes.extend_from_slice(filter);
        bytes.push(0x01);
        assert_eq!(
            decode(&bytes),
            Ok(Decoded::Packet(Packet::Subscribe(Subscribe {
                pkid: PacketId::new(5).unwrap(),
                filters: vec![SubscribeFilter {
                    filter: "devices/dev1/messages/devicebound/#".to_owned(),
                    qos: QoS::AtLeastOnce,
                }],
            })))
        );
    }

    #[test]
    fn subscribe_without_filters_or_with_packet_id_zero_is_malformed() {
        assert!(matches!(
            decode(&[0x82, 0x02, 0x00, 0x01]),
            Err(Error::Malformed {
                detail: "no topic filter",
                ..
            })
        ));
        assert!(matches!(
            decode(&[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00]),
            Err(Error::Malformed {
                detail: "the packet identifier is 0",
                ..
            })
        ));
        // A filter whose length runs past the packet, and a requested QoS of 3.
        assert!(matches!(
            decode(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x09, b'a', 0x00]),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            decode(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03]),
            Err(Error::Malformed { .. })
        ));
    }
}
