//! A small SVG writer: scales with ticks, and the few shapes report charts draw.
//!
//! Written by hand rather than with `plotters`: its SVG backend lays text out with system fonts
//! (font-kit/fontconfig) and has no fill patterns, while reports need hatched projection bars,
//! `<title>` tooltips, byte-stable output and no native dependencies. Charts stay plain SVG
//! that browsers and GitHub render without scripts.
use std::fmt::Write;

/// Escape text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A short human number: 1.2k, 35, 0.42, 3.4e-3.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "?".into()
    } else if a >= 1e15 {
        format!("{}P", trim(v / 1e15))
    } else if a >= 1e12 {
        format!("{}T", trim(v / 1e12))
    } else if a >= 1e9 {
        format!("{}G", trim(v / 1e9))
    } else if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else if a >= 0.01 || a == 0.0 {
        trim(v)
    } else {
        format!("{v:.0e}")
    }
}

fn trim(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Maps data values to pixels, linearly or by decades.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    lo: f64,
    hi: f64,
    px0: f64,
    px1: f64,
    log: bool,
}

impl Scale {
    /// A linear scale from 0 (or below, for negative data) to a rounded maximum.
    pub fn linear(max: f64, px0: f64, px1: f64) -> Scale {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let step = nice_step(max / 5.0);
        Scale {
            lo: 0.0,
            hi: (max / step).ceil() * step,
            px0,
            px1,
            log: false,
        }
    }

    /// A log10 scale over whole decades covering `min..max` (both above 0).
    pub fn log(min: f64, max: f64, px0: f64, px1: f64) -> Scale {
        let min = if min.is_finite() && min > 0.0 {
            min
        } else {
            1.0
        };
        let max = if max.is_finite() && max > min {
            max
        } else {
            min * 10.0
        };
        Scale {
            lo: min.log10().floor(),
            hi: max.log10().ceil().max(min.log10().floor() + 1.0),
            px0,
            px1,
            log: true,
        }
    }

    pub fn map(&self, v: f64) -> f64 {
        let x = if self.log { v.max(1e-300).log10() } else { v };
        let t = ((x - self.lo) / (self.hi - self.lo)).clamp(-0.05, 1.05);
        self.px0 + t * (self.px1 - self.px0)
    }

    /// Tick values with labels: every decade on a log scale, nice steps on a linear one.
    pub fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let (lo, hi) = (self.lo as i32, self.hi as i32);
            let every = ((hi - lo) / 8 + 1).max(1);
            (lo..=hi)
                .filter(|e| (e - lo) % every == 0)
                .map(|e| {
                    let v = 10f64.powi(e);
                    (v, short_number(v))
                })
                .collect()
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let n = ((self.hi - self.lo) / step).round() as usize;
            (0..=n)
                .map(|i| {
                    let v = self.lo + step * i as f64;
                    (v, short_number(v))
                })
                .collect()
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// An SVG document being written.
pub struct Svg {
    buf: String,
}

/// Colours for series, distinguishable in print and for common colour-vision deficiencies
/// (Okabe & Ito).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

impl Svg {
    /// Start a chart `id` of `w`×`h` pixels; `title` becomes its accessible name.
    pub fn new(id: &str, w: f64, h: f64, title: &str) -> Svg {
        let mut buf = String::new();
        let _ = write!(
            buf,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{id}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-labelledby="{id}-title" font-family="sans-serif" font-size="12">"#,
            id = esc(id),
        );
        let _ = write!(
            buf,
            "<title id=\"{}-title\">{}</title><rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>",
            esc(id),
            esc(title)
        );
        let _ = write!(
            buf,
            "<text x=\"{:.1}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>",
            w / 2.0,
            esc(title)
        );
        Svg { buf }
    }

    /// A diagonal hatch pattern `id` in `color` (projections are drawn with it).
    pub fn hatch(&mut self, id: &str, color: &str) {
        let _ = write!(
            self.buf,
            r##"<defs><pattern id="{id}" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/><line x1="0" y1="0" x2="0" y2="6" stroke="{color}" stroke-width="3"/></pattern></defs>"##,
            id = esc(id),
            color = esc(color)
        );
    }

    /// A data mark (bar) with a tooltip.
    pub fn bar(&mut self, r: Rect, fill: &str, stroke: &str, tip: &str) {
        let Rect { x, y, w, h } = r;
        let _ = write!(
            self.buf,
            "<rect class=\"mark\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" stroke=\"{}\"><title>{}</title></rect>",
            w.max(0.5),
            h.max(0.5),
            esc(fill),
            esc(stroke),
            esc(tip)
        );
    }

    /// A data mark (point) with a tooltip; `square` for a second kind of point.
    pub fn point(&mut self, x: f64, y: f64, color: &str, square: bool, tip: &str) {
        let shape = if square {
            format!(
                "<rect class=\"mark\" x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\"",
                x - 4.5,
                y - 4.5
            )
        } else {
            format!("<circle class=\"mark\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\"")
        };
        let _ = write!(
            self.buf,
            "{shape} fill=\"{}\" stroke=\"#ffffff\"><title>{}</title>{}",
            esc(color),
            esc(tip),
            if square { "</rect>" } else { "</circle>" }
        );
    }

    /// A data mark (polyline); `dashed` for projected or partial lines.
    pub fn polyline(&mut self, pts: &[(f64, f64)], color: &str, dashed: bool, tip: &str) {
        let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(
            self.buf,
            "<polyline class=\"mark\" points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}><title>{}</title></polyline>",
            p.join(" "),
            esc(color),
            if dashed { " stroke-dasharray=\"6 4\"" } else { "" },
            esc(tip)
        );
    }

    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, color: &str) {
        let _ = write!(
            self.buf,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{}\"/>",
            esc(color)
        );
    }

    /// Text; `anchor` is start, middle or end; `rotate` turns it by -90° (y-axis titles).
    pub fn text(&mut self, x: f64, y: f64, anchor: &str, size: f64, s: &str, rotate: bool) {
        let r = if rotate {
            format!(" transform=\"rotate(-90 {x:.1} {y:.1})\"")
        } else {
            String::new()
        };
        let _ = write!(
            self.buf,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" font-size=\"{size}\"{r}>{}</text>",
            esc(s)
        );
    }

    /// Gridlines, tick labels and axis titles for a plot area.
    /// `ys` is None for charts whose rows are categories (bar charts).
    pub fn axes(
        &mut self,
        area: Area,
        xs: &Scale,
        ys: Option<&Scale>,
        x_title: &str,
        y_title: &str,
    ) {
        for (v, label) in xs.ticks() {
            let x = xs.map(v);
            self.line(x, area.top, x, area.bottom, "#e0e0e0");
            self.text(x, area.bottom + 16.0, "middle", 11.0, &label, false);
        }
        for (v, label) in ys.map(Scale::ticks).unwrap_or_default() {
            let y = ys.map_or(area.bottom, |s| s.map(v));
            self.line(area.left, y, area.right, y, "#e0e0e0");
            self.text(area.left - 6.0, y + 4.0, "end", 11.0, &label, false);
        }
        self.line(area.left, area.bottom, area.right, area.bottom, "#333333");
        self.line(area.left, area.top, area.left, area.bottom, "#333333");
        self.text(
            (area.left + area.right) / 2.0,
            area.bottom + 36.0,
            "middle",
            12.0,
            x_title,
            false,
        );
        let mid = (area.top + area.bottom) / 2.0;
        self.text(area.left - 52.0, mid, "middle", 12.0, y_title, true);
    }

    /// Legend entries, one per line from (x, y): a swatch (hatched or dashed if asked) and text.
    pub fn legend(&mut self, x: f64, y: f64, entries: &[LegendEntry]) {
        for (i, e) in entries.iter().enumerate() {
            let yy = y + 18.0 * i as f64;
            let _ = match e.style {
                Swatch::Solid => write!(
                    self.buf,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"14\" height=\"10\" fill=\"{}\"/>",
                    yy - 9.0,
                    esc(&e.color)
                ),
                Swatch::Hatched(ref pattern) => write!(
                    self.buf,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"14\" height=\"10\" fill=\"url(#{})\" stroke=\"{}\"/>",
                    yy - 9.0,
                    esc(pattern),
                    esc(&e.color)
                ),
                Swatch::Line { dashed } => write!(
                    self.buf,
                    "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"2\"{}/>",
                    yy - 4.0,
                    x + 14.0,
                    yy - 4.0,
                    esc(&e.color),
                    if dashed { " stroke-dasharray=\"4 3\"" } else { "" }
                ),
            };
            self.text(x + 20.0, yy, "start", 11.0, &e.label, false);
        }
    }

    pub fn finish(mut self) -> String {
        self.buf.push_str("</svg>");
        self.buf
    }
}

/// A rectangle in pixels: top-left corner, width, height.
#[derive(Debug, Clone, Copy)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// The plot area of a chart, in pixels.
#[derive(Debug, Clone, Copy)]
pub struct Area {
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

#[derive(Debug, Clone)]
pub enum Swatch {
    Solid,
    Hatched(String),
    Line { dashed: bool },
}

#[derive(Debug, Clone)]
pub struct LegendEntry {
    pub label: String,
    pub color: String,
    pub style: Swatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_map_decades_and_nice_steps() {
        let s = Scale::log(3.0, 2000.0, 0.0, 300.0);
        assert_eq!(s.map(1.0), 0.0);
        assert_eq!(s.map(10000.0), 300.0);
        assert!((s.map(100.0) - 150.0).abs() < 1e-9);
        let labels: Vec<String> = s.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["1", "10", "100", "1k", "10k"]);
        let l = Scale::linear(47.0, 100.0, 0.0);
        assert_eq!(l.map(0.0), 100.0);
        assert_eq!(l.ticks().last().unwrap().0, 50.0);
        assert_eq!(short_number(1.5e12), "1.5T");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn documents_are_well_formed_and_marks_are_tagged() {
        let mut s = Svg::new("c1", 200.0, 100.0, "T <1>");
        s.hatch("h", "#000");
        let r = Rect {
            x: 1.0,
            y: 2.0,
            w: 3.0,
            h: 4.0,
        };
        s.bar(r, "url(#h)", "#000", "tip");
        s.point(5.0, 5.0, "#f00", true, "p");
        let out = s.finish();
        assert!(out.starts_with("<svg") && out.ends_with("</svg>"));
        assert_eq!(out.matches("class=\"mark\"").count(), 2);
        assert!(out.contains("T &lt;1&gt;"));
    }
}
