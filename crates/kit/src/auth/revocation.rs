//! Revoked tokens and sessions, kept by every service in step with the users service's feed.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Principal, ServiceTokenSource, unix_now};
use crate::client::JsonCalls;
use crate::client::ServiceClient;

/// Revoked access-token ids (`jti`) with their expiry; entries leave when the token would have
/// expired anyway.
#[derive(Clone, Default)]
pub struct RevocationSet {
    revoked: Arc<DashMap<String, i64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Revocation {
    pub jti: String,
    /// When the revoked token expires, Unix seconds.
    pub exp: i64,
    /// When it was revoked, Unix milliseconds.
    pub revoked_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevocationFeed {
    pub revocations: Vec<Revocation>,
}

impl RevocationSet {
    pub fn revoke(&self, jti: &str, exp: i64) {
        if exp >= unix_now() {
            self.revoked.insert(jti.to_string(), exp);
        }
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    /// Whether the token itself or its whole session was revoked. Sessions are kept in the
    /// same set under `sid:<id>`.
    pub fn covers(&self, principal: &Principal) -> bool {
        if self.revoked.is_empty() {
            return false;
        }
        self.is_revoked(&principal.jti)
            || principal.session_id.as_deref().is_some_and(|sid| self.revoked.contains_key(&session_key(sid)))
    }

    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    pub fn purge_expired(&self) {
        let now = unix_now();
        self.revoked.retain(|_, exp| *exp >= now);
    }

    /// Keeps the set in step with `source`, polling every `interval`. Each poll asks for what
    /// was revoked since a little before the newest revocation seen, so revocations committed
    /// out of order are not missed; duplicates are harmless.
    pub fn spawn_poller<R: RevocationSource>(&self, source: R, interval: Duration) -> tokio::task::JoinHandle<()> {
        let set = self.clone();
        tokio::spawn(async move {
            let mut newest_ms = 0i64;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut polls = 0u64;
            // Said once when polling starts failing and once when it works again: a service
            // that cannot read the feed (wrong credentials, say) must not fail silently.
            let mut failing = false;
            loop {
                tick.tick().await;
                let since = (newest_ms - 10_000).max(0);
                match source.since(since).await {
                    Ok(items) => {
                        for r in items {
                            newest_ms = newest_ms.max(r.revoked_at);
                            set.revoke(&r.jti, r.exp);
                        }
                        if std::mem::take(&mut failing) {
                            tracing::info!("the revocation feed is readable again");
                        }
                    }
                    // The first polls may come before the users service listens.
                    Err(e) if polls < 5 => tracing::debug!(error = %e, "revocation poll failed; will retry"),
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %e, "cannot read the revocation feed; logouts elsewhere are not seen here until it works");
                        }
                    }
                }
                polls += 1;
                if polls.is_multiple_of(60) {
                    set.purge_expired();
                }
            }
        })
    }
}

/// The revocation-set key under which a whole session is revoked.
pub fn session_key(session_id: &str) -> String {
    format!("sid:{session_id}")
}

/// Somewhere to learn about revocations from.
pub trait RevocationSource: Send + Sync + 'static {
    fn since(&self, after_ms: i64) -> BoxFuture<'_, Result<Vec<Revocation>, String>>;
}

/// The users service's `GET /auth/revocations?since=<ms>` feed, read with a service token
/// for the users service.
pub struct HttpRevocations {
    pub users: ServiceClient,
    pub tokens: Arc<ServiceTokenSource>,
}

impl RevocationSource for HttpRevocations {
    fn since(&self, after_ms: i64) -> BoxFuture<'_, Result<Vec<Revocation>, String>> {
        Box::pin(crate::traces::unrecorded(async move {
            let token = self.tokens.token_for("users").await.map_err(|e| e.to_string())?;
            let path = format!("/auth/revocations?since={after_ms}");
            match self.users.get_json::<RevocationFeed>(&path, Some(&token)).await {
                Ok(feed) => Ok(feed.revocations),
                Err(e) => {
                    if e.status() == Some(axum::http::StatusCode::UNAUTHORIZED) {
                        self.tokens.invalidate().await;
                    }
                    Err(e.to_string())
                }
            }
        }))
    }
}
