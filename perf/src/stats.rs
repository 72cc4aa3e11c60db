//! Histograms, counters and the per-second timeline.
//!
//! Latencies are recorded in nanoseconds into HdrHistograms with 3 significant digits
//! (a recorded value is within 0.1 % of the true one) from 1 ns to one hour; larger values
//! saturate at the top and are still counted.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest value a histogram tracks exactly: one hour.
pub const HISTOGRAM_NS_MAX: u64 = 3_600 * crate::clock::NS_PER_S;

/// A latency histogram in nanoseconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The usual figures of a latency histogram, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Samples recorded.
    pub count: u64,
    /// Smallest sample.
    pub min_ns: u64,
    /// Mean.
    pub mean_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
}

/// One point of a percentile distribution: the value at `percentile`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PercentilePoint {
    /// 0 to 100.
    pub percentile: f64,
    /// The value at that percentile.
    pub value_ns: u64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            inner: Histogram::new_with_bounds(1, HISTOGRAM_NS_MAX, 3)
                .expect("1 ns .. 1 h at 3 digits is a valid histogram"),
        }
    }

    /// Records one sample; values beyond one hour are counted as one hour.
    #[inline]
    pub fn record(&mut self, value_ns: u64) {
        self.inner.saturating_record(value_ns.max(1));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Self) {
        self.inner
            .add(&other.inner)
            .expect("histograms with the same bounds always merge");
    }

    /// Forgets every sample.
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    /// No samples yet.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The summary figures; all zero when empty.
    pub fn summary(&self) -> Summary {
        if self.inner.is_empty() {
            return Summary::default();
        }
        let h = &self.inner;
        Summary {
            count: h.len(),
            min_ns: h.min(),
            mean_ns: h.mean().round() as u64,
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        }
    }

    /// The percentile distribution at the points a percentile plot needs: denser towards
    /// the tail (0, 50, 75, 87.5, … ), up to the last sample.
    pub fn distribution(&self) -> Vec<PercentilePoint> {
        if self.inner.is_empty() {
            return Vec::new();
        }
        let mut points = Vec::new();
        // Halve the remaining distance to 100 % each step, with 4 points per halving.
        let mut step = 0_u32;
        loop {
            let remaining = 0.5_f64.powf(f64::from(step) / 4.0);
            let percentile = 100.0 * (1.0 - remaining);
            // Stop once the tail holds less than one sample.
            if remaining * (self.inner.len() as f64) < 1.0 || step > 4 * 40 {
                break;
            }
            points.push(PercentilePoint {
                percentile,
                value_ns: self.inner.value_at_percentile(percentile),
            });
            step += 1;
        }
        points.push(PercentilePoint {
            percentile: 100.0,
            value_ns: self.inner.max(),
        });
        points
    }
}

macro_rules! error_kinds {
    ($(#[$doc:meta] $variant:ident => $name:literal,)*) => {
        /// What went wrong, by kind. Connection-level kinds describe an attempt or a session;
        /// message-level kinds describe a sent message that was never acknowledged.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum ErrorKind {
            $(#[$doc] $variant,)*
        }

        impl ErrorKind {
            /// Every kind, in report order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant,)*];

            /// The snake_case name used in reports.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $name,)*
                }
            }
        }
    };
}

error_kinds! {
    /// TCP connect was refused (nothing listening).
    ConnectRefused => "connect_refused",
    /// TCP connect failed otherwise (no route, no free source port, …).
    ConnectFailed => "connect_failed",
    /// TCP + TLS + CONNACK did not complete within the connect time-out.
    ConnectTimeout => "connect_timeout",
    /// The TLS handshake or a TLS record failed.
    Tls => "tls_error",
    /// CONNACK carried a non-zero return code.
    ConnackRefused => "connack_refused",
    /// The server closed the connection before CONNACK.
    ClosedBeforeConnack => "closed_before_connack",
    /// The server closed an established session (EOF).
    ConnectionClosed => "connection_closed",
    /// An established session failed with a socket error (reset, …).
    ConnectionReset => "connection_reset",
    /// The server sent bytes that are not valid MQTT 3.1.1 for a client.
    Protocol => "protocol_error",
    /// A PUBACK for a packet id that was not in flight.
    UnexpectedPuback => "unexpected_puback",
    /// A message in flight when its connection dropped.
    LostOnDisconnect => "lost_on_disconnect",
    /// A message in flight when a reconnect storm dropped its connection on purpose.
    LostInStorm => "lost_in_storm",
    /// A message still unacknowledged when the drain time-out ended the run.
    AckTimeout => "ack_timeout",
    /// A publish the consumer received with a malformed timestamp header.
    ConsumerBadPayload => "consumer_bad_payload",
}

/// Counts per [`ErrorKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCounts {
    counts: [u64; ErrorKind::ALL.len()],
}

impl Default for ErrorCounts {
    fn default() -> Self {
        Self {
            counts: [0; ErrorKind::ALL.len()],
        }
    }
}

impl ErrorCounts {
    /// Counts `n` errors of `kind`.
    #[inline]
    pub fn add(&mut self, kind: ErrorKind, n: u64) {
        self.counts[kind as usize] += n;
    }

    /// The count of one kind.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.counts[kind as usize]
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    /// The non-zero kinds, for reports.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        ErrorKind::ALL
            .iter()
            .filter(|kind| self.get(**kind) > 0)
            .map(|kind| (kind.name(), self.get(*kind)))
            .collect()
    }
}

impl Serialize for ErrorCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let nonzero = self.nonzero();
        let mut map = serializer.serialize_map(Some(nonzero.len()))?;
        for (name, count) in nonzero {
            map.serialize_entry(name, &count)?;
        }
        map.end()
    }
}

/// What happened to published messages.
///
/// # Invariants
/// For QoS 1, at any time `sent == acked + errors.total() + in_flight`; after the drain
/// every message still in flight becomes an [`ErrorKind::AckTimeout`], so
/// `sent == acked + errors.total()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PublishCounts {
    /// Publishes written to a socket (QoS 0 and 1).
    pub sent: u64,
    /// QoS 1 publishes acknowledged.
    pub acked: u64,
    /// Sent messages that will never be acknowledged, by kind.
    pub errors: ErrorCounts,
}

impl PublishCounts {
    /// Messages neither acknowledged nor counted as an error: the ones in flight.
    pub fn outstanding(&self) -> u64 {
        self.sent.saturating_sub(self.acked + self.errors.total())
    }
}

/// One second of a run, for the progress line and the latency-over-time chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the workload started (negative during connect).
    pub t_s: f64,
    /// Connections established at the end of the second.
    pub connected: u64,
    /// Messages sent in the second.
    pub sent: u64,
    /// Messages acknowledged in the second.
    pub acked: u64,
    /// Acknowledgements per second.
    pub acked_per_s: f64,
    /// Errors (message and connection) in the second.
    pub errors: u64,
    /// Latency percentiles of the acks received in the second.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Largest.
    pub max_ns: u64,
    /// Server CPU use over the second, in percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server resident memory at the end of the second.
    pub server_rss_bytes: Option<u64>,
    /// The load thread's busy time over the second (CPU minus spinning on empty polls
    /// just before a due time), in percent of one core.
    pub generator_cpu_pct: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_known_sample_set() {
        // 1..=1000 us: p50 = 500 us, p99 = 990 us, max = 1000 us (within 0.1 %).
        let mut h = LatencyHistogram::new();
        for us in 1..=1000_u64 {
            h.record(us * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        let close = |a: u64, b: u64| a.abs_diff(b) * 1000 <= b;
        assert!(close(s.p50_ns, 500_000), "{}", s.p50_ns);
        assert!(close(s.p90_ns, 900_000), "{}", s.p90_ns);
        assert!(close(s.p99_ns, 990_000), "{}", s.p99_ns);
        assert!(close(s.p999_ns, 999_000), "{}", s.p999_ns);
        assert!(close(s.max_ns, 1_000_000), "{}", s.max_ns);
        assert!(close(s.min_ns, 1_000));
        assert!(close(s.mean_ns, 500_500));
    }

    #[test]
    fn huge_values_saturate_instead_of_being_dropped() {
        let mut h = LatencyHistogram::new();
        h.record(u64::MAX);
        h.record(0);
        assert_eq!(h.len(), 2);
        assert!(h.summary().max_ns >= HISTOGRAM_NS_MAX / 2);
    }

    #[test]
    fn distribution_is_monotonic_and_ends_at_the_maximum() {
        let mut h = LatencyHistogram::new();
        for v in 1..=10_000_u64 {
            h.record(v * 10);
        }
        let points = h.distribution();
        assert!(points.len() > 20);
        assert!(points.windows(2).all(|w| w[0].percentile < w[1].percentile));
        assert!(points.windows(2).all(|w| w[0].value_ns <= w[1].value_ns));
        let last = points.last().expect("non-empty");
        assert!((last.percentile - 100.0).abs() < f64::EPSILON);
        assert_eq!(last.value_ns, h.summary().max_ns);
        assert!(LatencyHistogram::new().distribution().is_empty());
    }

    #[test]
    fn error_counts_add_up_and_serialize_only_nonzero_kinds() {
        let mut e = ErrorCounts::default();
        e.add(ErrorKind::AckTimeout, 3);
        e.add(ErrorKind::LostOnDisconnect, 2);
        let mut f = ErrorCounts::default();
        f.add(ErrorKind::AckTimeout, 1);
        e.merge(&f);
        assert_eq!(e.total(), 6);
        assert_eq!(e.get(ErrorKind::AckTimeout), 4);
        let json = serde_json::to_string(&e).expect("serializes");
        assert_eq!(json, r#"{"lost_on_disconnect":2,"ack_timeout":4}"#);
        let counts = PublishCounts {
            sent: 10,
            acked: 3,
            errors: e,
        };
        assert_eq!(counts.outstanding(), 1);
    }
}
