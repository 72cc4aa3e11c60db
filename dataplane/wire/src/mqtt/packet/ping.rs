//! PINGRESP, the answer to a device's PINGREQ (keep-alive).
//!
//! ```text
//! ┌──────┬──────┐
//! │ 0xD0 │ 0x00 │
//! └──────┴──────┘
//! ```

use bytes::BufMut;

/// The answer to PINGREQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingResp;

impl PingResp {
    /// The encoded length.
    pub const BYTES: usize = 2;

    /// Appends the packet to `out`.
    pub fn encode(self, out: &mut impl BufMut) {
        out.put_slice(&[0xD0, 0x00]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingresp_is_two_bytes() {
        let mut out = Vec::new();
        PingResp.encode(&mut out);
        assert_eq!(out, [0xD0, 0x00]);
    }
}
