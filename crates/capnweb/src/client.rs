//! A small client: a WebSocket or WebTransport session whose peer main object you call
//! through a [`Capability`], and raw HTTP batches. Enough for tests, benchmarks and load generation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use capnweb::{Value, client};
//! let conn = client::connect("ws://127.0.0.1:8080/rpc/ws").await?;
//! let login = conn.main().call("login", vec!["bob".into(), "bob123".into()]).await?;
//! println!("token = {}", login.get("token").and_then(Value::as_str).unwrap_or_default());
//! conn.close().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Sink, SinkExt as _, Stream, StreamExt as _};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::capability::{CallContext, Capability, RpcResult, RpcTarget, TransportKind};
use crate::error::{ProtocolError, RpcError};
use crate::limits::Limits;
use crate::message::Message;
use crate::session::{Outgoing, Session, SessionStats};
use crate::transport::{Frame, close_code, close_reason, pump};
use crate::value::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("WebTransport: {0}")]
    WebTransport(String),
}

/// An open WebSocket session. Dropping it closes the connection.
pub struct Connection {
    session: Arc<Session>,
    pump: Option<JoinHandle<()>>,
}

/// Opens a WebSocket session; our side exposes no objects of its own.
pub async fn connect(url: &str) -> Result<Connection, ClientError> {
    connect_with(url, Arc::new(NoMain), Limits::default()).await
}

/// Opens a WebSocket session exposing `local_main` as our export 0 (the server can reach it
/// with `CallContext::peer_main`).
pub async fn connect_with(
    url: &str,
    local_main: Arc<dyn RpcTarget>,
    limits: Limits,
) -> Result<Connection, ClientError> {
    // Nagle's algorithm would hold the `pull` that follows each `push` for a delayed ACK.
    let (socket, _response) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let (sink, stream) = socket.split();
    let sink = sink.with(|out: Outgoing| {
        futures::future::ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(match out {
            Outgoing::Message(text) => WsMessage::Text(text.into()),
            Outgoing::Close { reason, aborted } => WsMessage::Close(Some(CloseFrame {
                code: close_code(aborted).into(),
                reason: close_reason(&reason).into(),
            })),
        }))
    });
    let stream = stream.map(|frame| match frame {
        Ok(WsMessage::Text(text)) => Frame::Data(text.into()),
        Ok(WsMessage::Binary(data)) => Frame::Data(data),
        Ok(WsMessage::Close(_)) | Err(_) => Frame::Closed,
        Ok(_) => Frame::Ignored,
    });
    Ok(Connection::run(local_main, TransportKind::WebSocket, limits, sink, stream, ()))
}

/// Opens a session over WebTransport (`https://…/rpc/wt`): a QUIC connection of its own and
/// one bidirectional stream on it. `config` says which certificates to accept (e.g.
/// [`crate::webtransport::pinned_client_config`]).
pub async fn connect_webtransport(url: &str, config: wtransport::ClientConfig) -> Result<Connection, ClientError> {
    let failed = |e: &dyn std::fmt::Display| ClientError::WebTransport(e.to_string());
    let endpoint = wtransport::Endpoint::client(config).map_err(|e| failed(&e))?;
    let connection = endpoint.connect(url).await.map_err(|e| failed(&e))?;
    let opening = connection.open_bi().await.map_err(|e| failed(&e))?;
    let (send, recv) = opening.await.map_err(|e| failed(&e))?;
    let limits = Limits::default();
    let (sink, stream) =
        (crate::webtransport::lines_to(send), crate::webtransport::lines_from(recv, limits.max_message_bytes));
    // The QUIC connection lives as long as its one session.
    Ok(Connection::run(Arc::new(NoMain), TransportKind::WebTransport, limits, sink, stream, (connection, endpoint)))
}

impl Connection {
    /// A session moving messages over `sink` and `stream` until either ends; `holding` (what
    /// the transport needs kept open) is dropped with it.
    fn run<Si, St>(
        local_main: Arc<dyn RpcTarget>,
        kind: TransportKind,
        limits: Limits,
        sink: Si,
        stream: St,
        holding: impl Send + 'static,
    ) -> Connection
    where
        Si: Sink<Outgoing> + Unpin + Send + 'static,
        St: Stream<Item = Frame> + Unpin + Send + 'static,
    {
        let (session, outbox) = Session::new(Capability::Local(local_main), kind, limits);
        let session = Arc::new(session);
        let pumped = session.clone();
        let pump = tokio::spawn(async move {
            pump(&pumped, outbox, sink, stream).await;
            drop(holding);
        });
        Connection { session, pump: Some(pump) }
    }

    /// The server's main object.
    pub fn main(&self) -> Capability {
        self.session.peer_main()
    }

    pub fn stats(&self) -> SessionStats {
        self.session.stats()
    }

    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Closes the connection and waits until the close frame is out.
    pub async fn close(mut self) {
        self.session.close("client closed the session");
        if let Some(pump) = self.pump.take() {
            let _ = pump.await;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The pump notices the closed session and finishes on its own.
        self.session.close("client dropped the session");
    }
}

/// Our main object when we expose none.
struct NoMain;

impl RpcTarget for NoMain {
    fn call<'a>(&'a self, method: &'a str, _args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(async move { Err(RpcError::method_not_found(method)) })
    }
}

/// Sends HTTP batches to one URL, reusing connections.
#[derive(Clone)]
pub struct BatchClient {
    http: reqwest::Client,
    url: String,
}

impl BatchClient {
    pub fn new(url: impl Into<String>) -> Self {
        BatchClient { http: reqwest::Client::new(), url: url.into() }
    }

    /// Posts the messages as one batch (`\n`-joined) and returns the response's messages.
    pub async fn send(&self, messages: &[Message]) -> Result<Vec<Message>, ClientError> {
        let body = messages.iter().map(Message::to_text).collect::<Vec<_>>().join("\n");
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            return Err(ClientError::Status { status: status.as_u16(), body: text });
        }
        Ok(Message::parse_frame(text.as_bytes(), &Limits::default())?)
    }
}

/// One-off batch: `BatchClient::new(url).send(messages)`.
pub async fn http_batch(url: &str, messages: &[Message]) -> Result<Vec<Message>, ClientError> {
    BatchClient::new(url).send(messages).await
}
