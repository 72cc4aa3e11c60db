//! PUBACK: the device acknowledges a QoS 1 message (C2D, method request, twin patch); the
//! server acknowledges a QoS 1 message from the device.
//!
//! ```text
//! ┌──────┬──────┬─────────────────┐
//! │ 0x40 │ 0x02 │ packet id (u16) │
//! └──────┴──────┴─────────────────┘
//! ```

use bytes::BufMut;

use super::read_u16;
use crate::mqtt::{Error, PacketId, PacketType};

/// The acknowledgement the server sends for a device's QoS 1 PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubAck {
    /// The packet id of the PUBLISH being acknowledged.
    pub pkid: PacketId,
}

impl PubAck {
    /// The encoded length.
    pub const BYTES: usize = 4;

    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        let [high, low] = self.pkid.get().to_be_bytes();
        out.put_slice(&[0x40, 0x02, high, low]);
    }
}

/// Decodes a PUBACK body, whose length the fixed header has already checked.
pub(crate) fn decode(body: &[u8]) -> Result<PacketId, Error> {
    debug_assert_eq!(body.len(), 2);
    PacketId::new(read_u16(body, 0, PacketType::PubAck)?).ok_or(Error::Malformed {
        packet_type: PacketType::PubAck,
        detail: "the packet identifier is 0",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puback_encodes_as_the_spec_lays_it_out() {
        let mut out = Vec::new();
        PubAck {
            pkid: PacketId::new(0x1234).unwrap(),
        }
        .encode(&mut out);
        assert_eq!(out, [0x40, 0x02, 0x12, 0x34]);
        assert_eq!(out.len(), PubAck::BYTES);
        assert_eq!(decode(&out[2..]).unwrap().get(), 0x1234);
    }
}
