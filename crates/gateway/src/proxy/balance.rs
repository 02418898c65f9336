//! Picks the instance an attempt goes to: the least loaded healthy one whose breaker lets it
//! through, never the one the previous attempt failed on while another is left.

use kit::metrics::Metrics;

use super::exchange::{Attempt, Outcome, Try};
use super::step::{Inner, Step};
use crate::upstream::Unavailable;

#[derive(Clone)]
pub struct Balance {
    pub metrics: Metrics,
}

impl<S: Inner<Try, Attempt>> Step<Try, S> for Balance {
    type Response = Outcome;

    async fn run(&self, mut attempt: Try, mut inner: S) -> Outcome {
        let upstream = attempt.exchange.upstream.clone();
        let instance = match upstream.pick(attempt.avoid.as_ref()) {
            Ok(instance) => instance,
            Err(why) => {
                let outcome = match why {
                    Unavailable::BreakersOpen(_) => "breaker_open",
                    Unavailable::NoHealthyInstance => "no_instance",
                };
                self.metrics.record(|| {
                    metrics::counter!("upstream_requests_total", "upstream" => upstream.name, "instance" => "-", "outcome" => outcome)
                        .increment(1)
                });
                return Outcome { attempt: Attempt::Refused(why), instance: None };
            }
        };
        tracing::Span::current().record("upstream", instance.authority.as_str());
        attempt.instance = Some(instance.clone());
        let Ok(done) = inner.call(attempt).await;
        Outcome { attempt: done, instance: Some(instance) }
    }
}
