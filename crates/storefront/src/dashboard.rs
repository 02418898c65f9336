//! The administrators' dashboard data: the platform's key numbers sampled periodically and
//! drawn as server-rendered SVG line charts.
//!
//! Every [`crate::config::Config::dashboard_sample_interval`] the sampler reads the gateway's
//! own Prometheus text (`http_requests_total`, by status) and each orders instance's
//! `/metrics` (`orders_created_total`), and keeps the last [`KEEP`] samples. Rates are per
//! minute over a sliding minute, so a five-second sampling interval does not make the lines
//! jump. Sampling starts when an administrator first opens the dashboard: a gateway nobody
//! watches sends no traffic of its own to the orders instances.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kit::client::ClientTimeouts;
use maud::{Markup, html};
use url::Url;

use super::Web;

/// Samples kept (at the default 5 s, ten minutes).
pub const KEEP: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: f64,
    /// Requests the gateway answered since it started.
    pub requests: f64,
    /// …of which answered 5xx.
    pub server_errors: f64,
    /// …of which answered 4xx.
    pub client_errors: f64,
    /// Orders created by every orders instance reachable now (None if none answered).
    pub orders: Option<f64>,
}

pub struct Dashboard {
    samples: Mutex<VecDeque<Sample>>,
    sampling: std::sync::atomic::AtomicBool,
    orders_instances: Vec<Url>,
    http: reqwest::Client,
}

impl Dashboard {
    pub fn new(orders_instances: Vec<Url>, timeouts: ClientTimeouts) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.total.min(Duration::from_secs(3)))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Dashboard {
            samples: Mutex::new(VecDeque::with_capacity(KEEP)),
            sampling: std::sync::atomic::AtomicBool::new(false),
            orders_instances,
            http,
        }
    }

    /// Reads the numbers now.
    pub async fn sample(&self, gateway_metrics: &str) -> Sample {
        let requests = sum_counter(gateway_metrics, "http_requests_total", |_| true);
        let server_errors = sum_counter(gateway_metrics, "http_requests_total", |l| l.contains("status=\"5"));
        let client_errors = sum_counter(gateway_metrics, "http_requests_total", |l| l.contains("status=\"4"));
        let fetches = self.orders_instances.iter().map(|base| {
            let url = format!("{}/metrics", base.as_str().trim_end_matches('/'));
            let http = self.http.clone();
            async move {
                let text = http.get(url).send().await.ok()?.error_for_status().ok()?.text().await.ok()?;
                Some(sum_counter(&text, "orders_created_total", |_| true))
            }
        });
        let answers: Vec<Option<f64>> = futures::future::join_all(fetches).await;
        let orders = answers.iter().flatten().copied().reduce(|a, b| a + b);
        Sample { at: unix_secs(), requests, server_errors, client_errors, orders }
    }

    pub fn push(&self, s: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() >= KEEP {
            samples.pop_front();
        }
        samples.push_back(s);
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect()
    }
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Samples in the background from now on, while the storefront exists (once per process).
pub fn ensure_sampling(web: &Web) {
    if web.dashboard.sampling.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(web);
    let every = web.config.dashboard_sample_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(web) = weak.upgrade() else { return };
            let sample = web.dashboard.sample(&web.app.metrics.render()).await;
            web.dashboard.push(sample);
        }
    });
}

/// The sum of a counter's values over every label set `keep` accepts (given the text between
/// the braces), from the Prometheus text exposition format.
pub fn sum_counter(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.rsplit_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // another metric whose name starts with this one
        };
        if !keep(labels) {
            continue;
        }
        if let Some(v) = value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok())
            && v.is_finite()
        {
            total += v;
        }
    }
    total
}

/// Per-minute rates of one number, each over the minute before its sample (or as much of it
/// as was sampled): `(seconds before the last sample, rate)`.
pub fn per_minute(samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    let Some(last) = samples.last() else { return Vec::new() };
    let mut out = Vec::new();
    for (i, s) in samples.iter().enumerate().skip(1) {
        let Some(v) = value(s) else { continue };
        // The earliest sample at most a minute older that has a value.
        let Some((t0, v0)) =
            samples[..i].iter().filter(|p| s.at - p.at <= 60.5).find_map(|p| value(p).map(|v0| (p.at, v0)))
        else {
            continue;
        };
        let dt = s.at - t0;
        if dt <= 0.0 {
            continue;
        }
        // A counter that went down restarted: count from zero.
        let delta = if v >= v0 { v - v0 } else { v };
        out.push((last.at - s.at, delta * 60.0 / dt));
    }
    out
}

pub struct Series {
    pub label: &'static str,
    /// A CSS class (colour and dash pattern, so the lines differ without colour too).
    pub class: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// A round number at or above `v`, for the top of an axis.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= v {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn fmt_num(v: f64) -> String {
    let s = if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

const W: f64 = 600.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// A line chart of per-minute rates over `window` seconds (the newest on the right), with a
/// text alternative and a legend.
pub fn chart(id: &str, title: &str, unit: &str, series: &[Series], window: f64) -> Markup {
    let window = window.max(60.0);
    let max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let x = |ago: f64| LEFT + (W - LEFT - RIGHT) * (1.0 - (ago / window).clamp(0.0, 1.0));
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v / top).clamp(0.0, 1.0));
    let latest: Vec<String> = series
        .iter()
        .map(|s| match s.points.last() {
            Some((_, v)) => format!("{} {} {unit}", s.label, fmt_num(*v)),
            None => format!("{} no data yet", s.label),
        })
        .collect();
    let desc = format!(
        "Over the last {} minutes. Latest: {}. Highest: {} {unit}.",
        fmt_num(window / 60.0),
        latest.join("; "),
        fmt_num(max)
    );
    let grid: Vec<f64> = (0..=4).map(|i| top * i as f64 / 4.0).collect();
    let ticks: Vec<f64> = (0..=4).map(|i| window * i as f64 / 4.0).collect();
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-labelledby={ (id) "-title " (id) "-desc" } {
                title id={ (id) "-title" } { (title) }
                desc id={ (id) "-desc" } { (desc) }
                @for g in &grid {
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(y(*g)) y2=(y(*g)) {}
                    text.axis x=(LEFT - 6.0) y=(y(*g) + 4.0) text-anchor="end" { (fmt_num(*g)) }
                }
                @for t in &ticks {
                    text.axis x=(x(*t)) y=(H - 8.0) text-anchor="middle" {
                        @if *t == 0.0 {
                            "now"
                        } @else if window <= 180.0 {
                            "−" (format!("{t:.0}")) " s"
                        } @else {
                            "−" (fmt_num(t / 60.0)) " min"
                        }
                    }
                }
                @for s in series {
                    @if s.points.len() == 1 {
                        circle class={ "series " (s.class) } cx=(x(s.points[0].0)) cy=(y(s.points[0].1)) r="3" {}
                    } @else if !s.points.is_empty() {
                        polyline class={ "series " (s.class) } fill="none" points=(polyline(&s.points, &x, &y)) {}
                    }
                }
            }
            figcaption {
                (title) ": "
                @for (i, s) in series.iter().enumerate() {
                    @if i > 0 { ", " }
                    span class={ "swatch " (s.class) } aria-hidden="true" {}
                    " " (s.label)
                }
                " (" (unit) ")."
            }
        }
    }
}

fn polyline(points: &[(f64, f64)], x: &impl Fn(f64) -> f64, y: &impl Fn(f64) -> f64) -> String {
    let mut out = String::new();
    for (ago, v) in points {
        let _ = write!(out, "{:.1},{:.1} ", x(*ago), y(*v));
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE http_requests_total counter
http_requests_total{method="GET",route="/home",service="gateway",status="200"} 10
http_requests_total{method="GET",route="/api/{*rest}",service="gateway",status="503"} 2
http_requests_total{method="POST",route="/login",service="gateway",status="401"} 3
http_requests_total_other{status="500"} 99
http_request_duration_seconds_bucket{le="0.1"} 5
orders_created_total{service="orders"} 7
"#;

    #[test]
    fn sums_counters_from_prometheus_text() {
        assert_eq!(sum_counter(TEXT, "http_requests_total", |_| true), 15.0);
        assert_eq!(sum_counter(TEXT, "http_requests_total", |l| l.contains("status=\"5")), 2.0);
        assert_eq!(sum_counter(TEXT, "http_requests_total", |l| l.contains("status=\"4")), 3.0);
        assert_eq!(sum_counter(TEXT, "orders_created_total", |_| true), 7.0);
        assert_eq!(sum_counter("orders_created_total 4\n", "orders_created_total", |_| true), 4.0);
        assert_eq!(sum_counter("", "orders_created_total", |_| true), 0.0);
    }

    fn s(at: f64, requests: f64, orders: Option<f64>) -> Sample {
        Sample { at, requests, server_errors: 0.0, client_errors: 0.0, orders }
    }

    #[test]
    fn rates_are_per_minute_over_a_sliding_minute() {
        let samples: Vec<Sample> = (0..=24).map(|i| s(i as f64 * 5.0, i as f64 * 10.0, Some(i as f64))).collect();
        let r = per_minute(&samples, |s| Some(s.requests));
        // 10 requests every 5 s is 120 a minute, whatever the window.
        assert!(r.iter().all(|(_, v)| (*v - 120.0).abs() < 1e-9), "{r:?}");
        assert_eq!(r.last().unwrap().0, 0.0, "the newest point is 'now'");
        let o = per_minute(&samples, |s| s.orders);
        assert!((o.last().unwrap().1 - 12.0).abs() < 1e-9);
        // A restart (the counter went down) is not a negative rate.
        let restarted = vec![s(0.0, 100.0, None), s(5.0, 3.0, None)];
        assert_eq!(per_minute(&restarted, |s| Some(s.requests)), vec![(0.0, 36.0)]);
        // Missing orders samples are skipped, not zeros.
        let gaps = vec![s(0.0, 0.0, Some(1.0)), s(5.0, 0.0, None), s(10.0, 0.0, Some(3.0))];
        assert_eq!(per_minute(&gaps, |s| s.orders), vec![(0.0, 12.0)]);
    }

    #[test]
    fn charts_are_described_svg() {
        let svg = chart(
            "traffic",
            "Requests <per> minute",
            "per minute",
            &[
                Series { label: "Requests", class: "s-requests", points: vec![(60.0, 10.0), (0.0, 37.0)] },
                Series { label: "Errors", class: "s-errors", points: vec![(0.0, 1.0)] },
            ],
            600.0,
        )
        .into_string();
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("aria-labelledby=\"traffic-title traffic-desc\""));
        assert!(svg.contains("Requests &lt;per&gt; minute"), "escaped");
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("<circle"));
        assert!(svg.contains("Latest: Requests 37 per minute"));
        assert!(!svg.contains("style="), "no inline styles (the CSP forbids them)");
        assert!(svg.contains("</line>") && svg.contains("</polyline>"), "SVG elements are closed, not void");
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(0.2), 1.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(
            (fmt_num(0.25), fmt_num(12.5), fmt_num(250.0), fmt_num(2.0)),
            ("0.25".into(), "12.5".into(), "250".into(), "2".into())
        );
    }
}
