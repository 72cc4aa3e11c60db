//! The SVG report, written by hand: throughput over time, latency over time (p50, p99, max
//! per second) and the percentile distributions (HdrHistogram style: the x axis stretches
//! the tail, `1 / (1 - percentile)` on a log scale).

use std::fmt::Write as _;

use crate::clock::human_ns;
use crate::report::Report;
use crate::stats::PercentilePoint;

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 230.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 190.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#7f7f7f",
];

/// Escapes text for SVG content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Linear from min to max.
    Linear { min: f64, max: f64 },
    /// log10 from min to max (both > 0).
    Log { min: f64, max: f64 },
    /// Linear from 0 to max with a tick at every whole number (the percentile axis, whose
    /// values are already decades).
    Decades { max: f64 },
}

impl Scale {
    /// A linear scale from 0 (or the data minimum if negative) to a rounded-up maximum.
    pub fn linear_from_zero(values: impl Iterator<Item = f64>) -> Self {
        let (mut min, mut max) = (0.0_f64, 0.0_f64);
        for v in values.filter(|v| v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
        }
        if max <= min {
            max = min + 1.0;
        }
        Self::Linear {
            min,
            max: nice_ceiling(max),
        }
    }

    /// A log scale covering the positive values, in whole decades.
    pub fn log_decades(values: impl Iterator<Item = f64>) -> Self {
        let (mut min, mut max) = (f64::MAX, f64::MIN_POSITIVE);
        for v in values.filter(|v| v.is_finite() && *v > 0.0) {
            min = min.min(v);
            max = max.max(v);
        }
        if min > max {
            return Self::Log {
                min: 1.0,
                max: 10.0,
            };
        }
        let lo = 10_f64.powf(min.log10().floor());
        let mut hi = 10_f64.powf(max.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        Self::Log { min: lo, max: hi }
    }

    /// Maps a value to 0..=1.
    pub fn unit(&self, v: f64) -> f64 {
        let u = match *self {
            Self::Linear { min, max } => (v - min) / (max - min),
            Self::Decades { max } => v / max,
            Self::Log { min, max } => {
                (v.max(min).log10() - min.log10()) / (max.log10() - min.log10())
            }
        };
        u.clamp(0.0, 1.0)
    }

    fn ticks(&self, format: &dyn Fn(f64) -> String) -> Vec<(f64, String)> {
        match *self {
            Self::Decades { max } => {
                let step = if max > 10.0 { 2.0 } else { 1.0 };
                let mut ticks = Vec::new();
                let mut v = 0.0;
                while v <= max + 1e-9 {
                    ticks.push((v, format(v)));
                    v += step;
                }
                ticks
            }
            Self::Linear { min, max } => {
                // Ticks at round multiples (1, 2 or 5 times a power of ten), 4 to 10 of
                // them, so a label names exactly the value under it.
                let step = nice_step(max - min);
                let mut ticks = Vec::new();
                let mut k = (min / step).ceil();
                while k * step <= max + step * 1e-9 {
                    let v = k * step;
                    ticks.push((v, format(v)));
                    k += 1.0;
                }
                ticks
            }
            Self::Log { min, max } => {
                let mut ticks = Vec::new();
                let mut v = min;
                while v <= max * 1.0001 {
                    ticks.push((v, format(v)));
                    v *= 10.0;
                }
                ticks
            }
        }
    }
}

/// A round tick step giving 4 to 10 ticks over `range`.
fn nice_step(range: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let magnitude = 10_f64.powf((range / 5.0).log10().floor());
    for factor in [1.0, 2.0, 5.0, 10.0] {
        if range / (factor * magnitude) <= 10.0 {
            return factor * magnitude;
        }
    }
    10.0 * magnitude
}

fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10_f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// One line on a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` in data units.
    pub points: Vec<(f64, f64)>,
}

/// A chart panel.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Top edge in the SVG.
    pub top: f64,
    /// The x axis.
    pub x: Scale,
    /// The y axis.
    pub y: Scale,
    /// X tick labels.
    pub x_label: fn(f64) -> String,
    /// Y tick labels.
    pub y_label: fn(f64) -> String,
    /// A shaded x range (the warm-up), if any.
    pub shade: Option<(f64, f64, String)>,
    /// Vertical dashed lines at these x values (reconnect storms).
    pub markers: Vec<f64>,
}

impl Panel {
    fn px(&self, x: f64) -> f64 {
        LEFT + self.x.unit(x) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        self.top + PANEL_HEIGHT - self.y.unit(y) * PANEL_HEIGHT
    }

    /// Draws the frame, ticks, grid, every series and the legend.
    pub fn draw(&self, out: &mut String, series: &[Series]) {
        let (x0, x1) = (LEFT, WIDTH - RIGHT);
        let (y0, y1) = (self.top, self.top + PANEL_HEIGHT);
        let _ = writeln!(
            out,
            r#"<text x="{x0}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
            y0 - 8.0,
            escape(&self.title)
        );
        if let Some((a, b, label)) = &self.shade {
            let (sa, sb) = (self.px(*a), self.px(*b));
            if sb > sa {
                let _ = writeln!(
                    out,
                    r##"<rect x="{sa:.1}" y="{y0}" width="{:.1}" height="{PANEL_HEIGHT}" fill="#eeeeee"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#888">{}</text>"##,
                    sb - sa,
                    sa + 3.0,
                    y0 + 12.0,
                    escape(label)
                );
            }
        }
        for (v, label) in self.y.ticks(&self.y_label) {
            let y = self.py(v);
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                escape(&label)
            );
        }
        for (v, label) in self.x.ticks(&self.x_label) {
            let x = self.px(v);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#eeeeee"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
                y1 + 16.0,
                escape(&label)
            );
        }
        for x in self.markers.iter().map(|m| self.px(*m)) {
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#9467bd" stroke-dasharray="4,3"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#9467bd">storm</text>"##,
                x + 2.0,
                y1 - 4.0
            );
        }
        let _ = writeln!(
            out,
            r##"<rect x="{x0}" y="{y0}" width="{:.1}" height="{PANEL_HEIGHT}" fill="none" stroke="#333"/>"##,
            x1 - x0
        );
        for (k, s) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            if s.points.is_empty() {
                continue;
            }
            let mut points = String::new();
            for (x, y) in &s.points {
                let _ = write!(points, "{:.1},{:.1} ", self.px(*x), self.py(*y));
            }
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#,
                points.trim_end()
            );
            let ly = y0 + 14.0 + 18.0 * k as f64;
            let _ = writeln!(
                out,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
                x1 + 10.0,
                x1 + 30.0,
                x1 + 36.0,
                ly + 4.0,
                escape(&s.name)
            );
        }
    }
}

/// The x position of a percentile on a percentile plot: `log10(1 / (1 - p/100))`, so
/// 90 % → 1, 99 % → 2, 99.9 % → 3; 100 % is placed one decade past the last point.
pub fn percentile_x(percentile: f64, last_finite: f64) -> f64 {
    if percentile >= 100.0 {
        return last_finite + 1.0;
    }
    (1.0 / (1.0 - percentile / 100.0)).log10()
}

/// A percentile distribution as a series.
pub fn percentile_series(name: &str, points: &[PercentilePoint]) -> Series {
    let last_finite = points
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| percentile_x(p.percentile, 0.0))
        .fold(0.0, f64::max);
    Series {
        name: name.to_owned(),
        points: points
            .iter()
            .map(|p| (percentile_x(p.percentile, last_finite), p.value_ns as f64))
            .collect(),
    }
}

fn percent_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10_f64.powf(-x));
    if x < 0.5 {
        "0%".into()
    } else {
        let digits = (x.round() as usize).saturating_sub(2);
        format!("{p:.digits$}%")
    }
}

fn seconds_label(x: f64) -> String {
    format!("{x:.0}s")
}

fn ns_label(v: f64) -> String {
    human_ns(v as u64)
}

fn rate_label(v: f64) -> String {
    crate::driver::si(v)
}

/// Writes the whole SVG document for a report.
pub fn render(report: &Report) -> String {
    let timeline = &report.timeline;
    let p = &report.results.publish;
    let x_scale = Scale::Linear {
        min: timeline.first().map_or(0.0, |t| t.t_s.min(0.0)).floor(),
        max: timeline.last().map_or(1.0, |t| t.t_s).ceil().max(1.0),
    };
    let warmup_s = report.config.publish.warmup.ns() as f64 / 1e9;
    let shade = Some((0.0, warmup_s, "warm-up".to_owned()));
    let end_s = timeline.last().map_or(0.0, |t| t.t_s);
    let mut markers = Vec::new();
    for storm in &report.config.storms {
        let mut at = storm.at.ns() as f64 / 1e9;
        let every = storm.every.ns() as f64 / 1e9;
        while at <= end_s && markers.len() < 200 {
            markers.push(at);
            if every <= 0.0 {
                break;
            }
            at += every;
        }
    }
    let mut series_rate = vec![Series {
        name: "acks/s".into(),
        points: timeline.iter().map(|t| (t.t_s, t.acked_per_s)).collect(),
    }];
    if report.config.publish.qos == 0 {
        series_rate[0] = Series {
            name: "sent/s".into(),
            points: timeline.iter().map(|t| (t.t_s, t.sent as f64)).collect(),
        };
    }
    let rate_panel = Panel {
        title: "Throughput per second".into(),
        top: 85.0,
        x: x_scale,
        y: Scale::linear_from_zero(series_rate[0].points.iter().map(|p| p.1)),
        x_label: seconds_label,
        y_label: rate_label,
        shade: shade.clone(),
        markers: markers.clone(),
    };
    let with_samples: Vec<_> = timeline.iter().filter(|t| t.acked > 0).collect();
    let latency_series = vec![
        Series {
            name: "p50".into(),
            points: with_samples
                .iter()
                .map(|t| (t.t_s, t.p50_ns as f64))
                .collect(),
        },
        Series {
            name: "p99".into(),
            points: with_samples
                .iter()
                .map(|t| (t.t_s, t.p99_ns as f64))
                .collect(),
        },
        Series {
            name: "max".into(),
            points: with_samples
                .iter()
                .map(|t| (t.t_s, t.max_ns as f64))
                .collect(),
        },
    ];
    let latency_panel = Panel {
        title: "PUBACK latency per second".into(),
        top: 85.0 + PANEL_HEIGHT + 70.0,
        x: x_scale,
        y: Scale::log_decades(
            latency_series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        ),
        x_label: seconds_label,
        y_label: ns_label,
        shade,
        markers,
    };
    let d = &report.results.distributions;
    let mut distribution = vec![percentile_series("PUBACK", &d.puback)];
    // Closed loop: service time is PUBACK latency; drawing it twice hides one line.
    if p.latency_origin == crate::schedule::LatencyOrigin::Intended {
        distribution.push(percentile_series("service time", &d.service_time));
    }
    distribution.push(percentile_series("connect", &d.connect));
    if !d.end_to_end.is_empty() {
        distribution.push(percentile_series("end-to-end", &d.end_to_end));
    }
    distribution.retain(|s| !s.points.is_empty());
    let x_max = distribution
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max)
        .ceil();
    let percentile_panel = Panel {
        title: "Latency by percentile (window)".into(),
        top: 85.0 + 2.0 * (PANEL_HEIGHT + 70.0),
        x: Scale::Decades { max: x_max },
        y: Scale::log_decades(
            distribution
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        ),
        x_label: percent_label,
        y_label: ns_label,
        shade: None,
        markers: Vec::new(),
    };
    let height = percentile_panel.top + PANEL_HEIGHT + 60.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let title = format!(
        "shoal-perf {} — {} {} ({}) — {:.0} msgs/s, PUBACK p99 {}",
        report.config.name,
        report.target.label,
        report.target.address,
        if report.target.tls { "TLS" } else { "plain" },
        p.msgs_per_s,
        human_ns(p.puback.p99_ns)
    );
    let _ = writeln!(
        out,
        r#"<text x="20" y="28" font-size="16">{}</text>"#,
        escape(&title)
    );
    let subtitle = format!(
        "{} devices, QoS {}, {} B, {} in flight, {} · commit {} · {} · {}",
        report.config.devices.count,
        report.config.publish.qos,
        report.config.publish.payload,
        report.config.publish.inflight,
        report
            .config
            .open_loop_rate()
            .map_or("closed loop".to_owned(), |r| format!("open loop {r:.0}/s")),
        report
            .provenance
            .git_commit
            .as_deref()
            .map_or("unknown", |c| &c[..c.len().min(12)]),
        report.provenance.machine.cpu_model,
        report
            .provenance
            .started_at
            .split('.')
            .next()
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        r##"<text x="20" y="48" font-size="11" fill="#555">{}</text>"##,
        escape(&subtitle)
    );
    rate_panel.draw(&mut out, &series_rate);
    latency_panel.draw(&mut out, &latency_series);
    percentile_panel.draw(&mut out, &distribution);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that every element opened is closed in order (enough to catch a broken writer
    /// without an XML parser).
    fn assert_well_formed(svg: &str) {
        let mut stack = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("tag closes") + start;
            let tag = &rest[start + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.to_owned()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().expect("a name");
                stack.push(name.to_owned());
            }
            assert!(!tag.contains('<'), "unescaped '<' inside a tag");
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn escaping_covers_markup_characters() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }

    #[test]
    fn scales_map_into_the_unit_interval() {
        let lin = Scale::linear_from_zero([3.0, 7.3].into_iter());
        assert_eq!(
            lin,
            Scale::Linear {
                min: 0.0,
                max: 10.0
            }
        );
        assert!((lin.unit(5.0) - 0.5).abs() < 1e-12);
        let log = Scale::log_decades([150.0, 2_000_000.0].into_iter());
        assert_eq!(
            log,
            Scale::Log {
                min: 100.0,
                max: 10_000_000.0
            }
        );
        assert!((log.unit(10_000.0) - 0.4).abs() < 1e-12);
        assert!(log.unit(1.0).abs() < 1e-12, "below the range clamps");
        assert_eq!(log.ticks(&|v| format!("{v}")).len(), 6);
    }

    #[test]
    fn linear_ticks_fall_on_round_values() {
        let ticks = |max: f64| {
            Scale::Linear { min: 0.0, max }
                .ticks(&|v| format!("{v}"))
                .into_iter()
                .map(|(v, _)| v)
                .collect::<Vec<_>>()
        };
        assert_eq!(ticks(13.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        assert_eq!(
            ticks(10.0),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
        );
        assert_eq!(
            ticks(50_000.0),
            [0.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0]
        );
        let negative = Scale::Linear {
            min: -3.0,
            max: 12.0,
        }
        .ticks(&|v| format!("{v}"));
        assert_eq!(negative.first().map(|t| t.0), Some(-2.0));
    }

    #[test]
    fn percentile_axis_stretches_the_tail() {
        assert!((percentile_x(90.0, 0.0) - 1.0).abs() < 1e-9);
        assert!((percentile_x(99.9, 0.0) - 3.0).abs() < 1e-9);
        assert!((percentile_x(100.0, 4.2) - 5.2).abs() < 1e-9);
        assert_eq!(percent_label(0.0), "0%");
        assert_eq!(percent_label(1.0), "90%");
        assert_eq!(percent_label(3.0), "99.9%");
    }

    #[test]
    fn a_panel_draws_well_formed_svg_inside_its_frame() {
        let panel = Panel {
            title: "Latency <p99> & more".into(),
            top: 50.0,
            x: Scale::Linear {
                min: 0.0,
                max: 10.0,
            },
            y: Scale::Log {
                min: 1_000.0,
                max: 1_000_000.0,
            },
            x_label: seconds_label,
            y_label: ns_label,
            shade: Some((0.0, 1.0, "warm-up".into())),
            markers: vec![5.0],
        };
        let series = vec![Series {
            name: "p99".into(),
            points: (0..=10)
                .map(|i| (f64::from(i), 1_000.0 * 10_f64.powf(f64::from(i) / 4.0)))
                .collect(),
        }];
        let mut out = String::from("<svg>");
        panel.draw(&mut out, &series);
        out.push_str("</svg>");
        assert_well_formed(&out);
        assert!(out.contains("Latency &lt;p99&gt; &amp; more"));
        let polyline = out
            .lines()
            .find(|l| l.starts_with("<polyline"))
            .expect("a polyline");
        let points = polyline
            .split("points=\"")
            .nth(1)
            .expect("points")
            .trim_end_matches("\"/>");
        let coords: Vec<(f64, f64)> = points
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').expect("x,y");
                (x.parse().expect("x"), y.parse().expect("y"))
            })
            .collect();
        assert_eq!(coords.len(), 11);
        for (x, y) in coords {
            assert!((LEFT..=WIDTH - RIGHT).contains(&x), "x {x}");
            assert!((50.0..=50.0 + PANEL_HEIGHT).contains(&y), "y {y}");
        }
    }
}
