//! Line charts as SVG, drawn on the server: no chart library, no script.
//! Colours come from the stylesheet (`.series-*` classes); every chart has
//! a title and a description in words for screen readers.
//!
//! Axes carry round values (1, 2 or 5 times a power of ten; whole minutes
//! or hours on the time axis) and charts of one page may share a time
//! domain, so a moment sits at the same place in each of them.

use std::fmt::Write;

use maud::{Markup, PreEscaped, html};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One line.
pub(crate) struct Series {
    pub(crate) label: &'static str,
    /// CSS class of its stroke, e.g. `series-treatment`.
    pub(crate) class: &'static str,
    pub(crate) points: Vec<(u64, f64)>,
    /// Drawn as steps (exposure) rather than straight segments.
    pub(crate) steps: bool,
}

/// A shaded band between a lower and an upper line (a confidence interval).
pub(crate) struct Band {
    pub(crate) class: &'static str,
    /// (time, lower, upper).
    pub(crate) points: Vec<(u64, f64, f64)>,
}

/// A horizontal line at a value (a threshold), with its label.
pub(crate) struct Rule {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) class: &'static str,
}

pub(crate) struct Chart {
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    /// What the chart shows, in words (its description for screen readers).
    pub(crate) description: String,
    pub(crate) series: Vec<Series>,
    pub(crate) bands: Vec<Band>,
    pub(crate) rules: Vec<Rule>,
    /// A logarithmic value axis (for evidence that grows by orders of magnitude).
    pub(crate) log: bool,
    pub(crate) format: fn(f64) -> String,
    /// Notable moments (step boundaries, a rollback) drawn as vertical lines.
    pub(crate) markers: Vec<Marker>,
    /// The time axis, shared by the charts of a page; `None`: the points' own.
    pub(crate) domain: Option<(u64, u64)>,
}

/// A vertical line at a moment, with its label.
pub(crate) struct Marker {
    pub(crate) at: u64,
    pub(crate) label: String,
    /// CSS class: `marker` (a rollback) or `marker-step`.
    pub(crate) class: &'static str,
}

impl Chart {
    pub(crate) fn render(&self) -> Markup {
        let times = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().map(|p| p.0)));
        let (mut t0, mut t1) = (u64::MAX, 0u64);
        for t in times {
            t0 = t0.min(t);
            t1 = t1.max(t);
        }
        if let Some((start, end)) = self.domain.filter(|_| t0 <= t1) {
            (t0, t1) = (start.min(t0), end.max(t1));
        }
        let transform = |v: f64| if self.log { v.max(1e-3).log10() } else { v };
        let values = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            // Bands do not widen the axis (they are clipped to it): the wide
            // interval of a quiet check must not flatten every line.
            .chain(self.rules.iter().map(|r| r.value))
            .filter(|v| v.is_finite())
            .map(transform);
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if t0 > t1 {
            return html! {
                figure.chart #(self.id) {
                    figcaption { (self.title) }
                    p.empty { "No checks yet." }
                }
            };
        }
        if lo > hi {
            (lo, hi) = (0.0, 1.0); // points without a finite value
        }
        if !self.log {
            lo = lo.min(0.0);
        }
        let ticks = if self.log { log_ticks(lo, hi) } else { round_ticks(lo, hi) };
        (lo, hi) = (ticks[0], ticks[ticks.len() - 1]);
        let span = (t1 - t0).max(1) as f64;
        let x = |t: u64| LEFT + t.saturating_sub(t0) as f64 / span * (WIDTH - LEFT - RIGHT);
        let y = |v: f64| {
            let v = transform(if v.is_finite() { v } else { hi }).clamp(lo, hi);
            TOP + (1.0 - (v - lo) / (hi - lo)) * (HEIGHT - TOP - BOTTOM)
        };
        let mut svg = String::with_capacity(4096 + 64 * self.series.iter().map(|s| s.points.len()).sum::<usize>());
        // Grid and value axis.
        for value in &ticks {
            let shown = if self.log { 10f64.powi(*value as i32) } else { *value };
            let py = TOP + (1.0 - (value - lo) / (hi - lo)) * (HEIGHT - TOP - BOTTOM);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT,
                LEFT - 6.0,
                py + 4.0,
                escape(&(self.format)(shown))
            );
        }
        // Time axis: round times of day, UTC (the page's script shows them
        // in local time when the operator asks: `data-at` is the instant).
        let seconds_shown = t1 - t0 < 10 * 60_000;
        for (index, t) in time_ticks(t0, t1).into_iter().enumerate() {
            let px = x(t);
            let anchor = if px < LEFT + 24.0 {
                "start"
            } else if px > WIDTH - RIGHT - 24.0 {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}"/><text class="tick time" x="{px:.1}" y="{}" text-anchor="{anchor}" data-at="{t}" data-seconds="{}"><tspan class="clock">{}</tspan>{}</text>"#,
                HEIGHT - BOTTOM,
                HEIGHT - 8.0,
                u8::from(seconds_shown),
                clock(t, seconds_shown),
                // The zone once; phones hide it (the description says UTC).
                if index == 0 { r#"<tspan class="zone"> UTC</tspan>"# } else { "" }
            );
        }
        for band in &self.bands {
            let mut path = String::new();
            for (t, _, upper) in &band.points {
                let _ = write!(path, "{}{:.1},{:.1} ", if path.is_empty() { "M" } else { "L" }, x(*t), y(*upper));
            }
            for (t, lower, _) in band.points.iter().rev() {
                let _ = write!(path, "L{:.1},{:.1} ", x(*t), y(*lower));
            }
            if !band.points.is_empty() {
                let _ = write!(svg, r#"<path class="{}" d="{}Z"/>"#, band.class, path.trim_end());
            }
        }
        for rule in &self.rules {
            let py = y(rule.value);
            let _ = write!(
                svg,
                r#"<line class="{}" x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}"/><text class="rule-label" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                rule.class,
                WIDTH - RIGHT,
                WIDTH - RIGHT - 4.0,
                py - 4.0,
                escape(&rule.label)
            );
        }
        for marker in &self.markers {
            let px = x(marker.at);
            let _ = write!(
                svg,
                r#"<line class="{}" x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}"/><text class="{}-label" x="{:.1}" y="{}" text-anchor="end">{}</text>"#,
                marker.class,
                HEIGHT - BOTTOM,
                marker.class,
                px - 3.0,
                TOP + 10.0,
                escape(&marker.label)
            );
        }
        for series in &self.series {
            let mut path = String::with_capacity(series.points.len() * 16);
            let mut last: Option<f64> = None; // the previous point's y
            for (t, v) in &series.points {
                let (px, py) = (x(*t), y(*v));
                match last {
                    None => {
                        let _ = write!(path, "M{px:.1},{py:.1}");
                    }
                    Some(_) if series.steps => {
                        let _ = write!(path, "H{px:.1}V{py:.1}");
                    }
                    Some(_) => {
                        let _ = write!(path, "L{px:.1},{py:.1}");
                    }
                }
                last = Some(py);
            }
            if !path.is_empty() {
                let _ = write!(svg, r#"<path class="line {}" d="{path}"/>"#, series.class);
            }
        }
        let title_id = format!("{}-title", self.id);
        let description_id = format!("{}-description", self.id);
        html! {
            figure.chart #(self.id) {
                figcaption { (self.title) }
                svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby={ (title_id) " " (description_id) }
                    preserveAspectRatio="xMidYMid meet" {
                    title #(title_id) { (self.title) }
                    desc #(description_id) { (self.description) }
                    (PreEscaped(svg))
                }
                ul.legend {
                    @for series in &self.series { li { span class={ "swatch " (series.class) } aria-hidden="true" {} (series.label) } }
                    @for rule in &self.rules { li { span class={ "swatch " (rule.class) } aria-hidden="true" {} (rule.label) } }
                }
            }
        }
    }
}

/// `HH:MM` (or `HH:MM:SS`) UTC of unix milliseconds.
fn clock(millis: u64, seconds_shown: bool) -> String {
    let seconds = millis / 1000;
    if seconds_shown {
        format!("{:02}:{:02}:{:02}", (seconds / 3600) % 24, (seconds / 60) % 60, seconds % 60)
    } else {
        format!("{:02}:{:02}", (seconds / 3600) % 24, (seconds / 60) % 60)
    }
}

/// A tick's value without trailing zeros: `0.5`, `2`, `0.025`, `1e-5`.
pub(crate) fn tick(value: f64) -> String {
    if value != 0.0 && !(1e-3..1e6).contains(&value.abs()) {
        return format!("{value:e}");
    }
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Most labelled values on an axis.
const MOST_TICKS: f64 = 5.0;

/// Round values covering `lo..=hi`: multiples of 1, 2 or 5 times a power of
/// ten, at most six of them; the first is at or below `lo`, the last at or
/// above `hi` (they become the axis's ends).
pub(crate) fn round_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = if !(lo.is_finite() && hi.is_finite()) {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo, lo + 1.0)
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / MOST_TICKS;
    let exponent = raw.log10().floor() as i32;
    let magnitude = 10f64.powi(exponent);
    let mantissa = [1.0, 2.0, 5.0].into_iter().find(|m| m * magnitude >= raw).unwrap_or(10.0);
    let step = mantissa * magnitude;
    let (first, last) = ((lo / step).floor() as i64, (hi / step).ceil() as i64);
    // i × mantissa, scaled by dividing or multiplying by an exact power of
    // ten: no drift such as 0.6000000000000001.
    let scale = |i: i64| {
        let whole = i as f64 * mantissa;
        if exponent < 0 { whole / 10f64.powi(-exponent) } else { whole * magnitude }
    };
    (first..=last).map(scale).collect()
}

/// Whole powers of ten covering `lo..=hi` (both log10 values), every other
/// one when there are many.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (first, mut last) = (lo.floor() as i64, hi.ceil() as i64);
    if last == first {
        last += 1;
    }
    let stride = ((last - first) as f64 / MOST_TICKS).ceil().max(1.0) as i64;
    let mut ticks: Vec<f64> = (first..=last).step_by(stride as usize).map(|p| p as f64).collect();
    if *ticks.last().expect("at least one") < last as f64 {
        ticks.push((ticks[ticks.len() - 1] + stride as f64).max(last as f64));
    }
    ticks
}

/// Round moments within `t0..=t1` (unix milliseconds): every 10 or 30
/// seconds, 1, 2, 5, 10, 15 or 30 minutes, 1, 2, 3, 6 or 12 hours, or days,
/// whichever gives at most six.
pub(crate) fn time_ticks(t0: u64, t1: u64) -> Vec<u64> {
    const SECOND: u64 = 1000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    const STEPS: [u64; 14] = [
        10 * SECOND,
        30 * SECOND,
        MINUTE,
        2 * MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        15 * MINUTE,
        30 * MINUTE,
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        24 * HOUR,
    ];
    let span = t1.saturating_sub(t0);
    let step = STEPS
        .into_iter()
        .find(|step| span / step < 6)
        .unwrap_or_else(|| span / 5 / (24 * HOUR) * (24 * HOUR) + 24 * HOUR);
    let first = t0.div_ceil(step) * step;
    (0..).map(|i| first + i * step).take_while(|t| *t <= t1).collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The 95 % Wilson interval of `errors` in `total`.
pub(crate) fn wilson(errors: u64, total: u64) -> Option<(f64, f64)> {
    if total == 0 {
        return None;
    }
    let (n, p) = (total as f64, errors as f64 / total as f64);
    let z2 = 1.96f64 * 1.96;
    let center = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = 1.96 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Some(((center - half).max(0.0), (center + half).min(1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: usize) -> Chart {
        Chart {
            id: "test",
            title: "Test",
            description: "a test".into(),
            series: vec![Series {
                label: "treatment",
                class: "series-treatment",
                points: (0..points as u64).map(|i| (i * 60_000, i as f64)).collect(),
                steps: false,
            }],
            bands: vec![],
            rules: vec![Rule { label: "threshold <1000>".into(), value: 10.0, class: "rule-bad" }],
            log: false,
            format: |v| format!("{v:.0}"),
            markers: vec![],
            domain: None,
        }
    }

    #[test]
    fn a_chart_is_svg_with_its_words() {
        let text = chart(720).render().into_string();
        assert!(text.contains(r#"role="img""#) && text.contains("<title"), "accessible");
        assert!(text.contains("threshold &lt;1000&gt;"), "labels are escaped");
        assert_eq!(text.matches("<path").count(), 1);
        assert!(chart(0).render().into_string().contains("No checks yet."));
    }

    #[test]
    fn axes_carry_round_values() {
        assert_eq!(round_ticks(0.0, 1.94), vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(round_ticks(0.0, 13.7), vec![0.0, 5.0, 10.0, 15.0]);
        assert_eq!(round_ticks(0.0, 1000.0), vec![0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]);
        assert_eq!(round_ticks(0.0, 0.0), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(log_ticks(-1.3, 2.0), vec![-2.0, -1.0, 0.0, 1.0, 2.0]);
        assert_eq!(log_ticks(-3.0, 9.0), vec![-3.0, 0.0, 3.0, 6.0, 9.0]);
        let start = 1_700_000_000_000 + 17_000; // 22:13:37 UTC
        let ticks = time_ticks(start, start + 40 * 60_000);
        assert_eq!(ticks.iter().map(|t| clock(*t, false)).collect::<Vec<_>>(), ["22:20", "22:30", "22:40", "22:50"]);
        assert!(time_ticks(start, start + 3 * 86_400_000).len() <= 6);
        let text = chart(30).render().into_string();
        assert!(text.contains(">0<") && text.contains(">30<"), "round ends: {text}");
    }

    #[test]
    fn ticks_read_as_written() {
        assert_eq!(
            [tick(0.5), tick(2.0), tick(0.025), tick(0.0), tick(1e-5), tick(1e6)],
            ["0.5", "2", "0.025", "0", "1e-5", "1e6"]
        );
    }

    #[test]
    fn charts_of_a_page_share_their_time_axis() {
        let mut shared = chart(10);
        shared.domain = Some((0, 20 * 60_000));
        let text = shared.render().into_string();
        // The last of ten points (9 min) sits before the middle of a 20-minute axis.
        let path = text.split("class=\"line series-treatment\" d=\"").nth(1).expect("a line");
        let last_x: f64 =
            path.split('"').next().expect("d").rsplit(['L', ',']).nth(1).expect("x").parse().expect("number");
        assert!(last_x < (LEFT + WIDTH - RIGHT) / 2.0, "{last_x}");
    }

    #[test]
    fn wilson_bounds_contain_the_rate() {
        let (low, high) = wilson(10, 1000).expect("counts");
        assert!(low < 0.01 && 0.01 < high && low > 0.004 && high < 0.02, "{low} {high}");
        assert_eq!(wilson(0, 0), None);
        assert_eq!(wilson(0, 100).expect("counts").0, 0.0);
    }
}
