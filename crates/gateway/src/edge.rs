//! The edge layers, outermost first: [`client_rate_limit`] (by client address, before any
//! work is spent on a request), [`edge_auth`] (bearer tokens checked locally against the
//! users service's keys; public, authenticated and admin routes told apart), and
//! [`user_rate_limit`] (by user, once the user is known).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use api::Grants;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kit::Problem;
use kit::auth::{AuthError, Principal, TokenVerifier, bearer_token};
use kit::client_ip::TrustedProxies;
use kit::metrics::Metrics;

use crate::config::RateLimits;
use crate::ratelimit::{Decision, Limiter};
use crate::rules::{self, Access};

/// The Redis channel on which gateways tell each other about logouts.
pub fn revocation_channel(prefix: &str) -> String {
    format!("{prefix}:revocations")
}

pub struct Edge {
    pub verifier: TokenVerifier,
    pub limiter: Arc<Limiter>,
    pub limits: RateLimits,
    pub trusted: TrustedProxies,
    pub metrics: Metrics,
}

impl Edge {
    fn client_ip(&self, req: &Request) -> IpAddr {
        self.client_ip_of(req.headers(), req.extensions())
    }

    /// The client's address: the peer's, or what a trusted proxy in front of us says it is.
    pub fn client_ip_of(&self, headers: &HeaderMap, extensions: &Extensions) -> IpAddr {
        let peer =
            extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        self.trusted.client_ip(peer, xff)
    }

    /// Counts one request of `ip` against its quota and, for a sign-in, against the far smaller
    /// one for credential attempts. Admitted: the client quota's state; refused: which quota
    /// and the wait before a retry.
    pub async fn admit(&self, ip: IpAddr, credential_attempt: bool) -> Result<Decision, (&'static str, Decision)> {
        if credential_attempt {
            let decision = self.limiter.check(&format!("auth:{ip}"), self.limits.auth).await;
            if !decision.allowed {
                return Err(("auth", decision));
            }
        }
        let decision = self.limiter.check(&format!("ip:{ip}"), self.limits.per_client).await;
        if !decision.allowed {
            return Err(("client", decision));
        }
        Ok(decision)
    }

    /// Counts a refusal in `rate_limited_total`.
    pub fn count_refusal(&self, scope: &'static str) {
        self.metrics.record(|| metrics::counter!("rate_limited_total", "scope" => scope).increment(1));
    }

    fn refused(&self, scope: &'static str, decision: Decision) -> Response {
        self.count_refusal(scope);
        let secs = ceil_secs(decision.retry_after);
        let mut res = Problem::too_many_requests(secs).into_response();
        rate_limit_headers(res.headers_mut(), decision);
        res
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

fn rate_limit_headers(headers: &mut HeaderMap, d: Decision) {
    headers.insert("ratelimit-limit", HeaderValue::from(d.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(ceil_secs(d.reset)));
}

/// Counts every request against its client address; sign-in and registration also count
/// against a much smaller quota, so password guessing is slow whatever the account.
pub async fn client_rate_limit(State(edge): State<Arc<Edge>>, req: Request, next: Next) -> Response {
    // Probes and scrapers are not throttled: a limited health check would report an outage
    // that is not there.
    if matches!(req.uri().path(), "/health" | "/ready" | "/metrics") {
        return next.run(req).await;
    }
    let ip = edge.client_ip(&req);
    let credential_attempt = rules::access(req.method(), req.uri().path()) == Access::CredentialAttempt;
    let decision = match edge.admit(ip, credential_attempt).await {
        Ok(decision) => decision,
        Err((scope, decision)) => return edge.refused(scope, decision),
    };
    let mut res = next.run(req).await;
    rate_limit_headers(res.headers_mut(), decision);
    res
}

/// Checks the bearer token, if any, and what the route requires. A valid token's principal
/// travels on in the request's extensions (the token itself travels on to the service, which
/// checks it again).
pub async fn edge_auth(State(edge): State<Arc<Edge>>, mut req: Request, next: Next) -> Response {
    let access = rules::access(req.method(), req.uri().path());
    // Internal routes (event delivery, service credentials) exist only between services,
    // whatever token comes with the request.
    if access == Access::Forbidden {
        return Problem::not_found(format!("{} is not part of the public API.", req.uri().path())).into_response();
    }
    let principal: Option<Arc<Principal>> = match bearer_token(req.headers()) {
        Err(e) => return Problem::from(e).into_response(),
        Ok(None) => None,
        Ok(Some(token)) => match edge.verifier.verify(token).await {
            Ok(p) => Some(p),
            Err(e) => return Problem::from(e).into_response(),
        },
    };
    match (access, &principal) {
        (Access::Authenticated | Access::Requires(_), None) => {
            return Problem::from(AuthError::Missing).into_response();
        }
        (Access::Requires(permission), Some(p)) if !p.has(permission) => {
            return Problem::forbidden(format!("This needs the permission {}.", permission.as_str()))
                .with("required_permission", permission.as_str())
                .into_response();
        }
        _ => {}
    }
    // A seed path that names a user (`/orders/<username>/buy`) may only be used by that user
    // (or, where the seed path allows it, an administrator).
    if let Some(acting) = req.extensions().get::<crate::dialects::ActingAs>() {
        let allowed = principal.as_ref().is_some_and(|p| {
            p.username.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(&acting.username))
                || (acting.administrators_too && p.is_admin())
        });
        if principal.is_none() {
            return Problem::from(AuthError::Missing).into_response();
        }
        if !allowed {
            return Problem::forbidden(format!("You act for yourself only, not for {}.", acting.username))
                .into_response();
        }
    }
    let logout = rules::is_logout(req.method(), req.uri().path());
    if let Some(p) = &principal {
        tracing::Span::current().record("user_id", p.subject.as_str());
        req.extensions_mut().insert(p.clone());
    }
    let res = next.run(req).await;
    if logout
        && res.status().is_success()
        && let Some(p) = principal
    {
        revoke_here_and_everywhere(&edge, &p).await;
    }
    res
}

/// A logout that went through here is honoured here at once, and by the other gateways as
/// soon as they hear of it (Redis pub/sub when shared; otherwise their next poll of the
/// users service's revocation feed).
async fn revoke_here_and_everywhere(edge: &Edge, p: &Principal) {
    let mut ids = vec![p.jti.clone()];
    if let Some(sid) = &p.session_id {
        ids.push(kit::auth::session_key(sid));
    }
    let exp = p.exp.max(kit::auth::unix_now() + 3600);
    for id in &ids {
        edge.verifier.revocations().revoke(id, exp);
    }
    // Not while Redis is failing: the logout must not wait on it, and polling covers it.
    if edge.limiter.shared()
        && let Some(mut redis) = edge.limiter.redis()
    {
        for id in ids {
            let message = format!("{id} {exp}");
            let published: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(revocation_channel(&edge.limits.redis_prefix))
                .arg(message)
                .query_async(&mut redis)
                .await;
            if let Err(e) = published {
                tracing::debug!(error = %e, "could not broadcast a revocation; other gateways will poll it");
            }
        }
    }
}

/// Listens for revocations broadcast by other gateways.
pub fn spawn_revocation_listener(redis_url: String, channel: String, verifier: TokenVerifier) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = listen(&redis_url, &channel, &verifier).await {
                tracing::debug!(error = %e, "revocation listener disconnected; retrying");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}

async fn listen(url: &str, channel: &str, verifier: &TokenVerifier) -> Result<(), String> {
    use futures::StreamExt;
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
    pubsub.subscribe(channel).await.map_err(|e| e.to_string())?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let Ok(text) = message.get_payload::<String>() else { continue };
        if let Some((id, exp)) = text.split_once(' ')
            && let Ok(exp) = exp.parse::<i64>()
        {
            verifier.revocations().revoke(id, exp);
        }
    }
    Err("the subscription ended".into())
}

/// Counts authenticated requests against their user, whatever address they come from.
pub async fn user_rate_limit(State(edge): State<Arc<Edge>>, req: Request, next: Next) -> Response {
    let Some(user) = req.extensions().get::<Arc<Principal>>().map(|p| p.subject.clone()) else {
        return next.run(req).await;
    };
    let decision = edge.limiter.check(&format!("user:{user}"), edge.limits.per_user).await;
    if !decision.allowed {
        return edge.refused("user", decision);
    }
    next.run(req).await
}

/// Marks every response as not to be cached by shared caches unless the service said
/// otherwise, and sets the headers browsers need to keep API responses inert.
pub async fn api_response_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    res
}
