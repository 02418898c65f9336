//! Serving sessions over HTTP with axum: `POST` batches and WebSocket connections.
//!
//! | path | method | transport |
//! |---|---|---|
//! | `/rpc/batch` | POST | HTTP batch (PyPI `py-capnweb`, the Python fork's services) |
//! | `/rpc/ws` | GET + Upgrade | WebSocket (the Python fork's `client.py`) |
//! | `/api` | POST or GET + Upgrade | both (the TypeScript client's conventional path) |
//!
//! Each request (batch) or connection (WebSocket) gets a fresh session and a fresh main object
//! from the factory, so capabilities of one connection mean nothing on another. The factory
//! sees the head of the HTTP request that opened the session (headers, and the peer address
//! when the server records `ConnectInfo`), so a server can tell who is calling — to rate-limit
//! sign-ins, say.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Sink, SinkExt as _, Stream, StreamExt as _};

use crate::capability::{Capability, RpcTarget, TransportKind};
use crate::error::RpcError;
use crate::limits::Limits;
use crate::message::split_lines;
use crate::session::{Outgoing, Session};

/// Builds the factory-per-session router. `main` is called once per batch request and once per
/// WebSocket connection, with the head of that HTTP request.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use capnweb::{Limits, RpcTarget};
/// # fn make_gateway(_request: &axum::http::request::Parts) -> Arc<dyn RpcTarget> { unimplemented!() }
/// # async fn serve() -> std::io::Result<()> {
/// let app = capnweb::routes(make_gateway, Limits::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn routes<F>(main: F, limits: Limits) -> Router
where
    F: Fn(&Parts) -> Arc<dyn RpcTarget> + Send + Sync + 'static,
{
    routes_on(&["/api"], main, limits)
}

/// Like [`routes`] but only on `/rpc/batch` and `/rpc/ws`, for a server whose `/api` is
/// something else (the ordermesh gateway's REST API).
pub fn rpc_routes<F>(main: F, limits: Limits) -> Router
where
    F: Fn(&Parts) -> Arc<dyn RpcTarget> + Send + Sync + 'static,
{
    routes_on(&[], main, limits)
}

/// `/rpc/batch` and `/rpc/ws`, and each of `shared_paths` answering both (`GET` with Upgrade
/// for WebSocket, `POST` for a batch), as the reference server does on whatever path it is
/// mounted (the interop target serves `/`).
pub fn routes_on<F>(shared_paths: &[&str], main: F, limits: Limits) -> Router
where
    F: Fn(&Parts) -> Arc<dyn RpcTarget> + Send + Sync + 'static,
{
    let body_limit = limits.max_body_bytes;
    let endpoint = Arc::new(Endpoint { main: Box::new(main), limits });
    let mut router = Router::new().route("/rpc/batch", post(batch)).route("/rpc/ws", get(websocket));
    for path in shared_paths {
        router = router.route(path, get(websocket).post(batch));
    }
    router.layer(DefaultBodyLimit::max(body_limit)).with_state(endpoint)
}

type MainFactory = Box<dyn Fn(&Parts) -> Arc<dyn RpcTarget> + Send + Sync>;

struct Endpoint {
    main: MainFactory,
    limits: Limits,
}

async fn batch(State(endpoint): State<Arc<Endpoint>>, request: Parts, body: Bytes) -> Response {
    let limits = &endpoint.limits;
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "request body is not valid UTF-8").into_response();
    };
    let lines: Vec<&str> = split_lines(text).collect();
    if lines.len() > limits.max_batch_messages {
        let text = format!("a batch may hold at most {} messages", limits.max_batch_messages);
        return (StatusCode::BAD_REQUEST, text).into_response();
    }
    let (session, mut outbox) =
        Session::new(Capability::Local((endpoint.main)(&request)), TransportKind::HttpBatch, limits.clone());
    for line in lines {
        if session.is_closed() {
            break;
        }
        session.receive_frame(line.as_bytes());
    }
    if tokio::time::timeout(limits.batch_timeout, session.drained()).await.is_err() {
        session.abort(&RpcError::canceled("the batch did not finish in time"));
    }
    session.close("batch answered");
    let mut messages = Vec::new();
    while let Some(out) = outbox.try_next() {
        if let Outgoing::Message(text) = out {
            messages.push(text);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], messages.join("\n")).into_response()
}

async fn websocket(State(endpoint): State<Arc<Endpoint>>, request: Parts, upgrade: WebSocketUpgrade) -> Response {
    let limits = endpoint.limits.clone();
    let main = (endpoint.main)(&request);
    upgrade
        // tungstenite zero-fills the free part of its read buffer, up to this size, before
        // every read: at the 128 KiB default that was 5% of a small call's instructions.
        // RPC messages are small; a larger one still grows the buffer as it needs.
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(limits.max_frame_bytes())
        .max_frame_size(limits.max_frame_bytes())
        .on_upgrade(move |socket| serve_websocket(socket, main, limits))
}

async fn serve_websocket(socket: WebSocket, main: Arc<dyn RpcTarget>, limits: Limits) {
    let (session, outbox) = Session::new(Capability::Local(main), TransportKind::WebSocket, limits);
    let (sink, stream) = socket.split();
    let sink = sink.with(|out: Outgoing| {
        futures::future::ready(Ok::<_, axum::Error>(match out {
            Outgoing::Message(text) => WsMessage::Text(text.into()),
            Outgoing::Close { reason, aborted } => {
                WsMessage::Close(Some(CloseFrame { code: close_code(aborted), reason: close_reason(&reason).into() }))
            }
        }))
    });
    let stream = stream.map(|frame| match frame {
        Ok(WsMessage::Text(text)) => Frame::Data(text.into()),
        Ok(WsMessage::Binary(data)) => Frame::Data(data),
        Ok(WsMessage::Close(_)) => Frame::Closed,
        // A frame over the layer's own limit, or broken framing: the session ends saying so.
        Err(e) => Frame::Failed(e.to_string()),
        Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => Frame::Ignored,
    });
    pump(&session, outbox, sink, stream).await;
}

/// How much a WebSocket read asks the socket for at a time.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A frame read from a socket, transport-neutral.
pub(crate) enum Frame {
    Data(Bytes),
    Closed,
    /// The connection failed to deliver a frame (too large, malformed): the peer is told why.
    Failed(String),
    /// The peer broke a protocol limit before a whole message arrived (a line too long).
    Refused(crate::error::ProtocolError),
    Ignored,
}

/// 3000 is what the TypeScript implementation uses when a session ends on an error.
pub(crate) fn close_code(aborted: bool) -> u16 {
    if aborted { 3000 } else { 1000 }
}

/// Close reasons are limited to 123 bytes by the WebSocket protocol.
pub(crate) fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// Moves messages between a socket and a session until either side ends.
pub(crate) async fn pump<Si, St>(session: &Session, mut outbox: crate::session::Outbox, mut sink: Si, mut stream: St)
where
    Si: Sink<Outgoing> + Unpin,
    St: Stream<Item = Frame> + Unpin,
{
    let reader = async {
        loop {
            session.writable().await;
            match stream.next().await {
                Some(Frame::Data(data)) => session.receive_frame(&data),
                Some(Frame::Ignored) => {}
                Some(Frame::Failed(reason)) => {
                    session.abort(&crate::RpcError::bad_request(format!("the connection failed: {reason}")));
                    break;
                }
                Some(Frame::Refused(error)) => {
                    session.abort_protocol(error);
                    break;
                }
                Some(Frame::Closed) | None => break,
            }
            if session.is_closed() {
                break;
            }
        }
        session.close("connection closed");
    };
    let writer = async {
        'outer: while let Some(first) = outbox.next().await {
            let mut next = Some(first);
            // Send everything already queued, then flush once.
            while let Some(out) = next {
                let closing = matches!(out, Outgoing::Close { .. });
                if sink.feed(out).await.is_err() {
                    break 'outer;
                }
                if closing {
                    let _ = sink.flush().await;
                    break 'outer;
                }
                next = outbox.try_next();
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        _ = &mut reader => {
            // Let the writer deliver the close frame (and an abort before it), briefly.
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut writer).await;
        }
        _ = &mut writer => {}
    }
    session.close("connection closed");
}
