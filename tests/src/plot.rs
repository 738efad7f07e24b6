//! SVG panels for the pictures the benchmarks and `make dashboard-picture` draw: a title, a
//! value axis with a unit, a time axis, and a line per series.

// Plotting is coordinate arithmetic: short names (x, y, w, h) read best.
#![allow(clippy::cast_precision_loss, clippy::many_single_char_names)]

use std::fmt::Write as _;

pub const COLOURS: [&str; 4] = ["#3274d9", "#e0752d", "#56a64b", "#a352cc"];

/// One panel: title, unit, and `(legend, points)` series.
pub struct Panel {
    pub title: String,
    pub unit: &'static str,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// `text` safe inside an SVG text element.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A nice upper bound for an axis.
pub fn ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(max)
}

/// Draws `panel` (440 x 230) with its top-left corner at `(x, y)`, time from 0 to `duration`.
pub fn draw(out: &mut String, panel: &Panel, (x, y): (f64, f64), duration: f64) {
    let (w, h) = (440.0, 230.0);
    let (left, top, right, bottom) = (x + 48.0, y + 30.0, x + w - 12.0, y + h - 42.0);
    let max = panel
        .series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
        .fold(0.0, f64::max);
    let top_value = ceiling(max);
    let _ = write!(
        out,
        r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" fill="#181b1f" stroke="#2c3235"/><text x="{}" y="{}" fill="#ccccdc" font-size="13" font-weight="bold">{}</text>"##,
        x + 10.0,
        y + 19.0,
        escape(&panel.title)
    );
    for i in 0..=4 {
        let value = top_value * f64::from(i) / 4.0;
        let gy = bottom - (bottom - top) * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{gy}" x2="{right}" y2="{gy}" stroke="#2c3235"/><text x="{}" y="{}" fill="#8e8e8e" font-size="10" text-anchor="end">{}</text>"##,
            left - 4.0,
            gy + 3.0,
            format_value(value, panel.unit)
        );
    }
    for i in 0..=6 {
        let t = duration * f64::from(i) / 6.0;
        let gx = left + (right - left) * f64::from(i) / 6.0;
        let _ = write!(
            out,
            r##"<text x="{gx}" y="{}" fill="#8e8e8e" font-size="10" text-anchor="middle">{:.0}s</text>"##,
            bottom + 13.0,
            t
        );
    }
    let mut legend_x = left;
    for (i, (legend, points)) in panel.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| {
                format!(
                    "{:.1},{:.1}",
                    left + (right - left) * t / duration,
                    bottom - (bottom - top) * v / top_value
                )
            })
            .collect();
        if path.len() > 1 {
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{}"/>"#,
                path.join(" ")
            );
        }
        let _ = write!(
            out,
            r##"<rect x="{legend_x}" y="{}" width="10" height="3" fill="{colour}"/><text x="{}" y="{}" fill="#ccccdc" font-size="10">{legend}</text>"##,
            bottom + 24.0,
            legend_x + 14.0,
            bottom + 28.0,
            legend = escape(legend)
        );
        legend_x += 14.0 + 6.2 * legend.len() as f64 + 14.0;
    }
}

pub fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "s" if v < 1.0 && v > 0.0 => format!("{:.0} ms", v * 1e3),
        "s" => format!("{v:.1} s"),
        "/s" if v.fract() != 0.0 => format!("{v:.1}/s"),
        "/s" => format!("{v:.0}/s"),
        "ms" => format!("{v:.0} ms"),
        "MiB" => format!("{v:.0} MiB"),
        _ => format!("{v:.0}"),
    }
}
