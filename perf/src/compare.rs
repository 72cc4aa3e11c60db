//! The side-by-side table `compare.sh` prints: one row per server, the figures from each
//! JSON report, and the ratio of the baseline (Shoal) to each peer.
//!
//! Ratios are oriented so that **> 1 means Shoal is better** only for throughput; for
//! latency, CPU and memory the plain quotient Shoal/peer is shown (< 1 is better), so every
//! ratio reads the same way: Shoal's figure divided by the peer's.

use std::fmt::Write as _;

use serde_json::Value;

/// One server's figures, read from a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The server's label.
    pub label: String,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// The offered open-loop rate, if the run was open loop.
    pub offered_per_s: Option<f64>,
    /// PUBACK p50 in ns.
    pub p50_ns: f64,
    /// PUBACK p99 in ns.
    pub p99_ns: f64,
    /// Server CPU per message in µs.
    pub cpu_us_per_msg: Option<f64>,
    /// Server RSS at the end of the window, bytes.
    pub rss_bytes: Option<f64>,
    /// Server memory per connection, bytes.
    pub rss_per_connection_bytes: Option<f64>,
    /// The load thread's CPU, percent.
    pub generator_pct: f64,
    /// Other processes on the machine, cores.
    pub other_cores: Option<f64>,
    /// The counts added up.
    pub counts_add_up: bool,
    /// Errors.
    pub errors: u64,
}

impl Row {
    /// Reads the figures from a JSON report.
    pub fn from_report(label: &str, report: &Value) -> Option<Self> {
        let results = report.get("results")?;
        let publish = &results["publish"];
        let server = &results["server"];
        let generator = &results["generator"];
        let config = &report["config"];
        let devices = config["devices"]["count"].as_f64().unwrap_or(0.0);
        let offered = match (
            config["publish"]["device_rate"].as_f64(),
            config["publish"]["rate"].as_f64(),
        ) {
            (Some(d), _) if d > 0.0 => Some(d * devices),
            (_, Some(r)) if r > 0.0 => Some(r),
            _ => None,
        };
        let errors = |v: &Value| {
            v.as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
        };
        Some(Self {
            label: label.to_owned(),
            msgs_per_s: publish["msgs_per_s"].as_f64()?,
            offered_per_s: offered,
            p50_ns: publish["puback"]["p50_ns"].as_f64()?,
            p99_ns: publish["puback"]["p99_ns"].as_f64()?,
            cpu_us_per_msg: server["cpu_us_per_msg"].as_f64(),
            rss_bytes: server["rss_end_bytes"].as_f64(),
            rss_per_connection_bytes: server["rss_per_connection_bytes"].as_f64(),
            generator_pct: generator["load_thread_busy_pct"]
                .as_f64()
                .or_else(|| generator["load_thread_cpu_pct"].as_f64())
                .unwrap_or(0.0),
            other_cores: generator["other_processes_cores"].as_f64(),
            counts_add_up: publish["counts_add_up"].as_bool().unwrap_or(false),
            errors: errors(&publish["counts"]["errors"])
                + errors(&results["connections"]["errors"]),
        })
    }
}

fn ms(ns: f64) -> String {
    format!("{:.3}", ns / 1e6)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// Renders the table. `baseline` names the row the ratios are computed from; rows whose
/// run failed are passed as `Err(reason)`.
pub fn table(title: &str, rows: &[(String, Result<Row, String>)], baseline: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:>9} {:>7} {:>7} {:>6} {:>7} {:>5} {:>4} {:>5} {:>4} | {:>6} {:>6} {:>6} {:>6} {:>6}",
        "server",
        "offered",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        "us/msg",
        "RSS MB",
        "KiB/c",
        "gen%",
        "other",
        "err",
        "xmsg/s",
        "xp50",
        "xp99",
        "xCPU",
        "xRSS"
    );
    let base = rows
        .iter()
        .find(|(label, _)| label == baseline)
        .and_then(|(_, row)| row.as_ref().ok());
    for (label, row) in rows {
        let r = match row {
            Ok(r) => r,
            Err(reason) => {
                let _ = writeln!(out, "{label:<10} FAILED: {reason}");
                continue;
            }
        };
        let (rm, r50, r99, rcpu, rrss) = match base {
            Some(b) if b.label != r.label => (
                ratio(Some(b.msgs_per_s), Some(r.msgs_per_s)),
                ratio(Some(b.p50_ns), Some(r.p50_ns)),
                ratio(Some(b.p99_ns), Some(r.p99_ns)),
                ratio(b.cpu_us_per_msg, r.cpu_us_per_msg),
                ratio(b.rss_bytes, r.rss_bytes),
            ),
            _ => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        let dash = || "-".to_owned();
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:>9.0} {:>7} {:>7} {:>6} {:>7} {:>5} {:>4.0} {:>5} {:>4} | {:>6} {:>6} {:>6} {:>6} {:>6}{}",
            label,
            r.offered_per_s.map_or_else(dash, |o| format!("{o:.0}")),
            r.msgs_per_s,
            ms(r.p50_ns),
            ms(r.p99_ns),
            r.cpu_us_per_msg.map_or_else(dash, |v| format!("{v:.2}")),
            r.rss_bytes.map_or_else(dash, |v| format!("{:.1}", v / 1e6)),
            r.rss_per_connection_bytes
                .map_or_else(dash, |v| format!("{:.1}", v / 1024.0)),
            r.generator_pct,
            r.other_cores.map_or_else(dash, |c| format!("{c:.2}")),
            r.errors,
            rm,
            r50,
            r99,
            rcpu,
            rrss,
            if r.counts_add_up {
                ""
            } else {
                "  COUNTS DO NOT ADD UP"
            }
        );
    }
    let _ = writeln!(
        out,
        "us/msg: server CPU per message; KiB/c: server memory per connection; gen%: load thread busy; other: cores used by other processes"
    );
    let _ = writeln!(
        out,
        "x columns: {baseline}'s figure divided by the row's (msgs/s: > 1 means {baseline} is faster; p50, p99, CPU, RSS: < 1 means {baseline} uses less)"
    );
    let noisy: Vec<String> = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .filter_map(|r| {
            r.other_cores
                .filter(|c| *c > 0.1)
                .map(|c| format!("{} {c:.2}", r.label))
        })
        .collect();
    if !noisy.is_empty() {
        let _ = writeln!(
            out,
            "note: other processes used more than 0.1 cores during: {}; those runs are noisy",
            noisy.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(msgs: f64, p50: u64, p99: u64, cpu: f64, rss: u64) -> Value {
        serde_json::json!({
            "results": {
                "publish": {
                    "msgs_per_s": msgs,
                    "puback": {"p50_ns": p50, "p99_ns": p99},
                    "counts_add_up": true,
                    "counts": {"errors": {}},
                },
                "server": {"cpu_us_per_msg": cpu, "rss_end_bytes": rss, "rss_per_connection_bytes": 2048.0},
                "generator": {"load_thread_busy_pct": 40.0, "other_processes_cores": 0.01},
                "connections": {"errors": {"connect_refused": 2}},
            }
        })
    }

    #[test]
    fn ratios_divide_the_baseline_by_each_peer() {
        let shoal = Row::from_report(
            "shoal",
            &report(200_000.0, 400_000, 2_000_000, 4.0, 20_000_000),
        )
        .expect("row");
        let peer = Row::from_report(
            "mosquitto",
            &report(100_000.0, 800_000, 1_000_000, 8.0, 10_000_000),
        )
        .expect("row");
        assert_eq!(peer.errors, 2);
        let rows = vec![
            ("shoal".to_owned(), Ok(shoal)),
            ("mosquitto".to_owned(), Ok(peer)),
            ("rumqttd".to_owned(), Err("did not start".to_owned())),
        ];
        let text = table("canonical", &rows, "shoal");
        let line = text
            .lines()
            .find(|l| l.starts_with("mosquitto"))
            .expect("row");
        let cells: Vec<&str> = line.split_whitespace().collect();
        // msgs/s 2x, p50 0.5x, p99 2x, CPU 0.5x, RSS 2x.
        assert_eq!(cells[1], "-", "closed loop: nothing offered");
        assert_eq!(cells[11], "|");
        assert_eq!(
            &cells[12..17],
            ["2.00x", "0.50x", "2.00x", "0.50x", "2.00x"]
        );
        assert!(text.contains("rumqttd    FAILED: did not start"));
        let shoal_line = text.lines().find(|l| l.starts_with("shoal ")).expect("row");
        assert!(
            shoal_line.ends_with('-'),
            "no ratio against itself: {shoal_line}"
        );
    }

    #[test]
    fn a_failed_baseline_leaves_ratios_empty() {
        let peer = Row::from_report("mosquitto", &report(1.0, 1, 1, 1.0, 1)).expect("row");
        let rows = vec![
            ("shoal".to_owned(), Err("no MQTT listener".to_owned())),
            ("mosquitto".to_owned(), Ok(peer)),
        ];
        let text = table("t", &rows, "shoal");
        let line = text
            .lines()
            .find(|l| l.starts_with("mosquitto"))
            .expect("row");
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[12..17], ["-", "-", "-", "-", "-"], "{line}");
        assert!(Row::from_report("x", &serde_json::json!({})).is_none());
    }
}
