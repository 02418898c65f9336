//! A Rust implementation of [Cap'n Web](https://github.com/cloudflare/capnweb), the
//! object-capability RPC protocol: JSON messages over WebSocket or HTTP batches, with promise
//! pipelining and capabilities passed in both directions.
//!
//! * [`value`]: the [`Value`] model and its wire codec.
//! * [`message`]: the top-level messages (`push`, `pull`, `resolve`, `reject`, `release`, `abort`).
//! * [`session`]: the per-connection state machine (export/import tables, pipelining, calls
//!   into the peer, releases, limits).
//! * [`transport`]: axum routes serving sessions ([`routes`]).
//! * [`webtransport`]: sessions over WebTransport (HTTP/3), one per bidirectional stream.
//! * [`client`]: a WebSocket client session and HTTP batches, for tests and load generation.
//!
//! Serving an object:
//!
//! ```no_run
//! use std::sync::Arc;
//! use capnweb::{CallContext, Limits, RpcError, RpcTarget, Value};
//! use futures::future::BoxFuture;
//!
//! struct Hello;
//!
//! impl RpcTarget for Hello {
//!     fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, _ctx: &'a CallContext)
//!         -> BoxFuture<'a, Result<Value, RpcError>> {
//!         Box::pin(async move {
//!             match method {
//!                 "hello" => Ok(format!("Hello, {}!", args.first().and_then(Value::as_str).unwrap_or("world")).into()),
//!                 _ => Err(RpcError::method_not_found(method)),
//!             }
//!         })
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = capnweb::routes(|_| Arc::new(Hello) as Arc<dyn RpcTarget>, Limits::default());
//! axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8080").await?, app).await
//! # }
//! ```

pub mod capability;
pub mod client;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod message;
pub mod session;
pub mod transport;
pub mod value;
pub mod webtransport;

/// Locks `mutex` even if a panic poisoned it: a panicking method must cost its own call, not
/// every later user of the tables and streams it touched.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub use capability::{AsAny, CallContext, Capability, RemoteCapability, RpcResult, RpcTarget, TransportKind};
pub use error::{ProtocolError, RpcError, kinds};
pub use limits::Limits;
pub use message::Message;
pub use session::{Outbox, Outgoing, Session, SessionStats};
pub use transport::{routes, routes_on, rpc_routes};
pub use value::{Chunks, PathKey, Pending, ReadableStream, Value, WritableStream};
