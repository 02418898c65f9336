//! The services this process serves, found by the address they listen on. When `ordermesh up`
//! runs every service in one process, a call from one service to another still names the
//! other's URL (so the same configuration works when they run apart), but finds it here and goes
//! straight into its router: no socket, no HTTP codec, no connection pool. The router is the
//! whole service, its layers included (request id, access log, metrics, deadline, body limit,
//! panics caught), so the callee sees what it would see over loopback HTTP: the same headers,
//! the caller's identity and service token, the deadline, and answers problem+json the same way.
//!
//! Processes that serve one service (`serve`, `cluster`) find nothing for the others and call
//! them over HTTP, as do all processes when `IN_PROCESS_CALLS=off`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use tower::ServiceExt;
use url::{Host, Url};

struct Served {
    id: u64,
    addr: SocketAddr,
    router: Router,
}

static SERVED: LazyLock<RwLock<Vec<Served>>> = LazyLock::new(|| RwLock::new(Vec::new()));
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
/// On unless `IN_PROCESS_CALLS=off` is in the environment (so a whole test run can take the
/// HTTP path); `ordermesh up` sets it from its settings, a configuration file's included.
static ENABLED: LazyLock<AtomicBool> = LazyLock::new(|| {
    let set = std::env::var("IN_PROCESS_CALLS").ok().and_then(|v| crate::config::parse_bool(&v));
    AtomicBool::new(set.unwrap_or(true))
});

/// Whether calls to services of this process go in-process (the default) or over HTTP like
/// any other (`IN_PROCESS_CALLS=off`: to compare the two, or to see every hop on the wire).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A service served here until this is dropped (when its server stops).
#[must_use = "the service is found here only while the registration lives"]
pub struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut served = SERVED.write().unwrap_or_else(|e| e.into_inner());
        served.retain(|s| s.id != self.id);
    }
}

/// Makes `router` the service behind `addr` (the address its listener is bound to).
pub fn register(addr: SocketAddr, router: Router) -> Registration {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    SERVED.write().unwrap_or_else(|e| e.into_inner()).push(Served { id, addr, router });
    Registration { id }
}

/// The router of the service this process serves at `url`'s host and port, if any. A host
/// name other than `localhost` is not resolved: it may name another machine.
pub fn find(url: &Url) -> Option<Router> {
    if enabled() { served_at(url) } else { None }
}

fn served_at(url: &Url) -> Option<Router> {
    let port = url.port_or_known_default()?;
    let wanted: &[IpAddr] = match url.host()? {
        Host::Ipv4(v4) => &[IpAddr::V4(v4)],
        Host::Ipv6(v6) => &[IpAddr::V6(v6)],
        Host::Domain(name) if name.eq_ignore_ascii_case("localhost") => {
            &[IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
        }
        Host::Domain(_) => return None,
    };
    let served = SERVED.read().unwrap_or_else(|e| e.into_inner());
    served
        .iter()
        .find(|s| {
            s.addr.port() == port
                && wanted.iter().any(|ip| *ip == s.addr.ip() || (s.addr.ip().is_unspecified() && ip.is_loopback()))
        })
        .map(|s| s.router.clone())
}

/// Hands `req` to `router` as a loopback connection would (its peer address is 127.0.0.1).
/// The service runs as a task of its own, as it would behind its own listener: a caller that
/// gives up (its deadline, its client gone) does not cut the callee off half way, and the
/// callee's work can run on another thread.
pub async fn call(router: Router, mut req: Request) -> Result<Response, String> {
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))));
    // A server reads the target in origin form (`/path?query`); a client holds it whole.
    if let Some(target) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = axum::http::Uri::from(target);
    }
    match tokio::spawn(router.oneshot(req)).await {
        Ok(Ok(res)) => Ok(res),
        Ok(Err(never)) => match never {},
        Err(e) => Err(format!("the in-process call failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_is_found_by_the_address_it_listens_on_until_it_stops() {
        let router = Router::new();
        // A port no test binds: the registry is this process's, shared by every test in it.
        let on_loopback = register(SocketAddr::from(([127, 0, 0, 1], 1)), router.clone());
        let everywhere = register(SocketAddr::from(([0, 0, 0, 0], 2)), router);
        let find = |s: &str| served_at(&Url::parse(s).unwrap());
        assert!(find("http://127.0.0.1:1/x").is_some());
        assert!(find("http://localhost:1").is_some());
        assert!(find("http://127.0.0.2:1").is_none(), "another address");
        assert!(find("http://127.0.0.1:3").is_none(), "another port");
        assert!(find("http://[::1]:2").is_some(), "bound to every address, loopback included");
        assert!(find("http://catalog:2").is_none(), "a name is not resolved");
        drop(on_loopback);
        assert!(find("http://127.0.0.1:1").is_none(), "stopped");
        drop(everywhere);
    }
}
