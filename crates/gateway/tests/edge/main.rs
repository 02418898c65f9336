//! End-to-end tests of the gateway: real services (users, catalog, orders) or scripted
//! upstreams on 127.0.0.1 port 0 behind a real gateway, all over HTTP. The Redis tests are
//! ignored unless asked for (`--include-ignored`, with `ORDERMESH_TEST_REDIS`; `.ci/run` runs them).
//!
//! By concern: [`routing`] (the API through the gateway, headers, authentication, CORS, body
//! limits), [`limits`] (rate limits, in memory and through Redis), [`resilience`] (retries,
//! breakers, killed and slow instances, deadlines, against scripted upstreams);
//! the scripted upstream instances (`Scripted`, `gateway_over`) are here, shared by all three.

mod limits;
mod resilience;
mod routing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, get};
use kit::config::Settings;
use kit::testing::{TestServer, required_env};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[path = "../common/mod.rs"]
mod common;

use common::{HS_SECRET, Services, gateway, login};

/// A scripted upstream instance: counts requests, echoes what it received, and can be told to
/// fail, to be slow, or to die (every connection dropped at once, as a killed process).
#[derive(Clone, Default)]
struct Script {
    hits: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    status_when_failing: Arc<AtomicUsize>,
    slow_ms: Arc<AtomicUsize>,
}

struct Scripted {
    addr: SocketAddr,
    script: Script,
    kill: CancellationToken,
}

impl Scripted {
    async fn start() -> Self {
        let script = Script::default();
        script.status_when_failing.store(503, Ordering::Relaxed);
        let s = script.clone();
        let handler = move |headers: HeaderMap, uri: axum::http::Uri| {
            let s = s.clone();
            async move {
                // The gateway's own background calls (keys, its service token, the revocation
                // feed) are not traffic.
                let background = uri.path().starts_with("/.well-known/")
                    || uri.path().starts_with("/auth/revocations")
                    || uri.path() == "/auth/token";
                if !background {
                    s.hits.fetch_add(1, Ordering::Relaxed);
                }
                let slow = s.slow_ms.load(Ordering::Relaxed);
                if slow > 0 {
                    tokio::time::sleep(Duration::from_millis(slow as u64)).await;
                }
                if s.failing.load(Ordering::Relaxed) {
                    let code = StatusCode::from_u16(s.status_when_failing.load(Ordering::Relaxed) as u16).unwrap();
                    return (code, axum::Json(json!({"failing": true})));
                }
                let echoed: serde_json::Map<String, Value> =
                    headers.iter().map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("")))).collect();
                (StatusCode::OK, axum::Json(json!({"path": uri.to_string(), "headers": echoed})))
            }
        };
        let router = Router::new().route("/health", get(|| async { "ok" })).fallback(any(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let kill = CancellationToken::new();
        let k = kill.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = k.cancelled() => return,
                };
                let router = router.clone();
                let k = k.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut router = router.clone();
                        async move { tower::Service::call(&mut router, req.map(axum::body::Body::new)).await }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = k.cancelled() => {}
                    }
                });
            }
        });
        Scripted { addr, script, kill }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.script.hits.load(Ordering::Relaxed)
    }

    fn fail_with(&self, status: u16) {
        self.script.status_when_failing.store(status as usize, Ordering::Relaxed);
        self.script.failing.store(true, Ordering::Relaxed);
    }

    fn heal(&self) {
        self.script.failing.store(false, Ordering::Relaxed);
    }
}

/// A gateway whose every service is the given scripted instances. Tests send reads to
/// `/api/products` and writes to `/api/users/login` (public, so no token is needed), whose
/// strict quota is lifted here.
async fn gateway_over(instances: &[&Scripted], extra: &[(&str, &str)]) -> TestServer {
    let urls = instances.iter().map(|s| s.url()).collect::<Vec<_>>().join(",");
    let mut s = Settings::from_pairs([
        ("CATALOG_SERVICE_URL", urls.clone()),
        ("USER_SERVICE_URL", urls.clone()),
        ("ORDER_SERVICE_URL", urls),
        ("RETRY_BACKOFF", "1ms".to_string()),
        ("AUTH_RATE_LIMIT", "1000000".to_string()),
        ("AUTH_RATE_LIMIT_BURST", "100000".to_string()),
    ]);
    for (k, v) in extra {
        s = s.with(k, *v);
    }
    gateway(s).await
}
