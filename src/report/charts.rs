//! The report's charts: a roofline of measured points against device roofs, measured and
//! projected prefill/decode speed per device, and serving throughput and latency against
//! concurrency.
use super::analysis::{Analysis, ModelProjection, System};
use super::input::Phase;
use super::svg::{short_number, Area, LegendEntry, Rect, Scale, Svg, Swatch, PALETTE};
use crate::bench::projection::Projection;
use crate::bench::roofline;
use crate::bench::specs::DeviceSpec;

/// A rendered chart: written as charts/`name`.svg, inlined in the HTML.
#[derive(Debug, Clone)]
pub struct Chart {
    pub name: String,
    pub title: String,
    pub svg: String,
}

const W: f64 = 900.0;
const HATCH: &str = "projected";

fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Roofs drawn: every measured device, the reference, and the devices the claims compare.
fn roof_devices<'a>(a: &Analysis<'a>) -> Vec<&'a DeviceSpec> {
    let mut out: Vec<&DeviceSpec> = vec![a.reference];
    for c in &a.claims {
        for d in [c.subject, c.baseline] {
            if !out.iter().any(|o| o.id == d.id) {
                out.push(d);
            }
        }
    }
    out
}

fn roof_line(
    xs: &Scale,
    ys: &Scale,
    peak: Option<f64>,
    bw: f64,
    x0: f64,
    x1: f64,
) -> Vec<(f64, f64)> {
    let mut pts = vec![(x0, roofline::attainable(peak, bw, x0))];
    if let Some(p) = peak {
        let r = roofline::ridge(p, bw);
        if r > x0 && r < x1 {
            pts.push((r, p));
        }
    }
    pts.push((x1, roofline::attainable(peak, bw, x1)));
    pts.into_iter()
        .map(|(x, y)| (xs.map(x), ys.map(y)))
        .collect()
}

pub fn roofline_chart(a: &Analysis) -> Option<Chart> {
    let dtype = a
        .systems
        .iter()
        .flat_map(|s| &s.runs)
        .map(|r| r.dtype)
        .next()?;
    let points: Vec<(&System, String, f64, f64, Phase)> = a
        .systems
        .iter()
        .flat_map(|s| {
            s.runs.iter().flat_map(move |r| {
                r.rows.iter().map(move |row| {
                    (
                        s,
                        format!(
                            "{} · {} · {}",
                            r.run.software, r.run.model.key, row.test.test
                        ),
                        row.intensity,
                        row.achieved_flops,
                        row.test.phase,
                    )
                })
            })
        })
        .filter(|p| p.2.is_finite() && p.3.is_finite() && p.3 > 0.0)
        .collect();
    if points.is_empty() {
        return None;
    }
    let title = format!(
        "Roofline at {} ({}): measured points and each device's roof",
        dtype,
        dtype.unit()
    );
    let area = Area {
        left: 80.0,
        right: 600.0,
        top: 40.0,
        bottom: 420.0,
    };
    let (x0, x1) = (0.1, 1e4);
    let xs = Scale::log(x0, x1, area.left, area.right);
    let devices = roof_devices(a);
    let peaks: Vec<f64> = devices
        .iter()
        .filter_map(|d| d.peak_tflops(dtype, None))
        .map(|t| t * 1e12)
        .collect();
    let y_min = points.iter().map(|p| p.3).fold(f64::INFINITY, f64::min) / 10.0;
    let y_max = peaks
        .iter()
        .chain(points.iter().map(|p| &p.3))
        .fold(0.0f64, |m, v| m.max(*v));
    let ys = Scale::log(y_min, y_max, area.bottom, area.top);
    // Wider than the other charts: the legend names every roof.
    let mut svg = Svg::new("roofline", W + 100.0, 480.0, &title);
    svg.axes(
        area,
        &xs,
        Some(&ys),
        "arithmetic intensity (FLOP per byte of memory traffic)",
        &format!("achieved {} (FLOP/s)", dtype.key()),
    );
    let mut legend = Vec::new();
    let mut k = 0;
    for s in &a.systems {
        if let Some(bw) = s.bandwidth_gbs {
            let peak = s.peak_flops(dtype);
            let pts = roof_line(&xs, &ys, peak, bw * 1e9, x0, x1);
            let tip = format!(
                "{}: {} GB/s ({}), peak {}",
                s.label,
                bw,
                s.bandwidth_note,
                peak.map_or("unknown".into(), |p| format!("{}OPS", short_number(p)))
            );
            svg.polyline(&pts, color(k), false, &tip);
            legend.push(LegendEntry {
                label: format!("{} (measured bandwidth)", s.label),
                color: color(k).into(),
                style: Swatch::Line { dashed: false },
            });
            k += 1;
        }
    }
    for d in devices {
        let Some(bw) = d.bandwidth_gbs else { continue };
        let peak = d.peak_tflops(dtype, None).map(|t| t * 1e12);
        let pts = roof_line(&xs, &ys, peak, bw * 1e9, x0, x1);
        let note = if peak.is_some() {
            String::new()
        } else {
            format!(" (no {dtype} peak: slope only)")
        };
        svg.polyline(
            &pts,
            color(k),
            true,
            &format!("{}: {} GB/s{}", d.name, bw, note),
        );
        legend.push(LegendEntry {
            label: format!("{}{}", d.name, note),
            color: color(k).into(),
            style: Swatch::Line { dashed: true },
        });
        k += 1;
    }
    for (s, label, x, y, phase) in &points {
        let c = color(
            a.systems
                .iter()
                .position(|o| std::ptr::eq(o, *s))
                .unwrap_or(0),
        );
        let tip = format!(
            "{}: {}, {:.1} FLOP/byte, {}FLOP/s",
            s.label,
            label,
            x,
            short_number(*y)
        );
        svg.point(xs.map(*x), ys.map(*y), c, *phase == Phase::Decode, &tip);
    }
    legend.push(LegendEntry {
        label: "● prefill  ■ decode (measured)".into(),
        color: "#ffffff".into(),
        style: Swatch::Solid,
    });
    svg.legend(615.0, 60.0, &legend);
    Some(Chart {
        name: "roofline".into(),
        title,
        svg: svg.finish(),
    })
}

/// One bar: a device's tok/s for a test, measured or projected.
struct BarRow {
    label: String,
    value: Option<f64>,
    projected: bool,
    note: String,
}

fn bar_rows(a: &Analysis, p: &ModelProjection, test: &str) -> Vec<BarRow> {
    let mut rows = Vec::new();
    for s in &a.systems {
        for r in s.runs.iter().filter(|r| r.run.model.key == p.model) {
            if let Some(row) = r.rows.iter().find(|row| row.test.test == test) {
                rows.push(BarRow {
                    label: format!("{} · {}", s.label, r.run.software),
                    value: Some(row.test.tok_s_mean),
                    projected: false,
                    note: format!(
                        "measured, {:.1} ± {:.1} tok/s",
                        row.test.tok_s_mean, row.test.tok_s_sd
                    ),
                });
            }
        }
    }
    let Some(i) = p.tests.iter().position(|(t, _)| t.test == test) else {
        return rows;
    };
    for (d, ps) in &p.devices {
        let (value, note) = match ps.get(i) {
            Some(Projection::TokS { tok_s, bound }) => (
                Some(*tok_s),
                format!("projected ({}), {tok_s:.0} tok/s", bound.label()),
            ),
            Some(Projection::DoesNotFit) => (None, "weights do not fit".into()),
            Some(Projection::NoRoof(what)) => (None, format!("no {what} published")),
            None => (None, "not projected".into()),
        };
        rows.push(BarRow {
            label: d.name.clone(),
            value,
            projected: true,
            note,
        });
    }
    rows
}

pub fn bars_chart(a: &Analysis, phase: Phase) -> Option<Chart> {
    let p = a.projections.first()?;
    let (test, _) = p
        .tests
        .iter()
        .find(|(t, _)| t.phase == phase && t.batch == 1)?;
    let rows = bar_rows(a, p, &test.test);
    let what = match phase {
        Phase::Prefill => "prefill",
        Phase::Decode => "decode",
    };
    let name = format!("{what}_by_device");
    let title = format!(
        "{} {}: tok/s per device (hatched = projected from {})",
        p.model, test.test, p.basis_system
    );
    let row_h = 22.0;
    let area = Area {
        left: 330.0,
        right: 780.0,
        top: 40.0,
        bottom: 40.0 + row_h * rows.len() as f64,
    };
    let vals: Vec<f64> = rows.iter().filter_map(|r| r.value).collect();
    let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let max = vals.iter().copied().fold(0.0, f64::max);
    let xs = Scale::log(min / 2.0, max, area.left, area.right);
    let mut svg = Svg::new(&name, W, area.bottom + 60.0, &title);
    svg.hatch(HATCH, PALETTE[1]);
    svg.axes(area, &xs, None, "tokens per second (log scale)", "");
    for (i, r) in rows.iter().enumerate() {
        let y = area.top + row_h * i as f64;
        svg.text(area.left - 8.0, y + 15.0, "end", 11.0, &r.label, false);
        match r.value {
            Some(v) => {
                let (fill, stroke) = if r.projected {
                    (format!("url(#{HATCH})"), PALETTE[1])
                } else {
                    (PALETTE[0].to_string(), PALETTE[0])
                };
                let x1 = xs.map(v);
                let rect = Rect {
                    x: area.left,
                    y: y + 3.0,
                    w: x1 - area.left,
                    h: row_h - 6.0,
                };
                svg.bar(rect, &fill, stroke, &format!("{}: {}", r.label, r.note));
                svg.text(
                    x1 + 4.0,
                    y + 15.0,
                    "start",
                    10.0,
                    &format!(
                        "{}{}",
                        short_number(v),
                        if r.projected { " (proj.)" } else { "" }
                    ),
                    false,
                );
            }
            None => svg.text(area.left + 4.0, y + 15.0, "start", 10.0, &r.note, false),
        }
    }
    svg.legend(
        area.left,
        area.bottom + 52.0,
        &[LegendEntry {
            label: "measured".into(),
            color: PALETTE[0].into(),
            style: Swatch::Solid,
        }],
    );
    svg.legend(
        area.left + 110.0,
        area.bottom + 52.0,
        &[LegendEntry {
            label: format!(
                "projected: same {} as measured, spec-sheet roofs",
                if phase == Phase::Prefill {
                    "MFU"
                } else {
                    "MBU"
                }
            ),
            color: PALETTE[1].into(),
            style: Swatch::Hatched(HATCH.into()),
        }],
    );
    Some(Chart {
        name,
        title,
        svg: svg.finish(),
    })
}

/// A line per serve run against concurrency.
pub fn serving_chart(
    a: &Analysis,
    name: &str,
    title: &str,
    y_title: &str,
    value: impl Fn(&super::input::Level) -> f64,
) -> Option<Chart> {
    let series: Vec<(String, Vec<(f64, f64)>)> = a
        .serve
        .iter()
        .map(|s| {
            let pts = s
                .levels
                .iter()
                .map(|l| (l.concurrency as f64, value(l)))
                .filter(|p| p.1.is_finite())
                .collect();
            (s.label.clone(), pts)
        })
        .filter(|(_, p): &(String, Vec<(f64, f64)>)| !p.is_empty())
        .collect();
    if series.is_empty() {
        return None;
    }
    let area = Area {
        left: 80.0,
        right: 560.0,
        top: 40.0,
        bottom: 340.0,
    };
    let max_c = series
        .iter()
        .flat_map(|s| &s.1)
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let max_y = series
        .iter()
        .flat_map(|s| &s.1)
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let xs = Scale::log(1.0, max_c, area.left, area.right);
    let ys = Scale::linear(max_y * 1.1, area.bottom, area.top);
    let mut svg = Svg::new(name, W, 400.0, title);
    svg.axes(
        area,
        &xs,
        Some(&ys),
        "concurrent streaming clients (log scale)",
        y_title,
    );
    let mut legend = Vec::new();
    for (i, (label, pts)) in series.iter().enumerate() {
        let px: Vec<(f64, f64)> = pts.iter().map(|(x, y)| (xs.map(*x), ys.map(*y))).collect();
        svg.polyline(&px, color(i), false, label);
        for (x, y) in pts {
            svg.point(
                xs.map(*x),
                ys.map(*y),
                color(i),
                false,
                &format!("{label}: {x} clients, {y:.1}"),
            );
        }
        legend.push(LegendEntry {
            label: label.clone(),
            color: color(i).into(),
            style: Swatch::Line { dashed: false },
        });
    }
    svg.legend(575.0, 60.0, &legend);
    Some(Chart {
        name: name.into(),
        title: title.into(),
        svg: svg.finish(),
    })
}

/// Every chart the analysis has data for, in report order.
pub fn all(a: &Analysis) -> Vec<Chart> {
    let mut charts = Vec::new();
    charts.extend(roofline_chart(a));
    charts.extend(bars_chart(a, Phase::Prefill));
    charts.extend(bars_chart(a, Phase::Decode));
    charts.extend(serving_chart(
        a,
        "serving_throughput",
        "Serving: output tokens/s over all clients",
        "output tok/s",
        |l| l.output_tok_s,
    ));
    charts.extend(serving_chart(
        a,
        "serving_ttft",
        "Serving: time to first token, p50",
        "TTFT p50 (ms)",
        |l| l.ttft_p50_ms,
    ));
    charts
}
