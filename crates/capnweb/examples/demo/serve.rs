//! How both example servers listen: on 127.0.0.1 at `port` (0 picks a free one), announcing
//! `listening on http://127.0.0.1:<port>` once ready (the interop scripts wait for that line).

use std::io::Write as _;

use axum::serve::ListenerExt as _;

pub async fn serve_on_loopback(port: u16, app: axum::Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // Small RPC frames must not wait for delayed ACKs (Nagle's algorithm).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
