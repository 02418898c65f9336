//! Streams: `ReadableStream` and `WritableStream` values, which the protocol carries over pipes
//! (`["pipe"]`, `["readable", id]`) and writable exports (`["writable", -n]`), chunk by chunk
//! with `["stream", …]` writes.

use std::fmt;
use std::sync::{Arc, Mutex};

use futures::stream::{BoxStream, Stream, StreamExt as _};

use super::Value;
use crate::capability::{RemoteCapability, RpcResult};
use crate::error::RpcError;

/// What a readable stream yields: chunks, and at most one error that ends it.
pub type Chunks = BoxStream<'static, RpcResult>;

/// A stream of values, read once. Made here from any `Stream` — put it in a result and the peer
/// gets a `ReadableStream` it reads as the chunks are produced, with back-pressure (a few
/// writes in flight at most) — or received from the peer, when [`ReadableStream::take`] gives
/// the chunks as they arrive. An `Err` chunk ends the stream with that error (the writer
/// aborted, or went away without closing).
#[derive(Clone)]
pub struct ReadableStream(Arc<Mutex<Option<Chunks>>>);

impl ReadableStream {
    pub fn new(chunks: impl Stream<Item = RpcResult> + Send + 'static) -> Self {
        ReadableStream(Arc::new(Mutex::new(Some(chunks.boxed()))))
    }

    /// The chunks, for the first caller; `None` once taken (a stream is read once).
    pub fn take(&self) -> Option<Chunks> {
        crate::lock(&self.0).take()
    }

    /// Reads the whole stream (for streams known to be small).
    pub async fn collect(&self) -> Result<Vec<Value>, RpcError> {
        let mut chunks = self.take().ok_or_else(already_read)?;
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            out.push(chunk?);
        }
        Ok(out)
    }
}

pub(crate) fn already_read() -> RpcError {
    RpcError::new("TypeError", "this ReadableStream has been read already")
}

impl fmt::Debug for ReadableStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadableStream")
    }
}

/// A peer's `WritableStream` (`["writable", -n]`). Writes go out in order as `stream` messages;
/// `close` resolves once every write before it succeeded. Dropping the last handle without
/// `close` releases the export, which aborts the stream on the peer's side.
#[derive(Clone)]
pub struct WritableStream {
    pub(crate) target: RemoteCapability,
}

impl WritableStream {
    pub async fn write(&self, chunk: Value) -> Result<(), RpcError> {
        self.target.invoke_streaming("write", vec![chunk]).await.map(drop)
    }

    pub async fn close(&self) -> Result<(), RpcError> {
        self.target.invoke_streaming("close", Vec::new()).await.map(drop)
    }

    pub async fn abort(&self, reason: RpcError) -> Result<(), RpcError> {
        self.target.invoke_streaming("abort", vec![Value::Error(reason)]).await.map(drop)
    }
}

impl fmt::Debug for WritableStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WritableStream({})", self.target.peer_export_id())
    }
}
