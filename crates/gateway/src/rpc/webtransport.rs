//! The shop over WebTransport (HTTP/3): `https://<host>:<WEBTRANSPORT_PORT>/rpc/wt`, one
//! Cap'n Web session per bidirectional stream, each message a line of JSON (see
//! `capnweb::webtransport`). `GET /rpc/wt` over HTTP tells a client where that is and, when
//! the gateway has no TLS files and makes its own short-lived certificate, the certificate's
//! hash for the browser's `serverCertificateHashes`.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::Router;
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
    /// The self-signed certificate's hash; `None` when the gateway serves its TLS certificate.
    pub hash: Option<CertificateHash>,
}

/// Binds the WebTransport endpoint `setting` asks for, beside an HTTP listener on `host`:`http_port`,
/// presenting `tls` (the gateway's HTTPS certificate) or else a self-signed one. `Ok(None)`:
/// off, or the default port was taken (logged; an explicit `WEBTRANSPORT_PORT` that cannot be
/// bound is an error).
pub fn bind(
    setting: WebTransportPort,
    host: IpAddr,
    http_port: u16,
    tls: Option<&kit::tls::Tls>,
) -> Result<Option<WebTransportServer>, String> {
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
        Ok(server) => Ok(Some(server)),
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
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .map(|a| a.host().to_string())
        .unwrap_or_else(|| "localhost".into());
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
    let hashes: Vec<_> = info
        .hash
        .iter()
        .map(|hash| {
            json!({"algorithm": "sha-256", "value": base64::engine::general_purpose::STANDARD.encode(hash.now())})
        })
        .collect();
    Json(json!({"url": format!("https://{host}:{}{PATH}", info.port), "serverCertificateHashes": hashes}))
        .into_response()
}
