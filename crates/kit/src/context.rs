//! The per-request context (request id, W3C trace context) that travels with a request through
//! this service and onto every upstream call it makes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use rand::RngCore;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Vendors' trace state, passed on unchanged with the trace it belongs to (W3C Trace Context).
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The longest `tracestate` passed on: what the W3C recommends every platform carry at least.
const LONGEST_TRACESTATE: usize = 512;
/// How long the caller will still wait, in milliseconds: each hop passes on what is left, so
/// a service stops working on a request its client has given up on.
pub static X_REQUEST_TIMEOUT_MS: HeaderName = HeaderName::from_static("x-request-timeout-ms");

/// The longest wait a caller may ask for; longer asks are read as this.
const LONGEST_ASKED_WAIT: Duration = Duration::from_secs(3600);

/// The header value saying `left` remains (at least 1 ms: 0 would read as "no wait at all").
pub fn timeout_header(left: Duration) -> HeaderValue {
    HeaderValue::from(left.as_millis().clamp(1, LONGEST_ASKED_WAIT.as_millis()) as u64)
}

/// Reads `X-Request-Timeout-Ms`: plain decimal milliseconds, at least 1; anything else is
/// ignored (the service's own timeout applies).
pub fn parse_timeout_header(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: u64 = text.parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms).min(LONGEST_ASKED_WAIT))
}

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    /// 32 lowercase hex digits.
    pub trace_id: Arc<str>,
    /// The span id this hop passes on as the parent of the next one.
    pub span_id: Arc<str>,
    /// The caller's span (the parent id of the `traceparent` it sent), when it sent one.
    pub parent_span_id: Option<Arc<str>>,
    /// Whether the trace is recorded (the `traceparent` flag); passed on as it came.
    pub sampled: bool,
    /// The caller's `tracestate`, well formed, when it joined a trace: passed on as it came.
    pub tracestate: Option<Arc<str>>,
    /// When the caller stops waiting, if it said (`X-Request-Timeout-Ms`).
    pub deadline: Option<Instant>,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

impl RequestContext {
    /// Builds the context from incoming headers, keeping a well-formed request id and trace id
    /// and generating what is missing or malformed.
    pub fn from_headers(request_id: Option<&HeaderValue>, traceparent: Option<&HeaderValue>) -> Self {
        let request_id = request_id
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_acceptable_request_id(v))
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().simple().to_string()));
        let incoming = traceparent.and_then(|v| v.to_str().ok()).and_then(parse_traceparent);
        let (trace_id, parent_span_id, sampled) = match incoming {
            Some(t) => (Arc::from(t.trace_id), Some(Arc::from(t.parent_id)), t.sampled),
            None => (Arc::from(random_hex(16)), None, true),
        };
        RequestContext {
            request_id,
            trace_id,
            span_id: Arc::from(random_hex(8)),
            parent_span_id,
            sampled,
            tracestate: None,
            deadline: None,
        }
    }

    /// Keeps the caller's `tracestate` when it came with a trace to join and is well formed
    /// (a malformed or oversized one is dropped, as the W3C allows; a valid one is passed on).
    pub fn with_tracestate(mut self, tracestate: Option<&HeaderValue>) -> Self {
        if self.parent_span_id.is_some() {
            self.tracestate = tracestate.and_then(|v| v.to_str().ok()).and_then(parse_tracestate).map(Arc::from);
        }
        self
    }

    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, if self.sampled { "01" } else { "00" })
    }

    /// What is left of the caller's wait, if it set one.
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The caller's deadline for the request served on this task, read without cloning the
    /// context (the proxy asks for it on every request).
    pub fn current_deadline() -> Option<Instant> {
        CONTEXT.try_with(|c| c.deadline).ok().flatten()
    }

    /// The context of the request being served on this task, if any.
    pub fn current() -> Option<RequestContext> {
        CONTEXT.try_with(|c| c.clone()).ok()
    }

    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CONTEXT.scope(self, fut).await
    }

    /// Headers to put on an outgoing call so the next hop joins this request's trace.
    pub fn outgoing_headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + use<> {
        let value = |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let tracestate = self.tracestate.as_deref().map(|t| (TRACESTATE.clone(), value(t)));
        [(X_REQUEST_ID.clone(), value(&self.request_id)), (TRACEPARENT.clone(), value(&self.traceparent()))]
            .into_iter()
            .chain(tracestate)
    }
}

/// Client-chosen request ids are kept when they are short and plain, so they can be logged and
/// echoed without any risk of log or header injection.
fn is_acceptable_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'='))
}

/// The parts of a W3C `traceparent` this platform reads.
pub(crate) struct TraceParent<'a> {
    pub(crate) trace_id: &'a str,
    pub(crate) parent_id: &'a str,
    pub(crate) sampled: bool,
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; all-zero ids are invalid.
pub(crate) fn parse_traceparent(value: &str) -> Option<TraceParent<'_>> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if version == "ff" || !hex(version, 2) || !hex(trace_id, 32) || !hex(parent, 16) || !hex(flags, 2) {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    Some(TraceParent { trace_id, parent_id: parent, sampled })
}

/// A W3C `tracestate` as it is passed on: its list members checked (keys, values, at most 32),
/// printable, at most 512 characters. None for anything else.
pub fn parse_tracestate(value: &str) -> Option<String> {
    if value.len() > LONGEST_TRACESTATE || !value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return None;
    }
    let parsed: opentelemetry::trace::TraceState = value.parse().ok()?;
    let header = parsed.header();
    (!header.is_empty()).then_some(header)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_header_is_plain_positive_milliseconds() {
        let read = |v: &'static str| parse_timeout_header(&HeaderValue::from_static(v));
        assert_eq!(read("250"), Some(Duration::from_millis(250)));
        assert_eq!(read("99999999999"), Some(LONGEST_ASKED_WAIT));
        for bad in ["", "0", "-5", "1.5", "1e3", " 250", "9999999999999"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
        assert_eq!(timeout_header(Duration::from_micros(10)), "1");
        assert_eq!(timeout_header(Duration::from_millis(1234)), "1234");
    }

    #[test]
    fn keeps_plain_request_ids_and_replaces_odd_ones() {
        let keep = HeaderValue::from_static("abc-123");
        assert_eq!(&*RequestContext::from_headers(Some(&keep), None).request_id, "abc-123");
        let odd = HeaderValue::from_static("has spaces and <html>");
        assert_ne!(&*RequestContext::from_headers(Some(&odd), None).request_id, "has spaces and <html>");
        let long = HeaderValue::from_str(&"a".repeat(500)).unwrap();
        assert_eq!(RequestContext::from_headers(Some(&long), None).request_id.len(), 32);
    }

    #[test]
    fn a_well_formed_tracestate_travels_with_the_trace_it_belongs_to() {
        let tp = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let ts = HeaderValue::from_static("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7");
        let ctx = RequestContext::from_headers(None, Some(&tp)).with_tracestate(Some(&ts));
        assert_eq!(ctx.tracestate.as_deref(), Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        let out: Vec<(HeaderName, HeaderValue)> = ctx.outgoing_headers().collect();
        assert_eq!(out.len(), 3);
        assert_eq!((&out[2].0, out[2].1.to_str().unwrap()), (&TRACESTATE, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        // Without a trace to join there is no state to pass on; malformed ones are dropped.
        let alone = RequestContext::from_headers(None, None).with_tracestate(Some(&ts));
        assert!(alone.tracestate.is_none() && alone.outgoing_headers().count() == 2);
        let long = format!("k={}", "v".repeat(600));
        for bad in ["no-equals", "Upper=case-key", "a=b=c", long.as_str(), "k=café"] {
            let with = RequestContext::from_headers(None, Some(&tp));
            let bad_header = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert!(with.with_tracestate(Some(&bad_header)).tracestate.is_none(), "{bad:?}");
        }
    }

    #[test]
    fn joins_an_incoming_trace() {
        let tp = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let ctx = RequestContext::from_headers(None, Some(&tp));
        assert_eq!(&*ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(ctx.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(&*ctx.span_id, "00f067aa0ba902b7");
        assert_eq!(ctx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(ctx.sampled && ctx.traceparent().ends_with("-01"));
        let unsampled = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        let ctx = RequestContext::from_headers(None, Some(&unsampled));
        assert!(!ctx.sampled && ctx.traceparent().ends_with("-00"), "a trace the caller does not record stays so");
        let started = RequestContext::from_headers(None, None);
        assert!(started.parent_span_id.is_none() && started.sampled);
    }

    #[test]
    fn rejects_malformed_traceparent() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
