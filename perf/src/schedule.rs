//! The open-loop send schedule, and why latency is measured from it.
//!
//! A closed-loop client (send, wait for the ack, send again) slows down with the server: if
//! the server stalls for 500 ms, the client sends one message in that time instead of 500,
//! records one slow sample, and the percentiles barely move. The 499 messages that a real
//! fleet would have sent during the stall, and that would have waited, are never measured.
//! This is *coordinated omission*.
//!
//! The fix used here: in an open-loop run every message has an *intended* send time fixed in
//! advance, and its latency is `ack time - intended time`. A message that could not leave on
//! time (its device's in-flight window was full, its connection was reconnecting, or the
//! generator itself was late) carries the wait in its latency. Service time
//! (`ack - actual send`) is recorded separately, so both views are available.
//!
//! The schedule is uniform and global: message `m` (counting from 0 across all devices) is
//! due at `start + m * period` with `period = 1 / total_rate`, and belongs to device
//! `m % devices` as that device's message number `m / devices`. Devices are therefore evenly
//! staggered, and a device's `k`-th intended time is a pure function, so a device that falls
//! behind needs no queue: it keeps a count of what it sent and catches up in order.
//!
//! ```text
//! time ─────────────────────────────────────────────────────────────▶
//! m:      0     1     2     3     4     5     6     7  ...   (period apart)
//! device: 0     1     2     0     1     2     0     1  ...   (devices = 3)
//! k:      0     0     0     1     1     1     2     2  ...
//! ```

/// A uniform open-loop schedule over a set of devices.
///
/// # Invariants
/// `intended_ns` is non-decreasing in `m`, and `due(t)` is exactly the number of messages
/// with `intended_ns(m) <= t` (capped by the message limit and the stop time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenLoop {
    start_ns: u64,
    period_ns: f64,
    devices: u64,
    /// No message is due at or after this time.
    stop_ns: u64,
    /// At most this many messages in total.
    limit: u64,
}

impl OpenLoop {
    /// A schedule of `rate_per_s` messages per second in total, spread over `devices`,
    /// starting at `start_ns`, ending before `stop_ns` or after `limit` messages.
    pub fn new(
        start_ns: u64,
        rate_per_s: f64,
        devices: u32,
        stop_ns: Option<u64>,
        limit: Option<u64>,
    ) -> Self {
        assert!(
            rate_per_s.is_finite() && rate_per_s > 0.0,
            "an open-loop rate is positive"
        );
        assert!(devices > 0, "a schedule needs at least one device");
        Self {
            start_ns,
            period_ns: 1e9 / rate_per_s,
            devices: u64::from(devices),
            stop_ns: stop_ns.unwrap_or(u64::MAX),
            limit: limit.unwrap_or(u64::MAX),
        }
    }

    /// The intended send time of global message `m`.
    #[inline]
    pub fn intended_ns(&self, m: u64) -> u64 {
        self.start_ns + (m as f64 * self.period_ns).round() as u64
    }

    /// The number of messages due by `now_ns` (intended time at or before it).
    pub fn due(&self, now_ns: u64) -> u64 {
        let cutoff = now_ns.min(self.stop_ns.saturating_sub(1));
        self.count_until(cutoff).min(self.limit)
    }

    /// The total number of messages this schedule will ever make due, if it is finite.
    pub fn total(&self) -> Option<u64> {
        let by_time = (self.stop_ns != u64::MAX).then(|| self.count_until(self.stop_ns - 1));
        match (by_time, self.limit) {
            (Some(n), limit) => Some(n.min(limit)),
            (None, u64::MAX) => None,
            (None, limit) => Some(limit),
        }
    }

    /// Messages with `intended_ns(m) <= t`.
    fn count_until(&self, t: u64) -> u64 {
        if t < self.start_ns {
            return 0;
        }
        // The float estimate is off by at most one either way; settle it against
        // `intended_ns`, which is what every other method uses.
        let mut n = ((t - self.start_ns) as f64 / self.period_ns).floor() as u64 + 1;
        while n > 0 && self.intended_ns(n - 1) > t {
            n -= 1;
        }
        while self.intended_ns(n) <= t {
            n += 1;
        }
        n
    }

    /// How many of the first `due_total` global messages belong to `device`.
    #[inline]
    pub fn device_due(&self, device: u32, due_total: u64) -> u64 {
        let device = u64::from(device);
        debug_assert!(device < self.devices);
        if due_total <= device {
            0
        } else {
            (due_total - device - 1) / self.devices + 1
        }
    }

    /// The intended send time of `device`'s `k`-th message.
    #[inline]
    pub fn device_intended_ns(&self, device: u32, k: u64) -> u64 {
        self.intended_ns(k * self.devices + u64::from(device))
    }

    /// The device that global message `m` belongs to.
    #[inline]
    pub fn device_of(&self, m: u64) -> u32 {
        (m % self.devices) as u32
    }

    /// When message `due_total` (the next one not yet due) becomes due, or `None` once the
    /// schedule is exhausted.
    pub fn next_due_ns(&self, due_total: u64) -> Option<u64> {
        if due_total >= self.limit {
            return None;
        }
        let t = self.intended_ns(due_total);
        (t < self.stop_ns).then_some(t)
    }
}

/// Where a message's latency is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyOrigin {
    /// Open loop: from the intended send time (corrected for coordinated omission).
    Intended,
    /// Closed loop: from the actual send time; there is no schedule to be late against.
    Sent,
}

impl LatencyOrigin {
    /// The latency of one acknowledged message.
    #[inline]
    pub fn latency_ns(self, intended_ns: u64, sent_ns: u64, acked_ns: u64) -> u64 {
        let from = match self {
            Self::Intended => intended_ns,
            Self::Sent => sent_ns,
        };
        acked_ns.saturating_sub(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{NS_PER_MS, NS_PER_S};
    use crate::stats::LatencyHistogram;

    #[test]
    fn schedule_spreads_messages_round_robin_with_exact_times() {
        // 1000 msg/s over 4 devices: one message per millisecond, device m % 4.
        let s = OpenLoop::new(5 * NS_PER_S, 1000.0, 4, None, None);
        assert_eq!(s.due(5 * NS_PER_S - 1), 0);
        assert_eq!(s.due(5 * NS_PER_S), 1);
        assert_eq!(s.due(5 * NS_PER_S + 10 * NS_PER_MS), 11);
        assert_eq!(s.device_of(6), 2);
        assert_eq!(s.device_intended_ns(2, 1), 5 * NS_PER_S + 6 * NS_PER_MS);
        // Of 11 due messages, devices 0..=2 have 3 each and device 3 has 2.
        assert_eq!(
            (0..4).map(|d| s.device_due(d, 11)).collect::<Vec<_>>(),
            [3, 3, 3, 2]
        );
        assert_eq!(s.next_due_ns(11), Some(5 * NS_PER_S + 11 * NS_PER_MS));
        assert_eq!(s.total(), None);
    }

    #[test]
    fn schedule_stops_at_the_stop_time_and_the_limit() {
        // 3 msg/s for 1 s: due at 0, 333.3 ms and 666.7 ms; the one at 1 s is not.
        let s = OpenLoop::new(0, 3.0, 1, Some(NS_PER_S), None);
        assert_eq!(s.due(10 * NS_PER_S), 3);
        assert_eq!(s.total(), Some(3));
        assert_eq!(s.next_due_ns(3), None);
        let s = OpenLoop::new(0, 1e6, 7, None, Some(10));
        assert_eq!(s.due(NS_PER_S), 10);
        assert_eq!(s.total(), Some(10));
        assert_eq!(s.next_due_ns(10), None);
    }

    #[test]
    fn due_is_consistent_with_intended_times_for_awkward_rates() {
        let s = OpenLoop::new(123, 7_777.7, 3, None, None);
        for m in [0_u64, 1, 2, 999, 123_456] {
            let t = s.intended_ns(m);
            assert_eq!(
                s.due(t),
                m + 1,
                "message {m} is due at its own intended time"
            );
            assert_eq!(s.due(t - 1), m, "and not a nanosecond before");
        }
    }

    /// A one-device, one-in-flight run at 1000 msg/s for 3 s against a simulated server
    /// that answers in 100 us, except that it stalls from 1.0 s to 1.5 s. The messages due
    /// during the stall leave late, back to back, once the stall ends.
    ///
    /// Expectation: measured from the send time, 99.9 % of samples are 100 us and the stall
    /// is a single 500 ms outlier (coordinated omission). Measured from the intended time,
    /// every message due during the stall carries its wait, so about one sample in six is
    /// slow and the p90 is hundreds of milliseconds.
    #[test]
    fn open_loop_latency_counts_the_messages_a_stall_delayed() {
        let service_ns = 100_000;
        let (stall_from, stall_to) = (NS_PER_S, NS_PER_S + 500 * NS_PER_MS);
        let schedule = OpenLoop::new(0, 1000.0, 1, Some(3 * NS_PER_S), None);
        let mut corrected = LatencyHistogram::new();
        let mut uncorrected = LatencyHistogram::new();
        let mut now = 0;
        let mut sent = 0_u64;
        let total = schedule.total().expect("finite");
        while sent < total {
            // Window of one: send the next message when it is due and the last was acked.
            let intended = schedule.device_intended_ns(0, sent);
            let send_at = now.max(intended);
            let mut ack_at = send_at + service_ns;
            if (stall_from..stall_to).contains(&send_at) {
                ack_at = stall_to + service_ns;
            }
            corrected.record(LatencyOrigin::Intended.latency_ns(intended, send_at, ack_at));
            uncorrected.record(LatencyOrigin::Sent.latency_ns(intended, send_at, ack_at));
            now = ack_at;
            sent += 1;
        }
        assert_eq!(sent, 3000);
        let c = corrected.summary();
        let u = uncorrected.summary();
        assert_eq!((c.count, u.count), (3000, 3000));
        // Both see the worst case.
        assert!(u.max_ns >= 500 * NS_PER_MS && c.max_ns >= 500 * NS_PER_MS);
        // Without correction the stall is invisible below the maximum.
        assert!(u.p99_ns <= 101_000, "uncorrected p99 {}", u.p99_ns);
        assert!(u.p999_ns <= 101_000, "uncorrected p99.9 {}", u.p999_ns);
        // With it, ~555 messages (the 500 due in the stall plus the catch-up) are late:
        // the p90 sample is the 300th-worst, about 500 ms * (1 - 300/555) late.
        assert!(
            (150 * NS_PER_MS..300 * NS_PER_MS).contains(&c.p90_ns),
            "corrected p90 {}",
            c.p90_ns
        );
        assert!(c.p99_ns >= 400 * NS_PER_MS, "corrected p99 {}", c.p99_ns);
        // And outside the stall both agree: the median is the service time.
        assert!(c.p50_ns <= 101_000 && u.p50_ns <= 101_000);
    }
}
