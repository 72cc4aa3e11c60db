//! Time as plain nanoseconds.
//!
//! Everything the generator measures is a `u64` of nanoseconds on `CLOCK_MONOTONIC`. That
//! clock is system-wide on Linux, so a timestamp written into a payload by the publisher can
//! be compared with the consumer's clock even in another process on the same machine, and
//! plain integers make schedule arithmetic exact.

/// Nanoseconds per second.
pub const NS_PER_S: u64 = 1_000_000_000;
/// Nanoseconds per millisecond.
pub const NS_PER_MS: u64 = 1_000_000;

/// The current `CLOCK_MONOTONIC` time in nanoseconds.
#[inline]
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time used by the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time used by this whole process (every thread), in nanoseconds.
pub fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used here always exist on
    // Linux, so the call cannot fail.
    let rc = unsafe { libc::clock_gettime(clock, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime cannot fail for a valid clock id");
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// Seconds since the Unix epoch (wall clock), for SAS token expiry and report dates.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Formats nanoseconds as a short human duration: `812us`, `1.25ms`, `3.0s`.
pub fn human_ns(ns: u64) -> String {
    if ns < 10_000 {
        format!("{:.1}us", ns as f64 / 1e3)
    } else if ns < NS_PER_MS {
        format!("{}us", ns / 1_000)
    } else if ns < NS_PER_S {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}

/// Parses a duration: `250ms`, `10s`, `2m`, `1h`, `1500us`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 10s, 250ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1e9,
        "ms" => 1e6,
        "us" => 1e3,
        "ns" => 1.0,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        other => return Err(format!("unknown duration unit '{other}' in '{text}'")),
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!("'{text}' is not a duration"));
    }
    Ok((value * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("10s"), Ok(10 * NS_PER_S));
        assert_eq!(parse_duration("250ms"), Ok(250 * NS_PER_MS));
        assert_eq!(parse_duration("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_duration("2m"), Ok(120 * NS_PER_S));
        assert_eq!(parse_duration(" 40us "), Ok(40_000));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert!(thread_cpu_ns() > 0);
    }

    #[test]
    fn human_durations_pick_a_readable_unit() {
        assert_eq!(human_ns(1_500), "1.5us");
        assert_eq!(human_ns(812_000), "812us");
        assert_eq!(human_ns(1_250_000), "1.25ms");
        assert_eq!(human_ns(3 * NS_PER_S), "3.00s");
    }
}
