//! The services behind the gateway: their instances, which of them may take a request
//! (health, circuit breaker), how one is chosen (power of two choices, least outstanding), and
//! the retry budget that keeps retries from multiplying an outage.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use url::Url;

use crate::config::Resilience;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// A circuit breaker over a sliding window of one-second buckets.
#[derive(Debug)]
struct Breaker {
    state: State,
    buckets: Vec<Bucket>,
    failure_ratio: f64,
    min_requests: u32,
    open_for: Duration,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// After the open period one request is let through; its outcome decides.
    HalfOpen {
        probing: bool,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    ok: u32,
    failed: u32,
}

impl Breaker {
    fn new(r: &Resilience) -> Self {
        Breaker {
            state: State::Closed,
            buckets: vec![Bucket::default(); r.breaker_window.as_secs().max(1) as usize],
            failure_ratio: r.breaker_failure_ratio,
            min_requests: r.breaker_min_requests.max(1),
            open_for: r.breaker_open_for,
        }
    }

    /// Whether a request may go to this instance now. Moving from open to half-open hands
    /// out the single probe.
    fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probing: true };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { probing: true } => false,
            State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                true
            }
        }
    }

    fn would_allow(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen { probing } => !probing,
        }
    }

    fn record(&mut self, ok: bool, now: Instant, epoch: Instant) {
        match self.state {
            State::HalfOpen { .. } => {
                self.state = if ok { State::Closed } else { State::Open { until: now + self.open_for } };
                self.buckets.iter_mut().for_each(|b| *b = Bucket::default());
            }
            State::Open { .. } => {}
            State::Closed => {
                let second = now.duration_since(epoch).as_secs();
                let n = self.buckets.len() as u64;
                let bucket = &mut self.buckets[(second % n) as usize];
                if bucket.second != second {
                    *bucket = Bucket { second, ok: 0, failed: 0 };
                }
                if ok {
                    bucket.ok += 1;
                } else {
                    bucket.failed += 1;
                }
                let (ok_total, failed_total) = self
                    .buckets
                    .iter()
                    .filter(|b| second.saturating_sub(b.second) < n)
                    .fold((0u32, 0u32), |(o, f), b| (o + b.ok, f + b.failed));
                let total = ok_total + failed_total;
                if total >= self.min_requests && failed_total as f64 / total as f64 >= self.failure_ratio {
                    self.state = State::Open { until: now + self.open_for };
                }
            }
        }
    }

    fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn retry_after(&self, now: Instant) -> Duration {
        match self.state {
            State::Open { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }
}

/// One instance of a service.
#[derive(Debug)]
pub struct Instance {
    pub url: Url,
    /// `host:port`, for the Host header and labels.
    pub authority: String,
    outstanding: AtomicUsize,
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Smoothed response time in microseconds.
    latency_us: AtomicU64,
    breaker: Mutex<Breaker>,
    epoch: Instant,
    eject_after: u32,
}

impl Instance {
    fn new(url: Url, r: &Resilience) -> Self {
        let authority = match (url.host_str(), url.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => url.to_string(),
        };
        Instance {
            url,
            authority,
            outstanding: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            latency_us: AtomicU64::new(0),
            breaker: Mutex::new(Breaker::new(r)),
            epoch: Instant::now(),
            eject_after: r.eject_after_failures.max(1),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.lock().expect("breaker lock").state(Instant::now())
    }

    fn available(&self, now: Instant) -> bool {
        self.is_healthy() && self.breaker.lock().expect("breaker lock").would_allow(now)
    }

    /// Marks a request as started on this instance; dropping the guard marks it finished.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight { instance: self.clone() }
    }

    /// Records a request's outcome for the breaker, passive ejection and latency.
    pub fn record(&self, ok: bool, elapsed: Duration) {
        let now = Instant::now();
        self.breaker.lock().expect("breaker lock").record(ok, now, self.epoch);
        if ok {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let sample = elapsed.as_micros() as u64;
            let old = self.latency_us.load(Ordering::Relaxed);
            let smoothed = if old == 0 { sample } else { (old * 7 + sample) / 8 };
            self.latency_us.store(smoothed, Ordering::Relaxed);
        } else {
            let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures >= self.eject_after && self.healthy.swap(false, Ordering::Relaxed) {
                tracing::warn!(instance = %self.url, failures, "instance ejected after consecutive failures");
            }
        }
    }

    /// The result of an active health check.
    pub fn set_health(&self, healthy: bool) {
        if healthy {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            if healthy {
                tracing::info!(instance = %self.url, "instance healthy again");
            } else {
                tracing::warn!(instance = %self.url, "instance failed its health check");
            }
        }
    }
}

pub struct InFlight {
    instance: Arc<Instance>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.instance.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Retries spend from a budget that requests refill by `ratio` each, so that under an outage
/// retries add at most `ratio` × the traffic instead of multiplying it. A small floor lets a
/// quiet gateway still retry.
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a retry.
    milli_tokens: AtomicU64,
    deposit: u64,
    max: u64,
}

impl RetryBudget {
    pub fn new(ratio: f64) -> Self {
        RetryBudget { milli_tokens: AtomicU64::new(10_000), deposit: (ratio * 1000.0).round() as u64, max: 100_000 }
    }

    pub fn on_request(&self) {
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some((t + self.deposit).min(self.max)));
    }

    pub fn try_withdraw(&self) -> bool {
        self.milli_tokens.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1000)).is_ok()
    }
}

/// One service: its instances and retry budget.
pub struct Upstream {
    pub name: &'static str,
    pub instances: Vec<Arc<Instance>>,
    pub budget: RetryBudget,
}

/// Why no instance could take a request.
pub enum Unavailable {
    /// Every instance's breaker is open: fail fast, try again after this long.
    BreakersOpen(Duration),
    /// No instance passes its health checks.
    NoHealthyInstance,
}

impl Upstream {
    pub fn new(name: &'static str, urls: &[Url], r: &Resilience) -> Self {
        Upstream {
            name,
            instances: urls.iter().map(|u| Arc::new(Instance::new(u.clone(), r))).collect(),
            budget: RetryBudget::new(r.retry_budget_ratio),
        }
    }

    /// Power of two choices: of two random available instances, the one with fewer requests
    /// in flight (then the faster one). `avoid` is skipped when another is available (the
    /// instance a retry just failed on).
    pub fn pick(&self, avoid: Option<&Arc<Instance>>) -> Result<Arc<Instance>, Unavailable> {
        let now = Instant::now();
        let mut candidates: Vec<&Arc<Instance>> = self.instances.iter().filter(|i| i.available(now)).collect();
        if candidates.len() > 1
            && let Some(avoid) = avoid
        {
            candidates.retain(|i| !Arc::ptr_eq(i, avoid));
        }
        let chosen = match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..n);
                let mut b = rng.gen_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (x, y) = (candidates[a], candidates[b]);
                let key = |i: &Instance| (i.outstanding(), i.latency());
                Some(if key(y) < key(x) { y } else { x })
            }
        };
        if let Some(instance) = chosen {
            // The breaker may have let its single half-open probe go to someone else meanwhile.
            if instance.breaker.lock().expect("breaker lock").try_acquire(now) {
                return Ok(instance.clone());
            }
        }
        let open: Vec<Duration> = self
            .instances
            .iter()
            .filter(|i| i.is_healthy())
            .map(|i| i.breaker.lock().expect("breaker lock").retry_after(now))
            .collect();
        if open.is_empty() {
            Err(Unavailable::NoHealthyInstance)
        } else {
            Err(Unavailable::BreakersOpen(open.into_iter().min().unwrap_or_default()))
        }
    }

    /// Probes every instance's `/health` every `every`, marking it up or down.
    pub fn spawn_health_checks(self: &Arc<Self>, client: reqwest::Client, every: Duration) {
        let upstream = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(upstream) = upstream.upgrade() else { break };
                for instance in &upstream.instances {
                    let url = format!("{}/health", instance.url.as_str().trim_end_matches('/'));
                    // Asked the way requests reach it: in-process when this process serves it.
                    let ok = match kit::local::find(&instance.url) {
                        Some(router) => {
                            let probe = axum::extract::Request::get(url).body(axum::body::Body::empty());
                            let answer = async { kit::local::call(router, probe.ok()?).await.ok() };
                            let answer = tokio::time::timeout(Duration::from_secs(1), answer).await;
                            answer.ok().flatten().is_some_and(|res| res.status().is_success())
                        }
                        None => matches!(
                            client.get(url).timeout(Duration::from_secs(1)).send().await,
                            Ok(res) if res.status().is_success()
                        ),
                    };
                    instance.set_health(ok);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resilience() -> Resilience {
        Resilience {
            connect_timeout: Duration::from_millis(100),
            request_timeout: Duration::from_secs(1),
            max_retries: 2,
            retry_budget_ratio: 0.1,
            retry_backoff: Duration::from_millis(1),
            breaker_failure_ratio: 0.5,
            breaker_min_requests: 4,
            breaker_window: Duration::from_secs(10),
            breaker_open_for: Duration::from_millis(100),
            health_interval: Duration::from_secs(1),
            eject_after_failures: 100,
        }
    }

    #[test]
    fn breaker_opens_fails_fast_then_probes_and_closes() {
        let r = resilience();
        let mut b = Breaker::new(&r);
        let epoch = Instant::now();
        let now = Instant::now();
        for ok in [true, false, false, false] {
            assert!(b.try_acquire(now));
            b.record(ok, now, epoch);
        }
        assert_eq!(b.state(now), BreakerState::Open);
        assert!(!b.try_acquire(now));
        let later = now + Duration::from_millis(150);
        assert!(b.try_acquire(later), "after the open period one probe goes through");
        assert!(!b.try_acquire(later), "and only one");
        b.record(true, later, epoch);
        assert_eq!(b.state(later), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let r = resilience();
        let mut b = Breaker::new(&r);
        let epoch = Instant::now();
        let now = Instant::now();
        for _ in 0..4 {
            b.record(false, now, epoch);
        }
        let later = now + Duration::from_millis(150);
        assert!(b.try_acquire(later));
        b.record(false, later, epoch);
        assert_eq!(b.state(later), BreakerState::Open);
    }

    #[test]
    fn the_retry_budget_is_bounded_by_traffic() {
        let budget = RetryBudget::new(0.1);
        let mut granted = 0;
        for _ in 0..1000 {
            budget.on_request();
            if budget.try_withdraw() {
                granted += 1;
            }
        }
        // 10 to start with, then one per ten requests.
        assert!((100..=111).contains(&granted), "{granted}");
    }

    #[test]
    fn picks_avoid_the_failed_instance_and_skip_open_breakers() {
        let r = resilience();
        let urls: Vec<Url> = ["http://a:1", "http://b:2"].iter().map(|u| Url::parse(u).unwrap()).collect();
        let up = Upstream::new("t", &urls, &r);
        let a = up.instances[0].clone();
        for _ in 0..50 {
            let picked = up.pick(Some(&a)).ok().unwrap();
            assert_eq!(picked.authority, "b:2");
        }
        for _ in 0..4 {
            up.instances[1].record(false, Duration::ZERO);
        }
        for _ in 0..20 {
            assert_eq!(up.pick(None).ok().unwrap().authority, "a:1");
        }
        for _ in 0..4 {
            a.record(false, Duration::ZERO);
        }
        assert!(matches!(up.pick(None), Err(Unavailable::BreakersOpen(_))));
    }
}
