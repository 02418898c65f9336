//! Prometheus metrics, one registry per service: in `ordermesh up` four services share a
//! process, and each one's `/metrics` must describe that service alone. Latency histograms
//! carry exemplars (the trace of a request in each bucket) in the OpenMetrics exposition.

mod exemplars;

pub use exemplars::OPENMETRICS;

use std::sync::Arc;
use std::time::Duration;

use metrics::Recorder;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Latency buckets in seconds, from 100 µs (a cached gateway hop) to 10 s (a timeout).
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    service: &'static str,
    exemplars: Arc<exemplars::Exemplars>,
}

impl Metrics {
    pub fn new(service: &'static str) -> Self {
        let recorder = PrometheusBuilder::new()
            .add_global_label("service", service)
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), LATENCY_BUCKETS)
            .expect("latency buckets are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        Metrics { recorder: Arc::new(recorder), handle, service, exemplars: Arc::default() }
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Runs `f` with this service's registry as the recorder, so the `metrics` macros inside it
    /// (`counter!`, `histogram!`, `gauge!`) record here.
    pub fn record<R>(&self, f: impl FnOnce() -> R) -> R {
        let recorder: &dyn Recorder = &*self.recorder;
        metrics::with_local_recorder(recorder, f)
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// The same in the OpenMetrics format, with the latency histograms' exemplars.
    pub fn render_openmetrics(&self) -> String {
        self.exemplars.openmetrics(&self.render(), LATENCY_BUCKETS)
    }

    /// Keeps `trace_id` as the exemplar of the bucket `seconds` falls in, for the latency
    /// histogram `metric` (a `_seconds` one) with these labels (as recorded, without the
    /// service's).
    pub fn exemplar(&self, metric: &str, labels: &[(&str, &str)], seconds: f64, trace_id: &str) {
        debug_assert!(metric.ends_with("_seconds"), "only latency histograms have these buckets");
        let mut all = Vec::with_capacity(labels.len() + 1);
        all.extend_from_slice(labels);
        all.push(("service", self.service));
        self.exemplars.record(metric, &all, LATENCY_BUCKETS, seconds, trace_id);
    }

    /// Histograms keep raw samples until drained; drain them periodically even when nobody
    /// scrapes, so memory stays flat.
    pub fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("service", &self.service).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_separate_per_service() {
        let a = Metrics::new("a");
        let b = Metrics::new("b");
        a.record(|| metrics::counter!("things_total").increment(3));
        assert!(a.render().contains("things_total{service=\"a\"} 3"), "{}", a.render());
        assert!(!b.render().contains("things_total"));
    }
}
