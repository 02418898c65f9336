//! Which requests are traced. A request that joins a trace follows its caller's decision (the
//! `traceparent`'s sampled flag). A new trace is recorded unless a rate of new traces is set
//! (`TRACES_PER_SECOND`, for the traces kept in memory when nothing is exported): a developer
//! clicking through the shop sees every request, a load test costs a few traces a second
//! instead of a span pipeline per request. A request not recorded makes no spans at all, and
//! its calls carry the flag off, so the services it calls skip theirs too.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::context::RequestContext;

static NEW_TRACES: OnceLock<NewTraces> = OnceLock::new();

/// At most `per_second` new traces in each second (a fixed window: simple, and the only
/// promise is the bound).
#[derive(Debug)]
struct NewTraces {
    per_second: u32,
    epoch: Instant,
    second: AtomicU64,
    taken: AtomicU32,
}

impl NewTraces {
    fn take(&self) -> bool {
        let now = self.epoch.elapsed().as_secs();
        if self.second.load(Ordering::Relaxed) != now && self.second.swap(now, Ordering::Relaxed) != now {
            self.taken.store(0, Ordering::Relaxed);
        }
        self.taken.fetch_add(1, Ordering::Relaxed) < self.per_second
    }
}

/// Bounds new traces to `per_second` from now on (0: no bound). Called once, at start-up.
pub(crate) fn limit_new_traces(per_second: u32) {
    if per_second > 0 {
        let _ = NEW_TRACES.set(NewTraces {
            per_second,
            epoch: Instant::now(),
            second: AtomicU64::new(0),
            taken: AtomicU32::new(0),
        });
    }
}

/// Whether a new trace may start now.
pub(crate) fn admit_new_trace() -> bool {
    NEW_TRACES.get().is_none_or(NewTraces::take)
}

/// Whether the request of `ctx` is traced: its caller's decision when it joined a trace, else
/// whether a new trace may start.
pub(crate) fn admits(ctx: &RequestContext) -> bool {
    if ctx.parent_span_id.is_some() { ctx.sampled } else { admit_new_trace() }
}

/// Whether work done here belongs to a recorded trace: the request being served says so; with
/// no request, the span it would go under does (a message's, say).
pub(crate) fn in_recorded_trace() -> bool {
    match RequestContext::current() {
        Some(ctx) => ctx.sampled,
        None => !tracing::Span::current().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_traces_are_bounded_per_second_and_the_bound_comes_back() {
        let limit =
            NewTraces { per_second: 3, epoch: Instant::now(), second: AtomicU64::new(0), taken: AtomicU32::new(0) };
        let taken = (0..10).filter(|_| limit.take()).count();
        assert_eq!(taken, 3);
        // A second later (the window moved), three more.
        limit.second.store(u64::MAX, Ordering::Relaxed);
        assert_eq!((0..10).filter(|_| limit.take()).count(), 3);
    }
}
