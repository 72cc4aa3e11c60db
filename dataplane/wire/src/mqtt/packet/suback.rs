//! SUBACK, the answer to SUBSCRIBE: one return code per requested filter, in order.
//!
//! ```text
//! ┌──────┬─────────────┬─────────────────┬──────────────────────────────────┐
//! │ 0x90 │ remaining   │ packet id (u16) │ return code per filter (u8 each)   │
//! │      │ length 1..4 │                 │ 0x00/0x01/0x02 granted QoS, 0x80  │
//! └──────┴─────────────┴─────────────────┴──────────────────────────────────┘
//! ```

use bytes::BufMut;

use crate::mqtt::codec::{REMAINING_BYTES_LIMIT, put_fixed_header, remaining_length_bytes};
use crate::mqtt::{Error, PacketId, QoS};

/// The answer to one filter of a SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscribeReturnCode {
    /// Subscribed; messages arrive at no more than this QoS.
    Granted(QoS),
    /// Refused (0x80). The Python device SDK ignores it and treats the feature as enabled.
    Failure,
}

impl SubscribeReturnCode {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Granted(qos) => qos as u8,
            Self::Failure => 0x80,
        }
    }
}

/// The answer to SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubAck<'a> {
    /// The SUBSCRIBE's packet id.
    pub pkid: PacketId,
    /// One code per filter, in the SUBSCRIBE's order; never empty.
    pub return_codes: &'a [SubscribeReturnCode],
}

impl SubAck<'_> {
    /// Appends the packet to `out` and returns its length.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<usize, Error> {
        assert!(
            !self.return_codes.is_empty(),
            "a SUBACK answers at least one filter"
        );
        let remaining_bytes = 2 + self.return_codes.len();
        if remaining_bytes > REMAINING_BYTES_LIMIT {
            return Err(Error::PacketTooLargeToEncode { remaining_bytes });
        }
        put_fixed_header(out, 0x90, remaining_bytes);
        out.put_u16(self.pkid.get());
        for code in self.return_codes {
            out.put_u8(code.to_byte());
        }
        Ok(1 + remaining_length_bytes(remaining_bytes) + remaining_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suback_carries_granted_qos_and_failure_in_order() {
        let mut out = Vec::new();
        let written = SubAck {
            pkid: PacketId::new(10).unwrap(),
            return_codes: &[
                SubscribeReturnCode::Granted(QoS::AtLeastOnce),
                SubscribeReturnCode::Failure,
                SubscribeReturnCode::Granted(QoS::AtMostOnce),
            ],
        }
        .encode(&mut out)
        .unwrap();
        assert_eq!(out, [0x90, 0x05, 0x00, 0x0A, 0x01, 0x80, 0x00]);
        assert_eq!(written, out.len());
    }

    #[test]
    fn a_long_suback_uses_a_two_byte_length() {
        let codes = [SubscribeReturnCode::Granted(QoS::AtLeastOnce); 200];
        let mut out = Vec::new();
        let written = SubAck {
            pkid: PacketId::new(1).unwrap(),
            return_codes: &codes,
        }
        .encode(&mut out)
        .unwrap();
        assert_eq!(&out[..3], [0x90, 0xCA, 0x01]); // 202 = 0x4A | 0x80, 0x01
        assert_eq!(written, 3 + 202);
        assert_eq!(out.len(), written);
    }
}
