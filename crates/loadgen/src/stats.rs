//! Latency histograms (HdrHistogram, microseconds) per endpoint, per journey and overall, and
//! a timeline of one-second windows for the progress line and the charts.
//!
//! A request or journey belongs to the measurement when it *started* after the warm-up.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::http::Outcome;

/// Latencies from 1 µs to 10 minutes at 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 600_000_000)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Counts and latencies of one endpoint, one journey, or everything.
#[derive(Clone)]
pub struct Series {
    hist: Histogram<u64>,
    pub count: u64,
    /// Failures other than 429.
    pub errors: u64,
    pub rate_limited: u64,
    /// Every outcome, successes included, by status code (or timeout/connect/io).
    pub outcomes: BTreeMap<String, u64>,
}

impl Default for Series {
    fn default() -> Self {
        Series { hist: histogram(), count: 0, errors: 0, rate_limited: 0, outcomes: BTreeMap::new() }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// One line of the summary tables.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub count: u64,
    pub ok: u64,
    /// Failures other than 429 (rate limited), by status (or timeout/connect/io).
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    pub rate_limited: u64,
    pub latency: Latency,
    /// Per second of measured time.
    pub throughput: f64,
}

impl Series {
    pub fn record(&mut self, latency: Duration, outcome: Outcome) {
        let _ = self.hist.record(micros(latency));
        self.count += 1;
        if outcome.is_rate_limited() {
            self.rate_limited += 1;
        } else if !outcome.is_success() {
            self.errors += 1;
        }
        *self.outcomes.entry(outcome.key()).or_insert(0) += 1;
    }

    pub fn latency(&self) -> Latency {
        if self.hist.is_empty() {
            return Latency::default();
        }
        Latency {
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p90_ms: ms(self.hist.value_at_quantile(0.90)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            max_ms: ms(self.hist.max()),
            mean_ms: (self.hist.mean() / 1000.0 * 1000.0).round() / 1000.0,
        }
    }

    pub fn row(&self, name: &str, seconds: f64) -> Row {
        let errors_by_status: BTreeMap<String, u64> = self
            .outcomes
            .iter()
            .filter(|(k, _)| !k.starts_with('2') && k.as_str() != "429")
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        Row {
            name: name.to_string(),
            count: self.count,
            ok: self.count - self.errors - self.rate_limited,
            errors: self.errors,
            errors_by_status,
            rate_limited: self.rate_limited,
            latency: self.latency(),
            throughput: if seconds > 0.0 { ((self.count as f64 / seconds) * 10.0).round() / 10.0 } else { 0.0 },
        }
    }
}

/// One window of the timeline (normally one second), measured traffic only.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelinePoint {
    /// Seconds since the measurement began, at the end of the window.
    pub t: f64,
    /// The window's length in seconds.
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub rate_limited: u64,
    pub journeys: u64,
    pub orders: u64,
    pub requests_per_s: f64,
    pub journeys_per_s: f64,
    pub orders_per_s: f64,
    pub latency: Latency,
}

/// What the progress line shows for the last window (warm-up included).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub warming_up: bool,
    /// Seconds since the measurement began (negative during the warm-up).
    pub t: f64,
    pub requests_per_s: f64,
    pub journeys_per_s: f64,
    pub orders_per_s: f64,
    pub errors: u64,
    pub rate_limited: u64,
    pub latency: Latency,
    pub total_errors: u64,
    pub total_rate_limited: u64,
}

struct Window {
    started: Instant,
    measuring: bool,
    requests: Series,
    journeys: u64,
    orders: u64,
}

struct Inner {
    endpoints: BTreeMap<&'static str, Series>,
    journeys: BTreeMap<&'static str, Series>,
    all: Series,
    orders: u64,
    replays: u64,
    window: Window,
    timeline: Vec<TimelinePoint>,
}

pub struct Recorder {
    pub measure_from: Instant,
    inner: Mutex<Inner>,
}

impl Recorder {
    pub fn new(now: Instant, warmup: Duration) -> Self {
        let measure_from = now + warmup;
        Recorder {
            measure_from,
            inner: Mutex::new(Inner {
                endpoints: BTreeMap::new(),
                journeys: BTreeMap::new(),
                all: Series::default(),
                orders: 0,
                replays: 0,
                window: Window {
                    started: now,
                    measuring: warmup.is_zero(),
                    requests: Series::default(),
                    journeys: 0,
                    orders: 0,
                },
                timeline: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_measured(&self, started: Instant) -> bool {
        started >= self.measure_from
    }

    pub fn request(&self, endpoint: &'static str, started: Instant, latency: Duration, outcome: Outcome) {
        let measured = self.is_measured(started);
        let mut inner = self.lock();
        if inner.window.measuring == measured {
            inner.window.requests.record(latency, outcome);
        }
        if measured {
            inner.endpoints.entry(endpoint).or_default().record(latency, outcome);
            inner.all.record(latency, outcome);
        }
    }

    pub fn journey(&self, name: &'static str, started: Instant, outcome: Outcome) {
        let measured = self.is_measured(started);
        let mut inner = self.lock();
        if inner.window.measuring == measured {
            inner.window.journeys += 1;
        }
        if measured {
            inner.journeys.entry(name).or_default().record(started.elapsed(), outcome);
        }
    }

    /// A new order was created (a fresh 201, not a replay).
    pub fn order_created(&self, started: Instant) {
        let measured = self.is_measured(started);
        let mut inner = self.lock();
        if inner.window.measuring == measured {
            inner.window.orders += 1;
        }
        if measured {
            inner.orders += 1;
        }
    }

    pub fn replay_checked(&self, started: Instant) {
        if self.is_measured(started) {
            self.lock().replays += 1;
        }
    }

    /// Closes the current window at `now` and opens the next; measured windows join the
    /// timeline.
    pub fn tick(&self, now: Instant) -> Snapshot {
        let mut inner = self.lock();
        let seconds = now.saturating_duration_since(inner.window.started).as_secs_f64().max(1e-3);
        let measuring_next = now >= self.measure_from;
        let next =
            Window { started: now, measuring: measuring_next, requests: Series::default(), journeys: 0, orders: 0 };
        let w = std::mem::replace(&mut inner.window, next);
        let t = signed_seconds(now, self.measure_from);
        let latency = w.requests.latency();
        let rate = |n: u64| ((n as f64 / seconds) * 10.0).round() / 10.0;
        if w.measuring && w.requests.count + w.journeys > 0 {
            let point = TimelinePoint {
                t: (t * 1000.0).round() / 1000.0,
                seconds: (seconds * 1000.0).round() / 1000.0,
                requests: w.requests.count,
                errors: w.requests.errors,
                rate_limited: w.requests.rate_limited,
                journeys: w.journeys,
                orders: w.orders,
                requests_per_s: rate(w.requests.count),
                journeys_per_s: rate(w.journeys),
                orders_per_s: rate(w.orders),
                latency,
            };
            inner.timeline.push(point);
        }
        Snapshot {
            warming_up: !w.measuring,
            t,
            requests_per_s: rate(w.requests.count),
            journeys_per_s: rate(w.journeys),
            orders_per_s: rate(w.orders),
            errors: w.requests.errors,
            rate_limited: w.requests.rate_limited,
            latency,
            total_errors: inner.all.errors,
            total_rate_limited: inner.all.rate_limited,
        }
    }

    pub fn finish(&self, seconds: f64) -> Summary {
        let inner = self.lock();
        Summary {
            total: inner.all.row("all requests", seconds),
            endpoints: inner.endpoints.iter().map(|(k, s)| s.row(k, seconds)).collect(),
            journeys: inner.journeys.iter().map(|(k, s)| s.row(k, seconds)).collect(),
            orders: inner.orders,
            replays: inner.replays,
            timeline: inner.timeline.clone(),
        }
    }
}

fn signed_seconds(now: Instant, origin: Instant) -> f64 {
    if now >= origin { (now - origin).as_secs_f64() } else { -(origin - now).as_secs_f64() }
}

/// Everything measured, for the report.
#[derive(Debug, Clone)]
pub struct Summary {
    pub total: Row,
    pub endpoints: Vec<Row>,
    pub journeys: Vec<Row>,
    pub orders: u64,
    pub replays: u64,
    pub timeline: Vec<TimelinePoint>,
}

/// The progress line: `[  12s] 1523 req/s …`.
pub fn progress_line(s: &Snapshot, in_flight: usize) -> String {
    let phase = if s.warming_up { format!("warm-up {:>3.0}s", s.t) } else { format!("{:>11.0}s", s.t) };
    format!(
        "[{phase}] {:>7.0} req/s {:>6.0} journeys/s {:>6.0} orders/s | errors {} (total {}) 429 {} (total {}) | p50 {:.1} ms p99 {:.1} ms | in flight {in_flight}",
        s.requests_per_s,
        s.journeys_per_s,
        s.orders_per_s,
        s.errors,
        s.total_errors,
        s.rate_limited,
        s.total_rate_limited,
        s.latency.p50_ms,
        s.latency.p99_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_percentiles_and_error_split() {
        let mut s = Series::default();
        for i in 1..=100u64 {
            s.record(Duration::from_millis(i), Outcome::Status(200));
        }
        s.record(Duration::from_millis(5), Outcome::Status(429));
        s.record(Duration::from_millis(5), Outcome::Status(503));
        s.record(Duration::from_secs(10), Outcome::Timeout);
        let l = s.latency();
        assert!((l.p50_ms - 50.0).abs() < 0.5, "{l:?}");
        assert!((l.p90_ms - 90.0).abs() < 2.0, "{l:?}");
        assert!((l.p99_ms - 100.0).abs() < 1.0, "{l:?}");
        assert!((l.max_ms - 10_000.0).abs() < 10.0, "{l:?}");
        let row = s.row("x", 2.0);
        assert_eq!(row.count, 103);
        assert_eq!(row.rate_limited, 1);
        assert_eq!(row.errors, 2);
        assert_eq!(row.ok, 100);
        assert_eq!(row.errors_by_status, BTreeMap::from([("503".into(), 1), ("timeout".into(), 1)]));
        assert_eq!(row.throughput, 51.5);
    }

    #[test]
    fn empty_series_has_zero_latency() {
        assert_eq!(Series::default().latency(), Latency::default());
        assert_eq!(Series::default().row("x", 0.0).throughput, 0.0);
    }

    #[test]
    fn warmup_is_left_out_and_windows_become_a_timeline() {
        let t0 = Instant::now();
        let rec = Recorder::new(t0, Duration::from_secs(1));
        rec.request("GET /a", t0, Duration::from_millis(3), Outcome::Status(200));
        rec.journey("view", t0, Outcome::Status(200));
        let warm = rec.tick(t0 + Duration::from_secs(1));
        assert!(warm.warming_up);
        assert_eq!(warm.requests_per_s, 1.0);
        let t1 = t0 + Duration::from_millis(1200);
        for _ in 0..4 {
            rec.request("GET /a", t1, Duration::from_millis(2), Outcome::Status(200));
        }
        rec.request("GET /b", t1, Duration::from_millis(2), Outcome::Status(429));
        rec.order_created(t1);
        let live = rec.tick(t0 + Duration::from_secs(3));
        assert!(!live.warming_up);
        assert_eq!(live.requests_per_s, 2.5);
        assert_eq!(live.rate_limited, 1);
        let summary = rec.finish(2.0);
        assert_eq!(summary.total.count, 5);
        assert_eq!(summary.total.rate_limited, 1);
        assert_eq!(summary.endpoints.len(), 2);
        assert!(summary.journeys.is_empty(), "the only journey was in the warm-up");
        assert_eq!(summary.orders, 1);
        assert_eq!(summary.timeline.len(), 1);
        let p = &summary.timeline[0];
        assert_eq!((p.t, p.seconds, p.requests, p.orders, p.rate_limited), (2.0, 2.0, 5, 1, 1));
        assert_eq!(p.orders_per_s, 0.5);
    }

    #[test]
    fn progress_line_shows_the_phase() {
        let s = Snapshot {
            warming_up: true,
            t: -2.0,
            requests_per_s: 10.0,
            journeys_per_s: 5.0,
            orders_per_s: 1.0,
            errors: 0,
            rate_limited: 3,
            latency: Latency { p50_ms: 1.25, p99_ms: 9.0, ..Default::default() },
            total_errors: 0,
            total_rate_limited: 0,
        };
        let line = progress_line(&s, 7);
        assert!(line.contains("warm-up"), "{line}");
        assert!(line.contains("429 3"), "{line}");
        assert!(line.contains("p50 1.2 ms") || line.contains("p50 1.3 ms"), "{line}");
        assert!(line.ends_with("in flight 7"), "{line}");
    }
}
