//! Pipes: how a `ReadableStream` crosses the connection. The sender opens a pipe on the
//! receiver (`["pipe"]`), names its read end in a message (`["readable", id]`), and writes the
//! chunks into its write end with `stream` calls (`write`, then `close` or `abort`).

use std::sync::{Arc, Mutex};
use std::task::{Poll, ready};

use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt as _};
use tokio::sync::mpsc;

use crate::capability::{CallContext, Capability, RemoteCapability, RpcResult, RpcTarget};
use crate::error::RpcError;
use crate::lock;
use crate::value::{Chunks, ReadableStream, Value};

/// Chunks a pipe we receive holds before a `write` waits for the reader (back-pressure: the
/// writer's `stream` calls are answered only as the reader makes room).
const PIPE_BUFFER: usize = 16;

/// Writes we send into a peer's pipe without waiting for their answers. The reference's client
/// adapts its window to the connection; a fixed one keeps a slow reader from queueing more
/// than this much of our memory in its socket.
const WRITES_IN_FLIGHT: usize = 8;

/// The write end of a pipe the peer opened on us, served as the pipe's export.
struct PipeWriter {
    chunks: Mutex<Option<mpsc::Sender<Value>>>,
    ending: Arc<Mutex<Option<Ending>>>,
}

/// How the writer finished, for the reader to learn once it has read every chunk: the channel
/// alone cannot say whether its end was a `close` or a writer that went away.
type Ending = Result<(), RpcError>;

fn went_away() -> RpcError {
    RpcError::canceled("the stream's writer went away without closing it")
}

/// Opens a pipe: its write end, to export, and its read end, for the `["readable"]` that
/// follows.
pub(super) fn open() -> (Capability, ReadableStream) {
    let (tx, mut rx) = mpsc::channel(PIPE_BUFFER);
    let ending = Arc::new(Mutex::new(None));
    let writer = PipeWriter { chunks: Mutex::new(Some(tx)), ending: ending.clone() };
    let mut over = false;
    let readable = ReadableStream::new(futures::stream::poll_fn(move |cx| {
        if over {
            return Poll::Ready(None);
        }
        let Some(chunk) = ready!(rx.poll_recv(cx)) else {
            // Every sender is gone, and the ending was set before the last one went.
            over = true;
            return Poll::Ready(match lock(&ending).take() {
                Some(Ok(())) => None,
                Some(Err(error)) => Some(Err(error)),
                None => Some(Err(went_away())),
            });
        };
        Poll::Ready(Some(Ok(chunk)))
    }));
    (Capability::local(Arc::new(writer)), readable)
}

impl PipeWriter {
    fn sender(&self) -> Option<mpsc::Sender<Value>> {
        lock(&self.chunks).clone()
    }

    /// Records how the stream ended (the first word counts), then lets the channel close once
    /// the writes still waiting for room are in.
    fn finish(&self, ending: Ending) {
        lock(&self.ending).get_or_insert(ending);
        lock(&self.chunks).take();
    }
}

impl RpcTarget for PipeWriter {
    fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(async move {
            match method {
                "write" => {
                    let chunk = args.into_iter().next().unwrap_or_default();
                    let sender = self.sender().ok_or_else(|| RpcError::new("TypeError", "the stream is closed"))?;
                    sender
                        .send(chunk)
                        .await
                        .map_err(|_| RpcError::canceled("the reader stopped reading the stream"))?;
                    Ok(Value::Undefined)
                }
                "close" => {
                    self.finish(Ok(()));
                    Ok(Value::Undefined)
                }
                "abort" => {
                    let reason = match args.into_iter().next() {
                        Some(Value::Error(err)) => err,
                        Some(other) => RpcError::new("Error", other.to_string()),
                        None => RpcError::new("Error", "the stream was aborted"),
                    };
                    self.finish(Err(reason));
                    Ok(Value::Undefined)
                }
                other => Err(RpcError::new("TypeError", format!("Unknown WritableStream method: {other}"))),
            }
        })
    }
}

impl Drop for PipeWriter {
    /// Released without `close`: the writer went away (a dropped connection, say), and the
    /// reader must learn that the stream is incomplete, even with every chunk read.
    fn drop(&mut self) {
        self.finish(Err(went_away()));
    }
}

/// Writes `chunks` into the peer's pipe `target`, a few writes in flight, then closes it (or
/// aborts it with the stream's error). Stops early when a write fails: the peer's reader is
/// gone. Dropping `target` at the end releases the pipe.
pub(super) async fn pump(target: RemoteCapability, mut chunks: Chunks) {
    let mut in_flight: FuturesOrdered<BoxFuture<'static, RpcResult>> = FuturesOrdered::new();
    // Some(None): the stream ended; Some(Some(error)): it failed.
    let mut ended: Option<Option<RpcError>> = None;
    loop {
        tokio::select! {
            // Answers first: polling the writes is also what sends the newest one, in order.
            biased;
            Some(written) = in_flight.next(), if !in_flight.is_empty() => {
                if written.is_err() {
                    return;
                }
            }
            next = chunks.next(), if ended.is_none() && in_flight.len() < WRITES_IN_FLIGHT => match next {
                Some(Ok(chunk)) => {
                    let target = target.clone();
                    in_flight.push_back(Box::pin(async move { target.invoke_streaming("write", vec![chunk]).await }));
                }
                Some(Err(error)) => ended = Some(Some(error)),
                None => ended = Some(None),
            },
            else => break,
        }
    }
    let _ = match ended.flatten() {
        None => target.invoke_streaming("close", Vec::new()).await,
        Some(error) => target.invoke_streaming("abort", vec![Value::Error(error)]).await,
    };
}
