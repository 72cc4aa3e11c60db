//! Protocol headers and the 8-byte frame header.
//!
//! ```text
//! protocol header (8 bytes, once per layer)
//! ┌───┬───┬───┬───┬──────────┬───────┬───────┬──────────┐
//! │ A │ M │ Q │ P │ protocol │ major │ minor │ revision │   SASL: 03 01 00 00, AMQP: 00 01 00 00
//! └───┴───┴───┴───┴──────────┴───────┴───────┴──────────┘
//!
//! frame
//! ┌──────────────────┬──────┬──────┬─────────────────┬─────────────┬──────────────────────┐
//! │ size (u32 BE)    │ doff │ type │ channel (u16 BE)│ ext. header │ body                 │
//! │ whole frame, ≥ 8 │ ≥ 2  │ 0, 1 │ 0 for SASL      │ (doff-2)*4  │ performative payload │
//! └──────────────────┴──────┴──────┴─────────────────┴─────────────┴──────────────────────┘
//!   0                  4      5      6                 8             doff*4            size
//! ```
//!
//! A frame with an empty body is a heartbeat. We always write doff = 2: the pyamqp decoder
//! miscomputes the body offset for anything else.

use crate::error::FrameError;

/// The header a client sends to start SASL, and our answer to it.
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// The header that starts the AMQP layer.
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// The length of a protocol header and of a frame header.
pub const HEADER_BYTES: usize = 8;
/// The smallest max-frame-size AMQP allows a peer to declare (MIN-MAX-FRAME-SIZE).
pub const MAX_FRAME_SIZE_MIN: u32 = 512;
/// A heartbeat: an AMQP frame with no body on channel 0.
pub const EMPTY_FRAME: [u8; 8] = [0, 0, 0, 8, 2, TYPE_AMQP, 0, 0];
/// The frame type of AMQP frames.
pub const TYPE_AMQP: u8 = 0;
/// The frame type of SASL frames.
pub const TYPE_SASL: u8 = 1;

const _: () = assert!(EMPTY_FRAME.len() == HEADER_BYTES);

/// What an 8-byte protocol header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeader {
    /// `AMQP 3 1 0 0`.
    Sasl,
    /// `AMQP 0 1 0 0`.
    Amqp,
    /// Anything else: another protocol id or version, TLS, HTTP.
    Other([u8; 8]),
}

impl ProtocolHeader {
    /// Classifies eight received bytes.
    pub fn parse(bytes: [u8; 8]) -> Self {
        match bytes {
            SASL_HEADER => Self::Sasl,
            AMQP_HEADER => Self::Amqp,
            other => Self::Other(other),
        }
    }
}

/// A parsed frame header.
///
/// # Invariants
/// After [`FrameHeader::parse`] succeeds: `8 <= size <= max`, and `8 <= doff*4 <= size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The whole frame's length in bytes, header included.
    pub size: u32,
    /// The data offset in 4-byte words.
    pub doff: u8,
    /// 0 for AMQP, 1 for SASL.
    pub frame_type: u8,
    /// The channel (AMQP) or 0 (SASL).
    pub channel: u16,
}

impl FrameHeader {
    /// Parses and checks a header against our `max` frame size, before anything of the body
    /// is buffered.
    pub fn parse(bytes: [u8; 8], max: u32) -> Result<Self, FrameError> {
        let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let header = Self {
            size,
            doff: bytes[4],
            frame_type: bytes[5],
            channel: u16::from_be_bytes([bytes[6], bytes[7]]),
        };
        if size < HEADER_BYTES as u32 {
            return Err(FrameError::TooSmall { size });
        }
        if size > max {
            return Err(FrameError::TooLarge { size, max });
        }
        if header.doff < 2 || u32::from(header.doff) * 4 > size {
            return Err(FrameError::BadDataOffset {
                doff: header.doff,
                size,
            });
        }
        Ok(header)
    }

    /// Where the body starts, from the start of the frame.
    pub fn body_offset(&self) -> usize {
        usize::from(self.doff) * 4
    }
}

/// One complete frame borrowed from an input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The body: the performative and, for a transfer, the payload. Empty for a heartbeat.
    pub body: &'a [u8],
}

/// Splits the first frame off `bytes`. `Ok(None)` means more bytes are needed; the header
/// has been checked against `max` by then, so a caller buffering for the rest never buffers
/// more than `max` bytes.
pub fn split_frame(bytes: &[u8], max: u32) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(header_bytes) = bytes.first_chunk::<HEADER_BYTES>() else {
        return Ok(None);
    };
    let header = FrameHeader::parse(*header_bytes, max)?;
    let size = header.size as usize;
    if bytes.len() < size {
        return Ok(None);
    }
    let body = &bytes[header.body_offset()..size];
    Ok(Some((Frame { header, body }, size)))
}

/// Starts a frame in `buf`: writes a header with a placeholder size and returns where it
/// starts, for [`end_frame`].
#[inline]
pub fn begin_frame(buf: &mut Vec<u8>, frame_type: u8, channel: u16) -> usize {
    let start = buf.len();
    let [c0, c1] = channel.to_be_bytes();
    buf.extend_from_slice(&[0, 0, 0, 0, 2, frame_type, c0, c1]);
    start
}

/// Fills in the size of the frame started at `start`; returns the frame's length.
#[inline]
pub fn end_frame(buf: &mut [u8], start: usize) -> usize {
    let size = buf.len() - start;
    buf[start..start + 4].copy_from_slice(&crate::codec::len_u32(size).to_be_bytes());
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parse_checks_size_before_anything_is_buffered() {
        let oversized = [0x00, 0x10, 0x00, 0x01, 2, 0, 0, 0];
        assert_eq!(
            FrameHeader::parse(oversized, 65_536),
            Err(FrameError::TooLarge {
                size: 0x0010_0001,
                max: 65_536
            })
        );
        assert_eq!(
            FrameHeader::parse([0, 0, 0, 4, 2, 0, 0, 0], 512),
            Err(FrameError::TooSmall { size: 4 })
        );
        assert_eq!(
            FrameHeader::parse([0, 0, 0, 8, 3, 0, 0, 0], 512),
            Err(FrameError::BadDataOffset { doff: 3, size: 8 })
        );
    }

    #[test]
    fn split_frame_waits_for_the_whole_frame() {
        let frame = [0, 0, 0, 10, 2, 0, 0, 1, 0xaa, 0xbb];
        assert_eq!(split_frame(&frame[..9], 512), Ok(None));
        let (parsed, used) = split_frame(&frame, 512).expect("valid").expect("complete");
        assert_eq!(used, 10);
        assert_eq!(parsed.header.channel, 1);
        assert_eq!(parsed.body, &[0xaa, 0xbb]);
    }

    #[test]
    fn begin_and_end_frame_write_doff_two() {
        let mut buf = Vec::new();
        let start = begin_frame(&mut buf, TYPE_AMQP, 5);
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(end_frame(&mut buf, start), 11);
        assert_eq!(buf, [0, 0, 0, 11, 2, 0, 0, 5, 1, 2, 3]);
    }
}
