//! Serving a service: the listener, the layers every service wears, the endpoints every service
//! has (`/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs`, `/redoc`), and graceful
//! shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::config::{ConfigError, Scoped};
use crate::layers::{AccessLogLayer, HttpMetricsLayer, RequestIdLayer};
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::tls::Tls;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// Largest request body accepted (413 above it).
    pub body_limit: usize,
    /// Longest a request may take inside the service (503 after it).
    pub request_timeout: Duration,
    /// How long in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// `HOST`, `BODY_LIMIT_BYTES`, `REQUEST_TIMEOUT`, `SHUTDOWN_GRACE`; the port is decided by
    /// the caller (it depends on the mode).
    pub fn from_settings(s: &Scoped<'_>, default_host: IpAddr, port: u16) -> Result<Self, ConfigError> {
        Ok(ServerConfig {
            host: s.parse_or(&["HOST", "BIND_ADDRESS"], default_host)?,
            port,
            body_limit: s.parse_checked(&["BODY_LIMIT_BYTES"], 1024 * 1024, |n: &usize| {
                if (1024..=64 * 1024 * 1024).contains(n) {
                    Ok(())
                } else {
                    Err("must be between 1 KiB and 64 MiB".into())
                }
            })?,
            request_timeout: s.duration_or(&["REQUEST_TIMEOUT"], Duration::from_secs(1), Duration::from_secs(15))?,
            shutdown_grace: s.duration_or(&["SHUTDOWN_GRACE"], Duration::from_secs(1), Duration::from_secs(10))?,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

/// A named readiness check (the database answers, a dependency is reachable, …).
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    pub fn check<F, Fut>(mut self, name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name, Arc::new(move || Box::pin(f()))));
        self
    }

    pub async fn run(&self) -> (bool, serde_json::Map<String, serde_json::Value>) {
        let mut ok = true;
        let mut out = serde_json::Map::new();
        for (name, check) in &self.checks {
            let result = tokio::time::timeout(Duration::from_secs(2), check()).await;
            let value = match result {
                Ok(Ok(())) => json!("ok"),
                Ok(Err(e)) => {
                    ok = false;
                    json!(e)
                }
                Err(_) => {
                    ok = false;
                    json!("timed out")
                }
            };
            out.insert((*name).to_string(), value);
        }
        (ok, out)
    }
}

/// Everything a service needs wrapped around its own routes.
pub struct ServiceShell {
    name: &'static str,
    metrics: Metrics,
    readiness: Readiness,
    openapi: utoipa::openapi::OpenApi,
    server: ServerConfig,
    access_log_at_info: bool,
    own_health: bool,
}

impl ServiceShell {
    pub fn new(name: &'static str, metrics: Metrics, server: ServerConfig, openapi: utoipa::openapi::OpenApi) -> Self {
        ServiceShell {
            name,
            metrics,
            readiness: Readiness::default(),
            openapi,
            server,
            access_log_at_info: false,
            own_health: false,
        }
    }

    /// Ready only while the database answers.
    pub fn with_database(mut self, db: crate::db::Db) -> Self {
        self.readiness = self.readiness.check("database", move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        });
        self
    }

    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// The gateway, the edge, logs every request at INFO; services log theirs at DEBUG.
    pub fn logging_each_request(mut self) -> Self {
        self.access_log_at_info = true;
        self
    }

    /// The router brings its own `/health` (the gateway's aggregates its upstreams).
    pub fn with_own_health(mut self) -> Self {
        self.own_health = true;
        self
    }

    /// The service's router with the common endpoints and layers added.
    pub fn wrap(self, api: Router) -> Router {
        let started = Instant::now();
        let name = self.name;
        let metrics = self.metrics.clone();
        let readiness = self.readiness.clone();
        let mut common = Router::new();
        if !self.own_health {
            common = common.route(
                "/health",
                get(move || async move {
                    axum::Json(json!({
                        "status": "ok",
                        "service": name,
                        "version": env!("CARGO_PKG_VERSION"),
                        "uptime_seconds": started.elapsed().as_secs(),
                    }))
                }),
            );
        }
        // Liveness: the process answers. Orchestrators restart on this, so it must not depend
        // on anything outside the process (that is what /ready is for).
        let common = common
            .route("/live", get(|| async { axum::Json(json!({"status": "alive"})) }))
            .route(
                "/ready",
                get(move || {
                    let readiness = readiness.clone();
                    async move {
                        let (ok, checks) = readiness.run().await;
                        let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                        (
                            status,
                            axum::Json(json!({
                                "status": if ok { "ready" } else { "not ready" },
                                "service": name,
                                "checks": checks,
                            })),
                        )
                    }
                }),
            )
            .route("/metrics", get(move |headers: HeaderMap| std::future::ready(metrics_response(&metrics, &headers))))
            .merge(crate::docs::routes(self.openapi, name));
        let timeout = self.server.request_timeout;
        api.merge(common)
            .fallback(crate::problem::not_found_fallback)
            .method_not_allowed_fallback(crate::problem::method_not_allowed_fallback)
            .layer(
                ServiceBuilder::new()
                    // Nothing any service answers is to be sniffed into another type by a
                    // browser: API answers, problem documents and fallbacks included.
                    .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ))
                    .layer(RequestIdLayer)
                    .layer(AccessLogLayer::new(name, self.access_log_at_info))
                    .layer(HttpMetricsLayer::new(self.metrics.clone()))
                    .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
                    .layer(crate::layers::DeadlineLayer::new(timeout))
                    .layer(DefaultBodyLimit::max(self.server.body_limit)),
            )
    }
}

/// The Prometheus text format, or OpenMetrics (with exemplars) for a scraper that asks for it.
pub fn metrics_response(metrics: &Metrics, request: &HeaderMap) -> Response {
    let accept = request.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        let kind = HeaderValue::from_static(crate::metrics::OPENMETRICS);
        return ([(header::CONTENT_TYPE, kind)], metrics.render_openmetrics()).into_response();
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], metrics.render())
        .into_response()
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    Problem::internal().into_response()
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// A port on 127.0.0.1 nobody listens on right now, for a server about to start in another
/// process (`ordermesh cluster` with `--base-port 0`, the tests).
///
/// Taken below the kernel's ephemeral range: a port the kernel hands out (`bind` to port 0)
/// is free only until it hands it out again, as the source port of somebody's outgoing
/// connection, which on a busy machine can come before the server binds it. Never the same
/// port twice in one process.
pub fn free_local_port() -> u16 {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let range = 10_000..ephemeral_from.clamp(12_000, 49_152);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = rand::thread_rng().gen_range(range.clone());
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

pub async fn bind(config: &ServerConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(config.addr())
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.addr())))
}

/// Serves `router` on `listener` until `stop` is cancelled, then lets in-flight requests
/// finish for up to `grace`.
///
/// Connections are handled by hyper directly (not `axum::serve`) so that slow clients are
/// bounded: request headers must arrive within [`HEADER_READ_TIMEOUT`] and fit in
/// [`MAX_HEADER_BYTES`], which stops slowloris-style connection hoarding.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    serve_with(listener, router, None, stop, grace).await
}

/// As [`serve`], over TLS: HTTP/1.1 or HTTP/2 as the client's ALPN chooses, the handshake
/// bounded by [`TLS_HANDSHAKE_TIMEOUT`], every answer with `Strict-Transport-Security`, every
/// request marked [`OverTls`], and the certificate read again when its files change.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: Tls,
    stop: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    serve_with(listener, router, Some(tls), stop, grace).await
}

/// Marks a request that came over a TLS connection (the gateway then tells upstreams
/// `X-Forwarded-Proto: https`).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

async fn serve_with(
    listener: TcpListener,
    router: Router,
    tls: Option<Tls>,
    stop: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;

    let local = listener.local_addr()?;
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_HEADER_BYTES);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_HEADER_BYTES as u32);
    let graceful = GracefulShutdown::new();
    let _reloading = tls.as_ref().map(|tls| tls.watch(stop.clone()));
    let hsts = tls.as_ref().map(|tls| tls.hsts().clone());
    // Other services of this process call this one in-process while it takes requests.
    let served_here = crate::local::register(local, router.clone());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let hsts = hsts.clone();
                let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    if hsts.is_some() {
                        req.extensions_mut().insert(OverTls);
                    }
                    let mut router = router.clone();
                    let hsts = hsts.clone();
                    async move {
                        let mut res = tower::Service::call(&mut router, req.map(axum::body::Body::new)).await?;
                        if let Some(hsts) = hsts {
                            res.headers_mut().entry(header::STRICT_TRANSPORT_SECURITY).or_insert(hsts);
                        }
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let Some(tls) = &tls else {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                    });
                    continue;
                };
                let acceptor = tls.acceptor().clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            _ = stop.cancelled() => break,
        }
    }
    drop(served_here);
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => Ok(()),
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(%local, "requests still running after the shutdown grace period; closing");
            Ok(())
        }
    }
}

/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The most header bytes accepted for one request.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
