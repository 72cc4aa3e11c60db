//! UNSUBACK, the answer to UNSUBSCRIBE.
//!
//! ```text
//! ┌──────┬──────┬─────────────────┐
//! │ 0xB0 │ 0x02 │ packet id (u16) │
//! └──────┴──────┴─────────────────┘
//! ```

use bytes::BufMut;

use crate::mqtt::PacketId;

/// The answer to UNSUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE's packet id.
    pub pkid: PacketId,
}

impl UnsubAck {
    /// The encoded length.
    pub const BYTES: usize = 4;

    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        let [high, low] = self.pkid.get().to_be_bytes();
        out.put_slice(&[0xB0, 0x02, high, low]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsuback_encodes_as_the_spec_lays_it_out() {
        let mut out = Vec::new();
        UnsubAck {
            pkid: PacketId::new(9).unwrap(),
        }
        .encode(&mut out);
        assert_eq!(out, [0xB0, 0x02, 0x00, 0x09]);
    }
}
