//! One request on its way through the proxy's layers: what is sent ([`Exchange`], shared by
//! every attempt), one attempt at it ([`Try`]), and what an attempt came to ([`Attempt`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::HeaderMap;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

use crate::upstream::{Instance, Unavailable, Upstream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request the proxy forwards: built once, read by every attempt.
pub struct Exchange {
    pub upstream: Arc<Upstream>,
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub payload: Payload,
    /// Whether sending it twice does no harm: reads, and writes carrying an Idempotency-Key
    /// (the service answers a repeat with the first answer).
    pub retryable: bool,
    /// When the client stops waiting: its `X-Request-Timeout-Ms`, or the proxy's longest
    /// request, whichever comes first. Every attempt and back-off fits inside it.
    pub deadline: Instant,
    pub body_limit: usize,
}

impl Exchange {
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// The request body: buffered when it may have to be sent again, streamed otherwise.
pub enum Payload {
    Buffered(Bytes),
    /// Sent once; a second attempt finds it gone.
    Streamed {
        body: Mutex<Option<Body>>,
        fault: Arc<OnceLock<ClientFault>>,
    },
}

impl Payload {
    pub fn streamed(body: Body, limit: usize) -> Self {
        let fault = Arc::new(OnceLock::new());
        let body = Body::new(ClientBody { inner: http_body_util::Limited::new(body, limit), fault: fault.clone() });
        Payload::Streamed { body: Mutex::new(Some(body)), fault }
    }

    /// The body for one attempt.
    pub fn for_attempt(&self) -> Body {
        match self {
            Payload::Buffered(bytes) => Body::from(bytes.clone()),
            Payload::Streamed { body, .. } => {
                body.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_else(Body::empty)
            }
        }
    }

    pub fn replayable(&self) -> bool {
        matches!(self, Payload::Buffered(_))
    }

    /// Whether reading a streamed body failed on the client's side.
    pub fn client_fault(&self) -> Option<ClientFault> {
        match self {
            Payload::Buffered(_) => None,
            Payload::Streamed { fault, .. } => fault.get().copied(),
        }
    }
}

/// One attempt at an exchange: the instance it goes to, and the one it must avoid (the
/// instance the previous attempt failed on).
pub struct Try {
    pub exchange: Arc<Exchange>,
    pub avoid: Option<Arc<Instance>>,
    pub instance: Option<Arc<Instance>>,
}

/// What one attempt came to.
pub enum Attempt {
    Response(Response),
    /// No instance could take it (breakers open, none healthy): nothing was sent.
    Refused(Unavailable),
    /// Nothing reached the instance (connection refused/reset before sending): safe to send
    /// anywhere else, whatever the method.
    NotSent(String),
    TimedOut(Duration),
    Failed(String),
    /// The client's own streamed body failed: its error, not the instance's.
    ClientFault(ClientFault),
}

/// What an attempt means for the instance it went to and for trying again.
pub struct Verdict {
    pub ok: bool,
    /// Held against the instance's breaker and ejection count.
    pub counts_against_instance: bool,
    pub may_retry: bool,
    /// The `outcome` label of `upstream_requests_total`.
    pub label: &'static str,
}

impl Attempt {
    pub fn verdict(&self, retryable: bool) -> Verdict {
        let verdict = |ok, may_retry, label| Verdict { ok, counts_against_instance: !ok, may_retry, label };
        match self {
            // A service shedding this one request on purpose is working, not failing: its
            // answer goes to the client but is not held against the instance (a sign-in flood
            // must not take the whole users service out of rotation).
            Attempt::Response(res)
                if res.status() == StatusCode::SERVICE_UNAVAILABLE
                    && res.headers().contains_key(kit::problem::LOAD_SHED) =>
            {
                Verdict { ok: false, counts_against_instance: false, may_retry: retryable, label: "shed" }
            }
            Attempt::Response(res) => {
                let s = res.status();
                let overloaded = matches!(
                    s,
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
                );
                let failed = overloaded || s == StatusCode::INTERNAL_SERVER_ERROR;
                verdict(!failed, overloaded && retryable, if failed { "error_status" } else { "ok" })
            }
            Attempt::Refused(_) => {
                Verdict { ok: false, counts_against_instance: false, may_retry: false, label: "refused" }
            }
            Attempt::NotSent(_) => verdict(false, true, "connect_error"),
            Attempt::TimedOut(_) => verdict(false, retryable, "timeout"),
            Attempt::Failed(_) => verdict(false, retryable, "failed"),
            Attempt::ClientFault(_) => {
                Verdict { ok: false, counts_against_instance: false, may_retry: false, label: "client_body_error" }
            }
        }
    }
}

/// Why a client's streamed body failed.
#[derive(Debug, Clone, Copy)]
pub enum ClientFault {
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

/// An attempt's result and the instance it went to (none when it was refused).
pub struct Outcome {
    pub attempt: Attempt,
    pub instance: Option<Arc<Instance>>,
}
