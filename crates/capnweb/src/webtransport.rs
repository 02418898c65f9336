//! Serving sessions over WebTransport (HTTP/3 over QUIC), the third transport the seed-000
//! implementation offers beside WebSocket and HTTP batch.
//!
//! On the wire: a client opens a WebTransport session (extended `CONNECT`, `:protocol`
//! `webtransport`) on one of the server's paths (`/rpc/wt` by default), then one
//! bidirectional stream per Cap'n Web session. Each message is one line of JSON ending in
//! `\n` (JSON as the protocol writes it never holds a raw newline), both ways. Several streams
//! on one connection are several independent sessions; unidirectional streams and datagrams
//! are not used.
//!
//! A message longer than [`Limits::max_message_bytes`] ends its session with an `abort` that
//! names the limit, then the end of the stream; the peer's pending calls fail at once.
//!
//! The certificate is either the operator's (a [`rustls::ServerConfig`], e.g. the one a
//! gateway serves HTTPS with) or made here ([`WebTransportTls::SelfSigned`]): ECDSA P-256,
//! valid for 13 days and replaced every 6, as browsers require of a certificate they accept by
//! its hash (`serverCertificateHashes`: at most 14 days of validity). [`WebTransportServer::certificate_hash`]
//! says which hash to give them right now.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, header};
use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio_util::sync::CancellationToken;
use wtransport::endpoint::IncomingSession;
use wtransport::endpoint::endpoint_side::Server;
use wtransport::quinn::{IdleTimeout, TransportConfig};
use wtransport::{Endpoint, Identity, RecvStream, SendStream, ServerConfig, VarInt};

use crate::capability::{Capability, RpcTarget, TransportKind};
use crate::error::ProtocolError;
use crate::limits::Limits;
use crate::session::{Outgoing, Session};
use crate::transport::{Frame, pump};

/// How long a self-signed certificate is valid, and how often it is replaced: browsers accept a
/// certificate by its hash only when it is valid for at most 14 days.
const SELF_SIGNED_VALIDITY_DAYS: u32 = 13;
pub const SELF_SIGNED_ROTATION: Duration = Duration::from_secs(6 * 86_400);

/// How long a new connection has to complete its handshake and ask for a session.
const SESSION_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server's certificate comes from.
pub enum WebTransportTls {
    /// Made here for these names (e.g. `localhost`, `127.0.0.1`), replaced before it expires;
    /// clients pin it by [`WebTransportServer::certificate_hash`].
    SelfSigned { names: Vec<String> },
    /// The operator's: TLS 1.3 with the ring provider (QUIC needs TLS 1.3); the ALPN is set
    /// here to `h3`. A certificate resolver that reloads its files keeps working.
    Custom(rustls::ServerConfig),
}

/// Limits of the QUIC side, beside the sessions' own [`Limits`].
#[derive(Clone, Debug)]
pub struct WebTransportLimits {
    /// Most QUIC connections served at once; more are refused with HTTP 429. Default 1024.
    pub max_connections: usize,
    /// Most sessions (bidirectional streams) open at once on one connection. Default 8.
    pub max_sessions_per_connection: u32,
    /// A connection that has sent nothing for this long is closed. Default 60 s; the server
    /// sends a keep-alive every 15 s, so only a peer that went away is cut off.
    pub idle_timeout: Duration,
}

impl Default for WebTransportLimits {
    fn default() -> Self {
        WebTransportLimits {
            max_connections: 1024,
            max_sessions_per_connection: 8,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A bound WebTransport endpoint, ready to [`serve`](WebTransportServer::serve).
pub struct WebTransportServer {
    endpoint: Arc<Endpoint<Server>>,
    local_addr: SocketAddr,
    tls: Tls,
    limits: WebTransportLimits,
}

enum Tls {
    SelfSigned { names: Vec<String>, hash: Arc<Mutex<[u8; 32]>>, every: Duration },
    Custom,
}

/// Why a WebTransport endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebTransportError {
    #[error("cannot listen on {addr} (UDP): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot make a certificate for {names:?}: {reason}")]
    Certificate { names: Vec<String>, reason: String },
    #[error("the TLS configuration cannot serve QUIC (it needs TLS 1.3 with TLS13_AES_128_GCM_SHA256)")]
    NoTls13,
}

impl WebTransportServer {
    /// Binds `addr` (UDP; port 0 picks a free one).
    pub fn bind(addr: SocketAddr, tls: WebTransportTls, limits: WebTransportLimits) -> Result<Self, WebTransportError> {
        let (rustls_config, tls) = match tls {
            WebTransportTls::SelfSigned { names } => {
                let (identity, hash) = self_signed(&names)?;
                let config = wtransport::tls::server::build_default_tls_config(identity);
                let every = SELF_SIGNED_ROTATION;
                (config, Tls::SelfSigned { names, hash: Arc::new(Mutex::new(hash)), every })
            }
            WebTransportTls::Custom(mut config) => {
                config.alpn_protocols = vec![b"h3".to_vec()];
                (config, Tls::Custom)
            }
        };
        let config = server_config(addr, rustls_config, &limits)?;
        let endpoint = Arc::new(Endpoint::server(config).map_err(|source| WebTransportError::Bind { addr, source })?);
        let local_addr = endpoint.local_addr().map_err(|source| WebTransportError::Bind { addr, source })?;
        Ok(WebTransportServer { endpoint, local_addr, tls, limits })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces a self-signed certificate this often instead of every [`SELF_SIGNED_ROTATION`]
    /// (tests; a period longer than the default is kept at the default, or browsers would see
    /// it expire).
    pub fn rotating_every(mut self, period: Duration) -> Self {
        if let Tls::SelfSigned { every, .. } = &mut self.tls {
            *every = period.min(SELF_SIGNED_ROTATION);
        }
        self
    }

    /// The SHA-256 of the self-signed certificate presented now (what a browser's
    /// `serverCertificateHashes` takes); `None` with the operator's certificate.
    pub fn certificate_hash(&self) -> Option<CertificateHash> {
        match &self.tls {
            Tls::SelfSigned { hash, .. } => Some(CertificateHash(hash.clone())),
            Tls::Custom => None,
        }
    }

    /// Serves sessions on `paths` until `stop`, a fresh main object per session from `main`,
    /// which sees the `CONNECT` request as an HTTP request head (path, headers, and the peer's
    /// address as `ConnectInfo<SocketAddr>`). Other paths are answered with 404.
    pub async fn serve<F>(self, paths: &[&str], main: F, limits: Limits, stop: CancellationToken)
    where
        F: Fn(&Parts) -> Arc<dyn RpcTarget> + Send + Sync + 'static,
    {
        let accept = Arc::new(Accept {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            main: Box::new(main),
            limits,
            open: AtomicUsize::new(0),
            max_connections: self.limits.max_connections,
        });
        let rotation = match &self.tls {
            Tls::SelfSigned { names, hash, every } => Some(tokio::spawn(rotate_self_signed(
                self.endpoint.clone(),
                names.clone(),
                hash.clone(),
                *every,
                self.limits.clone(),
                self.local_addr,
            ))),
            Tls::Custom => None,
        };
        loop {
            let incoming = tokio::select! {
                incoming = self.endpoint.accept() => incoming,
                () = stop.cancelled() => break,
            };
            tokio::spawn(accept.clone().connection(incoming, stop.clone()));
        }
        if let Some(rotation) = rotation {
            rotation.abort();
        }
        self.endpoint.close(VarInt::from_u32(0), b"server stopping");
    }
}

/// The current hash of a self-signed certificate (it changes when the certificate is replaced).
#[derive(Clone)]
pub struct CertificateHash(Arc<Mutex<[u8; 32]>>);

impl CertificateHash {
    pub fn now(&self) -> [u8; 32] {
        *crate::lock(&self.0)
    }
}

fn self_signed(names: &[String]) -> Result<(Identity, [u8; 32]), WebTransportError> {
    let failed = |reason: String| WebTransportError::Certificate { names: names.to_vec(), reason };
    let identity = Identity::self_signed_builder()
        .subject_alt_names(names)
        .from_now_utc()
        .validity_days(SELF_SIGNED_VALIDITY_DAYS)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let certificate = identity.certificate_chain().as_slice().first().ok_or_else(|| failed("no certificate".into()))?;
    Ok((identity.clone_identity(), *certificate.hash().as_ref()))
}

fn server_config(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    limits: &WebTransportLimits,
) -> Result<ServerConfig, WebTransportError> {
    if !tls.crypto_provider().cipher_suites.iter().any(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256) {
        return Err(WebTransportError::NoTls13);
    }
    let mut transport = TransportConfig::default();
    // One stream for the CONNECT itself, then one per session.
    transport.max_concurrent_bidi_streams(wtransport::quinn::VarInt::from_u32(
        limits.max_sessions_per_connection.saturating_add(1),
    ));
    transport.keep_alive_interval(Some(Duration::from_secs(15)));
    transport.max_idle_timeout(IdleTimeout::try_from(limits.idle_timeout).ok());
    Ok(ServerConfig::builder().with_bind_address(addr).with_custom_tls_and_transport(tls, transport).build())
}

/// Replaces a self-signed certificate before browsers stop accepting it; connections already
/// open keep theirs.
async fn rotate_self_signed(
    endpoint: Arc<Endpoint<Server>>,
    names: Vec<String>,
    hash: Arc<Mutex<[u8; 32]>>,
    every: Duration,
    limits: WebTransportLimits,
    addr: SocketAddr,
) {
    loop {
        tokio::time::sleep(every).await;
        let replaced = self_signed(&names).and_then(|(identity, new_hash)| {
            let tls = wtransport::tls::server::build_default_tls_config(identity);
            let config = server_config(addr, tls, &limits)?;
            endpoint.reload_config(config, false).map_err(|source| WebTransportError::Bind { addr, source })?;
            *crate::lock(&hash) = new_hash;
            Ok(())
        });
        if let Err(e) = replaced {
            tracing::warn!(error = %e, "could not replace the WebTransport certificate; trying again later");
        }
    }
}

type MainFactory = Box<dyn Fn(&Parts) -> Arc<dyn RpcTarget> + Send + Sync>;

struct Accept {
    paths: Vec<String>,
    main: MainFactory,
    limits: Limits,
    open: AtomicUsize,
    max_connections: usize,
}

/// Counts a connection as open while it lives.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Accept {
    async fn connection(self: Arc<Self>, incoming: IncomingSession, stop: CancellationToken) {
        // The QUIC handshake and the CONNECT, bounded: a peer that never asks for a session
        // must not hold a task for as long as keep-alives keep its connection up.
        let Ok(Ok(request)) = tokio::time::timeout(SESSION_REQUEST_TIMEOUT, incoming).await else { return };
        let already_open = self.open.fetch_add(1, Ordering::AcqRel);
        let _open = Open(&self.open);
        if already_open >= self.max_connections {
            request.too_many_requests().await;
            return;
        }
        let path = request.path().split('?').next().unwrap_or_default();
        if !self.paths.iter().any(|p| p == path) {
            request.not_found().await;
            return;
        }
        let head = request_head(request.path(), request.authority(), request.headers(), request.remote_address());
        let Ok(connection) = request.accept().await else { return };
        let sessions = CancellationToken::new();
        loop {
            let stream = tokio::select! {
                stream = connection.accept_bi() => stream,
                () = stop.cancelled() => break,
            };
            let Ok((send, recv)) = stream else { break };
            let main = (self.main)(&head);
            tokio::spawn(serve_stream(main, self.limits.clone(), send, recv, sessions.child_token()));
        }
        sessions.cancel();
        connection.close(VarInt::from_u32(0), b"");
    }
}

/// The `CONNECT` request as an HTTP request head, so one factory serves every transport. A
/// header that HTTP/1 could not carry is left out.
fn request_head(path: &str, authority: &str, headers: &HashMap<String, String>, peer: SocketAddr) -> Parts {
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.method = Method::CONNECT;
    parts.uri = path.parse().unwrap_or_default();
    if let Ok(host) = HeaderValue::from_str(authority) {
        parts.headers.insert(header::HOST, host);
    }
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            parts.headers.append(name, value);
        }
    }
    // A dual-stack socket reports IPv4 peers as IPv6-mapped addresses.
    parts.extensions.insert(ConnectInfo(SocketAddr::new(peer.ip().to_canonical(), peer.port())));
    parts
}

async fn serve_stream(
    main: Arc<dyn RpcTarget>,
    limits: Limits,
    send: SendStream,
    recv: RecvStream,
    stop: CancellationToken,
) {
    let max = limits.max_message_bytes;
    let (session, outbox) = Session::new(Capability::Local(main), TransportKind::WebTransport, limits);
    let served = pump(&session, outbox, lines_to(send), lines_from(recv, max));
    tokio::select! {
        () = served => {}
        () = stop.cancelled() => session.close("connection closed"),
    }
}

/// A client configuration that accepts the server's certificate by its SHA-256 alone (a
/// self-signed one, as browsers do with `serverCertificateHashes`).
pub fn pinned_client_config(hashes: &[[u8; 32]]) -> wtransport::ClientConfig {
    wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes(hashes.iter().map(|h| wtransport::tls::Sha256Digest::new(*h)))
        .build()
}

/// Each outgoing message as one `\n`-terminated line; the end of the session finishes the stream.
pub(crate) fn lines_to(send: SendStream) -> impl Sink<Outgoing> + Unpin {
    Box::pin(futures::sink::unfold(send, |mut send, out: Outgoing| async move {
        match out {
            Outgoing::Message(text) => {
                let mut line = text.into_bytes();
                line.push(b'\n');
                send.write_all(&line).await?;
            }
            Outgoing::Close { .. } => send.finish().await?,
        }
        Ok::<_, wtransport::error::StreamWriteError>(send)
    }))
}

/// The stream's bytes as frames of whole lines (several at once when they came together); a
/// line longer than `max` bytes ends the session with the limit's own error. Each byte is looked
/// at once: a long line arrives in many small chunks.
pub(crate) fn lines_from(recv: RecvStream, max: usize) -> impl Stream<Item = Frame> + Unpin {
    Box::pin(futures::stream::unfold(Some((recv, BytesMut::new())), move |state| async move {
        let (mut recv, mut pending) = state?;
        loop {
            if pending.len() > max {
                let too_large = ProtocolError::TooLarge { what: "message size in bytes", limit: max };
                return Some((Frame::Refused(too_large), None));
            }
            match recv.quic_stream_mut().read_chunk(64 * 1024, true).await {
                Ok(Some(chunk)) => {
                    let complete = chunk.bytes.iter().rposition(|&b| b == b'\n').map(|at| pending.len() + at + 1);
                    pending.extend_from_slice(&chunk.bytes);
                    if let Some(end) = complete {
                        let lines: Bytes = pending.split_to(end).freeze();
                        return Some((Frame::Data(lines), Some((recv, pending))));
                    }
                }
                // The peer finished its side: a last line without its newline still counts.
                Ok(None) if !pending.is_empty() => {
                    return Some((Frame::Data(pending.split().freeze()), None));
                }
                Ok(None) => return Some((Frame::Closed, None)),
                Err(e) => return Some((Frame::Failed(e.to_string()), None)),
            }
        }
    }))
}
