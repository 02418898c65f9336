//! Finding the page's user from the session, and refreshing its tokens: concurrent refreshes
//! of one refresh token are coalesced, and a spent one is remembered only for the grace period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kit::auth::AuthError;
use kit::client::JsonCalls;

use super::Web;
use super::client::{Shared, TokenResponse, lock, record_timing};
use super::session::{Session, Tokens};

/// How long before expiry an access token is refreshed rather than sent.
const REFRESH_AHEAD_SECS: i64 = 20;

/// Sets `user` from the session's access token, refreshing it first when it has expired (or
/// is about to). A session whose tokens are refused is signed out.
pub async fn resolve_user(web: &Web, shared: &Shared) {
    let Some(tokens) = lock(shared).session.tokens.clone() else { return };
    match web.verifier.verify(&tokens.access).await {
        Ok(p) if p.exp - kit::auth::unix_now() > REFRESH_AHEAD_SECS => {
            lock(shared).user = Some(p);
        }
        Ok(_) | Err(AuthError::Expired) | Err(AuthError::UnknownKey) => {
            refresh_session(web, shared).await;
        }
        Err(e) => {
            tracing::debug!(error = %e, "session token refused; signing the session out");
            end_session(shared);
        }
    }
}

fn end_session(shared: &Shared) {
    let mut st = lock(shared);
    let csrf = st.session.csrf.clone();
    st.session = Session { csrf, tokens: None, name: None };
    st.session_dirty = true;
    st.user = None;
}

/// Exchanges the session's refresh token for new tokens and stores them in the session.
/// Returns whether the session has a usable access token afterwards.
pub async fn refresh_session(web: &Web, shared: &Shared) -> bool {
    let Some(old) = lock(shared).session.tokens.clone() else { return false };
    match web.refresher.refresh(web, &old.refresh).await {
        Refreshed::Tokens(new) => {
            let principal = web.verifier.verify(&new.access).await.ok();
            let mut st = lock(shared);
            if let Some(t) = &mut st.session.tokens {
                *t = new;
            }
            st.session_dirty = true;
            st.user = principal.clone();
            principal.is_some()
        }
        Refreshed::Refused => {
            end_session(shared);
            false
        }
        Refreshed::Unavailable => false,
    }
}

#[derive(Debug, Clone)]
pub enum Refreshed {
    Tokens(Tokens),
    /// The users service refused the refresh token (expired, revoked, reused).
    Refused,
    /// The users service could not be asked; the session stays as it is.
    Unavailable,
}

type Cell = Arc<tokio::sync::OnceCell<Refreshed>>;

/// Coalesces refreshes of one refresh token: the first caller asks the users service; the
/// others (concurrent, or within the grace after) get the same new tokens. Past the grace the
/// answer is forgotten, so an old cookie replayed later (a stolen copy) reaches the users
/// service with a spent refresh token, which ends the whole session family there.
pub struct Refresher {
    cells: Mutex<HashMap<String, (Instant, Cell)>>,
    grace: Duration,
}

const MAX_REMEMBERED: usize = 10_000;

impl Refresher {
    pub fn new(grace: Duration) -> Self {
        Refresher { cells: Mutex::default(), grace }
    }

    pub async fn refresh(&self, web: &Web, refresh_token: &str) -> Refreshed {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let grace = self.grace;
            if cells.len() > MAX_REMEMBERED / 2 {
                cells.retain(|_, (at, _)| now.duration_since(*at) < grace);
            } else if cells.get(refresh_token).is_some_and(|(at, _)| now.duration_since(*at) >= grace) {
                cells.remove(refresh_token);
            }
            if cells.len() >= MAX_REMEMBERED {
                None
            } else {
                Some(cells.entry(refresh_token.to_string()).or_insert_with(|| (now, Cell::default())).1.clone())
            }
        };
        let Some(cell) = cell else {
            return ask_users(web, refresh_token).await;
        };
        let outcome = cell.get_or_init(|| ask_users(web, refresh_token)).await.clone();
        if matches!(outcome, Refreshed::Unavailable) {
            // Nothing was spent: let the next attempt ask again.
            self.cells.lock().unwrap_or_else(|e| e.into_inner()).remove(refresh_token);
        }
        outcome
    }
}

async fn ask_users(web: &Web, refresh_token: &str) -> Refreshed {
    let started = Instant::now();
    let res = web
        .users
        .post_json::<_, TokenResponse>("/users/refresh", None, &serde_json::json!({"refresh_token": refresh_token}))
        .await;
    record_timing(started);
    match res {
        Ok(t) => Refreshed::Tokens(Tokens { access: t.access_token, refresh: t.refresh_token }),
        Err(e) if e.status().is_some_and(|s| s.is_client_error()) => Refreshed::Refused,
        Err(e) => {
            tracing::warn!(error = %e, "could not refresh a storefront session");
            Refreshed::Unavailable
        }
    }
}
