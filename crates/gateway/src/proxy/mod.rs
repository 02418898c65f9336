//! The reverse proxy, as a stack of small named layers (outermost first):
//!
//! 1. [`measure`]: times the exchange (`upstream_request_duration_seconds`).
//! 2. [`retry`]: tries again on another instance when that is safe, within a budget, and
//!    never pauses past the deadline.
//! 3. [`balance`]: picks the instance, or refuses when none can take it.
//! 4. [`breaker`]: holds the attempt's result against its instance and counts it.
//! 5. [`timeout`]: bounds one attempt, within what is left of the deadline; so the whole
//!    exchange ends by its deadline with no timer of its own.
//! 6. [`send`]: the HTTP request itself, streaming bodies.
//!
//! [`Proxy::forward`] prepares the [`Exchange`] (body limits, buffering, the headers the
//! upstream may see, the deadline) and [`answer`] turns what came of it into the client's
//! response. Every limit is configuration ([`crate::config::Resilience`]).

mod answer;
mod balance;
mod breaker;
mod client;
mod exchange;
mod headers;
mod measure;
mod retry;
mod send;
mod step;
mod timeout;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::Method;
use axum::http::header::{self, HeaderMap};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use kit::Problem;
use kit::client_ip::TrustedProxies;
use kit::context::RequestContext;
use kit::metrics::Metrics;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder};

use crate::config::Resilience;
use crate::upstream::Upstream;
pub use client::UpstreamClient;
use exchange::{Attempt, Exchange, Payload};
pub use send::{HttpClient, http_client};
use step::{StepLayer, StepService};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the proxy is built from: the limits, and where its figures go.
pub struct ProxySettings {
    pub client: HttpClient,
    pub resilience: Resilience,
    pub trusted: TrustedProxies,
    pub body_limit: usize,
    /// For requests whose body is a file ([`crate::rules::is_upload`]).
    pub upload_limit: usize,
    pub metrics: Metrics,
}

/// The layers, outermost first (see the module's head).
type Stack = StepService<
    measure::Measure,
    StepService<
        retry::Retry,
        StepService<balance::Balance, StepService<breaker::Breaker, StepService<timeout::AttemptTimeout, send::Send>>>,
    >,
>;

pub struct Proxy {
    stack: Stack,
    resilience: Resilience,
    trusted: TrustedProxies,
    body_limit: usize,
    upload_limit: usize,
}

impl Proxy {
    pub fn new(settings: ProxySettings) -> Self {
        let r = &settings.resilience;
        let metrics = settings.metrics;
        let stack = ServiceBuilder::new()
            .layer(StepLayer(measure::Measure { metrics: metrics.clone() }))
            .layer(StepLayer(retry::Retry {
                max_retries: r.max_retries,
                backoff: r.retry_backoff,
                metrics: metrics.clone(),
            }))
            .layer(StepLayer(balance::Balance { metrics: metrics.clone() }))
            .layer(StepLayer(breaker::Breaker { metrics }))
            .layer(StepLayer(timeout::AttemptTimeout { timeout: r.request_timeout }))
            .service(send::Send { client: Arc::new(settings.client) });
        Proxy {
            stack,
            resilience: settings.resilience,
            trusted: settings.trusted,
            body_limit: settings.body_limit,
            upload_limit: settings.upload_limit,
        }
    }

    /// Forwards a client's request to one instance of `upstream`, at `path_and_query` there.
    pub async fn forward(&self, upstream: &Arc<Upstream>, req: Request, path_and_query: &str) -> Response {
        match self.prepare(upstream, req, path_and_query).await {
            Ok(exchange) => answer::to_client(self.run(exchange.clone()).await, &exchange),
            Err(refused) => refused.into_response(),
        }
    }

    /// Sends a prepared exchange through the layers.
    async fn run(&self, exchange: Arc<Exchange>) -> Attempt {
        let Ok(attempt) = self.stack.clone().call(exchange).await;
        attempt
    }

    /// The exchange for a request, or the problem that stops it before anything is sent
    /// (a path that cannot be forwarded, a body over its limit).
    async fn prepare(
        &self,
        upstream: &Arc<Upstream>,
        req: Request,
        path_and_query: &str,
    ) -> Result<Arc<Exchange>, Problem> {
        if path_and_query.parse::<axum::http::uri::PathAndQuery>().is_err() {
            return Err(Problem::bad_request("The request path cannot be forwarded."));
        }
        let (parts, body) = req.into_parts();
        let body_limit =
            if crate::rules::is_upload(&parts.method, path_and_query) { self.upload_limit } else { self.body_limit };
        let too_large = || kit::extract::payload_too_large(format!("The body may be at most {body_limit} bytes."));
        let length =
            parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|l| l > body_limit as u64) {
            return Err(too_large());
        }
        let retryable = retryable(&parts.method, &parts.headers);
        // Small bodies (all of this API's JSON) and retryable requests are buffered, within the
        // body limit, so they can be sent again to another instance; large or unsized bodies
        // stream straight through.
        let payload = if retryable || length.is_some_and(|l| l <= SMALL_BODY_BYTES) {
            match http_body_util::Limited::new(body, body_limit).collect().await {
                Ok(collected) => Payload::Buffered(collected.to_bytes()),
                Err(_) => return Err(too_large()),
            }
        } else {
            Payload::streamed(body, body_limit)
        };
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let over_tls = parts.extensions.get::<kit::server::OverTls>().is_some();
        Ok(Arc::new(Exchange {
            upstream: upstream.clone(),
            method: parts.method,
            path_and_query: path_and_query.to_string(),
            headers: headers::forwarded(&parts.headers, peer, &self.trusted, over_tls),
            payload,
            retryable,
            deadline: self.deadline(),
            body_limit,
        }))
    }

    /// The client's deadline (`X-Request-Timeout-Ms`, kept in the request context), never
    /// later than the longest the proxy would spend on its own.
    fn deadline(&self) -> Instant {
        let own = Instant::now() + self.resilience.longest_request();
        match RequestContext::current_deadline() {
            Some(client) => own.min(client.into()),
            None => own,
        }
    }
}

/// Whether a failed request may be sent again: reads, and writes that carry an
/// Idempotency-Key (the service then answers a repeat with the first answer).
fn retryable(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || headers.contains_key("idempotency-key")
}

/// Bodies up to this size are buffered so a request can move to another instance when the
/// first refuses the connection.
const SMALL_BODY_BYTES: u64 = 64 * 1024;
