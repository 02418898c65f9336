//! The shop over WebTransport (HTTP/3): `https://<host>:<WEBTRANSPORT_PORT>/rpc/wt`, one
//! Cap'n Web session per bidirectional stream, each message a line of JSON (see
//! `capnweb::webtransport`). `GET /rpc/wt` over HTTP tells a client where that is and, when
//! the gateway has no TLS files and makes its own short-lived certificate, the certificate's
//! hash for the browser's `serverCertificateHashes`.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::Router;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use capnweb::webtransport::{CertificateHash, WebTransportLimits, WebTransportServer, WebTransportTls};
use kit::Problem;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::ShopBackend;
use crate::config::WebTransportPort;

/// Where sessions are served, on the UDP port, and where they are described, over HTTP.
pub const PATH: &str = "/rpc/wt";

/// What `GET /rpc/wt` tells clients.
#[derive(Clone)]
pub struct WebTransportInfo {
    pub port: u16,
    /// On the HTTP port's number (the default): a client is sent to the number it reached us
    /// at, which differs from ours when a proxy or a published container port maps it.
    pub beside_http: bool,
    /// The self-signed certificate's hash; `None` when the gateway serves its TLS certificate.
    pub hash: Option<CertificateHash>,
}

/// Binds the WebTransport endpoint `setting` asks for, beside an HTTP listener on `host`:`http_port`,
/// presenting `tls` (the gateway's HTTPS certificate) or else a self-signed one, with what
/// `GET /rpc/wt` is to say of it. `Ok(None)`: off, or the default port was taken (logged; an
/// explicit `WEBTRANSPORT_PORT` that cannot be bound is an error).
pub fn bind(
    setting: WebTransportPort,
    host: IpAddr,
    http_port: u16,
    tls: Option<&kit::tls::Tls>,
) -> Result<Option<(WebTransportServer, WebTransportInfo)>, String> {
    let (port, explicit) = match setting {
        WebTransportPort::Off => return Ok(None),
        WebTransportPort::SameAsHttp => (http_port, false),
        WebTransportPort::Port(port) => (port, true),
    };
    let certificate = match tls {
        Some(tls) => WebTransportTls::Custom(tls.quic_config().map_err(|e| e.to_string())?),
        None => {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
            if !host.is_unspecified() && !host.is_loopback() {
                names.push(host.to_string());
            }
            WebTransportTls::SelfSigned { names }
        }
    };
    match WebTransportServer::bind(SocketAddr::new(host, port), certificate, WebTransportLimits::default()) {
        Ok(server) => {
            let info = WebTransportInfo {
                port: server.local_addr().port(),
                beside_http: !explicit,
                hash: server.certificate_hash(),
            };
            Ok(Some((server, info)))
        }
        Err(e) if !explicit => {
            tracing::warn!(error = %e, "no WebTransport: the UDP port is taken (set WEBTRANSPORT_PORT to choose one)");
            Ok(None)
        }
        Err(e) => Err(format!("WEBTRANSPORT_PORT: {e}")),
    }
}

/// Serves the shop on `server` until `stop`.
pub async fn serve(server: WebTransportServer, backend: ShopBackend, stop: CancellationToken) {
    server.serve(&[PATH], super::main_object(backend), capnweb::Limits::default(), stop).await;
}

/// `GET /rpc/wt`: `{url, serverCertificateHashes}`, what `new WebTransport(url, options)` takes.
pub fn info_route(info: Option<WebTransportInfo>) -> Router {
    Router::new().route(PATH, get(move |headers: HeaderMap| async move { describe(info.as_ref(), &headers) }))
}

fn describe(info: Option<&WebTransportInfo>, headers: &HeaderMap) -> Response {
    let Some(info) = info else {
        return Problem::not_found("WebTransport is off on this gateway (WEBTRANSPORT_PORT=off).").into_response();
    };
    let authority = headers.get(header::HOST).and_then(|h| h.to_str().ok()).and_then(|h| h.parse::<Authority>().ok());
    let host = authority.as_ref().map(|a| a.host().to_string()).unwrap_or_else(|| "localhost".into());
    let port = match authority.as_ref().and_then(Authority::port_u16) {
        Some(reached) if info.beside_http => reached,
        _ => info.port,
    };
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
    let hashes: Vec<_> = info
        .hash
        .iter()
        .map(|hash| {
            json!({"algorithm": "sha-256", "value": base64::engine::general_purpose::STANDARD.encode(hash.now())})
        })
        .collect();
    Json(json!({"url": format!("https://{host}:{port}{PATH}"), "serverCertificateHashes": hashes})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(info: &WebTransportInfo, host: Option<&str>) -> String {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, host.parse().unwrap());
        }
        let answer = describe(Some(info), &headers);
        let body = futures::executor::block_on(axum::body::to_bytes(answer.into_body(), 4096)).unwrap();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["url"].as_str().unwrap().to_string()
    }

    #[test]
    fn clients_are_sent_to_the_port_number_they_reached_unless_one_was_chosen() {
        let beside = WebTransportInfo { port: 8080, beside_http: true, hash: None };
        // A published container port (8090 → 8080) or a proxy: the number the client used.
        assert_eq!(url(&beside, Some("127.0.0.1:8090")), "https://127.0.0.1:8090/rpc/wt");
        assert_eq!(url(&beside, Some("shop.example")), "https://shop.example:8080/rpc/wt");
        assert_eq!(url(&beside, Some("[::1]:8080")), "https://[::1]:8080/rpc/wt");
        assert_eq!(url(&beside, None), "https://localhost:8080/rpc/wt");
        let chosen = WebTransportInfo { port: 4433, beside_http: false, hash: None };
        assert_eq!(url(&chosen, Some("127.0.0.1:8090")), "https://127.0.0.1:4433/rpc/wt");
    }
}
