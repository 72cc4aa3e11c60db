//! Payload sizes and the timestamp header every payload starts with.
//!
//! ```text
//! ┌────────┬──────────┬────────────┬──────────────┬─────────────┬──────────────────────┐
//! │ "SHPF" │ device   │ sequence   │ intended (ns)│ sent (ns)   │ filler up to the size │
//! │ 4 B    │ u32 LE   │ u64 LE     │ u64 LE       │ u64 LE      │                      │
//! └────────┴──────────┴────────────┴──────────────┴─────────────┴──────────────────────┘
//!   0        4          8            16             24            32
//! ```
//!
//! Times are `CLOCK_MONOTONIC` nanoseconds (see [`crate::clock`]), so a consumer on the same
//! machine computes publish-to-consume latency from either one. A payload shorter than the
//! header carries a truncated header and no usable timestamp.

/// The header's magic bytes.
pub const MAGIC: [u8; 4] = *b"SHPF";
/// The header's length.
pub const HEADER_BYTES: usize = 32;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The device index in the run.
    pub device: u32,
    /// The device's message number.
    pub sequence: u64,
    /// When the schedule wanted the message sent (the send time in closed loop).
    pub intended_ns: u64,
    /// When it was written to the socket buffer.
    pub sent_ns: u64,
}

impl Header {
    /// Appends the payload: the header (truncated if `size` is smaller) and filler.
    #[inline]
    pub fn write_payload(&self, buf: &mut Vec<u8>, size: usize) {
        let mut header = [0_u8; HEADER_BYTES];
        header[..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&self.device.to_le_bytes());
        header[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        header[16..24].copy_from_slice(&self.intended_ns.to_le_bytes());
        header[24..32].copy_from_slice(&self.sent_ns.to_le_bytes());
        let head = size.min(HEADER_BYTES);
        buf.extend_from_slice(&header[..head]);
        if size > head {
            buf.extend_from_slice(&FILLER[..size - head]);
        }
    }

    /// Reads the header at the start of a payload; `None` when it is absent or truncated.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let header = payload.first_chunk::<HEADER_BYTES>()?;
        if header[..4] != MAGIC {
            return None;
        }
        let u64_at =
            |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        Some(Self {
            device: u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")),
            sequence: u64_at(8),
            intended_ns: u64_at(16),
            sent_ns: u64_at(24),
        })
    }
}

/// The largest payload the generator sends (IoT Hub's device-to-cloud limit).
pub const PAYLOAD_BYTES_MAX: usize = 256 * 1024;

/// Printable, incompressible-enough filler, shared by every payload.
static FILLER: std::sync::LazyLock<Box<[u8]>> = std::sync::LazyLock::new(|| {
    let mut state: u32 = 0x9e37_79b9;
    (0..PAYLOAD_BYTES_MAX)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            b'!' + (state % 94) as u8
        })
        .collect()
});

/// How big each payload is.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadSizes {
    /// Every payload has this size.
    Fixed(usize),
    /// Uniformly distributed in `min..=max`.
    Uniform {
        /// Smallest.
        min: usize,
        /// Largest.
        max: usize,
    },
    /// Sizes with weights; cumulative weights are precomputed.
    Weighted {
        /// `(size, cumulative weight)`, cumulative weights ascending, the last one = total.
        table: Vec<(usize, f64)>,
    },
}

impl PayloadSizes {
    /// Parses `256`, `64-1024` (uniform) or `64:5,256:3,4096:1` (weighted).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let size = |s: &str| -> Result<usize, String> {
            let n: usize = s
                .trim()
                .parse()
                .map_err(|_| format!("'{s}' is not a payload size in bytes"))?;
            if n > PAYLOAD_BYTES_MAX {
                return Err(format!(
                    "payload size {n} exceeds {PAYLOAD_BYTES_MAX} bytes"
                ));
            }
            Ok(n)
        };
        if text.contains(':') {
            let mut table = Vec::new();
            let mut total = 0.0;
            for part in text.split(',') {
                let (s, w) = part
                    .split_once(':')
                    .ok_or_else(|| format!("'{part}' is not size:weight"))?;
                let weight: f64 = w
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{w}' is not a weight"))?;
                if !(weight.is_finite() && weight > 0.0) {
                    return Err(format!("weight '{w}' must be positive"));
                }
                total += weight;
                table.push((size(s)?, total));
            }
            return Ok(Self::Weighted { table });
        }
        if let Some((min, max)) = text.split_once('-') {
            let (min, max) = (size(min)?, size(max)?);
            if min > max {
                return Err(format!("payload range {min}-{max} is empty"));
            }
            return Ok(Self::Uniform { min, max });
        }
        Ok(Self::Fixed(size(text)?))
    }

    /// Draws one size.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> usize {
        match self {
            Self::Fixed(n) => *n,
            Self::Uniform { min, max } => min + (rng.next_u64() % (max - min + 1) as u64) as usize,
            Self::Weighted { table } => {
                let total = table.last().map_or(0.0, |(_, w)| *w);
                let x = rng.unit() * total;
                table
                    .iter()
                    .find(|(_, cumulative)| x < *cumulative)
                    .or(table.last())
                    .map_or(0, |(size, _)| *size)
            }
        }
    }

    /// The mean size, for reports.
    pub fn mean(&self) -> f64 {
        match self {
            Self::Fixed(n) => *n as f64,
            Self::Uniform { min, max } => (*min + *max) as f64 / 2.0,
            Self::Weighted { table } => {
                let mut previous = 0.0;
                let mut sum = 0.0;
                for (size, cumulative) in table {
                    sum += *size as f64 * (cumulative - previous);
                    previous = *cumulative;
                }
                sum / previous
            }
        }
    }

    /// The largest size that can be drawn.
    pub fn max(&self) -> usize {
        match self {
            Self::Fixed(n) => *n,
            Self::Uniform { max, .. } => *max,
            Self::Weighted { table } => table.iter().map(|(s, _)| *s).max().unwrap_or(0),
        }
    }
}

impl std::fmt::Display for PayloadSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(n) => write!(f, "{n}"),
            Self::Uniform { min, max } => write!(f, "{min}-{max}"),
            Self::Weighted { table } => {
                let mut previous = 0.0;
                for (i, (size, cumulative)) in table.iter().enumerate() {
                    if i > 0 {
                        write!(f, ",")?;
                    }
                    write!(f, "{size}:{}", cumulative - previous)?;
                    previous = *cumulative;
                }
                Ok(())
            }
        }
    }
}

/// A small, fast, seeded generator (xorshift64*); reproducible runs matter more here than
/// statistical quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x2545_f491_4f6c_dd1d
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A float in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_truncates() {
        let header = Header {
            device: 7,
            sequence: 42,
            intended_ns: 1_000,
            sent_ns: 1_500,
        };
        let mut buf = Vec::new();
        header.write_payload(&mut buf, 256);
        assert_eq!(buf.len(), 256);
        assert_eq!(Header::parse(&buf), Some(header));
        buf.clear();
        header.write_payload(&mut buf, 16);
        assert_eq!(buf.len(), 16);
        assert_eq!(Header::parse(&buf), None);
        assert_eq!(Header::parse(&[0; 64]), None);
    }

    #[test]
    fn sizes_parse_and_sample_within_bounds() {
        let mut rng = Rng::new(1);
        assert_eq!(PayloadSizes::parse("256"), Ok(PayloadSizes::Fixed(256)));
        let uniform = PayloadSizes::parse("64-1024").expect("parses");
        for _ in 0..1000 {
            assert!((64..=1024).contains(&uniform.sample(&mut rng)));
        }
        assert!((uniform.mean() - 544.0).abs() < 1e-9);
        assert!(PayloadSizes::parse("1024-64").is_err());
        assert!(PayloadSizes::parse("999999999").is_err());
        assert!(PayloadSizes::parse("10:0").is_err());
    }

    #[test]
    fn weighted_sizes_follow_their_weights() {
        let sizes = PayloadSizes::parse("64:3,4096:1").expect("parses");
        assert_eq!(sizes.to_string(), "64:3,4096:1");
        assert_eq!(sizes.max(), 4096);
        assert!((sizes.mean() - (64.0 * 0.75 + 4096.0 * 0.25)).abs() < 1e-9);
        let mut rng = Rng::new(7);
        let n = 100_000;
        let small = (0..n).filter(|_| sizes.sample(&mut rng) == 64).count();
        let share = small as f64 / f64::from(n);
        assert!(
            (share - 0.75).abs() < 0.01,
            "share of 64 B payloads {share}"
        );
    }
}
