//! OpenTelemetry traces, exported over OTLP when a collector is configured with the standard
//! variables every OpenTelemetry SDK reads from the environment:
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): turns export on;
//! - `OTEL_EXPORTER_OTLP_PROTOCOL` (or `…_TRACES_PROTOCOL`): `http/protobuf` (the default) or
//!   `grpc`; also `…_HEADERS`, `…_TIMEOUT`;
//! - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
//!   `OTEL_TRACES_SAMPLER_ARG` (the resource and the sampler);
//! - `OTEL_BSP_*` (the batch: delay, queue size, batch size); `OTEL_SDK_DISABLED=true` turns
//!   export off again.
//!
//! Spans leave in batches from a queue of bounded size on the SDK's own thread: no request
//! waits on the collector. When it is down or absent, each batch is dropped after the
//! exporter's retries and the SDK logs that (two lines) once a batch interval
//! (`OTEL_BSP_SCHEDULE_DELAY`, 5 s by default), nothing else.
//!
//! Without a collector the process keeps its last traces in memory ([`recent`], `TRACES_KEPT`,
//! 200 by default): the admin storefront's Traces page draws them.
//!
//! Each request's span ([`crate::layers::AccessLogLayer`]) joins the trace of the
//! `traceparent` it came with, and the calls it makes carry its own span as their parent
//! ([`join`]), so one order is one trace across the gateway and the services.

mod recent;
mod sampling;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceId, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
pub use recent::{KeptSpan, KeptTrace, RecentTraces};
pub(crate) use sampling::admits;
use sampling::{admit_new_trace, in_recorded_trace};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::context::RequestContext;

static RECORDING: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static RECENT: OnceLock<RecentTraces> = OnceLock::new();

/// How long a finished span waits before the Traces page can show it.
const KEPT_DELAY: Duration = Duration::from_millis(500);

/// Where and how spans are exported, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    pub endpoint: String,
    pub protocol: Protocol,
    /// `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
    pub default_service_name: String,
}

impl TraceExport {
    /// None when no endpoint is set (or `OTEL_SDK_DISABLED=true`); an error for a protocol
    /// this build cannot speak.
    pub fn from_env(default_service_name: &str) -> Result<Option<Self>, String> {
        Self::from_lookup(default_service_name, |key| std::env::var(key).ok())
    }

    fn from_lookup(default_service_name: &str, var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let set = |key: &str| var(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let Some(endpoint) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        let (key, protocol) = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(p) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(p)),
            None => ("OTEL_EXPORTER_OTLP_PROTOCOL", set("OTEL_EXPORTER_OTLP_PROTOCOL")),
        };
        let protocol = match protocol.as_deref() {
            None | Some("http/protobuf") => Protocol::HttpBinary,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(format!("{key}={other}: expected http/protobuf or grpc"));
            }
        };
        Ok(Some(TraceExport { endpoint, protocol, default_service_name: default_service_name.to_string() }))
    }

    /// The OTLP exporter. gRPC needs the Tokio runtime current (the channel is bound to it);
    /// the HTTP exporter runs on the SDK's thread.
    fn exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, String> {
        match self.protocol {
            Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder().with_tonic().build(),
            _ => opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build(),
        }
        .map_err(|e| format!("the OTLP exporter to {} could not be set up: {e}", self.endpoint))
    }

    /// The resource's detectors read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; a name
    /// given there wins over this default.
    fn resource(&self) -> Resource {
        let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
        let mut resource = Resource::builder();
        if !named {
            resource = resource.with_service_name(self.default_service_name.clone());
        }
        resource.build()
    }
}

/// The layer that turns the process's spans into OpenTelemetry spans: exported when `export`
/// says where, the last `keep` traces kept in memory ([`recent`]). None when neither. When
/// only kept, at most `new_per_second` new traces a second are recorded (0: all); exported,
/// the standard `OTEL_TRACES_SAMPLER` decides. Called once, by [`crate::telemetry::init`].
pub(crate) fn layer<S>(
    export: Option<&TraceExport>,
    keep: usize,
    new_per_second: u32,
) -> Result<Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    if export.is_none() && keep == 0 {
        return Ok(None);
    }
    let mut provider = SdkTracerProvider::builder();
    match export {
        Some(export) => {
            provider = provider.with_batch_exporter(export.exporter()?).with_resource(export.resource());
        }
        None => sampling::limit_new_traces(new_per_second),
    }
    if keep > 0 {
        let recent = RECENT.get_or_init(|| RecentTraces::new(keep));
        let batch = BatchConfigBuilder::default().with_scheduled_delay(KEPT_DELAY).build();
        provider = provider.with_span_processor(
            BatchSpanProcessor::builder(recent::KeepRecent(recent)).with_batch_config(batch).build(),
        );
    }
    let provider = provider.build();
    let tracer = provider.tracer("ordermesh");
    let _ = PROVIDER.set(provider);
    RECORDING.store(true, Ordering::Relaxed);
    // Only what a trace reader uses: no busy/idle times, source locations, thread or target
    // attributes, and no OpenTelemetry context made current on each entry (every poll of an
    // instrumented future): this platform reads a span's context from the span itself.
    Ok(Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_context_activation(false),
    ))
}

/// What becomes part of a trace: this platform's spans (at info), not the libraries' own (the
/// exporter's, the HTTP stacks'), and of events only warnings and errors (an access line per
/// request would cost more than the span it lands in), whatever the logs show.
pub(crate) fn recorded<S: tracing::Subscriber>() -> impl tracing_subscriber::layer::Filter<S> {
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter, filter_fn};
    let spans_and_warnings = filter_fn(|meta| meta.is_span() || *meta.level() <= tracing::Level::WARN);
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::INFO)
        .with_targets(
            [
                "kit::untraced",
                "opentelemetry",
                "opentelemetry_sdk",
                "opentelemetry_otlp",
                "hyper",
                "hyper_util",
                "h2",
                "tonic",
                "reqwest",
                "sqlx",
            ]
            .map(|target| (target, LevelFilter::OFF)),
        )
        .and(spans_and_warnings)
}

/// Paths that are not traced: health probes, metric scrapes, static assets.
pub fn untraced_path(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics" | "/favicon.ico") || path.starts_with("/assets/")
}

/// The traces this process keeps in memory, when it keeps any.
pub fn recent() -> Option<&'static RecentTraces> {
    RECENT.get()
}

/// Whether spans are recorded (exported or kept): the request layers do the work of joining
/// traces only then.
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// Sends what is still queued and stops the exporter; at the end of the process.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// Makes `span` the request's span in its trace: its parent is the `traceparent` the request
/// came with (none: a new trace), and the context the request's own calls send on (its ids in
/// logs and in outgoing `traceparent`) becomes this span's.
pub fn join(span: &tracing::Span, ctx: &RequestContext) -> RequestContext {
    if let Some(parent) = parent_of(ctx) {
        let _ = span.set_parent(parent);
    }
    let otel = span.context();
    let own = otel.span().span_context().clone();
    if !own.is_valid() {
        return ctx.clone();
    }
    let trace_id = own.trace_id().to_string();
    span.record("trace_id", trace_id.as_str());
    RequestContext {
        trace_id: trace_id.into(),
        span_id: own.span_id().to_string().into(),
        sampled: own.is_sampled(),
        ..ctx.clone()
    }
}

/// The caller's span, as a parent for ours, when the request came with a valid one.
fn parent_of(ctx: &RequestContext) -> Option<opentelemetry::Context> {
    remote_span(&ctx.trace_id, ctx.parent_span_id.as_deref()?, ctx.sampled, ctx.tracestate.as_deref())
}

/// The trace context a W3C `traceparent` (and its `tracestate`) names, when well formed.
fn remote(traceparent: &str, tracestate: Option<&str>) -> Option<opentelemetry::Context> {
    let t = crate::context::parse_traceparent(traceparent)?;
    remote_span(t.trace_id, t.parent_id, t.sampled, tracestate)
}

fn remote_span(
    trace_id: &str,
    span_id: &str,
    sampled: bool,
    tracestate: Option<&str>,
) -> Option<opentelemetry::Context> {
    // The state travels with the spans of this trace (the SDK gives a child its parent's).
    let state = tracestate.and_then(crate::context::parse_tracestate).and_then(|t| t.parse().ok());
    let remote = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        opentelemetry::trace::SpanId::from_hex(span_id).ok()?,
        if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() },
        true,
        state.unwrap_or_default(),
    );
    remote.is_valid().then(|| opentelemetry::Context::new().with_remote_span_context(remote))
}

/// A span for the work `service` does for one message (`kind` "consumer"), the child of the
/// request that sent it (its `traceparent` and `tracestate`); a disabled span when nothing is
/// recorded. It ends at its last exit: enter it (instrument) for the message's work.
pub fn follow(
    service: &'static str,
    name: &str,
    kind: &'static str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> tracing::Span {
    let recorded = match traceparent {
        Some(t) => crate::context::parse_traceparent(t).is_some_and(|t| t.sampled),
        None => admit_new_trace(),
    };
    if !recording() || !recorded {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("message", service, "otel.name" = name, "otel.kind" = kind);
    if let Some(parent) = traceparent.and_then(|t| remote(t, tracestate)) {
        let _ = span.set_parent(parent);
    }
    span
}

/// A client span for one call to another service (one attempt), and the context to send with
/// it, so that the callee's request span is this span's child. None when nothing is recorded
/// or the caller is not serving a request.
pub fn outgoing(peer: &str, method: &axum::http::Method, authority: &str) -> Option<(tracing::Span, RequestContext)> {
    if !recording() {
        return None;
    }
    // A caller that asked not to be recorded (background upkeep) makes no span either.
    let caller = RequestContext::current().filter(|c| c.sampled)?;
    let span = tracing::info_span!(
        "call",
        "otel.name" = format!("{method} {peer}").as_str(),
        "otel.kind" = "client",
        "peer.service" = peer,
        "server.address" = authority,
        "http.request.method" = method.as_str(),
        "http.response.status_code" = tracing::field::Empty,
    );
    // The parent is the span the caller's context names: the request's, or the one a
    // background task continues ([`continuing`]) after the request's span has ended.
    let ctx = join(&span, &RequestContext { parent_span_id: Some(caller.span_id.clone()), ..caller });
    Some((span, ctx))
}

/// `work`, to be spawned by a request, as part of that request's trace (the calls it makes are
/// the request span's children) but without its deadline: it outlives the answer.
pub fn continuing<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let ctx = RequestContext::current().map(|c| RequestContext { deadline: None, ..c });
    async move {
        match ctx {
            Some(ctx) => ctx.scope(work).await,
            None => work.await,
        }
    }
}

/// Runs background upkeep (polling another service, say) so that the calls it makes ask their
/// callee not to record them (a `traceparent` with the sampled flag off): a poll a second would
/// crowd the requests people look for out of the traces kept.
pub async fn unrecorded<F: Future>(work: F) -> F::Output {
    RequestContext { sampled: false, ..RequestContext::from_headers(None, None) }.scope(work).await
}

/// A span for a piece of work inside `service` worth seeing in a trace (password hashing,
/// say); disabled when nothing is recorded.
pub fn internal(service: &'static str, name: &str) -> tracing::Span {
    if !recording() || !in_recorded_trace() {
        return tracing::Span::none();
    }
    tracing::info_span!("work", service, "otel.name" = name, "otel.kind" = "internal")
}

/// A client span for database work: `db.system.name`, `db.operation.name` and
/// `db.collection.name`, as OpenTelemetry's conventions name them. Disabled when nothing is
/// recorded.
pub fn database(system: &'static str, operation: &'static str, table: &'static str) -> tracing::Span {
    if !recording() || !in_recorded_trace() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "database",
        "otel.name" = format!("{operation} {table}").as_str(),
        "otel.kind" = "client",
        "db.system.name" = system,
        "db.operation.name" = operation,
        "db.collection.name" = table,
    )
}

/// Runs `work` for `service` in a span of its own (`kind` "producer", say) that is linked to
/// every request it works for (their `traceparent` and `tracestate`), as a batch of their events is: the
/// calls `work` makes carry this span as their parent. When nothing is recorded, just `work`.
pub async fn linked<'a, F: Future>(
    service: &'static str,
    name: &str,
    kind: &'static str,
    traces: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    work: F,
) -> F::Output {
    if !recording() {
        return work.await;
    }
    if !admit_new_trace() {
        return unrecorded(work).await;
    }
    let span = tracing::info_span!("batch", service, "otel.name" = name, "otel.kind" = kind);
    for (traceparent, tracestate) in traces {
        if let Some(cx) = remote(traceparent, tracestate) {
            span.add_link(cx.span().span_context().clone());
        }
    }
    within(span, RequestContext::from_headers(None, None), work).await
}

/// Runs one remote procedure call `target.method` (`system` "capnweb", say), served by
/// `service`, in a span of its own: the child of the request it arrived in (an HTTP batch) or
/// of whatever the session runs under; the calls it makes carry this span as their parent.
/// When nothing is recorded, just `work`.
pub async fn procedure<F: Future>(
    service: &'static str,
    system: &'static str,
    target: &str,
    method: &str,
    work: F,
) -> F::Output {
    if !recording() {
        return work.await;
    }
    let caller = match RequestContext::current() {
        Some(caller) if caller.sampled => caller,
        Some(_) => return work.await,
        // A WebSocket session's call: a trace of its own, if one may start now.
        None if admit_new_trace() => RequestContext::from_headers(None, None),
        None => return unrecorded(work).await,
    };
    // The name is the peer's: an identifier of sane length, or not shown.
    let method = if method.len() <= 64 && method.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$') {
        method
    } else {
        "(unknown)"
    };
    let span = tracing::info_span!(
        "procedure",
        service,
        "otel.name" = format!("{system} {target}.{method}").as_str(),
        "otel.kind" = "server",
        "rpc.system" = system,
        "rpc.service" = target,
        "rpc.method" = method,
    );
    within(span, RequestContext { parent_span_id: None, ..caller }, work).await
}

/// `work` in `span`, with the context its calls send made from the span's ids.
async fn within<F: Future>(span: tracing::Span, base: RequestContext, work: F) -> F::Output {
    let ctx = join(&span, &base);
    tracing::Instrument::instrument(ctx.scope(work), span).await
}

/// What the answer adds to the request's span: its status (an error for a 5xx), and the
/// operation's route template when the handler named one (a proxy's `/api/{*rest}` becomes
/// `/api/products/{id}`).
pub fn finish(
    span: &tracing::Span,
    service: &str,
    method: &axum::http::Method,
    template: Option<&str>,
    status: axum::http::StatusCode,
) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    if let Some(template) = template {
        span.context().span().update_name(format!("{service} {method} {template}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<TraceExport>, String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TraceExport::from_lookup("ordermesh", |key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    #[test]
    fn export_is_on_only_with_an_endpoint_and_speaks_the_standard_protocols() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), Ok(None));
        let on = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]).unwrap().unwrap();
        assert_eq!((on.endpoint.as_str(), on.protocol), ("http://127.0.0.1:4318", Protocol::HttpBinary));
        let grpc = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!(grpc.unwrap().unwrap().protocol, Protocol::Grpc);
        let traces_first = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/v1/traces"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        let traces_first = traces_first.unwrap().unwrap();
        assert_eq!(
            (traces_first.endpoint.as_str(), traces_first.protocol),
            ("http://t:4318/v1/traces", Protocol::HttpBinary)
        );
        let json =
            read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert!(json.unwrap_err().contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/json"));
        let off = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")]);
        assert_eq!(off, Ok(None));
    }
}
