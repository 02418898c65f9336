//! How pages reach the platform: the same service APIs REST clients use, called with the
//! signed-in user's bearer token through the gateway's own proxy stack
//! ([`gateway::proxy::UpstreamClient`]: the same balancing, breakers and deadline as a REST
//! call), so the browser, REST and RPC see the same orders.
//!
//! Access tokens are short-lived. A page finds its user by checking the session's access
//! token locally (the edge's verifier, the same keys the services use); an expired one is
//! exchanged for new tokens first, and a call that still gets 401 (a key rotated, a token
//! revoked in between) is retried once after a refresh. The new tokens go back into the
//! session cookie whatever the page answers. Refresh tokens are single use and reusing one
//! ends the whole session, so concurrent refreshes of one token (a double click, two tabs) are
//! coalesced into one call to the users service.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use kit::Problem;
use kit::auth::Principal;
use kit::client::UpstreamError;
use serde::Serialize;
use serde::de::DeserializeOwned;

// The shapes pages read, named where pages already look for what they call.
pub use super::api::{Categories, Order, Paged, Product, TokenResponse, User};
use super::refresh::refresh_session;
use super::session::{Cart, Flash, FlashKind, Session, Tokens};
use super::{Web, WebError};
use gateway::proxy::UpstreamClient;

// ---------------------------------------------------------------------------------------------
// Per-request state, shared between the web layer (which reads and writes the cookies) and the
// handler (which reads the user and changes the session, cart and flash).

pub struct ReqState {
    pub session: Session,
    /// The session came from a cookie (a CSRF token can only match one that did).
    pub session_from_cookie: bool,
    pub session_dirty: bool,
    pub cart: Cart,
    pub cart_dirty: bool,
    pub flash_in: Option<Flash>,
    pub flash_out: Option<Flash>,
    pub user: Option<Arc<Principal>>,
}

pub type Shared = Arc<Mutex<ReqState>>;

/// The client's address (as the edge sees it) for sign-in throttling.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Which service a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Svc {
    Users,
    Catalog,
    Orders,
}

/// What a page handler holds: the storefront's state, this request's session state, and the
/// path it was asked for (to come back to after signing in).
pub struct Ctx {
    pub web: Web,
    pub shared: Shared,
    pub ip: IpAddr,
    /// The path asked for (no query).
    pub path: String,
}

impl FromRequestParts<Web> for Ctx {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let shared = parts.extensions.get::<Shared>().cloned().ok_or_else(WebError::internal)?;
        let ip = parts.extensions.get::<ClientAddr>().map(|a| a.0).unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(Ctx { web: web.clone(), shared, ip, path: parts.uri.path().to_string() })
    }
}

/// Locks the request state; a poisoned lock (a panic elsewhere in this request) still holds
/// usable data.
pub fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, ReqState> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A call's outcome as pages need it: the service's problem document, or a reason.
#[derive(Debug)]
pub struct ApiError(pub UpstreamError);

impl ApiError {
    pub fn status(&self) -> Option<StatusCode> {
        self.0.status()
    }

    pub fn problem(&self) -> Option<&Problem> {
        self.0.problem()
    }

    /// The service's own words (`detail`), or a plain sentence for its status.
    pub fn message(&self) -> String {
        if let Some(p) = self.problem()
            && let Some(d) = &p.detail
            && !self.status().is_some_and(|s| s.is_server_error())
        {
            return d.clone();
        }
        match &self.0 {
            UpstreamError::Status { status, .. } if status.is_server_error() => {
                format!("The {} service could not answer just now; please try again.", self.service())
            }
            UpstreamError::Status { status, .. } => format!("The {} service answered {status}.", self.service()),
            UpstreamError::Unreachable { .. } | UpstreamError::Timeout { .. } => {
                format!("The {} service is not available right now; please try again in a moment.", self.service())
            }
            UpstreamError::Decode { .. } => format!("The {} service sent an answer we could not read.", self.service()),
        }
    }

    /// The problem's `retry_after` or the Retry-After we were given, when throttled.
    pub fn retry_after(&self) -> Option<u64> {
        self.problem().and_then(|p| {
            p.headers()
                .find(|(n, _)| n == axum::http::header::RETRY_AFTER)
                .and_then(|(_, v)| v.to_str().ok()?.parse().ok())
                .or_else(|| p.detail.as_deref().and_then(seconds_in))
        })
    }

    fn service(&self) -> &'static str {
        match &self.0 {
            UpstreamError::Unreachable { service, .. }
            | UpstreamError::Timeout { service }
            | UpstreamError::Status { service, .. }
            | UpstreamError::Decode { service, .. } => service,
        }
    }
}

/// "Slow down; retry in 7 s." → 7 (the problem+json text of a 429).
fn seconds_in(detail: &str) -> Option<u64> {
    let (_, rest) = detail.split_once("retry in ")?;
    rest.split_whitespace().next()?.parse().ok()
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        match e.status() {
            Some(StatusCode::NOT_FOUND) => WebError::not_found(e.message()),
            Some(StatusCode::FORBIDDEN) => WebError::forbidden(e.message()),
            Some(StatusCode::UNAUTHORIZED) => WebError::SignIn,
            Some(s) if s.is_client_error() => WebError::page(s, "That did not work", e.message()),
            _ => WebError::page(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable", e.message()),
        }
    }
}

/// One request to a service as a page makes it.
pub struct Call {
    pub svc: Svc,
    pub method: Method,
    pub path: String,
    pub body: Option<serde_json::Value>,
    /// A body that is not JSON (a picture): its content type and bytes.
    pub raw: Option<(&'static str, bytes::Bytes)>,
    pub headers: Vec<(&'static str, String)>,
    /// Send the user's bearer token (refreshing it once on 401).
    pub authed: bool,
}

impl Call {
    pub fn new(svc: Svc, method: Method, path: impl Into<String>) -> Self {
        Call { svc, method, path: path.into(), body: None, raw: None, headers: Vec::new(), authed: true }
    }

    pub fn get(svc: Svc, path: impl Into<String>) -> Self {
        Call::new(svc, Method::GET, path)
    }

    pub fn json(mut self, body: impl Serialize) -> Self {
        self.body = Some(serde_json::to_value(body).unwrap_or(serde_json::Value::Null));
        self
    }

    pub fn raw(mut self, content_type: &'static str, bytes: bytes::Bytes) -> Self {
        self.raw = Some((content_type, bytes));
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn anonymous(mut self) -> Self {
        self.authed = false;
        self
    }
}

/// Time spent waiting for services during one page, for the Server-Timing header.
#[derive(Debug, Default)]
pub struct Timing {
    pub upstream_us: std::sync::atomic::AtomicU64,
    pub calls: std::sync::atomic::AtomicU32,
}

tokio::task_local! {
    pub static TIMING: Arc<Timing>;
}

pub(super) fn record_timing(started: Instant) {
    let us = started.elapsed().as_micros() as u64;
    let _ = TIMING.try_with(|t| {
        t.upstream_us.fetch_add(us, std::sync::atomic::Ordering::Relaxed);
        t.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
}

impl Ctx {
    /// The same request's context for work that must outlive the request.
    pub fn detached(&self) -> Ctx {
        Ctx { web: self.web.clone(), shared: self.shared.clone(), ip: self.ip, path: self.path.clone() }
    }

    pub fn user(&self) -> Option<Arc<Principal>> {
        lock(&self.shared).user.clone()
    }

    /// The signed-in user, or a redirect to the sign-in page that comes back here.
    pub fn require_user(&self) -> Result<Arc<Principal>, WebError> {
        self.user().ok_or(WebError::SignIn)
    }

    /// An administrator; anyone else signed in gets 403.
    pub fn require_admin(&self) -> Result<Arc<Principal>, WebError> {
        let user = self.require_user()?;
        if user.is_admin() { Ok(user) } else { Err(WebError::forbidden("This page is for the shop's administrators.")) }
    }

    pub fn csrf(&self) -> String {
        lock(&self.shared).session.csrf.clone()
    }

    /// Whether a form's CSRF token is this session's (for forms [`crate::CsrfForm`] cannot
    /// read: multipart uploads).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        let st = lock(&self.shared);
        st.session_from_cookie && st.session.csrf_matches(presented)
    }

    pub fn cart(&self) -> Cart {
        lock(&self.shared).cart.clone()
    }

    pub fn set_cart(&self, cart: Cart) {
        let mut st = lock(&self.shared);
        st.cart = cart;
        st.cart_dirty = true;
    }

    pub fn flash(&self, kind: FlashKind, text: impl Into<String>) {
        lock(&self.shared).flash_out = Some(Flash { kind, text: text.into() });
    }

    /// Starts a signed-in session from a users-service token answer.
    pub async fn sign_in(&self, tokens: TokenResponse) {
        let display = if tokens.user.name.trim().is_empty() { tokens.user.username.clone() } else { tokens.user.name };
        let principal = self.web.verifier.verify(&tokens.access_token).await.ok();
        let mut st = lock(&self.shared);
        st.session = Session::signed_in(
            Tokens { access: tokens.access_token, refresh: tokens.refresh_token },
            display.chars().take(100).collect(),
        );
        st.session_dirty = true;
        st.session_from_cookie = true;
        st.user = principal;
    }

    /// Ends the session here (the caller ends it at the users service).
    pub fn sign_out(&self) {
        let mut st = lock(&self.shared);
        st.session = Session::anonymous();
        st.session_dirty = true;
        st.user = None;
        st.cart = Cart::default();
        st.cart_dirty = true;
    }

    pub fn tokens(&self) -> Option<Tokens> {
        lock(&self.shared).session.tokens.clone()
    }

    pub fn display_name(&self) -> Option<String> {
        lock(&self.shared).session.name.clone()
    }

    fn client(&self, svc: Svc) -> &UpstreamClient {
        match svc {
            Svc::Users => &self.web.users,
            Svc::Catalog => &self.web.catalog,
            Svc::Orders => &self.web.orders,
        }
    }

    /// Sends a call and returns the raw answer (any status), on behalf of the visitor's
    /// address. An authenticated call that gets 401 refreshes the session once and is sent
    /// again.
    pub async fn send(&self, call: &Call) -> Result<Response, ApiError> {
        let client = self.client(call.svc);
        let (content_type, body) = match (&call.body, &call.raw) {
            (_, Some((content_type, bytes))) => (Some(*content_type), bytes.clone()),
            (Some(json), None) => (Some("application/json"), Bytes::from(serde_json::to_vec(json).unwrap_or_default())),
            (None, None) => (None, Bytes::new()),
        };
        let mut refreshed = false;
        loop {
            let token = if call.authed { self.tokens().map(|t| t.access) } else { None };
            if call.authed && token.is_none() {
                return Err(ApiError(UpstreamError::Status {
                    service: client.service(),
                    status: StatusCode::UNAUTHORIZED,
                    problem: None,
                }));
            }
            let mut headers = HeaderMap::new();
            for (name, value) in &call.headers {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.append(*name, value);
                }
            }
            if let Some(value) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
                headers.insert(header::AUTHORIZATION, value);
            }
            if let Some(content_type) = content_type {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            let started = Instant::now();
            let res = client.send(call.method.clone(), &call.path, headers, body.clone(), Some(self.ip)).await;
            record_timing(started);
            let res = res.map_err(ApiError)?;
            if res.status() == StatusCode::UNAUTHORIZED && call.authed && !refreshed {
                refreshed = true;
                if refresh_session(&self.web, &self.shared).await {
                    continue;
                }
            }
            return Ok(res);
        }
    }

    /// Sends a call and decodes its JSON answer; a non-2xx answer is an [`ApiError`] carrying
    /// the service's problem document.
    pub async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, ApiError> {
        let svc = call.svc;
        let res = self.send(&call).await?;
        self.client(svc).read_json(res).await.map_err(ApiError)
    }

    /// A call whose answer body does not matter (204s).
    pub async fn call_empty(&self, call: Call) -> Result<(), ApiError> {
        let svc = call.svc;
        let res = self.send(&call).await?;
        if res.status().is_success() {
            return Ok(());
        }
        self.client(svc).read_json::<serde_json::Value>(res).await.map(|_| ()).map_err(ApiError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_answers_say_how_long_to_wait() {
        let e = ApiError(UpstreamError::Status {
            service: "users",
            status: StatusCode::TOO_MANY_REQUESTS,
            problem: Some(
                serde_json::from_value(serde_json::json!({
                    "type": "/problems/rate-limited", "title": "Too many requests", "status": 429,
                    "detail": "Slow down; retry in 42 s."
                }))
                .unwrap(),
            ),
        });
        assert_eq!(e.retry_after(), Some(42));
        assert_eq!(e.message(), "Slow down; retry in 42 s.");
    }

    #[test]
    fn server_errors_are_not_shown_verbatim() {
        let e = ApiError(UpstreamError::Status {
            service: "orders",
            status: StatusCode::INTERNAL_SERVER_ERROR,
            problem: Some(
                serde_json::from_value(serde_json::json!({
                    "type": "/problems/internal", "title": "Internal", "status": 500, "detail": "stack trace here"
                }))
                .unwrap(),
            ),
        });
        assert!(!e.message().contains("stack trace"));
        let down = ApiError(UpstreamError::Unreachable { service: "catalog", reason: "refused".into() });
        assert!(down.message().contains("catalog service is not available"));
    }
}
