//! The administrators' Traces page: the last requests this process traced (kept in memory by
//! `kit::traces`, no collector needed), filtered by operation, status and slowness, and one
//! trace drawn as a waterfall (an SVG made here, no script) across the gateway, the services,
//! their database work and the events they caused.

use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query};
use kit::traces::{KeptSpan, KeptTrace};
use maud::{Markup, html};
use serde::Deserialize;

use super::super::field;
use super::admin_nav;
use crate::client::Ctx;
use crate::view::head_row;
use crate::{PageResult, WebError};

/// At most this many traces in the list.
const LISTED: usize = 100;

#[derive(Debug, Deserialize)]
pub struct TracesQuery {
    operation: Option<String>,
    status: Option<String>,
    slower_than_ms: Option<String>,
}

/// Which answers a filter lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusFilter {
    Class(u16),
    Failed,
}

impl StatusFilter {
    const CHOICES: [(&'static str, &'static str); 5] = [
        ("2xx", "2xx success"),
        ("3xx", "3xx redirect"),
        ("4xx", "4xx refused"),
        ("5xx", "5xx failed"),
        ("error", "any span failed"),
    ];

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "error" => Some(StatusFilter::Failed),
            "2xx" | "3xx" | "4xx" | "5xx" => raw[..1].parse().ok().map(StatusFilter::Class),
            _ => None,
        }
    }

    fn admits(self, trace: &KeptTrace) -> bool {
        match self {
            StatusFilter::Failed => trace.error(),
            StatusFilter::Class(class) => trace.root().and_then(|r| r.status_code).is_some_and(|s| s / 100 == class),
        }
    }
}

pub async fn traces(ctx: Ctx, Query(q): Query<TracesQuery>) -> PageResult {
    ctx.require_admin()?;
    let operation: Option<String> = field(&q.operation).map(|t| t.chars().take(100).collect());
    let status_raw = field(&q.status);
    let status = status_raw.as_deref().and_then(StatusFilter::parse);
    let slower_raw = field(&q.slower_than_ms);
    let slower = slower_raw.as_deref().map(|ms| ms.parse::<u32>().map(|ms| Duration::from_millis(ms.into())));
    let mut problems = Vec::new();
    if let (Some(raw), None) = (&status_raw, status) {
        problems.push(format!("“{raw}” is not a status this page filters by; all statuses are shown."));
    }
    if let (Some(raw), Some(Err(_))) = (&slower_raw, &slower) {
        problems.push(format!("“{raw}” is not a whole number of milliseconds; traces of any duration are shown."));
    }
    let slower = slower.and_then(Result::ok);
    let kept = kit::traces::recent();
    let all = kept.map(|k| k.list()).unwrap_or_default();
    let needle = operation.as_deref().map(str::to_lowercase);
    let shown: Vec<&KeptTrace> = all
        .iter()
        .filter(|t| needle.as_deref().is_none_or(|n| t.root().is_some_and(|r| r.name.to_lowercase().contains(n))))
        .filter(|t| status.is_none_or(|s| s.admits(t)))
        .filter(|t| slower.is_none_or(|d| t.duration() > d))
        .take(LISTED)
        .collect();
    let body = html! {
        h1 { "Traces" }
        (admin_nav("/admin/traces"))
        @for problem in &problems {
            p.warning role="alert" { (problem) }
        }
        @if kept.is_none() {
            p { "This process keeps no traces: " code { "TRACES_KEPT" } " is 0. Set it (200 by default) to see recent requests here." }
        } @else {
            p.muted {
                "The last " (all.len()) " traces of this process, newest first. With every service in one process "
                "(" code { "ordermesh up" } ") a trace holds all of them; with the services apart, each keeps its own, "
                "and a collector (" code { "OTEL_EXPORTER_OTLP_ENDPOINT" } ") has the whole path."
            }
        }
        form.search role="search" method="get" action="/admin/traces" {
            div.field {
                label for="operation" { "Operation contains" }
                input #operation type="search" name="operation" maxlength="100" placeholder="POST /api/orders" value=[operation.as_deref()];
            }
            div.field {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "Any" }
                    @for (value, label) in StatusFilter::CHOICES {
                        option value=(value) selected[status_raw.as_deref() == Some(value)] { (label) }
                    }
                }
            }
            div.field {
                label for="slower_than_ms" { "Slower than (ms)" }
                input #slower_than_ms type="number" name="slower_than_ms" min="0" step="1" value=[slower.map(|d| d.as_millis())];
            }
            button type="submit" { "Filter" }
        }
        @if shown.is_empty() {
            p { "No trace matches." }
        } @else {
            div.table-wrap {
                table {
                    caption.visually-hidden { "Recent traces" }
                    (head_row(&["Started", "Operation", "Status", "Duration", "Spans", "Services"]))
                    tbody {
                        @for t in &shown {
                            tr {
                                td { (clock(t.start())) }
                                th scope="row" {
                                    a href={ "/admin/traces/" (t.id) } { (t.root().map(|r| r.name.as_str()).unwrap_or("—")) }
                                }
                                td { (status_of(t)) }
                                td.num { (millis(t.duration())) }
                                td.num { (t.spans.len()) }
                                td { (t.services().join(", ")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(ctx.page("Traces", body))
}

pub async fn trace(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    ctx.require_admin()?;
    let valid = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let Some(trace) = kit::traces::recent().filter(|_| valid).and_then(|k| k.get(&id)) else {
        return Err(WebError::not_found(
            "There is no such trace here: it may be older than the traces this process keeps.",
        ));
    };
    let title = trace.root().map(|r| r.name.clone()).unwrap_or_else(|| "Trace".into());
    let start = trace.start();
    let rows = trace.tree();
    let lanes = trace.services();
    let body = html! {
        h1 { (title) }
        (admin_nav("/admin/traces"))
        p {
            "Trace " code { (trace.id) } ", started " (clock(start)) ", " (millis(trace.duration())) ", "
            (trace.spans.len()) " spans"
            @if trace.dropped > 0 { " (" (trace.dropped) " more left out)" }
            ". " a href="/admin/traces" { "All traces" }
        }
        (waterfall(&trace, &rows, &lanes))
        div.table-wrap {
            table.spans {
                caption { "Every span, parents before their children" }
                (head_row(&["Span", "Service", "Kind", "Starts at", "Duration", "Status", "Attributes"]))
                tbody {
                    @for (depth, service, span) in &rows {
                        tr {
                            th scope="row" class={ "depth-" ((*depth).min(8)) } { (span.name) }
                            td { (service.unwrap_or("—")) }
                            td { (span.kind) }
                            td.num { "+" (millis(offset(start, span.start))) }
                            td.num { (millis(span.duration())) }
                            td {
                                @if span.error { span.badge.health-degraded { "failed" } " " }
                                (span.status_code.map(|s| s.to_string()).unwrap_or_default())
                            }
                            td.attributes {
                                @for (key, value) in span.attributes.iter().filter(|(k, _)| shown_attribute(k)) {
                                    code { (key) "=" (value) } " "
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(ctx.page(&title, body))
}

/// The tracing layer's bookkeeping fields are not worth a reader's time.
fn shown_attribute(key: &str) -> bool {
    !matches!(key, "code.file.path" | "code.line.number" | "code.module.name" | "target" | "busy_ns" | "idle_ns")
        && !key.starts_with("thread.")
}

const WIDTH: f64 = 960.0;
const LABELS: f64 = 340.0;
const ROW: f64 = 22.0;
const AXIS: f64 = 24.0;

/// One bar per span on a shared time axis, indented by depth, coloured by service.
fn waterfall(trace: &KeptTrace, rows: &[(usize, Option<&str>, &KeptSpan)], lanes: &[&str]) -> Markup {
    let start = trace.start();
    let total = trace.duration().as_secs_f64().max(1e-6);
    let plot = WIDTH - LABELS - 70.0;
    let x = |at: Duration| LABELS + plot * (at.as_secs_f64() / total).clamp(0.0, 1.0);
    let height = AXIS + ROW * rows.len() as f64 + 6.0;
    let ticks: Vec<f64> = (0..=4).map(|i| f64::from(i) / 4.0).collect();
    let lane = |service: Option<&str>| {
        service.and_then(|s| lanes.iter().position(|l| *l == s)).map(|i| format!("lane-{}", i % 6)).unwrap_or_default()
    };
    let desc = format!(
        "{} spans over {} across {}; the longest is {}.",
        rows.len(),
        millis(trace.duration()),
        if lanes.is_empty() { "one process".to_string() } else { lanes.join(", ") },
        rows.iter()
            .max_by_key(|r| r.2.duration())
            .map(|r| format!("{} ({})", r.2.name, millis(r.2.duration())))
            .unwrap_or_default()
    );
    html! {
        figure.chart.waterfall {
            svg viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-labelledby="waterfall-title waterfall-desc" {
                title #waterfall-title { "Waterfall of trace " (trace.id) }
                desc #waterfall-desc { (desc) }
                @for t in &ticks {
                    line.grid x1=(LABELS + plot * t) x2=(LABELS + plot * t) y1=(AXIS - 6.0) y2=(height) {}
                    text.axis x=(LABELS + plot * t) y=(AXIS - 10.0) text-anchor="middle" {
                        (millis(Duration::from_secs_f64(total * t)))
                    }
                }
                @for (i, (depth, service, span)) in rows.iter().enumerate() {
                    @let y = AXIS + ROW * i as f64;
                    @let from = x(offset(start, span.start));
                    @let to = x(offset(start, span.end)).max(from + 1.5);
                    g class={ "span " (lane(*service)) @if span.error { " failed" } } {
                        title { (span.name) " — " (millis(span.duration())) @if let Some(s) = service { " (" (s) ")" } }
                        text.label x=(6.0 + *depth as f64 * 12.0) y=(y + ROW * 0.7) { (clip(&span.name, 44 - (*depth).min(20) * 2)) }
                        rect x=(from) y=(y + 4.0) width=(to - from) height=(ROW - 8.0) rx="2" {}
                        text.axis x=(to + 4.0) y=(y + ROW * 0.7) { (millis(span.duration())) }
                    }
                }
            }
            figcaption {
                "Time from the trace's first span. "
                @for (i, service) in lanes.iter().enumerate() {
                    @if i > 0 { ", " }
                    span class={ "swatch " (lane(Some(service))) } aria-hidden="true" {}
                    " " (service)
                }
                @if rows.iter().any(|r| r.2.error) { "; outlined in red: failed" }
                "."
            }
        }
    }
}

fn offset(start: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(start).unwrap_or_default()
}

fn clip(name: &str, chars: usize) -> String {
    if name.chars().count() <= chars {
        name.to_string()
    } else {
        format!("{}…", name.chars().take(chars - 1).collect::<String>())
    }
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// `12:04:31.120 UTC`.
fn clock(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!("{:02}:{:02}:{:02}.{:03} UTC", t.hour(), t.minute(), t.second(), t.millisecond())
}

fn status_of(trace: &KeptTrace) -> Markup {
    let code = trace.root().and_then(|r| r.status_code);
    html! {
        @if trace.error() { span.badge.health-degraded { "failed" } " " }
        (code.map(|c| c.to_string()).unwrap_or_else(|| "—".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_filter_by_class_or_failure_and_unknown_ones_are_not_filters() {
        assert_eq!(StatusFilter::parse("4xx"), Some(StatusFilter::Class(4)));
        assert_eq!(StatusFilter::parse("error"), Some(StatusFilter::Failed));
        assert_eq!(StatusFilter::parse("4"), None);
        assert_eq!(StatusFilter::parse("<script>"), None);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(millis(Duration::from_micros(250)), "0.25 ms");
        assert_eq!(millis(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(millis(Duration::from_millis(1_500)), "1500 ms");
        assert_eq!(clip("gateway POST /api/orders", 10), "gateway P…");
    }
}
