//! Holds each attempt's result against its instance (its breaker, latency and ejection count)
//! and counts it (`upstream_requests_total` by outcome). The breaker decides which instances
//! `balance` may pick; this is where it learns.

use std::time::Instant;

use kit::metrics::Metrics;

use super::exchange::{Attempt, Try};
use super::step::{Inner, Step};

#[derive(Clone)]
pub struct Breaker {
    pub metrics: Metrics,
}

impl<S: Inner<Try, Attempt>> Step<Try, S> for Breaker {
    type Response = Attempt;

    async fn run(&self, attempt: Try, mut inner: S) -> Attempt {
        let (exchange, instance) = (attempt.exchange.clone(), attempt.instance.clone());
        let Some(instance) = instance else {
            let Ok(done) = inner.call(attempt).await;
            return done;
        };
        let sent_at = Instant::now();
        let guard = instance.start();
        let Ok(done) = inner.call(attempt).await;
        drop(guard);
        let verdict = done.verdict(exchange.retryable);
        if verdict.ok || verdict.counts_against_instance {
            instance.record(verdict.ok, sent_at.elapsed());
        }
        let (name, authority) = (exchange.upstream.name, instance.authority.clone());
        self.metrics.record(|| {
            metrics::counter!("upstream_requests_total", "upstream" => name, "instance" => authority, "outcome" => verdict.label)
                .increment(1)
        });
        done
    }
}
