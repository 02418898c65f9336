//! The last traces of this process, kept in memory (bounded) so that a developer sees a
//! request's path without installing a collector: the admin storefront's Traces page reads
//! them. Spans arrive from the SDK's batch thread, children before their parents and an
//! order's event work seconds after its request; they are grouped by trace id as they come.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// At most this many spans of one trace are kept; the rest are counted.
const SPANS_PER_TRACE: usize = 256;

/// One span as the Traces page shows it.
#[derive(Debug, Clone)]
pub struct KeptSpan {
    pub span_id: SpanId,
    /// None for a trace's first span, or a parent in another process.
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: &'static str,
    /// The service that made it, when the span says (request spans do; their children
    /// inherit it on the page).
    pub service: Option<String>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub error: bool,
    pub status_code: Option<u16>,
    pub route: Option<String>,
    /// Its attributes as text, in the order they were set; never request values (spans carry
    /// none).
    pub attributes: Vec<(String, String)>,
}

impl KeptSpan {
    pub fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }
}

/// The spans of one trace this process has seen.
#[derive(Debug, Clone)]
pub struct KeptTrace {
    pub id: TraceId,
    pub spans: Vec<KeptSpan>,
    /// Spans left out past [`SPANS_PER_TRACE`].
    pub dropped: usize,
}

impl KeptTrace {
    /// The span that started it here: the earliest of those whose parent is not in the trace.
    pub fn root(&self) -> Option<&KeptSpan> {
        self.tops().min_by_key(|s| s.start)
    }

    fn tops(&self) -> impl Iterator<Item = &KeptSpan> {
        self.spans.iter().filter(|s| s.parent.is_none_or(|p| !self.spans.iter().any(|o| o.span_id == p)))
    }

    pub fn start(&self) -> SystemTime {
        self.spans.iter().map(|s| s.start).min().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// From the first span's start to the last span's end.
    pub fn duration(&self) -> Duration {
        let end = self.spans.iter().map(|s| s.end).max().unwrap_or(SystemTime::UNIX_EPOCH);
        end.duration_since(self.start()).unwrap_or_default()
    }

    /// Whether any span failed.
    pub fn error(&self) -> bool {
        self.spans.iter().any(|s| s.error)
    }

    /// The services taking part, in the order they first appear.
    pub fn services(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for (_, service, _) in self.tree() {
            if let Some(service) = service
                && !seen.contains(&service)
            {
                seen.push(service);
            }
        }
        seen
    }

    /// Every span with its depth and service (its own, or its nearest ancestor's), parents
    /// before children and siblings by start time: the rows of a waterfall.
    pub fn tree(&self) -> Vec<(usize, Option<&str>, &KeptSpan)> {
        let mut rows = Vec::with_capacity(self.spans.len());
        let mut tops: Vec<&KeptSpan> = self.tops().collect();
        tops.sort_by_key(|s| s.start);
        let mut stack: Vec<(usize, Option<&str>, &KeptSpan)> =
            tops.into_iter().rev().map(|s| (0, s.service.as_deref(), s)).collect();
        while let Some((depth, inherited, span)) = stack.pop() {
            let service = span.service.as_deref().or(inherited);
            rows.push((depth, service, span));
            let mut children: Vec<&KeptSpan> = self.spans.iter().filter(|c| c.parent == Some(span.span_id)).collect();
            children.sort_by_key(|c| c.start);
            // A trace holds no cycles (span ids are unique); the depth bound is a guard all the same.
            if depth < 64 {
                stack.extend(children.into_iter().rev().map(|c| (depth + 1, service, c)));
            }
        }
        rows
    }
}

/// The last `capacity` traces, newest last.
#[derive(Debug)]
pub struct RecentTraces {
    capacity: usize,
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    order: VecDeque<TraceId>,
    traces: HashMap<TraceId, KeptTrace>,
}

impl RecentTraces {
    pub fn new(capacity: usize) -> Self {
        RecentTraces { capacity, inner: Mutex::default() }
    }

    pub fn add(&self, batch: Vec<SpanData>) {
        let mut kept = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for span in batch {
            let id = span.span_context.trace_id();
            if !kept.traces.contains_key(&id) {
                if kept.order.len() >= self.capacity
                    && let Some(oldest) = kept.order.pop_front()
                {
                    kept.traces.remove(&oldest);
                }
                kept.order.push_back(id);
                kept.traces.insert(id, KeptTrace { id, spans: Vec::new(), dropped: 0 });
            }
            let trace = kept.traces.get_mut(&id).expect("inserted above");
            if trace.spans.len() >= SPANS_PER_TRACE {
                trace.dropped += 1;
            } else {
                trace.spans.push(kept_span(span));
            }
        }
    }

    /// The traces kept, newest first.
    pub fn list(&self) -> Vec<KeptTrace> {
        let kept = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        kept.order.iter().rev().filter_map(|id| kept.traces.get(id).cloned()).collect()
    }

    /// One trace by its 32-digit hex id.
    pub fn get(&self, id: &str) -> Option<KeptTrace> {
        let id = TraceId::from_hex(id).ok()?;
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).traces.get(&id).cloned()
    }
}

fn kept_span(span: SpanData) -> KeptSpan {
    let text = |v: &Value| v.as_str().into_owned();
    let attribute = |key: &str| span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| text(&kv.value));
    let status_code = attribute("http.response.status_code").and_then(|s| s.parse().ok());
    let error = matches!(span.status, Status::Error { .. }) || status_code.is_some_and(|s: u16| s >= 500);
    KeptSpan {
        span_id: span.span_context.span_id(),
        parent: (span.parent_span_id != SpanId::INVALID).then_some(span.parent_span_id),
        name: span.name.to_string(),
        kind: match span.span_kind {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
            SpanKind::Internal => "internal",
        },
        service: attribute("service"),
        route: attribute("route").filter(|r| r != "-"),
        start: span.start_time,
        end: span.end_time,
        error,
        status_code,
        attributes: latest_values(&span.attributes, text),
    }
}

/// Attributes as text, each key once with its last value (a field recorded again, such as the
/// trace id a request span learns when it joins its trace, appears twice in the span data).
fn latest_values(attributes: &[opentelemetry::KeyValue], text: impl Fn(&Value) -> String) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(attributes.len());
    for kv in attributes {
        let value = text(&kv.value);
        match out.iter_mut().find(|(k, _)| k == kv.key.as_str()) {
            Some(kept) => kept.1 = value,
            None => out.push((kv.key.to_string(), value)),
        }
    }
    out
}

/// The SDK's exporter into a [`RecentTraces`]: a lock and a few copies, on the batch thread.
#[derive(Debug)]
pub(crate) struct KeepRecent(pub(crate) &'static RecentTraces);

impl SpanExporter for KeepRecent {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.add(batch);
        std::future::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    fn span(
        trace: u128,
        id: u64,
        parent: u64,
        name: &str,
        start_ms: u64,
        end_ms: u64,
        service: Option<&str>,
    ) -> SpanData {
        let at = |ms| SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms);
        let mut attributes =
            vec![KeyValue::new("db.operation.name", "SELECT"), KeyValue::new("db.operation.name", "INSERT")];
        if let Some(service) = service {
            attributes.push(KeyValue::new("service", service.to_string()));
            attributes.push(KeyValue::new("http.response.status_code", 201_i64));
        }
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Owned(name.to_string()),
            start_time: at(start_ms),
            end_time: at(end_ms),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn spans_are_grouped_by_trace_whatever_order_they_end_in_and_drawn_parents_first() {
        let recent = RecentTraces::new(10);
        // Children end, and so arrive, before their parents; the event's work comes later.
        recent.add(vec![
            span(1, 3, 2, "INSERT orders", 5, 6, None),
            span(1, 2, 1, "orders POST /orders", 2, 9, Some("orders")),
            span(2, 9, 0, "gateway GET /api/products", 0, 1, Some("gateway")),
        ]);
        recent.add(vec![span(1, 1, 0, "gateway POST /api/orders", 0, 10, Some("gateway"))]);
        recent.add(vec![span(1, 4, 2, "catalog apply order.created", 40, 50, Some("catalog"))]);

        let list = recent.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, TraceId::from(2), "newest first");
        let order = recent.get(&TraceId::from(1).to_string()).expect("by its hex id");
        assert_eq!(order.root().unwrap().name, "gateway POST /api/orders");
        assert_eq!(order.duration(), Duration::from_millis(50));
        let rows: Vec<(usize, Option<&str>, &str)> =
            order.tree().into_iter().map(|(depth, service, s)| (depth, service, s.name.as_str())).collect();
        assert_eq!(
            rows,
            [
                (0, Some("gateway"), "gateway POST /api/orders"),
                (1, Some("orders"), "orders POST /orders"),
                (2, Some("orders"), "INSERT orders"),
                (2, Some("catalog"), "catalog apply order.created"),
            ]
        );
        assert_eq!(order.services(), ["gateway", "orders", "catalog"]);
        assert_eq!(order.root().unwrap().status_code, Some(201));
        let values = |key: &str| order.spans[0].attributes.iter().filter(|(k, _)| k == key).count();
        assert_eq!(values("db.operation.name"), 1, "a field recorded twice is shown once, as last set");
        assert!(recent.get("not hex").is_none());
    }

    #[test]
    fn only_the_last_traces_and_a_bounded_number_of_spans_each_are_kept() {
        let recent = RecentTraces::new(3);
        for trace in 1..=5 {
            recent.add(vec![span(trace, 1, 0, "t", 0, 1, None)]);
        }
        let ids: Vec<TraceId> = recent.list().iter().map(|t| t.id).collect();
        assert_eq!(ids, [TraceId::from(5), TraceId::from(4), TraceId::from(3)]);

        let many = (1..=SPANS_PER_TRACE as u64 + 10).map(|i| span(7, i, 0, "s", 0, 1, None)).collect();
        recent.add(many);
        let seven = recent.get(&TraceId::from(7).to_string()).unwrap();
        assert_eq!((seven.spans.len(), seven.dropped), (SPANS_PER_TRACE, 10));
        assert_eq!(recent.list().len(), 3);
    }
}
