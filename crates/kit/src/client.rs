//! The HTTP client services use to call each other: instances from a comma-separated URL list,
//! round-robin with fail-over on connection errors, explicit timeouts, and the caller's request
//! id and trace context on every call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::config::{ConfigError, Origin};
use crate::context::{RequestContext, X_REQUEST_TIMEOUT_MS, timeout_header};
use crate::problem::Problem;

/// The largest answer a service reads from another. The biggest real answer (a page of 100
/// orders with their items) is tens of kilobytes; without a cap a faulty or hostile instance
/// could make its caller buffer gigabytes.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    pub connect: Duration,
    pub total: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts { connect: Duration::from_millis(500), total: Duration::from_secs(5) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{service} is unreachable: {reason}")]
    Unreachable { service: &'static str, reason: String },
    #[error("{service} did not answer in time")]
    Timeout { service: &'static str },
    #[error("{service} answered {status}")]
    Status { service: &'static str, status: StatusCode, problem: Option<Problem> },
    #[error("{service} sent an answer that could not be read: {reason}")]
    Decode { service: &'static str, reason: String },
}

impl UpstreamError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            UpstreamError::Status { problem, .. } => problem.as_ref(),
            _ => None,
        }
    }

    /// What our own client should see when a dependency failed: a dependency being down is
    /// 503 (try again), a dependency misbehaving is 502.
    pub fn to_problem(&self) -> Problem {
        match self {
            UpstreamError::Unreachable { service, .. } | UpstreamError::Timeout { service } => {
                Problem::unavailable(format!("The {service} service is not available right now."), 2)
            }
            UpstreamError::Status { service, status, .. } if status.is_server_error() => {
                Problem::unavailable(format!("The {service} service failed to answer."), 2)
            }
            UpstreamError::Status { service, status, problem } => problem.clone().unwrap_or_else(|| {
                Problem::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
                    .detail(format!("The {service} service answered {status}."))
            }),
            UpstreamError::Decode { service, .. } => {
                Problem::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
                    .detail(format!("The {service} service sent an unreadable answer."))
            }
        }
    }
}

#[derive(Clone)]
pub struct ServiceClient {
    inner: Arc<Inner>,
}

struct Inner {
    service: &'static str,
    http: reqwest::Client,
    bases: Vec<Url>,
    next: AtomicUsize,
    /// The longest a call may take; a caller's deadline can only shorten it.
    total: Duration,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.inner.service)
            .field("bases", &self.inner.bases.iter().map(Url::as_str).collect::<Vec<_>>())
            .finish()
    }
}

/// Parses `http://a:1,http://b:2` into base URLs, naming `key` when one is malformed.
pub fn parse_instance_list(key: &str, value: &str, origin: Origin) -> Result<Vec<Url>, ConfigError> {
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = Url::parse(part).map_err(|e| ConfigError::invalid(key, value, origin, format!("{part:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ConfigError::invalid(
                key,
                value,
                origin,
                format!("{part:?} is not an http(s) URL with a host"),
            ));
        }
        out.push(url);
    }
    if out.is_empty() {
        return Err(ConfigError::invalid(key, value, origin, "no URL given"));
    }
    Ok(out)
}

impl ServiceClient {
    pub fn new(service: &'static str, bases: Vec<Url>, timeouts: ClientTimeouts) -> Self {
        assert!(!bases.is_empty(), "a service client needs at least one instance");
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.total)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .expect("reqwest client with static settings");
        ServiceClient {
            inner: Arc::new(Inner { service, http, bases, next: AtomicUsize::new(0), total: timeouts.total }),
        }
    }

    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    pub fn bases(&self) -> &[Url] {
        &self.inner.bases
    }

    /// Sends a request to one instance; when an instance refuses the connection (nothing was
    /// sent, so any method is safe to resend) the next one is tried.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, UpstreamError> {
        let n = self.inner.bases.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let ctx = RequestContext::current();
        let mut last_error = None;
        for attempt in 0..n {
            let base = &self.inner.bases[(start + attempt) % n];
            let url = join(base, path_and_query);
            let mut req = self.inner.http.request(method.clone(), url);
            // Exported, each attempt is a span of its own, the parent of the callee's.
            let traced = crate::traces::outgoing(self.inner.service, &method, base.authority());
            if let Some(ctx) = &ctx {
                let sent_as = traced.as_ref().map_or(ctx, |(_, own)| own);
                for (name, value) in sent_as.outgoing_headers() {
                    req = req.header(name, value);
                }
                // The caller's deadline bounds this call too, and travels on.
                if let Some(left) = ctx.time_left() {
                    req = req
                        .header(X_REQUEST_TIMEOUT_MS.clone(), timeout_header(left))
                        .timeout(left.min(self.inner.total));
                }
            }
            let span = traced.map_or_else(tracing::Span::none, |(span, _)| span);
            let request = build(req);
            let answered = match crate::local::find(base) {
                Some(router) => tracing::Instrument::instrument(self.call_here(router, request), span.clone()).await,
                None => match tracing::Instrument::instrument(request.send(), span.clone()).await {
                    Ok(res) => Ok(res),
                    Err(e) if e.is_timeout() => Err(UpstreamError::Timeout { service: self.inner.service }),
                    Err(e) if e.is_connect() => {
                        last_error = Some(e.to_string());
                        continue;
                    }
                    Err(e) => Err(UpstreamError::Unreachable { service: self.inner.service, reason: e.to_string() }),
                },
            };
            if let Ok(res) = &answered {
                span.record("http.response.status_code", res.status().as_u16());
            }
            return answered;
        }
        Err(UpstreamError::Unreachable {
            service: self.inner.service,
            reason: last_error.unwrap_or_else(|| "no instance".into()),
        })
    }

    /// The call handed to the router of a service this process serves ([`crate::local`]),
    /// with what the HTTP client would have put on the wire (its headers and body, the Host)
    /// and within the same time limit. The answer is read whole here (within
    /// [`MAX_ANSWER_BYTES`], as over HTTP), so callers read it as any other.
    async fn call_here(
        &self,
        router: axum::Router,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, UpstreamError> {
        use http_body_util::BodyExt;
        let service = self.inner.service;
        let unreachable = |reason: String| UpstreamError::Unreachable { service, reason };
        let request = request.build().map_err(|e| unreachable(e.to_string()))?;
        let limit = request.timeout().map_or(self.inner.total, |t| (*t).min(self.inner.total));
        let host = http::HeaderValue::from_str(&request.url()[url::Position::BeforeHost..url::Position::AfterPort]);
        let request: http::Request<reqwest::Body> =
            request.try_into().map_err(|e: reqwest::Error| unreachable(e.to_string()))?;
        let (mut parts, body) = request.into_parts();
        let body = body.as_bytes().map(bytes::Bytes::copy_from_slice).unwrap_or_default();
        if let Ok(host) = host {
            parts.headers.insert(http::header::HOST, host);
        }
        let call = async {
            let res = crate::local::call(router, axum::extract::Request::from_parts(parts, body.into()))
                .await
                .map_err(unreachable)?;
            let (parts, body) = res.into_parts();
            let bytes = http_body_util::Limited::new(body, MAX_ANSWER_BYTES).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    UpstreamError::Decode {
                        service,
                        reason: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
                    }
                } else {
                    unreachable(e.to_string())
                }
            })?;
            Ok(reqwest::Response::from(http::Response::from_parts(parts, bytes.to_bytes())))
        };
        tokio::time::timeout(limit, call).await.unwrap_or(Err(UpstreamError::Timeout { service }))
    }

    pub async fn read_json<T: DeserializeOwned>(&self, res: reqwest::Response) -> Result<T, UpstreamError> {
        let service = self.inner.service;
        let status = res.status();
        let bytes = read_capped(res, MAX_ANSWER_BYTES).await.map_err(|e| match e {
            ReadError::TooLarge => {
                UpstreamError::Decode { service, reason: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes") }
            }
            ReadError::Http(e) if e.is_timeout() => UpstreamError::Timeout { service },
            ReadError::Http(e) => UpstreamError::Unreachable { service, reason: e.to_string() },
        })?;
        decode_answer(service, status, &bytes)
    }
}

impl JsonCalls for ServiceClient {
    fn service_name(&self) -> &'static str {
        self.inner.service
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        bearer: Option<&str>,
        body: Option<bytes::Bytes>,
    ) -> Result<T, UpstreamError> {
        let res = self
            .send(method, path_and_query, |mut req| {
                if let Some(token) = bearer {
                    req = req.bearer_auth(token);
                }
                if let Some(body) = &body {
                    req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
                }
                req
            })
            .await?;
        self.read_json(res).await
    }
}

/// JSON calls to a service, however they travel (this crate's [`ServiceClient`] over HTTP, the
/// gateway's own proxy stack): each client writes `json`, and reads and writes come with it.
pub trait JsonCalls: Sync {
    fn service_name(&self) -> &'static str;

    /// Sends a JSON body (or none) with a bearer token (or none) and decodes the JSON answer;
    /// any non-2xx is [`UpstreamError::Status`] with the service's problem document.
    fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        bearer: Option<&str>,
        body: Option<bytes::Bytes>,
    ) -> impl Future<Output = Result<T, UpstreamError>> + Send;

    fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
    ) -> impl Future<Output = Result<T, UpstreamError>> + Send {
        self.json(Method::GET, path, bearer, None)
    }

    fn post_json<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> impl Future<Output = Result<T, UpstreamError>> + Send {
        let written = serde_json::to_vec(body).map_err(|e| UpstreamError::Decode {
            service: self.service_name(),
            reason: format!("the request could not be written: {e}"),
        });
        async move { self.json(Method::POST, path, bearer, Some(written?.into())).await }
    }
}

/// A service's answer read as JSON: a non-2xx becomes [`UpstreamError::Status`] carrying the
/// service's problem document when it sent one.
pub fn decode_answer<T: DeserializeOwned>(
    service: &'static str,
    status: StatusCode,
    bytes: &[u8],
) -> Result<T, UpstreamError> {
    if !status.is_success() {
        return Err(UpstreamError::Status { service, status, problem: serde_json::from_slice::<Problem>(bytes).ok() });
    }
    serde_json::from_slice(bytes).map_err(|e| UpstreamError::Decode { service, reason: e.to_string() })
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// An answer's body, refused as soon as it is known to pass `cap` (by its length, or by what
/// has arrived), so no more than `cap` bytes are ever held.
async fn read_capped(mut res: reqwest::Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    if res.content_length().is_some_and(|l| l > cap as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut out = Vec::with_capacity(res.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = res.chunk().await.map_err(ReadError::Http)? {
        if out.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `base` + `path`; an empty path means the base itself (a client whose instances are full
/// endpoint URLs, such as event subscribers).
fn join(base: &Url, path_and_query: &str) -> String {
    let base = base.as_str().trim_end_matches('/');
    if path_and_query.is_empty() {
        base.to_string()
    } else if path_and_query.starts_with('/') {
        format!("{base}{path_and_query}")
    } else {
        format!("{base}/{path_and_query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_lists_parse_and_name_the_key() {
        let urls = parse_instance_list("ORDER_SERVICE_URL", "http://a:1, http://b:2/", Origin::Test).unwrap();
        assert_eq!(urls.len(), 2);
        let err = parse_instance_list("ORDER_SERVICE_URL", "ftp://x", Origin::Test).unwrap_err();
        assert!(err.to_string().contains("ORDER_SERVICE_URL"));
        assert!(parse_instance_list("X", " , ", Origin::Test).is_err());
    }

    /// Issue 16: an answer was read whole whatever its size. One a little over the cap is
    /// refused, sized or streamed without a length, and one at the cap is read.
    #[tokio::test]
    async fn an_answer_over_the_cap_is_refused() {
        use axum::routing::get;
        let over = format!("[{}0]", "0,".repeat(MAX_ANSWER_BYTES / 2));
        let at = format!("[{}0]", "0,".repeat((MAX_ANSWER_BYTES - 3) / 2));
        assert!(over.len() > MAX_ANSWER_BYTES && at.len() <= MAX_ANSWER_BYTES);
        let streamed = over.clone().into_bytes();
        let app = axum::Router::new()
            .route("/over", get(move || async move { over }))
            .route("/at", get(move || async move { at }))
            .route(
                "/streamed",
                get(move || async move {
                    let chunks =
                        streamed.chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>();
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = ServiceClient::new("catalog", vec![base], ClientTimeouts::default());
        for path in ["/over", "/streamed"] {
            match client.get_json::<Vec<u8>>(path, None).await {
                Err(UpstreamError::Decode { reason, .. }) => {
                    assert!(reason.contains("larger than"), "{path}: {reason}")
                }
                other => panic!("{path}: an answer over the cap was read: {:?}", other.map(|v| v.len())),
            }
        }
        assert_eq!(client.get_json::<Vec<u8>>("/at", None).await.unwrap().len(), (MAX_ANSWER_BYTES - 3) / 2 + 1);
    }

    /// Issue 18: a service this process serves is called in-process, with what HTTP would
    /// carry (Host, the bearer token, the body), its errors and the caller's time limit; once
    /// it stops, the call goes over HTTP again.
    #[tokio::test]
    async fn a_service_served_here_is_called_without_a_socket() {
        use axum::routing::{get, post};
        // Only this test of kit's uses in-process calls; a run with `IN_PROCESS_CALLS=off` still tries them here.
        crate::local::set_enabled(true);
        // An address nothing listens on: only the in-process path can answer there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let app = axum::Router::new()
            .route(
                "/echo",
                post(|headers: axum::http::HeaderMap, body: String| async move {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                    axum::Json(
                        serde_json::json!({"host": header("host"), "auth": header("authorization"), "body": body}),
                    )
                }),
            )
            .route("/missing", get(|| async { Problem::not_found("No such thing.") }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let here = crate::local::register(addr, app);
        let base = Url::parse(&format!("http://{addr}")).unwrap();
        let timeouts = ClientTimeouts { connect: Duration::from_millis(200), total: Duration::from_millis(300) };
        let client = ServiceClient::new("catalog", vec![base], timeouts);

        let body = bytes::Bytes::from_static(br#"{"a":1}"#);
        let answer: serde_json::Value = client.json(Method::POST, "/echo", Some("t0k"), Some(body)).await.unwrap();
        assert_eq!(answer, serde_json::json!({"host": addr.to_string(), "auth": "Bearer t0k", "body": r#"{"a":1}"#}));
        match client.get_json::<serde_json::Value>("/missing", None).await {
            Err(UpstreamError::Status { status: StatusCode::NOT_FOUND, problem: Some(problem), .. }) => {
                assert_eq!(problem.detail.as_deref(), Some("No such thing."))
            }
            other => panic!("a problem answer was read as {other:?}"),
        }
        let started = std::time::Instant::now();
        assert!(matches!(client.get_json::<String>("/slow", None).await, Err(UpstreamError::Timeout { .. })));
        assert!(started.elapsed() < Duration::from_secs(2), "the time limit holds in-process too");

        drop(here);
        match client.get_json::<serde_json::Value>("/missing", None).await {
            Err(UpstreamError::Unreachable { .. }) => {}
            other => panic!("a stopped service still answered: {other:?}"),
        }
    }

    #[test]
    fn joins_paths() {
        let base = Url::parse("http://h:1/").unwrap();
        assert_eq!(join(&base, "/a?b=1"), "http://h:1/a?b=1");
        assert_eq!(join(&base, "a"), "http://h:1/a");
        let endpoint = Url::parse("http://h:1/events").unwrap();
        assert_eq!(join(&endpoint, ""), "http://h:1/events");
    }
}
