//! The HTML report: one self-contained page (inline CSS, charts as inline SVG drawn here; no
//! scripts, no fonts or libraries from anywhere).

use std::fmt::Write as _;

use crate::report::{Report, describe_load};
use crate::stats::Row;

pub fn escape(s: &str) -> String {
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

/// A "nice" step (1, 2, 2.5 or 5 × 10ⁿ) for about `target` intervals up to `max`.
pub fn nice_step(max: f64, target: usize) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 2.5 {
        2.5
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Tick values from 0 to at least `max`.
pub fn ticks(max: f64, target: usize) -> Vec<f64> {
    let step = nice_step(max, target);
    let mut out = vec![0.0];
    let mut v = 0.0;
    while v < max - step * 1e-9 {
        v += step;
        out.push((v / step).round() * step);
    }
    if out.len() == 1 {
        out.push(step);
    }
    out
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub struct Line<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 920.0;
const H: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 40.0;

/// A line chart over the measured time (x in seconds).
pub fn line_chart(title: &str, unit: &str, lines: &[Line<'_>]) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><text x="{LEFT}" y="18" class="title">{t}</text>"#,
        t = escape(title)
    );
    let all: Vec<(f64, f64)> =
        lines.iter().flat_map(|l| l.points.iter().copied()).filter(|p| p.1.is_finite()).collect();
    if all.is_empty() {
        let _ =
            write!(svg, r#"<text x="{}" y="{}" class="empty">no measured data</text></svg>"#, W / 2.0 - 60.0, H / 2.0);
        return svg;
    }
    let (mut x0, mut x1) = all.iter().fold((0f64, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    if x1 - x0 < 1e-9 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let y_ticks = ticks(all.iter().map(|p| p.1).fold(0.0, f64::max), 5);
    let y1 = *y_ticks.last().unwrap_or(&1.0);
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y1 * (H - TOP - BOTTOM);
    for y in &y_ticks {
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" class="grid"/><text x="{}" y="{:.1}" class="ylabel">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            py(*y) + 4.0,
            label(*y),
            yy = py(*y),
        );
    }
    for x in ticks(x1 - x0, 8).iter().map(|t| x0 + t).filter(|x| *x <= x1 + 1e-9) {
        let _ = write!(svg, r#"<text x="{:.1}" y="{}" class="xlabel">{}</text>"#, px(x), H - BOTTOM + 16.0, label(x));
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" class="xlabel">seconds since the warm-up ended</text><text x="14" y="{}" class="unit" transform="rotate(-90 14 {})">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 6.0,
        H / 2.0,
        H / 2.0,
        escape(unit)
    );
    for (i, line) in lines.iter().enumerate() {
        let points: Vec<String> = line
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        if points.len() == 1 {
            let (x, y) = line.points[0];
            let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#, px(x), py(y), line.color);
        } else if !points.is_empty() {
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
                line.color,
                points.join(" "),
                escape(line.name)
            );
        }
        let lx = W - RIGHT - 150.0 * (lines.len() - i) as f64;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="8" width="12" height="12" fill="{}"/><text x="{}" y="18" class="legend">{}</text>"#,
            line.color,
            lx + 16.0,
            escape(line.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars: p50 and p99 per endpoint.
pub fn latency_bars(rows: &[Row]) -> String {
    let bar_h = 22.0;
    let label_w = 300.0;
    let h = TOP + rows.len() as f64 * bar_h * 1.6 + 30.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="Latency by endpoint" xmlns="http://www.w3.org/2000/svg"><text x="{LEFT}" y="18" class="title">Latency by endpoint (p50 dark, p99 light), ms</text>"#
    );
    let max = rows.iter().map(|r| r.latency.p99_ms).fold(0.0, f64::max);
    let top_tick = *ticks(max, 5).last().unwrap_or(&1.0);
    let scale = |v: f64| v / top_tick * (W - label_w - RIGHT - 60.0);
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + i as f64 * bar_h * 1.6;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{:.1}" class="ylabel">{}</text><rect x="{label_w}" y="{y:.1}" width="{:.1}" height="{bar_h}" class="p99"/><rect x="{label_w}" y="{y:.1}" width="{:.1}" height="{bar_h}" class="p50"/><text x="{:.1}" y="{:.1}" class="legend">{} / {}</text>"#,
            label_w - 8.0,
            y + 15.0,
            escape(&r.name),
            scale(r.latency.p99_ms).max(1.0),
            scale(r.latency.p50_ms).max(1.0),
            label_w + scale(r.latency.p99_ms).max(1.0) + 6.0,
            y + 15.0,
            label(r.latency.p50_ms),
            label(r.latency.p99_ms),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn rows_table(title: &str, rows: &[Row]) -> String {
    let mut t = format!(
        "<h2>{}</h2><table><thead><tr><th>{}</th><th>count</th><th>ok</th><th>errors</th><th>429</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>per s</th><th>errors by status</th></tr></thead><tbody>",
        escape(title),
        escape(title.trim_end_matches('s').to_lowercase().as_str())
    );
    for r in rows {
        let errors: Vec<String> = r.errors_by_status.iter().map(|(k, v)| format!("{}×{v}", escape(k))).collect();
        let l = &r.latency;
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td>{}</td></tr>",
            escape(&r.name),
            r.count,
            r.ok,
            if r.errors > 0 { "bad" } else { "" },
            r.errors,
            if r.rate_limited > 0 { "warn" } else { "" },
            r.rate_limited,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            r.throughput,
            if errors.is_empty() { "–".to_string() } else { errors.join(" ") }
        );
    }
    t.push_str("</tbody></table>");
    t
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:960px;color:#1d2327;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}.muted{color:#5f6b76}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}.card{border:1px solid #d6dde3;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:20px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e3e8ec;padding:4px 6px;text-align:right}th:first-child,td:first-child,td:last-child,th:last-child{text-align:left}
.bad{color:#b3261e;font-weight:600}.warn{color:#9a6700;font-weight:600}.ok{color:#1a7f37;font-weight:600}
.chart{max-width:100%;height:auto;margin:8px 0}.chart .grid{stroke:#e3e8ec}.chart text{font-size:11px;fill:#5f6b76}
.chart .title{font-size:13px;fill:#1d2327;font-weight:600}.chart .ylabel{text-anchor:end}.chart .xlabel{text-anchor:middle}
.chart .unit{text-anchor:middle}.chart .p50{fill:#2f6fb0}.chart .p99{fill:#9cc3e8}.chart .empty{font-size:14px}
ul.diff{margin:4px 0 8px 18px;font-family:ui-monospace,monospace;font-size:12px}";

pub fn render(r: &Report) -> String {
    let t = &r.totals;
    let rc = &r.reconciliation;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>ordermesh load {run}</title><style>{STYLE}</style></head><body>",
        run = escape(&r.run_id)
    );
    let _ = write!(
        h,
        "<h1>ordermesh load — run {}</h1><div class=\"muted\">{} · started {} · {} {}</div><p>{}</p>",
        escape(&r.run_id),
        escape(&r.target),
        escape(&r.started_at),
        escape(&r.tool),
        escape(&r.version),
        escape(&describe_load(r))
    );
    let verdict = if rc.ok {
        "<span class=\"ok\">reconciled: no differences</span>".to_string()
    } else {
        format!("<span class=\"bad\">reconciliation FAILED: {} difference(s)</span>", rc.difference_count())
    };
    let cards = [
        ("requests/s", format!("{:.1}", t.requests.throughput)),
        ("journeys/s", format!("{:.1}", t.journeys_per_s)),
        ("orders/s", format!("{:.1}", t.orders_per_s)),
        ("p50", format!("{:.2} ms", t.requests.latency.p50_ms)),
        ("p99", format!("{:.2} ms", t.requests.latency.p99_ms)),
        ("errors", t.requests.errors.to_string()),
        ("429", t.requests.rate_limited.to_string()),
        ("measured", format!("{:.1} s", r.measured_seconds)),
    ];
    h.push_str("<div class=\"cards\">");
    for (k, v) in cards {
        let _ = write!(h, "<div class=\"card\"><span class=\"muted\">{k}</span><b>{}</b></div>", escape(&v));
    }
    let _ = write!(h, "</div><p>{verdict}</p>");
    if t.dropped_arrivals > 0 {
        let _ = write!(
            h,
            "<p class=\"warn\">{} arrivals dropped: --max-in-flight journeys were running (the target rate is more than was sustained).</p>",
            t.dropped_arrivals
        );
    }
    let tl = &r.timeline;
    h.push_str("<h2>Latency over time</h2>");
    h.push_str(&line_chart(
        "Request latency per second",
        "ms",
        &[
            Line { name: "p50", color: "#2f6fb0", points: tl.iter().map(|p| (p.t, p.latency.p50_ms)).collect() },
            Line { name: "p90", color: "#7b61c9", points: tl.iter().map(|p| (p.t, p.latency.p90_ms)).collect() },
            Line { name: "p99", color: "#d9480f", points: tl.iter().map(|p| (p.t, p.latency.p99_ms)).collect() },
        ],
    ));
    h.push_str("<h2>Throughput</h2>");
    h.push_str(&line_chart(
        "Completed per second",
        "per second",
        &[
            Line { name: "requests/s", color: "#2f6fb0", points: tl.iter().map(|p| (p.t, p.requests_per_s)).collect() },
            Line { name: "journeys/s", color: "#2b8a3e", points: tl.iter().map(|p| (p.t, p.journeys_per_s)).collect() },
            Line { name: "orders/s", color: "#d9480f", points: tl.iter().map(|p| (p.t, p.orders_per_s)).collect() },
        ],
    ));
    h.push_str(&line_chart(
        "Errors and rate-limited answers per second",
        "per second",
        &[
            Line {
                name: "errors/s",
                color: "#b3261e",
                points: tl.iter().map(|p| (p.t, p.errors as f64 / p.seconds)).collect(),
            },
            Line {
                name: "429/s",
                color: "#9a6700",
                points: tl.iter().map(|p| (p.t, p.rate_limited as f64 / p.seconds)).collect(),
            },
        ],
    ));
    h.push_str(&rows_table("Journeys", &r.journeys));
    h.push_str(&rows_table("Endpoints", &r.endpoints));
    h.push_str(&latency_bars(&r.endpoints));
    let _ = write!(
        h,
        "<h2>Reconciliation</h2><p>{verdict} — {} orders ({} cancelled), {} units ordered, {} returned, {} unknown outcomes resolved, {:.1} s.</p><table><thead><tr><th>check</th><th>expected</th><th>actual</th><th>result</th></tr></thead><tbody>",
        rc.orders, rc.cancelled, rc.units_ordered, rc.units_returned, rc.unknown_outcomes_resolved, rc.seconds
    );
    for c in &rc.checks {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&c.name),
            escape(&c.expected),
            escape(&c.actual),
            if c.ok { "ok" } else { "bad" },
            if c.ok { "ok".to_string() } else { format!("{} difference(s)", c.difference_count) }
        );
        if !c.ok {
            let items: String = c.differences.iter().map(|d| format!("<li>{}</li>", escape(d))).collect();
            let _ = write!(h, "<tr><td colspan=\"4\"><ul class=\"diff\">{items}</ul></td></tr>");
        }
    }
    h.push_str("</tbody></table>");
    let config = serde_json::to_string_pretty(&r.config).unwrap_or_default();
    let _ = writeln!(h, "<h2>Configuration</h2><pre>{}</pre></body></html>", escape(&config));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{row, sample};

    #[test]
    fn escaping() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn nice_ticks() {
        assert_eq!(ticks(9.3, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(100.0, 5), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(0.0, 5), vec![0.0, 1.0]);
        assert_eq!(nice_step(12.0, 5), 2.5);
        assert_eq!(nice_step(2300.0, 5), 500.0);
        let t = ticks(0.37, 4);
        assert!(*t.last().unwrap() >= 0.37 && t.len() <= 6, "{t:?}");
    }

    #[test]
    fn line_charts_are_svg_with_a_polyline_per_series() {
        let svg = line_chart(
            "T <1>",
            "ms",
            &[
                Line { name: "a", color: "#000", points: vec![(1.0, 1.0), (2.0, 3.0), (3.0, 2.0)] },
                Line { name: "b", color: "#111", points: vec![(1.0, 0.5), (2.0, 0.5), (3.0, 9.0)] },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("T &lt;1&gt;"));
        // y axis reaches 10 (the max 9 rounded up) and x spans 1..3
        assert!(svg.contains(">10</text>"), "{svg}");
        let empty = line_chart("E", "ms", &[Line { name: "a", color: "#000", points: vec![] }]);
        assert!(empty.contains("no measured data") && !empty.contains("polyline"));
        let single = line_chart("S", "ms", &[Line { name: "a", color: "#000", points: vec![(1.0, 2.0)] }]);
        assert!(single.contains("<circle"));
    }

    #[test]
    fn the_page_is_self_contained_and_escaped() {
        let page = render(&sample());
        assert!(page.starts_with("<!doctype html>"));
        assert!(!page.contains("<script"), "no scripts, and the mix name is escaped");
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("src="), "nothing loaded from elsewhere");
        assert!(!page.contains("<link"));
        assert!(page.matches("<svg").count() >= 4);
        assert!(page.contains("reconciliation FAILED: 25 difference(s)"));
        assert!(page.contains("product 9: on hand 1 &lt;b&gt;"));
        assert!(page.contains("POST /api/orders"));
        let bars = latency_bars(&[row("GET /x", 10)]);
        assert!(bars.contains("GET /x") && bars.contains("class=\"p99\""));
    }
}
