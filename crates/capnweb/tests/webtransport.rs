//! Sessions over WebTransport (HTTP/3 over QUIC) on 127.0.0.1, driven by a real WebTransport
//! client (the `wtransport` client endpoint) pinning the server's self-signed certificate by
//! its hash, as a browser's `serverCertificateHashes` does.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use capnweb::Limits;
use capnweb::webtransport::{WebTransportLimits, WebTransportServer, WebTransportTls};
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};

struct Served {
    addr: SocketAddr,
    hash: [u8; 32],
    _stop: tokio_util::sync::DropGuard,
}

async fn serve(limits: Limits, quic: WebTransportLimits) -> Served {
    let server = WebTransportServer::bind(
        ([127, 0, 0, 1], 0).into(),
        WebTransportTls::SelfSigned { names: vec!["localhost".into(), "127.0.0.1".into()] },
        quic,
    )
    .unwrap();
    let addr = server.local_addr();
    let hash = server.certificate_hash().expect("self-signed").now();
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(&["/rpc/wt"], |_| common::gateway(), limits, stop.clone()));
    Served { addr, hash, _stop: stop.drop_guard() }
}

async fn connect(served: &Served, path: &str) -> Result<Connection, wtransport::error::ConnectingError> {
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([Sha256Digest::new(served.hash)])
        .build();
    let endpoint = Endpoint::client(config).unwrap();
    endpoint.connect(format!("https://127.0.0.1:{}{path}", served.addr.port())).await
}

/// One Cap'n Web session: a bidirectional stream of `\n`-terminated JSON messages.
struct Lines {
    send: SendStream,
    recv: RecvStream,
    pending: Vec<u8>,
}

impl Lines {
    async fn open(connection: &Connection) -> Lines {
        let (send, recv) = connection.open_bi().await.unwrap().await.unwrap();
        Lines { send, recv, pending: Vec::new() }
    }

    async fn send(&mut self, messages: &[Json]) {
        let mut text = String::new();
        for message in messages {
            text.push_str(&message.to_string());
            text.push('\n');
        }
        self.send.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next message, or `None` once the server finished the stream.
    async fn next(&mut self) -> Option<Json> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(serde_json::from_slice(&line[..end]).unwrap());
            }
            let mut buf = [0u8; 4096];
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.recv.read(&mut buf)).await.expect("an answer");
            match read.unwrap() {
                Some(n) => self.pending.extend_from_slice(&buf[..n]),
                None => return None,
            }
        }
    }
}

#[tokio::test]
async fn calls_pipelining_and_capabilities_over_one_stream() {
    let served = serve(Limits::default(), WebTransportLimits::default()).await;
    let connection = connect(&served, "/rpc/wt").await.unwrap();
    let mut session = Lines::open(&connection).await;
    session
        .send(&[
            json!(["push", ["pipeline", 0, ["login"], ["bob", "bob123"]]]),
            // Pipelined on the login's answer before it arrives.
            json!(["push", ["pipeline", 0, ["getUserByToken"], [["pipeline", 1, ["token"]]]]]),
            json!(["push", ["pipeline", 2, ["getId"], []]]),
            json!(["pull", 3]),
        ])
        .await;
    assert_eq!(session.next().await, Some(json!(["resolve", 3, "user2"])));
    session.send(&[json!(["push", ["pipeline", 0, ["nope"], []]]), json!(["pull", 4])]).await;
    let rejected = session.next().await.unwrap();
    assert_eq!(rejected[0], "reject");
    assert_eq!(rejected, json!(["reject", 4, ["error", "not_found", "Method 'nope' not found"]]));
}

#[tokio::test]
async fn each_stream_is_a_session_of_its_own() {
    let served = serve(Limits::default(), WebTransportLimits::default()).await;
    let connection = connect(&served, "/rpc/wt").await.unwrap();
    let mut first = Lines::open(&connection).await;
    let mut second = Lines::open(&connection).await;
    first.send(&[json!(["push", ["pipeline", 0, ["ping"], []]])]).await;
    // Import 1 on the second stream is that stream's own first call, not the first stream's.
    second.send(&[json!(["pull", 1])]).await;
    assert_eq!(second.next().await, Some(json!(["reject", 1, ["error", "not_found", "no such export: 1"]])));
    first.send(&[json!(["pull", 1])]).await;
    assert_eq!(first.next().await, Some(json!(["resolve", 1, "pong"])));
}

#[tokio::test]
async fn an_over_size_message_ends_the_session_with_an_abort_naming_the_limit() {
    let limits = Limits { max_message_bytes: 1024, ..Limits::default() };
    let served = serve(limits, WebTransportLimits::default()).await;
    let connection = connect(&served, "/rpc/wt").await.unwrap();
    let mut session = Lines::open(&connection).await;
    session.send(&[json!(["push", ["pipeline", 0, ["ping"], []]]), json!(["pull", 1])]).await;
    assert_eq!(session.next().await, Some(json!(["resolve", 1, "pong"])));
    // No newline yet, and already over the limit: the server does not wait for the rest.
    let big = format!(r#"["push",["pipeline",0,["echo"],["{}"#, "x".repeat(4096));
    session.send.write_all(big.as_bytes()).await.unwrap();
    let aborted = session.next().await.unwrap();
    assert_eq!(aborted[0], "abort");
    let message = aborted[1][2].as_str().unwrap();
    assert!(message.contains("1024"), "{message}");
    assert_eq!(session.next().await, None, "the stream ends after the abort");
}

#[tokio::test]
async fn other_paths_and_surplus_connections_are_refused() {
    use wtransport::error::ConnectingError;
    let quic = WebTransportLimits { max_connections: 1, ..WebTransportLimits::default() };
    let served = serve(Limits::default(), quic).await;
    // The client is told "rejected" (404 and 429 on the wire) and nothing more.
    let refused = connect(&served, "/elsewhere").await.map(|_| ()).unwrap_err();
    assert!(matches!(refused, ConnectingError::SessionRejected), "{refused:?}");
    let first = connect(&served, "/rpc/wt").await.unwrap();
    let refused = connect(&served, "/rpc/wt").await.map(|_| ()).unwrap_err();
    assert!(matches!(refused, ConnectingError::SessionRejected), "{refused:?}");
    // Its place is free again once it is gone.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while connect(&served, "/rpc/wt").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the closed connection's place was not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_certificate_of_another_hash_is_not_accepted() {
    let mut served = serve(Limits::default(), WebTransportLimits::default()).await;
    served.hash[0] ^= 0xff;
    assert!(connect(&served, "/rpc/wt").await.is_err());
}

#[tokio::test]
async fn the_crates_own_client_passes_capabilities_both_ways() {
    let served = serve(Limits::default(), WebTransportLimits::default()).await;
    let url = format!("https://127.0.0.1:{}/rpc/wt", served.addr.port());
    let config = capnweb::webtransport::pinned_client_config(&[served.hash]);
    let conn = capnweb::client::connect_webtransport(&url, config).await.unwrap();
    let api = conn.main();
    let login = api.call("login", vec!["bob".into(), "bob123".into()]).await.unwrap();
    let user = api.call("getUserByToken", vec![login.get("token").cloned().unwrap()]).await.unwrap();
    let user = user.as_capability().unwrap().clone();
    assert!(user.is_remote());
    assert_eq!(user.call("getId", vec![]).await, Ok("user2".into()));
    // The server's own capability handed back to it.
    let items = capnweb::Value::Array(vec![capnweb::Value::object([
        ("name", "Mouse".into()),
        ("price", 29.99.into()),
        ("quantity", 2.into()),
    ])]);
    let order = api.call("createOrder", vec![user.clone().into(), items]).await.unwrap();
    assert_eq!(order.get("total"), Some(&capnweb::Value::Float(59.98)));
    conn.close().await;
}

#[tokio::test]
async fn a_self_signed_certificate_is_replaced_and_the_new_hash_is_served() {
    let server = WebTransportServer::bind(
        ([127, 0, 0, 1], 0).into(),
        WebTransportTls::SelfSigned { names: vec!["127.0.0.1".into()] },
        WebTransportLimits::default(),
    )
    .unwrap()
    .rotating_every(Duration::from_secs(1));
    let addr = server.local_addr();
    let hash = server.certificate_hash().unwrap();
    let first = hash.now();
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(&["/rpc/wt"], |_| common::gateway(), Limits::default(), stop.clone()));
    let _stop = stop.drop_guard();
    let before = Served { addr, hash: first, _stop: CancellationToken::new().drop_guard() };
    let open = connect(&before, "/rpc/wt").await.expect("the first certificate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hash.now() == first {
        assert!(tokio::time::Instant::now() < deadline, "the certificate was not replaced");
        // Looked at often, so the new one is used well before it is replaced in turn.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = Served { addr, hash: hash.now(), _stop: CancellationToken::new().drop_guard() };
    let renewed = connect(&after, "/rpc/wt").await.expect("the new certificate");
    let mut session = Lines::open(&renewed).await;
    session.send(&[json!(["push", ["pipeline", 0, ["ping"], []]]), json!(["pull", 1])]).await;
    assert_eq!(session.next().await, Some(json!(["resolve", 1, "pong"])));
    assert!(connect(&before, "/rpc/wt").await.is_err(), "the old hash no longer matches new connections");
    // A connection made before keeps its certificate and goes on.
    let mut old = Lines::open(&open).await;
    old.send(&[json!(["push", ["pipeline", 0, ["ping"], []]]), json!(["pull", 1])]).await;
    assert_eq!(old.next().await, Some(json!(["resolve", 1, "pong"])));
}
