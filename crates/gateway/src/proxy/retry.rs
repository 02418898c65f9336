//! Sends a failed attempt again, on another instance, when that cannot do the request twice
//! (the exchange is retryable, or nothing reached the instance), its body can be replayed,
//! the retry budget allows it and the deadline leaves room; with exponential back-off and
//! jitter between attempts.

use std::sync::Arc;
use std::time::Duration;

use kit::metrics::Metrics;
use rand::Rng;

use super::exchange::{Attempt, Exchange, Outcome, Try};
use super::step::{Inner, Step};

#[derive(Clone)]
pub struct Retry {
    pub max_retries: u32,
    pub backoff: Duration,
    pub metrics: Metrics,
}

impl Retry {
    /// Doubling from the base, plus jitter up to as much again.
    fn pause_before(&self, retry: u32) -> Duration {
        let base = self.backoff.as_micros() as u64 * 2u64.pow(retry - 1);
        Duration::from_micros(base + rand::thread_rng().gen_range(0..=base.max(1)))
    }
}

impl<S: Inner<Try, Outcome>> Step<Arc<Exchange>, S> for Retry {
    type Response = Attempt;

    async fn run(&self, exchange: Arc<Exchange>, mut inner: S) -> Attempt {
        let upstream = exchange.upstream.clone();
        upstream.budget.on_request();
        let mut avoid = None;
        let mut retries = 0;
        loop {
            let Ok(Outcome { attempt, instance }) =
                inner.call(Try { exchange: exchange.clone(), avoid, instance: None }).await;
            let verdict = attempt.verdict(exchange.retryable);
            let again = !verdict.ok
                && verdict.may_retry
                && exchange.payload.replayable()
                && retries < self.max_retries
                && upstream.budget.try_withdraw();
            if !again {
                return attempt;
            }
            retries += 1;
            let pause = self.pause_before(retries);
            if pause >= exchange.time_left() {
                return attempt;
            }
            self.metrics
                .record(|| metrics::counter!("upstream_retries_total", "upstream" => upstream.name).increment(1));
            tokio::time::sleep(pause).await;
            avoid = instance;
        }
    }
}
