//! The reverse proxy: forwards a request to one instance of a service, streaming bodies,
//! stripping hop-by-hop headers and anything a client might use to pose as someone, setting
//! the `X-Forwarded-*` headers, and retrying on another instance only when that cannot do a
//! request twice.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kit::Problem;
use kit::client_ip::TrustedProxies;
use kit::context::RequestContext;
use kit::metrics::Metrics;
use rand::Rng;

use crate::config::Resilience;
use crate::upstream::{Unavailable, Upstream};

pub type HttpClient = Client<HttpConnector, Body>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub fn http_client(r: &Resilience) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(r.connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(512)
        .build(connector)
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Identity headers some backends trust blindly; a client never gets to set them.
const IDENTITY_HEADERS: &[&str] = &[
    "x-user-id",
    "x-user",
    "x-user-role",
    "x-user-roles",
    "x-authenticated-user",
    "x-forwarded-user",
    "x-remote-user",
    "x-auth-request-user",
];

pub struct Proxy {
    pub client: HttpClient,
    pub resilience: Resilience,
    pub trusted: TrustedProxies,
    pub body_limit: usize,
    /// For requests whose body is a file ([`crate::rules::is_upload`]).
    pub upload_limit: usize,
    pub metrics: Metrics,
}

enum Attempt {
    Response(Response),
    /// Nothing reached the instance (connection refused/reset before sending): safe to send
    /// anywhere else, whatever the method.
    NotSent(String),
    TimedOut,
    Failed(String),
}

impl Proxy {
    /// Whether a failed request may be sent again: reads, and writes that carry an
    /// Idempotency-Key (the service then answers a repeat with the first answer).
    fn retryable(method: &Method, headers: &HeaderMap) -> bool {
        matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || headers.contains_key("idempotency-key")
    }

    pub async fn forward(&self, upstream: &Upstream, req: Request, upstream_path_and_query: &str) -> Response {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let retryable = Self::retryable(&parts.method, &parts.headers);
        let body_limit = if crate::rules::is_upload(&parts.method, upstream_path_and_query) {
            self.upload_limit
        } else {
            self.body_limit
        };
        let length =
            parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|l| l > body_limit as u64) {
            return kit::extract::payload_too_large(format!("The body may be at most {} bytes.", body_limit))
                .into_response();
        }
        // Small bodies (all of this API's JSON) and retryable requests are buffered, within the
        // body limit, so they can be sent again to another instance; large or unsized bodies
        // stream straight through.
        let small = length.is_some_and(|l| l <= SMALL_BODY_BYTES);
        let mut buffered: Option<Bytes> = None;
        let mut streaming: Option<Body> = None;
        let client_fault = Arc::new(OnceLock::new());
        if retryable || small {
            match http_body_util::Limited::new(body, body_limit).collect().await {
                Ok(collected) => buffered = Some(collected.to_bytes()),
                Err(_) => {
                    return kit::extract::payload_too_large(format!("The body may be at most {} bytes.", body_limit))
                        .into_response();
                }
            }
        } else {
            streaming = Some(Body::new(ClientBody {
                inner: http_body_util::Limited::new(body, body_limit),
                fault: client_fault.clone(),
            }));
        }
        let headers = self.forwarded_headers(&parts.headers, peer);
        upstream.budget.on_request();
        let mut avoid = None;
        let mut attempt = 0u32;
        loop {
            let instance = match upstream.pick(avoid.as_ref()) {
                Ok(i) => i,
                Err(Unavailable::BreakersOpen(wait)) => {
                    self.count(upstream.name, "-", "breaker_open");
                    return Problem::unavailable(
                        format!("The {} service is failing; requests are refused until it recovers.", upstream.name),
                        wait.as_secs().max(1),
                    )
                    .into_response();
                }
                Err(Unavailable::NoHealthyInstance) => {
                    self.count(upstream.name, "-", "no_instance");
                    return Problem::unavailable(
                        format!("No instance of the {} service is healthy.", upstream.name),
                        2,
                    )
                    .into_response();
                }
            };
            tracing::Span::current().record("upstream", instance.authority.as_str());
            let uri: Uri =
                match format!("{}{}", instance.url.as_str().trim_end_matches('/'), upstream_path_and_query).parse() {
                    Ok(u) => u,
                    Err(_) => return Problem::bad_request("The request path cannot be forwarded.").into_response(),
                };
            let body = match (&buffered, streaming.take()) {
                (Some(bytes), _) => Body::from(bytes.clone()),
                (None, Some(body)) => body,
                (None, None) => Body::empty(),
            };
            let mut outgoing = Request::new(body);
            *outgoing.method_mut() = parts.method.clone();
            *outgoing.uri_mut() = uri;
            *outgoing.headers_mut() = headers.clone();
            if let Ok(host) = HeaderValue::from_str(&instance.authority) {
                outgoing.headers_mut().insert(header::HOST, host);
            }
            let sent_at = Instant::now();
            let guard = instance.start();
            let outcome =
                match tokio::time::timeout(self.resilience.request_timeout, self.client.request(outgoing)).await {
                    Err(_) => Attempt::TimedOut,
                    Ok(Ok(res)) => Attempt::Response(res.map(Body::new)),
                    Ok(Err(e)) if e.is_connect() => Attempt::NotSent(e.to_string()),
                    Ok(Err(e)) => Attempt::Failed(e.to_string()),
                };
            drop(guard);
            let elapsed = sent_at.elapsed();
            // A streamed body that failed on the client's side (over the limit, or cut off)
            // fails the request whatever the instance did: it is the client's error, not the
            // instance's, and must not count towards its breaker or ejection.
            if let Some(fault) = client_fault.get() {
                self.count(upstream.name, &instance.authority, "client_body_error");
                return match fault {
                    ClientFault::TooLarge => {
                        kit::extract::payload_too_large(format!("The body may be at most {} bytes.", body_limit))
                            .into_response()
                    }
                    ClientFault::Broken => Problem::bad_request("The request body could not be read.").into_response(),
                };
            }
            // A service shedding this one request on purpose is working, not failing: its
            // answer goes to the client but is not held against the instance (a sign-in flood
            // must not take the whole users service out of rotation).
            let shed = matches!(&outcome, Attempt::Response(res)
                if res.status() == StatusCode::SERVICE_UNAVAILABLE && res.headers().contains_key(kit::problem::LOAD_SHED));
            let (ok, may_retry, label) = match &outcome {
                Attempt::Response(_) if shed => (false, retryable, "shed"),
                Attempt::Response(res) => {
                    let s = res.status();
                    let failed = matches!(
                        s,
                        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
                    ) || s == StatusCode::INTERNAL_SERVER_ERROR;
                    let overloaded = matches!(
                        s,
                        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
                    );
                    (!failed, overloaded && retryable, if failed { "error_status" } else { "ok" })
                }
                Attempt::NotSent(_) => (false, true, "connect_error"),
                Attempt::TimedOut => (false, retryable, "timeout"),
                Attempt::Failed(_) => (false, retryable, "failed"),
            };
            if !shed {
                instance.record(ok, elapsed);
            }
            self.count(upstream.name, &instance.authority, label);
            // A streamed body is gone once sent; only buffered ones can be replayed.
            let replayable = buffered.is_some();
            if !ok && may_retry && replayable && attempt < self.resilience.max_retries && upstream.budget.try_withdraw()
            {
                attempt += 1;
                self.metrics
                    .record(|| metrics::counter!("upstream_retries_total", "upstream" => upstream.name).increment(1));
                let base = self.resilience.retry_backoff.as_micros() as u64 * 2u64.pow(attempt - 1);
                let jitter = rand::thread_rng().gen_range(0..=base.max(1));
                tokio::time::sleep(Duration::from_micros(base + jitter)).await;
                avoid = Some(instance);
                continue;
            }
            let total = started.elapsed().as_secs_f64();
            self.metrics.record(|| {
                metrics::histogram!("upstream_request_duration_seconds", "upstream" => upstream.name).record(total)
            });
            return match outcome {
                Attempt::Response(res) => strip_response(res),
                Attempt::TimedOut => {
                    Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream-timeout", "Upstream timed out")
                        .detail(format!(
                            "The {} service did not answer within {} ms.",
                            upstream.name,
                            self.resilience.request_timeout.as_millis()
                        ))
                        .into_response()
                }
                Attempt::NotSent(e) | Attempt::Failed(e) => {
                    tracing::warn!(upstream = upstream.name, instance = %instance.authority, error = %e, "upstream request failed");
                    Problem::unavailable(format!("The {} service is not reachable right now.", upstream.name), 1)
                        .into_response()
                }
            };
        }
    }

    fn count(&self, upstream: &'static str, instance: &str, outcome: &'static str) {
        let instance = instance.to_string();
        self.metrics.record(|| {
            metrics::counter!("upstream_requests_total", "upstream" => upstream, "instance" => instance, "outcome" => outcome)
                .increment(1)
        });
    }

    /// The headers the upstream sees: the client's, minus connection-level and identity
    /// headers, plus who the client is (`X-Forwarded-*`) and the trace context.
    fn forwarded_headers(&self, incoming: &HeaderMap, peer: Option<SocketAddr>) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(incoming.len() + 4);
        let connection_listed: Vec<String> = incoming
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        let peer_trusted = peer.is_some_and(|p| self.trusted.trusts(p.ip()));
        for (name, value) in incoming {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n)
                || IDENTITY_HEADERS.contains(&n)
                || connection_listed.iter().any(|c| c == n)
                || n == "host"
                || n == "forwarded"
                || n == "traceparent"
                || (!peer_trusted && n.starts_with("x-forwarded-"))
            {
                continue;
            }
            out.append(name.clone(), value.clone());
        }
        if let Some(peer) = peer {
            let chain = match incoming.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(existing) if peer_trusted => format!("{existing}, {}", peer.ip()),
                _ => peer.ip().to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&chain) {
                out.insert(HeaderName::from_static("x-forwarded-for"), v);
            }
        }
        // The services write links into their answers (product pictures); they are served
        // here under `/api`, whatever a client or an earlier proxy said.
        out.insert(HeaderName::from_static("x-forwarded-prefix"), HeaderValue::from_static("/api"));
        if !out.contains_key("x-forwarded-proto") {
            out.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
        }
        if let Some(host) = incoming.get(header::HOST)
            && !out.contains_key("x-forwarded-host")
        {
            out.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        }
        if let Some(ctx) = RequestContext::current() {
            for (name, value) in ctx.outgoing_headers() {
                out.insert(name, value);
            }
        }
        out
    }
}

/// Why a client's streamed body failed.
#[derive(Debug, Clone, Copy)]
enum ClientFault {
    TooLarge,
    Broken,
}

/// A client's request body on its way upstream, within the body limit, remembering whether
/// reading it failed on the client's side.
struct ClientBody {
    inner: http_body_util::Limited<Body>,
    fault: Arc<OnceLock<ClientFault>>,
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            let fault = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                ClientFault::TooLarge
            } else {
                ClientFault::Broken
            };
            let _ = self.fault.set(fault);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn strip_response(mut res: Response) -> Response {
    let listed: Vec<String> = res
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let headers = res.headers_mut();
    for name in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(listed) {
        headers.remove(name.as_str());
    }
    res
}

/// Bodies up to this size are buffered so a request can move to another instance when the
/// first refuses the connection.
const SMALL_BODY_BYTES: u64 = 64 * 1024;
