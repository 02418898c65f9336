//! Demo server for interop testing: the seed gateway's API with in-memory toy data.
//!
//! Usage: `demo_server [PORT]` (or `CAPNWEB_DEMO_PORT`; default 8080; 0 picks a free port).
//! Listens on 127.0.0.1 and prints `listening on http://127.0.0.1:<port>` once ready.
//! Serves WebSocket on `/rpc/ws` and `/api`, HTTP batches on `/rpc/batch` and `/api`.

#[path = "demo/gateway.rs"]
mod gateway;
#[path = "demo/serve.rs"]
mod serve;

use std::sync::Arc;

use capnweb::{Limits, RpcTarget};
use gateway::{DemoData, Gateway};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CAPNWEB_DEMO_PORT").ok())
        .map(|p| p.parse().expect("port must be a number"))
        .unwrap_or(8080);
    let data = Arc::new(DemoData::default());
    let app = capnweb::routes(move |_| Arc::new(Gateway::new(data.clone())) as Arc<dyn RpcTarget>, Limits::default());
    serve::serve_on_loopback(port, app).await
}
