//! Bounds one attempt: the upstream must answer (its response headers) within the
//! configured upstream timeout, or within what is left of the exchange's deadline if that is
//! sooner.

use std::time::Duration;

use super::exchange::{Attempt, Try};
use super::step::{Inner, Step};

#[derive(Clone, Copy)]
pub struct AttemptTimeout {
    pub timeout: Duration,
}

impl<S: Inner<Try, Attempt>> Step<Try, S> for AttemptTimeout {
    type Response = Attempt;

    async fn run(&self, attempt: Try, mut inner: S) -> Attempt {
        let limit = self.timeout.min(attempt.exchange.time_left());
        match tokio::time::timeout(limit, inner.call(attempt)).await {
            Ok(Ok(done)) => done,
            Err(_) => Attempt::TimedOut(limit),
        }
    }
}
