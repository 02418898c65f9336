//! What crosses the proxy in headers: the client's, minus connection-level headers and
//! anything a client might use to pose as someone, plus who the client is (`X-Forwarded-*`)
//! and the trace context; and the upstream's answer minus its connection-level headers.

use std::net::SocketAddr;

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use kit::client_ip::TrustedProxies;
use kit::context::RequestContext;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Identity headers some backends trust blindly; a client never gets to set them.
const IDENTITY_HEADERS: &[&str] = &[
    "x-user-id",
    "x-user",
    "x-user-role",
    "x-user-roles",
    "x-authenticated-user",
    "x-forwarded-user",
    "x-remote-user",
    "x-auth-request-user",
];

/// The names a `Connection` header lists: per-connection headers of that one message.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

/// The headers the upstream sees; `over_tls` when the client reached the gateway over TLS.
pub fn forwarded(
    incoming: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted: &TrustedProxies,
    over_tls: bool,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(incoming.len() + 4);
    let listed = connection_listed(incoming);
    let peer_trusted = peer.is_some_and(|p| trusted.trusts(p.ip()));
    for (name, value) in incoming {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || IDENTITY_HEADERS.contains(&n)
            || listed.iter().any(|c| c == n)
            || n == "host"
            || n == "forwarded"
            || n == "traceparent"
            || n == "tracestate"
            || n == kit::context::X_REQUEST_TIMEOUT_MS.as_str()
            || (!peer_trusted && n.starts_with("x-forwarded-"))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(peer) = peer {
        let chain = match incoming.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(existing) if peer_trusted => format!("{existing}, {}", peer.ip()),
            _ => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            out.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
    }
    // The services write links into their answers (product pictures); they are served
    // here under `/api`, whatever a client or an earlier proxy said.
    out.insert(HeaderName::from_static("x-forwarded-prefix"), HeaderValue::from_static("/api"));
    if !out.contains_key("x-forwarded-proto") {
        let scheme = if over_tls { "https" } else { "http" };
        out.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(scheme));
    }
    if let Some(host) = incoming.get(header::HOST)
        && !out.contains_key("x-forwarded-host")
    {
        out.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    if let Some(ctx) = RequestContext::current() {
        for (name, value) in ctx.outgoing_headers() {
            out.insert(name, value);
        }
    }
    out
}

/// The upstream's answer as the client gets it.
pub fn strip_response(mut res: Response) -> Response {
    let listed = connection_listed(res.headers());
    let headers = res.headers_mut();
    for name in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(listed) {
        headers.remove(name.as_str());
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_told_the_scheme_the_client_used() {
        let trusted = TrustedProxies::default();
        let mut incoming = HeaderMap::new();
        // A client's own claim is not believed: it is not a trusted proxy.
        incoming.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let peer = Some(SocketAddr::from(([192, 0, 2, 1], 4000)));
        assert_eq!(forwarded(&incoming, peer, &trusted, false)["x-forwarded-proto"], "http");
        assert_eq!(forwarded(&incoming, peer, &trusted, true)["x-forwarded-proto"], "https");
    }
}
