//! Times the whole exchange, retries included (`upstream_request_duration_seconds`).

use std::sync::Arc;
use std::time::Instant;

use kit::metrics::Metrics;

use super::exchange::{Attempt, Exchange};
use super::step::{Inner, Step};

#[derive(Clone)]
pub struct Measure {
    pub metrics: Metrics,
}

impl<S: Inner<Arc<Exchange>, Attempt>> Step<Arc<Exchange>, S> for Measure {
    type Response = Attempt;

    async fn run(&self, exchange: Arc<Exchange>, mut inner: S) -> Attempt {
        let (started, name) = (Instant::now(), exchange.upstream.name);
        let Ok(attempt) = inner.call(exchange).await;
        let total = started.elapsed().as_secs_f64();
        self.metrics
            .record(|| metrics::histogram!("upstream_request_duration_seconds", "upstream" => name).record(total));
        attempt
    }
}
