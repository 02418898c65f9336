//! The web storefront at `/`: sign in and register, the catalogue, a cart and one-click buying,
//! purchases, the profile, and the administrators' pages with a health and metrics dashboard.
//!
//! Every page is a client of the same service APIs REST clients use ([`client`]): the users,
//! catalog and orders services over HTTP with the signed-in user's bearer token. The session
//! (the platform's tokens), the cart and flash messages live in encrypted cookies
//! ([`session`]); every form carries a CSRF token checked before anything else ([`CsrfForm`]).
//! Pages are server-rendered HTML with one stylesheet built into the binary and no script, so
//! the Content-Security-Policy allows no script at all.
//!
//! Templates are written with maud: every interpolated value is HTML-escaped unless it is
//! explicitly wrapped in `PreEscaped` (which only our own static SVG/CSS paths do), templates
//! are checked by the compiler, render to a plain `String` with no template files read at run
//! time, and compose as ordinary Rust functions (the layout, form helpers, the chart). maud
//! 0.27.0 builds on Rust 1.95 with its default (empty) feature set; askama 0.16 would have
//! served as well, but would have needed a template struct per page for the same safety.

pub mod api;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod pages;
pub mod refresh;
pub mod session;
pub mod view;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::{Key, PrivateCookieJar};
use kit::auth::TokenVerifier;
use kit::client::ClientTimeouts;

use gateway::proxy::UpstreamClient;
use gateway::rules::Service;
use serde::de::DeserializeOwned;

use client::{ClientAddr, ReqState, Shared, TIMING, Timing, lock};
use gateway::AppState;
use session::{Cart, CookieNames, Flash, FlashKind, Session};

/// The storefront's shared state.
pub struct WebInner {
    pub app: AppState,
    pub config: config::Config,
    pub users: UpstreamClient,
    pub catalog: UpstreamClient,
    pub orders: UpstreamClient,
    pub verifier: TokenVerifier,
    pub key: Key,
    pub secure: bool,
    pub names: CookieNames,
    pub refresher: refresh::Refresher,
    pub dashboard: Arc<dashboard::Dashboard>,
}

pub type Web = Arc<WebInner>;

/// The session key from `SESSION_KEY`, or a random one for this process.
fn session_key(configured: Option<&[u8]>) -> Key {
    match configured.map(Key::try_from) {
        Some(Ok(key)) => key,
        Some(Err(e)) => {
            // The configuration checks the length already; this is belt and braces.
            tracing::warn!(error = %e, "SESSION_KEY unusable; using a random session key for this process");
            Key::generate()
        }
        None => Key::generate(),
    }
}

pub fn state(app: AppState, config: config::Config) -> Web {
    let edge = &app.config;
    let timeouts = ClientTimeouts { connect: edge.resilience.connect_timeout, total: edge.resilience.request_timeout };
    let dashboard = Arc::new(dashboard::Dashboard::new(edge.upstreams[Service::Orders].clone(), timeouts));
    Arc::new(WebInner {
        users: app.upstream_client(Service::Users),
        catalog: app.upstream_client(Service::Catalog),
        orders: app.upstream_client(Service::Orders),
        verifier: app.edge.verifier.clone(),
        key: session_key(config.session_key.as_deref()),
        secure: config.secure_cookies,
        names: CookieNames::new(config.secure_cookies),
        refresher: refresh::Refresher::new(config.session_refresh_grace),
        dashboard,
        app,
        config,
    })
}

/// The storefront's routes, to be merged into the gateway's router inside its edge layers.
/// The gateway serving the storefront beside the API, behind the same layers: what `ordermesh`
/// serves on the gateway's port.
pub fn with_gateway(app: AppState, config: config::Config) -> Router {
    gateway::router_with_pages(app.clone(), router(app, config))
}

/// The storefront's pages and assets, for [`gateway::router_with_pages`].
pub fn router(app: AppState, config: config::Config) -> Router {
    let web = state(app, config);
    let pages = pages::routes().with_state(web.clone()).layer(axum::middleware::from_fn_with_state(web, web_layer));
    Router::new()
        .route("/assets/style.css", get(view::stylesheet))
        .route("/assets/favicon.svg", get(view::favicon))
        .merge(pages)
}

/// Why a page could not be shown. Rendered by [`web_layer`], which knows the session (so an
/// error page still has the visitor's navigation) and the path (to come back to after signing
/// in).
#[derive(Debug, Clone)]
pub enum WebError {
    /// Not signed in: to the sign-in page, then back.
    SignIn,
    Page {
        status: StatusCode,
        title: String,
        message: String,
    },
}

impl WebError {
    pub fn page(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        WebError::Page { status, title: title.into(), message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        WebError::page(StatusCode::NOT_FOUND, "Not found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        WebError::page(StatusCode::FORBIDDEN, "Not allowed", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        WebError::page(StatusCode::BAD_REQUEST, "Bad request", message)
    }

    pub fn internal() -> Self {
        WebError::page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "It has been logged.")
    }

    pub fn csrf() -> Self {
        WebError::page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form has expired or did not come from this site, so nothing was done. \
             Go back, reload the page and try again.",
        )
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = match &self {
            WebError::SignIn => StatusCode::SEE_OTHER,
            WebError::Page { status, .. } => *status,
        };
        let mut res = status.into_response();
        res.extensions_mut().insert(self);
        res
    }
}

pub type PageResult = Result<Response, WebError>;

/// A form body whose `_csrf` field matches the session's CSRF secret; anything else is 403
/// before the handler runs. Cross-site submissions (`Sec-Fetch-Site: cross-site`) are refused
/// whatever they carry.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Web> for CsrfForm<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, web: &Web) -> Result<Self, Self::Rejection> {
        let shared = req.extensions().get::<Shared>().cloned().ok_or_else(WebError::internal)?;
        if req.headers().get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site") {
            return Err(WebError::csrf());
        }
        let form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !form {
            return Err(WebError::page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported form", "Send a web form."));
        }
        let bytes = Bytes::from_request(req, web)
            .await
            .map_err(|_| WebError::page(StatusCode::PAYLOAD_TOO_LARGE, "Too large", "That form is too large."))?;
        let presented = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == "_csrf").map(|(_, v)| v.into_owned());
        let ok = {
            let st = lock(&shared);
            st.session_from_cookie && presented.is_some_and(|p| st.session.csrf_matches(&p))
        };
        if !ok {
            return Err(WebError::csrf());
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(CsrfForm)
            .map_err(|_| WebError::bad_request("Some fields of that form could not be read."))
    }
}

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Around every page: reads the cookies into this request's state, finds the user (refreshing
/// the tokens when needed), runs the page, renders a deferred error page, writes back the
/// cookies that changed, and adds the security headers and Server-Timing.
async fn web_layer(State(web): State<Web>, req: Request, next: Next) -> Response {
    let timing = Arc::new(Timing::default());
    let started = Instant::now();
    let mut res = TIMING.scope(timing.clone(), run_page(web, req, next)).await;
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let upstream_ms = timing.upstream_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0;
    let calls = timing.calls.load(std::sync::atomic::Ordering::Relaxed);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "app;dur={total_ms:.1};desc=\"page total\", upstream;dur={upstream_ms:.1};desc=\"{calls} service calls\""
    )) {
        res.headers_mut().insert("server-timing", v);
    }
    let h = res.headers_mut();
    let html = h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if html {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
        h.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn run_page(web: Web, mut req: Request, next: Next) -> Response {
    let names = web.names.clone();
    let jar = PrivateCookieJar::from_headers(req.headers(), web.key.clone());
    let stored = session::read::<Session>(&jar, names.session);
    let from_cookie = stored.is_some();
    let stored_cart = session::read_cart(&jar, names.cart);
    let flash_in = session::read::<Flash>(&jar, names.flash);
    let had_flash = jar.get(names.flash).is_some();
    let shared: Shared = Arc::new(Mutex::new(ReqState {
        session: stored.unwrap_or_else(Session::anonymous),
        session_from_cookie: from_cookie,
        // A first visit gets its CSRF secret now, so its first form can be checked.
        session_dirty: !from_cookie,
        cart: stored_cart.unwrap_or_default(),
        cart_dirty: false,
        flash_in,
        flash_out: None,
        user: None,
    }));
    let peer =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let xff = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let ip = web.app.config.trusted_proxies.client_ip(peer, xff);
    refresh::resolve_user(&web, &shared).await;
    if let Some(user) = lock(&shared).user.as_ref() {
        tracing::Span::current().record("user_id", user.subject.as_str());
    }
    req.extensions_mut().insert(shared.clone());
    req.extensions_mut().insert(ClientAddr(ip));
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let is_get = req.method() == Method::GET;

    let mut res = next.run(req).await;
    if let Some(deferred) = res.extensions_mut().remove::<WebError>() {
        res = match deferred {
            WebError::SignIn => {
                let target = if is_get {
                    format!("/login?next={}", url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>())
                } else {
                    "/login".to_string()
                };
                lock(&shared).flash_out =
                    Some(Flash { kind: FlashKind::Error, text: "Please sign in to continue.".into() });
                Redirect::to(&target).into_response()
            }
            WebError::Page { status, title, message } => {
                let chrome = view::Chrome::from_state(&lock(&shared), &path);
                (status, view::html(view::error_page(&chrome, status, &title, &message))).into_response()
            }
        };
    }

    let mut jar = jar;
    {
        let st = lock(&shared);
        if st.session_dirty {
            jar = jar.add(session::cookie(names.session, &st.session, web.secure, None));
        }
        if st.cart_dirty {
            let cart: &Cart = &st.cart;
            jar = jar.add(session::cookie(names.cart, cart, web.secure, Some(time::Duration::days(7))));
        }
        if let Some(flash) = &st.flash_out {
            jar = jar.add(session::cookie(names.flash, flash, web.secure, Some(time::Duration::minutes(5))));
        } else if had_flash && !res.status().is_redirection() {
            // Shown on this page; a redirect carries it on to the next one.
            jar = jar.remove(session::removal(names.flash));
        }
    }
    (jar, res).into_response()
}

#[cfg(test)]
mod tests;
