//! Line charts as SVG, drawn on the server: no chart library, no script.
//! Colours come from the stylesheet (`.series-*` classes); every chart has
//! a title and a description in words for screen readers.

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
    /// Times of notable events (rollback) drawn as vertical markers.
    pub(crate) markers: Vec<(u64, &'static str)>,
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
        let transform = |v: f64| if self.log { v.max(1e-3).log10() } else { v };
        let values = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])))
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
        if !self.log {
            lo = lo.min(0.0);
        }
        if hi - lo < 1e-12 {
            hi = lo + 1.0;
        }
        hi += (hi - lo) * 0.05;
        let span = (t1 - t0).max(1) as f64;
        let x = |t: u64| LEFT + (t - t0) as f64 / span * (WIDTH - LEFT - RIGHT);
        let y = |v: f64| {
            let v = transform(if v.is_finite() { v } else { hi });
            TOP + (1.0 - (v - lo) / (hi - lo)) * (HEIGHT - TOP - BOTTOM)
        };
        let mut svg = String::with_capacity(4096 + 64 * self.series.iter().map(|s| s.points.len()).sum::<usize>());
        // Grid and value axis.
        for i in 0..=4 {
            let value = lo + (hi - lo) * f64::from(i) / 4.0;
            let shown = if self.log { 10f64.powf(value) } else { value };
            let py = TOP + (1.0 - f64::from(i) / 4.0) * (HEIGHT - TOP - BOTTOM);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT,
                LEFT - 6.0,
                py + 4.0,
                escape(&(self.format)(shown))
            );
        }
        // Time axis: start and end.
        let _ = write!(
            svg,
            r#"<text class="tick" x="{LEFT}" y="{}" text-anchor="start">{}</text><text class="tick" x="{}" y="{}" text-anchor="end">{}</text>"#,
            HEIGHT - 8.0,
            clock(t0),
            WIDTH - RIGHT,
            HEIGHT - 8.0,
            clock(t1)
        );
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
        for (t, label) in &self.markers {
            let px = x(*t);
            let _ = write!(
                svg,
                r#"<line class="marker" x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}"/><text class="marker-label" x="{:.1}" y="{}" text-anchor="end">{}</text>"#,
                HEIGHT - BOTTOM,
                px - 4.0,
                TOP + 12.0,
                escape(label)
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

/// `HH:MM` UTC of unix milliseconds.
fn clock(millis: u64) -> String {
    let seconds = millis / 1000;
    format!("{:02}:{:02} UTC", (seconds / 3600) % 24, (seconds / 60) % 60)
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
    fn wilson_bounds_contain_the_rate() {
        let (low, high) = wilson(10, 1000).expect("counts");
        assert!(low < 0.01 && 0.01 < high && low > 0.004 && high < 0.02, "{low} {high}");
        assert_eq!(wilson(0, 0), None);
        assert_eq!(wilson(0, 100).expect("counts").0, 0.0);
    }
}
