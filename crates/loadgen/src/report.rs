//! The run's report: one serialisable value, printed as text, written as JSON and HTML.

use std::fmt::Write as _;

use serde::Serialize;

use crate::args::{Args, RateUnit};
use crate::driver;
use crate::reconcile::Reconciliation;
use crate::setup::World;
use crate::stats::{Row, TimelinePoint};

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// `closed` (virtual users) or `open` (arrivals at a rate).
    pub mode: String,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub rate_unit: Option<RateUnit>,
    /// Open loop: the arrival rate in journeys per second.
    pub journeys_per_second: Option<f64>,
    pub max_in_flight: Option<usize>,
    pub duration_s: Option<f64>,
    pub count: Option<u64>,
    pub warmup_s: f64,
    pub mix: String,
    pub mean_requests_per_journey: f64,
    pub shoppers: usize,
    pub products: usize,
    pub product_stock: i64,
    pub replay_ratio: f64,
    pub cancel_ratio: f64,
    pub timeout_s: f64,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupInfo {
    pub seconds: f64,
    pub product_ids: Vec<i64>,
    pub shoppers: usize,
    pub shoppers_registered: usize,
    pub shoppers_reused: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub requests: Row,
    pub journeys_started: u64,
    pub journeys_measured: u64,
    pub journeys_per_s: f64,
    pub orders_created: u64,
    pub orders_per_s: f64,
    /// Orders sent again with their Idempotency-Key that returned the same order.
    pub replays_checked: u64,
    /// Open loop: measured arrivals not started because --max-in-flight were running.
    pub dropped_arrivals: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub run_id: String,
    pub started_at: String,
    pub target: String,
    pub config: RunConfig,
    pub setup: SetupInfo,
    pub measured_seconds: f64,
    pub totals: Totals,
    pub journeys: Vec<Row>,
    pub endpoints: Vec<Row>,
    pub timeline: Vec<TimelinePoint>,
    pub reconciliation: Reconciliation,
}

pub struct Inputs<'a> {
    pub args: &'a Args,
    pub run_id: String,
    pub started_at: String,
    pub setup_seconds: f64,
    pub world: &'a World,
    pub outcome: &'a driver::Outcome,
    pub reconciliation: Reconciliation,
}

pub fn build(i: Inputs<'_>) -> Report {
    let a = i.args;
    let o = i.outcome;
    let s = &o.summary;
    let secs = o.measured_seconds;
    let per_s = |n: u64| if secs > 0.0 { round1(n as f64 / secs) } else { 0.0 };
    let journeys_measured: u64 = s.journeys.iter().map(|r| r.count).sum();
    let open = a.rate.is_some();
    Report {
        tool: "ordermesh load".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        run_id: i.run_id,
        started_at: i.started_at,
        target: a.url.clone(),
        config: RunConfig {
            mode: if open { "open" } else { "closed" }.into(),
            concurrency: (!open).then_some(a.concurrency),
            rate: a.rate,
            rate_unit: open.then_some(a.rate_unit),
            journeys_per_second: o.journeys_per_second.map(|j| (j * 100.0).round() / 100.0),
            max_in_flight: open.then_some(a.max_in_flight),
            duration_s: a.measure_for().map(|d| d.as_secs_f64()),
            count: a.count,
            warmup_s: a.warmup.as_secs_f64(),
            mix: a.mix.describe(),
            mean_requests_per_journey: (o.mean_requests_per_journey * 100.0).round() / 100.0,
            shoppers: a.shoppers,
            products: a.products,
            product_stock: a.product_stock,
            replay_ratio: a.replay_ratio,
            cancel_ratio: a.cancel_ratio,
            timeout_s: a.timeout.as_secs_f64(),
            seed: a.seed,
        },
        setup: SetupInfo {
            seconds: round1(i.setup_seconds),
            product_ids: i.world.products.iter().map(|p| p.id).collect(),
            shoppers: i.world.shoppers.len(),
            shoppers_registered: i.world.registered,
            shoppers_reused: i.world.shoppers.len() - i.world.registered,
        },
        measured_seconds: (secs * 1000.0).round() / 1000.0,
        totals: Totals {
            requests: s.total.clone(),
            journeys_started: o.journeys_started,
            journeys_measured,
            journeys_per_s: per_s(journeys_measured),
            orders_created: s.orders,
            orders_per_s: per_s(s.orders),
            replays_checked: s.replays,
            dropped_arrivals: o.dropped,
        },
        journeys: s.journeys.clone(),
        endpoints: s.endpoints.clone(),
        timeline: s.timeline.clone(),
        reconciliation: i.reconciliation,
    }
}

/// Describes the load in one line.
pub fn describe_load(r: &Report) -> String {
    let c = &r.config;
    let how = match (c.mode.as_str(), c.concurrency) {
        ("closed", Some(n)) => format!("closed loop, {n} virtual users"),
        _ => {
            let rate = match c.rate_unit {
                Some(RateUnit::Requests) => format!(
                    "{} requests/s ({} journeys/s)",
                    c.rate.unwrap_or(0.0),
                    c.journeys_per_second.unwrap_or(0.0)
                ),
                _ => format!("{} journeys/s", c.rate.unwrap_or(0.0)),
            };
            format!("open loop, {rate}, at most {} in flight", c.max_in_flight.unwrap_or(0))
        }
    };
    let bound = match (c.duration_s, c.count) {
        (Some(d), Some(n)) => format!("{d} s or {n} journeys"),
        (Some(d), None) => format!("{d} s"),
        (None, Some(n)) => format!("{n} journeys"),
        (None, None) => "unbounded".into(),
    };
    format!("{how}; {bound} after a {} s warm-up; mix {}", c.warmup_s, c.mix)
}

fn errors_cell(row: &Row) -> String {
    if row.errors_by_status.is_empty() {
        return "-".into();
    }
    row.errors_by_status.iter().map(|(k, v)| format!("{k}×{v}")).collect::<Vec<_>>().join(" ")
}

fn table(out: &mut String, title: &str, rows: &[Row]) {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(title.len());
    let _ = writeln!(
        out,
        "{title:<width$} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}  errors by status",
        "count", "ok", "errors", "429", "p50 ms", "p90 ms", "p99 ms", "max ms", "per s"
    );
    for r in rows {
        let l = &r.latency;
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>9} {:>7} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.1}  {}",
            r.name,
            r.count,
            r.ok,
            r.errors,
            r.rate_limited,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            r.throughput,
            errors_cell(r)
        );
    }
}

pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let t = &r.totals;
    let l = &t.requests.latency;
    let _ = writeln!(out, "\nordermesh load — run {} against {} ({})", r.run_id, r.target, r.started_at);
    let _ = writeln!(out, "load: {}", describe_load(r));
    let _ = writeln!(
        out,
        "measured {:.1} s: {} requests ({:.1}/s), {} errors, {} rate limited (429); p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.measured_seconds,
        t.requests.count,
        t.requests.throughput,
        t.requests.errors,
        t.requests.rate_limited,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.max_ms
    );
    let _ = writeln!(
        out,
        "journeys {} ({:.1}/s); orders created {} ({:.1}/s); idempotent replays checked {}",
        t.journeys_measured, t.journeys_per_s, t.orders_created, t.orders_per_s, t.replays_checked
    );
    if t.dropped_arrivals > 0 {
        let _ = writeln!(
            out,
            "dropped arrivals {}: --max-in-flight journeys were running; the target rate is more than was sustained",
            t.dropped_arrivals
        );
    }
    if t.requests.rate_limited > 0 {
        let _ = writeln!(out, "429s come from the gateway's rate limits: raise them for load tests (see --help)");
    }
    out.push('\n');
    table(&mut out, "journey", &r.journeys);
    out.push('\n');
    table(&mut out, "endpoint", &r.endpoints);
    let rc = &r.reconciliation;
    let _ = writeln!(
        out,
        "\nreconciliation: {} — {} orders ({} cancelled), {} units ordered, {} returned, {} unknown outcomes resolved, {:.1} s",
        if rc.ok { "OK" } else { "FAILED" },
        rc.orders,
        rc.cancelled,
        rc.units_ordered,
        rc.units_returned,
        rc.unknown_outcomes_resolved,
        rc.seconds
    );
    for c in &rc.checks {
        let _ = writeln!(out, "  [{}] {}: {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.actual);
        if !c.ok {
            let _ = writeln!(out, "         expected: {}", c.expected);
            for d in &c.differences {
                let _ = writeln!(out, "         - {d}");
            }
            if c.difference_count > c.differences.len() {
                let _ = writeln!(out, "         … and {} more", c.difference_count - c.differences.len());
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::reconcile::Check;
    use crate::stats::Latency;

    pub fn row(name: &str, count: u64) -> Row {
        Row {
            name: name.into(),
            count,
            ok: count - 1,
            errors: 1,
            errors_by_status: BTreeMap::from([("503".to_string(), 1)]),
            rate_limited: 0,
            latency: Latency { p50_ms: 1.5, p90_ms: 3.0, p99_ms: 9.25, max_ms: 20.0, mean_ms: 2.0 },
            throughput: count as f64 / 10.0,
        }
    }

    pub fn sample() -> Report {
        let timeline = (1..=10)
            .map(|t| TimelinePoint {
                t: t as f64,
                seconds: 1.0,
                requests: 100 + t,
                errors: t % 3,
                rate_limited: 0,
                journeys: 40,
                orders: 10,
                requests_per_s: (100 + t) as f64,
                journeys_per_s: 40.0,
                orders_per_s: 10.0,
                latency: Latency {
                    p50_ms: 1.0 + t as f64 / 10.0,
                    p90_ms: 2.0,
                    p99_ms: 5.0 + t as f64,
                    max_ms: 30.0,
                    mean_ms: 1.2,
                },
            })
            .collect();
        Report {
            tool: "ordermesh load".into(),
            version: "0.1.0".into(),
            run_id: "ABCD1234".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            target: "http://127.0.0.1:8080".into(),
            config: RunConfig {
                mode: "closed".into(),
                concurrency: Some(16),
                rate: None,
                rate_unit: None,
                journeys_per_second: None,
                max_in_flight: None,
                duration_s: Some(10.0),
                count: None,
                warmup_s: 3.0,
                mix: "order=1,<script>=2".into(),
                mean_requests_per_journey: 1.05,
                shoppers: 4,
                products: 2,
                product_stock: 1000,
                replay_ratio: 0.05,
                cancel_ratio: 0.3,
                timeout_s: 10.0,
                seed: None,
            },
            setup: SetupInfo {
                seconds: 1.0,
                product_ids: vec![9, 10],
                shoppers: 4,
                shoppers_registered: 4,
                shoppers_reused: 0,
            },
            measured_seconds: 10.0,
            totals: Totals {
                requests: row("all requests", 1000),
                journeys_started: 420,
                journeys_measured: 400,
                journeys_per_s: 40.0,
                orders_created: 100,
                orders_per_s: 10.0,
                replays_checked: 5,
                dropped_arrivals: 0,
            },
            journeys: vec![row("order", 400)],
            endpoints: vec![row("POST /api/orders", 405)],
            timeline,
            reconciliation: Reconciliation {
                ok: false,
                orders: 100,
                cancelled: 3,
                units_ordered: 200,
                units_returned: 6,
                unknown_outcomes_resolved: 0,
                seconds: 1.5,
                checks: vec![Check {
                    name: "stock moved by exactly the orders".into(),
                    ok: false,
                    expected: "x".into(),
                    actual: "y".into(),
                    difference_count: 25,
                    differences: vec!["product 9: on hand 1 <b>".into()],
                }],
            },
        }
    }

    #[test]
    fn text_summary_has_the_tables_and_the_verdict() {
        let text = render_text(&sample());
        assert!(text.contains("closed loop, 16 virtual users; 10 s after a 3 s warm-up"), "{text}");
        assert!(text.contains("POST /api/orders"), "{text}");
        assert!(text.contains("503×1"), "{text}");
        assert!(text.contains("reconciliation: FAILED"), "{text}");
        assert!(text.contains("… and 24 more"), "{text}");
        let header = text.lines().find(|l| l.starts_with("journey ")).unwrap();
        for col in ["count", "errors", "429", "p50 ms", "p90 ms", "p99 ms", "max ms", "per s"] {
            assert!(header.contains(col), "{header}");
        }
    }

    #[test]
    fn json_has_every_section() {
        let v = serde_json::to_value(sample()).unwrap();
        for key in ["config", "setup", "totals", "journeys", "endpoints", "timeline", "reconciliation"] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["endpoints"][0]["latency"]["p99_ms"], 9.25);
        assert_eq!(v["endpoints"][0]["errors_by_status"]["503"], 1);
        assert_eq!(v["reconciliation"]["checks"][0]["difference_count"], 25);
    }

    #[test]
    fn open_loop_is_described() {
        let mut r = sample();
        r.config.mode = "open".into();
        r.config.concurrency = None;
        r.config.rate = Some(1000.0);
        r.config.rate_unit = Some(RateUnit::Requests);
        r.config.journeys_per_second = Some(952.38);
        r.config.max_in_flight = Some(512);
        r.config.count = Some(5000);
        assert_eq!(
            describe_load(&r),
            "open loop, 1000 requests/s (952.38 journeys/s), at most 512 in flight; 10 s or 5000 journeys after a 3 s warm-up; mix order=1,<script>=2"
        );
    }
}
