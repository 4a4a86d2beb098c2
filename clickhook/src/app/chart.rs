//! Charts drawn on the server as SVG: no script, no library, readable with JavaScript off.
//! Colours come from the stylesheet (`.human`, `.bot`, `.trend`).

use maud::{html, Markup};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
/// Room under the bars for the first and last bucket's label.
const AXIS: f64 = 18.0;

/// One bar: its label and its two stacked parts.
pub struct Bar {
    pub label: String,
    pub human: i64,
    pub bot: i64,
}

/// The rectangles of stacked bars, people at the bottom: (x, width, y, height) of each part,
/// scaled so the highest bar fills the plot.
fn layout(bars: &[Bar]) -> Vec<[(f64, f64, f64, f64); 2]> {
    let top = bars.iter().map(|b| b.human + b.bot).max().unwrap_or(0).max(1) as f64;
    let plot = HEIGHT - AXIS;
    let slot = WIDTH / bars.len().max(1) as f64;
    let gap = (slot * 0.15).min(4.0);
    bars.iter()
        .enumerate()
        .map(|(i, b)| {
            let x = i as f64 * slot + gap / 2.0;
            let (h, o) = (b.human as f64 / top * plot, b.bot as f64 / top * plot);
            [(x, slot - gap, plot - h, h), (x, slot - gap, plot - h - o, o)]
        })
        .collect()
}

/// People and scanners per bucket, stacked; each bar's numbers in its tooltip.
pub fn stacked_bars(bars: &[Bar], caption: &str) -> Markup {
    let top = bars.iter().map(|b| b.human + b.bot).max().unwrap_or(0);
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(caption) preserveAspectRatio="none" {
                @for (b, [h, o]) in bars.iter().zip(layout(bars)) {
                    g {
                        title { (b.label) ": " (b.human) " people, " (b.bot) " scanners" }
                        rect.human x=(h.0) width=(h.1) y=(h.2) height=(h.3) {}
                        rect.bot x=(o.0) width=(o.1) y=(o.2) height=(o.3) {}
                    }
                }
                @if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
                    text.axis x="0" y=(HEIGHT - 4.0) { (first.label) }
                    text.axis x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { (last.label) }
                }
            }
            figcaption {
                span.key.human-key { "People" } " "
                span.key.bot-key { "Scanners" } " "
                span.muted { "highest bar: " (top) " clicks" }
            }
        }
    }
}

/// The points of a small trend line through `values`, 0 at the bottom.
fn trend_points(values: &[i64], w: f64, h: f64) -> String {
    let top = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if values.len() > 1 { w / (values.len() - 1) as f64 } else { 0.0 };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| format!("{:.1},{:.1}", i as f64 * step, h - 1.0 - v as f64 / top * (h - 2.0)))
        .collect();
    points.join(" ")
}

/// A sparkline of the last days' human clicks.
pub fn sparkline(values: &[i64], label: &str) -> Markup {
    let (w, h) = (112.0, 24.0);
    html! {
        svg.trend viewBox={ "0 0 " (w) " " (h) } width=(w) height=(h) role="img" aria-label=(label) {
            title { (label) }
            polyline points=(trend_points(values, w, h)) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(human: i64, bot: i64) -> Bar {
        Bar { label: String::new(), human, bot }
    }

    #[test]
    fn the_highest_bar_fills_the_plot_and_parts_stack() {
        let l = layout(&[bar(2, 2), bar(1, 0), bar(0, 0)]);
        let plot = HEIGHT - AXIS;
        let [h, o] = l[0];
        assert!((h.3 + o.3 - plot).abs() < 1e-9, "4 of 4 fills the plot");
        assert!((h.3 - o.3).abs() < 1e-9, "2 people, 2 scanners: equal parts");
        assert!((o.2 + o.3 - h.2).abs() < 1e-9, "scanners sit on people");
        assert!((l[1][0].3 - plot / 4.0).abs() < 1e-9, "1 of 4 is a quarter");
        assert_eq!(l[2][0].3 + l[2][1].3, 0.0, "nothing draws nothing");
        assert!(l[1][0].0 > l[0][0].0 + l[0][0].1, "bars do not overlap");
    }

    #[test]
    fn no_bars_and_no_clicks_draw_without_dividing_by_zero() {
        assert!(layout(&[]).is_empty());
        assert_eq!(trend_points(&[0, 0], 10.0, 10.0), "0.0,9.0 10.0,9.0");
        assert_eq!(trend_points(&[0, 5, 10], 10.0, 10.0), "0.0,9.0 5.0,5.0 10.0,1.0");
    }
}
