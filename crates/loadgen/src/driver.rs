//! Running the load: closed loop (virtual users) or open loop (arrivals at a rate, bounded in
//! flight), a stop rule (duration or count), and the once-a-second progress line.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use tokio::sync::Semaphore;

use crate::args::{Args, Journey, RateUnit};
use crate::http::Api;
use crate::journeys::Ctx;
use crate::reconcile::Ledger;
use crate::setup::World;
use crate::stats::{Recorder, Summary, progress_line};

/// What the load did, for the reconciliation and the report.
pub struct Outcome {
    pub ledger: Arc<Ledger>,
    pub summary: Summary,
    /// From the end of the warm-up until the last measured journey finished.
    pub measured_seconds: f64,
    pub journeys_started: u64,
    /// Open loop: arrivals not started because --max-in-flight journeys were running.
    pub dropped: u64,
    /// Open loop: the target in journeys per second.
    pub journeys_per_second: Option<f64>,
    pub mean_requests_per_journey: f64,
}

/// When to stop starting journeys.
struct StopRule {
    measure_from: Instant,
    deadline: Option<Instant>,
    count: Option<u64>,
    measured: AtomicU64,
    stopped: AtomicBool,
}

impl StopRule {
    /// May a journey start now? `Some(measured)` if so.
    fn admit(&self, now: Instant) -> Option<bool> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.stopped.store(true, Ordering::Relaxed);
            return None;
        }
        if now < self.measure_from {
            return Some(false);
        }
        let n = self.measured.fetch_add(1, Ordering::Relaxed);
        if self.count.is_some_and(|c| n >= c) {
            self.stopped.store(true, Ordering::Relaxed);
            return None;
        }
        Some(true)
    }
}

struct Picker {
    journeys: Vec<Journey>,
    weights: WeightedIndex<u32>,
}

impl Picker {
    fn new(args: &Args) -> Picker {
        let journeys = args.mix.0.iter().map(|(j, _)| *j).collect();
        let weights = WeightedIndex::new(args.mix.0.iter().map(|(_, w)| *w)).expect("the mix has a positive weight");
        Picker { journeys, weights }
    }

    fn pick(&self, rng: &mut StdRng) -> Journey {
        self.journeys[self.weights.sample(rng)]
    }
}

fn rng_for(seed: Option<u64>, stream: u64) -> StdRng {
    match seed {
        Some(s) => StdRng::seed_from_u64(s ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        None => StdRng::from_entropy(),
    }
}

pub async fn drive(api: Api, world: Arc<World>, args: &Args, run_id: &str) -> Outcome {
    let start = Instant::now();
    let rec = Recorder::new(start, args.warmup);
    let measure_from = rec.measure_from;
    let ctx = Arc::new(Ctx::new(api, world, rec, run_id.to_string(), args.replay_ratio, args.cancel_ratio));
    let stop = Arc::new(StopRule {
        measure_from,
        deadline: args.measure_for().map(|d| measure_from + d),
        count: args.count,
        measured: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
    });
    let picker = Arc::new(Picker::new(args));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let started_journeys = Arc::new(AtomicU64::new(0));
    let progress = spawn_progress(ctx.clone(), in_flight.clone(), !args.quiet);
    let mean_requests = args.mix.mean_requests(args.replay_ratio);
    let mut dropped = 0;
    let mut jps = None;
    match args.rate {
        None => {
            let mut users = Vec::new();
            for u in 0..args.concurrency {
                let (ctx, stop, picker, in_flight, started) =
                    (ctx.clone(), stop.clone(), picker.clone(), in_flight.clone(), started_journeys.clone());
                let mut rng = rng_for(args.seed, u as u64);
                users.push(tokio::spawn(async move {
                    while stop.admit(Instant::now()).is_some() {
                        started.fetch_add(1, Ordering::Relaxed);
                        in_flight.fetch_add(1, Ordering::Relaxed);
                        let journey = picker.pick(&mut rng);
                        ctx.run(journey, &mut rng).await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                    }
                }));
            }
            for u in users {
                let _ = u.await;
            }
        }
        Some(rate) => {
            let per_second = match args.rate_unit {
                RateUnit::Journeys => rate,
                RateUnit::Requests => rate / mean_requests.max(1e-9),
            };
            jps = Some(per_second);
            let interval = Duration::from_secs_f64(1.0 / per_second);
            let slots = Arc::new(Semaphore::new(args.max_in_flight));
            let mut next = start;
            let mut n: u64 = 0;
            'arrivals: loop {
                tokio::time::sleep_until(next.into()).await;
                let now = Instant::now();
                while next <= now {
                    let Some(measured) = stop.admit(next) else { break 'arrivals };
                    n += 1;
                    next += interval;
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        dropped += measured as u64;
                        continue;
                    };
                    started_journeys.fetch_add(1, Ordering::Relaxed);
                    let (ctx, picker, in_flight) = (ctx.clone(), picker.clone(), in_flight.clone());
                    let mut rng = rng_for(args.seed, n);
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let journey = picker.pick(&mut rng);
                        ctx.run(journey, &mut rng).await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                    });
                }
            }
            // Let what is in flight finish (bounded: every request has a timeout).
            let drain = args.timeout * 8 + Duration::from_secs(5);
            let all = args.max_in_flight.min(u32::MAX as usize) as u32;
            let _ = tokio::time::timeout(drain, slots.acquire_many(all)).await;
        }
    }
    let finished = Instant::now();
    progress.abort();
    let _ = progress.await;
    let last = ctx.rec.tick(finished);
    if !args.quiet {
        let mut err = std::io::stderr();
        let _ = writeln!(err, "{}{}", if err.is_terminal() { "\r\x1b[K" } else { "" }, progress_line(&last, 0));
    }
    let measured_seconds = finished.saturating_duration_since(measure_from).as_secs_f64();
    let summary = ctx.rec.finish(measured_seconds);
    Outcome {
        ledger: ctx.ledger.clone(),
        summary,
        measured_seconds,
        journeys_started: started_journeys.load(Ordering::Relaxed),
        dropped,
        journeys_per_second: jps,
        mean_requests_per_journey: mean_requests,
    }
}

/// Ticks the recorder once a second, aligned on the end of the warm-up, and prints the line.
fn spawn_progress(ctx: Arc<Ctx>, in_flight: Arc<AtomicUsize>, show: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let now = Instant::now();
        let mut first = ctx.rec.measure_from;
        while first > now + Duration::from_secs(1) {
            first -= Duration::from_secs(1);
        }
        let mut ticks = tokio::time::interval_at(first.into(), Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let tty = std::io::stderr().is_terminal();
        loop {
            ticks.tick().await;
            let snapshot = ctx.rec.tick(Instant::now());
            if show {
                let line = progress_line(&snapshot, in_flight.load(Ordering::Relaxed));
                let mut err = std::io::stderr();
                let _ = if tty { write!(err, "\r\x1b[K{line}") } else { writeln!(err, "{line}") };
                let _ = err.flush();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_rule_counts_measured_journeys_only() {
        let t0 = Instant::now();
        let rule = StopRule {
            measure_from: t0 + Duration::from_secs(1),
            deadline: None,
            count: Some(2),
            measured: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        };
        assert_eq!(rule.admit(t0), Some(false));
        assert_eq!(rule.admit(t0), Some(false));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(rule.admit(later), Some(true));
        assert_eq!(rule.admit(later), Some(true));
        assert_eq!(rule.admit(later), None);
        assert_eq!(rule.admit(t0), None, "stopped for good");
    }

    #[test]
    fn the_stop_rule_has_a_deadline() {
        let t0 = Instant::now();
        let rule = StopRule {
            measure_from: t0,
            deadline: Some(t0 + Duration::from_secs(5)),
            count: None,
            measured: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        };
        assert_eq!(rule.admit(t0 + Duration::from_secs(4)), Some(true));
        assert_eq!(rule.admit(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn seeded_picks_repeat_and_follow_the_weights() {
        let args = Args::try_parse_from(["load", "--mix", "order=3,view=1", "--seed", "7"]).unwrap();
        let picker = Picker::new(&args);
        let picks = |seed| {
            let mut rng = rng_for(Some(seed), 1);
            (0..4000).map(|_| picker.pick(&mut rng)).collect::<Vec<_>>()
        };
        let a = picks(7);
        assert_eq!(a, picks(7));
        let orders = a.iter().filter(|j| **j == Journey::Order).count();
        assert!((2800..3200).contains(&orders), "{orders}");
        assert!(a.iter().all(|j| matches!(j, Journey::Order | Journey::View)));
    }
}
