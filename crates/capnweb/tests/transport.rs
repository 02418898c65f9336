//! Real axum server on 127.0.0.1 with the crate's own client: WebSocket sessions and HTTP batches.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use capnweb::client::{self, BatchClient};
use capnweb::{CallContext, Capability, Limits, Message, RpcError, RpcResult, RpcTarget, Value};
use common::gateway::{DemoData, Gateway};
use futures::future::BoxFuture;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn serve(limits: Limits) -> SocketAddr {
    let data = Arc::new(DemoData::default());
    let app = capnweb::routes(move |_| Arc::new(Gateway::new(data.clone())) as Arc<dyn RpcTarget>, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn items() -> Value {
    let item = |name: &str, price: f64, quantity: i64| {
        Value::object([("name", Value::from(name)), ("price", price.into()), ("quantity", quantity.into())])
    };
    Value::Array(vec![item("Laptop", 999.99, 1), item("Mouse", 29.99, 2)])
}

fn s(text: &str) -> Value {
    Value::from(text)
}

#[tokio::test]
async fn websocket_walkthrough_with_the_rust_client() {
    let addr = serve(Limits::default()).await;
    for path in ["/rpc/ws", "/api"] {
        let conn = client::connect(&format!("ws://{addr}{path}")).await.unwrap();
        let api = conn.main();
        assert_eq!(api.call("ping", vec![]).await, Ok(s("pong")));
        let login = api.call("login", vec![s("bob"), s("bob123")]).await.unwrap();
        let token = login.get("token").cloned().unwrap();
        let user = api.call("getUserByToken", vec![token]).await.unwrap();
        let user = user.as_capability().unwrap().clone();
        assert!(user.is_remote());
        assert_eq!(user.call("getId", vec![]).await, Ok(s("user2")));
        assert_eq!(user.get("role").await, Ok(s("user")));
        // Handing the server's own capability back (sent as ["import", -1]).
        let order = api.call("createOrder", vec![user.clone().into(), items()]).await.unwrap();
        assert_eq!(order.get("total"), Some(&Value::Float(1059.97)));
        let refused = api.call("cancelOrder", vec![user.clone().into(), order.get("orderId").cloned().unwrap()]).await;
        assert_eq!(refused, Err(RpcError::permission_denied("You don't have permission to cancel orders")));
        assert_eq!(api.call("nope", vec![]).await, Err(RpcError::method_not_found("nope")));
        drop(user);
        conn.close().await;
    }
}

/// What the Python fork client does: wrap the server's capability in a local object of its own
/// and pass that; the server's calls on it come back to the client and are forwarded.
struct ForwardingProxy(Capability);

impl RpcTarget for ForwardingProxy {
    fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(self.0.call(method, args))
    }
}

struct Listener;

impl RpcTarget for Listener {
    fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(async move {
            match method {
                "onEvent" => Ok(format!("got: {}", args.first().and_then(Value::as_str).unwrap_or("?")).into()),
                _ => Err(RpcError::method_not_found(method)),
            }
        })
    }
}

#[tokio::test]
async fn client_capabilities_and_the_re_export_pattern() {
    let addr = serve(Limits::default()).await;
    let conn = client::connect(&format!("ws://{addr}/rpc/ws")).await.unwrap();
    let api = conn.main();
    let login = api.call("login", vec![s("bob"), s("bob123")]).await.unwrap();
    let user = api.call("getUserByToken", vec![login.get("token").cloned().unwrap()]).await.unwrap();
    let proxy = Capability::local(Arc::new(ForwardingProxy(user.as_capability().unwrap().clone())));
    let order = api.call("createOrder", vec![proxy.clone().into(), items()]).await.unwrap();
    assert_eq!(order.get("status"), Some(&s("pending")));
    let orders = api.call("listOrders", vec![proxy.clone().into()]).await.unwrap();
    assert_eq!(orders.as_array().map(<[Value]>::len), Some(1));
    let refused = api.call("cancelOrder", vec![proxy.into(), s("order1")]).await;
    assert_eq!(refused.unwrap_err().message, "You don't have permission to cancel orders");
    // A plain server -> client call.
    let listener = Capability::local(Arc::new(Listener));
    assert_eq!(api.call("notifyMe", vec![listener.into(), s("hi")]).await, Ok(s("got: hi")));
    conn.close().await;
}

#[tokio::test]
async fn capabilities_do_not_cross_sessions() {
    let addr = serve(Limits::default()).await;
    let a = client::connect(&format!("ws://{addr}/rpc/ws")).await.unwrap();
    let login = a.main().call("login", vec![s("bob"), s("bob123")]).await.unwrap();
    let _user = a.main().call("getUserByToken", vec![login.get("token").cloned().unwrap()]).await.unwrap();
    // Export -1 exists on session a; on a fresh batch session it means nothing.
    let reply = client::http_batch(
        &format!("http://{addr}/rpc/batch"),
        &[Message::Push(json!(["pipeline", -1, ["getId"], []])), Message::Pull(1)],
    )
    .await
    .unwrap();
    assert_eq!(reply, [Message::Reject(1, json!(["error", "not_found", "no such export: -1"]))]);
    a.close().await;
}

#[tokio::test]
async fn http_batch_pipelined_chain_in_one_request() {
    let addr = serve(Limits::default()).await;
    let batch = BatchClient::new(format!("http://{addr}/api"));
    let request: Vec<Message> = [
        r#"["push",["pipeline",0,["login"],["bob","bob123"]]]"#,
        r#"["push",["pipeline",0,["getUserByToken"],[["pipeline",1,["token"]]]]]"#,
        r#"["push",["pipeline",0,["createOrder"],[["pipeline",2],[[{"name":"Laptop","price":999.99,"quantity":1},{"name":"Mouse","price":29.99,"quantity":2}]]]]]"#,
        r#"["push",["pipeline",2,["getId"],[]]]"#,
        r#"["pull",1]"#,
        r#"["pull",3]"#,
        r#"["pull",4]"#,
    ]
    .iter()
    .map(|line| Message::parse(line, &Limits::default()).unwrap())
    .collect();
    let mut reply = batch.send(&request).await.unwrap();
    reply.sort_by_key(|m| match m {
        Message::Resolve(id, _) => *id,
        _ => i64::MAX,
    });
    assert_eq!(
        reply,
        [
            Message::Resolve(1, json!({"token":"token_bob_1","userId":"user2","username":"bob","role":"user"})),
            Message::Resolve(3, json!({"orderId":"order1","total":1059.97,"status":"pending","itemCount":2})),
            Message::Resolve(4, json!("user2")),
        ]
    );
    // Ids restart in the next request: nothing survives a batch.
    let again = batch.send(&[Message::Push(json!(["pipeline", 0, ["ping"], []])), Message::Pull(1)]).await.unwrap();
    assert_eq!(again, [Message::Resolve(1, json!("pong"))]);
}

async fn post(addr: SocketAddr, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn http_batch_edge_cases() {
    let limits = Limits { max_body_bytes: 1024, max_batch_messages: 4, ..Limits::default() };
    let addr = serve(limits).await;
    // Any content type; Python spacing; ndjson with a trailing newline.
    let body = "[\"push\", [\"pipeline\", 0, [\"ping\"], []]]\n[\"pull\", 1]\n";
    assert_eq!(post(addr, "/rpc/batch", "application/x-ndjson", body).await, (200, r#"["resolve",1,"pong"]"#.into()));
    assert_eq!(post(addr, "/rpc/batch", "text/plain;charset=UTF-8", "").await, (200, String::new()));
    // Unpulled pushes still run but produce nothing.
    assert_eq!(post(addr, "/api", "text/plain", r#"["push",["pipeline",0,["ping"],[]]]"#).await, (200, String::new()));
    assert_eq!(post(addr, "/rpc/batch", "text/plain", "x".repeat(2000)).await.0, 413);
    assert_eq!(post(addr, "/rpc/batch", "text/plain", "[\"pull\",1]\n".repeat(5)).await.0, 400);
    assert_eq!(post(addr, "/rpc/batch", "text/plain", vec![0xff, 0xfe]).await.0, 400);
    let (status, body) = post(addr, "/rpc/batch", "text/plain", "garbage").await;
    assert_eq!(status, 200);
    assert!(body.starts_with(r#"["abort",["error","bad_request","malformed message: invalid JSON"#), "{body}");
    let get = reqwest::get(format!("http://{addr}/rpc/batch")).await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    // Calls back into a batch client fail at once instead of holding the response.
    let started = std::time::Instant::now();
    let (status, body) = post(
        addr,
        "/rpc/batch",
        "text/plain",
        "[\"push\",[\"pipeline\",0,[\"notifyMe\"],[[\"export\",-1]]]]\n[\"pull\",1]",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, r#"["reject",1,["error","internal","cannot call back into an HTTP batch client"]]"#);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn websocket_frames_binary_multi_message_and_garbage() {
    let addr = serve(Limits::default()).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rpc/ws")).await.unwrap();
    // PyPI py-capnweb style: binary frame, push and pull joined by a newline, Python spacing.
    let frame = "[\"push\", [\"pipeline\", 0, [\"ping\"], []]]\n[\"pull\", 1]";
    socket.send(WsMessage::Binary(frame.as_bytes().to_vec().into())).await.unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply, WsMessage::Text(r#"["resolve",1,"pong"]"#.into()));
    // Invalid UTF-8 ends the session: abort message, then close code 3000.
    socket.send(WsMessage::Binary(vec![0xff, 0x00, 0xfe].into())).await.unwrap();
    let abort = socket.next().await.unwrap().unwrap();
    assert!(abort.to_text().unwrap().starts_with(r#"["abort",["error","bad_request","#), "{abort:?}");
    match socket.next().await.unwrap().unwrap() {
        WsMessage::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 3000),
        other => panic!("expected close, got {other:?}"),
    }

    // A hostile 100k-deep nesting is refused quickly and the server keeps serving others.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api")).await.unwrap();
    socket.send(WsMessage::Text("[".repeat(100_000).into())).await.unwrap();
    let abort = socket.next().await.unwrap().unwrap();
    assert!(abort.to_text().unwrap().contains("recursion limit"), "{abort:?}");
    let conn = client::connect(&format!("ws://{addr}/api")).await.unwrap();
    assert_eq!(conn.main().call("ping", vec![]).await, Ok(s("pong")));
    conn.close().await;
}

/// Issue 20: an over-size message used to drop the TCP connection with nothing said. Now the
/// peer gets an `abort` naming the limit and a close frame with a reason, whether the message
/// is over the session's limit or a frame is over the WebSocket layer's (twice that).
#[tokio::test]
async fn oversized_messages_end_the_session_with_an_abort_and_a_close_frame() {
    let addr = serve(Limits { max_message_bytes: 1024, ..Limits::default() }).await;
    for size in [1500, 10_000] {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rpc/ws")).await.unwrap();
        let call = format!(r#"["push",["pipeline",0,["echo"],["{}"]]]"#, "x".repeat(size));
        socket.send(WsMessage::Text(call.into())).await.unwrap();
        let wait = Duration::from_secs(2);
        let abort = tokio::time::timeout(wait, socket.next()).await.expect("an answer, not silence");
        let abort = abort.expect("an abort message").unwrap();
        let abort = abort.to_text().unwrap().to_string();
        assert!(abort.starts_with(r#"["abort","#), "{size} bytes: {abort}");
        let close = tokio::time::timeout(wait, socket.next()).await.expect("a close frame, not silence");
        let close = close.expect("a close frame").unwrap();
        let WsMessage::Close(Some(frame)) = close else {
            panic!("{size} bytes: a close frame with a reason, not {close:?}")
        };
        assert_eq!(u16::from(frame.code), 3000, "{size} bytes");
        assert!(!frame.reason.is_empty(), "{size} bytes: the close frame says why");
        if size == 1500 {
            assert!(abort.contains("1024"), "the session's limit is named: {abort}");
        }
    }
    // A client's calls pending on such a session fail at once, with the reason.
    let conn = client::connect(&format!("ws://{addr}/rpc/ws")).await.unwrap();
    let started = std::time::Instant::now();
    let big = conn.main().call("echo", vec![s(&"x".repeat(1500))]).await;
    assert!(big.is_err() && started.elapsed() < Duration::from_secs(2), "{big:?}");
    // The server goes on serving others.
    let other = client::connect(&format!("ws://{addr}/rpc/ws")).await.unwrap();
    assert_eq!(other.main().call("ping", vec![]).await, Ok(s("pong")));
    other.close().await;
}

#[tokio::test]
async fn closing_the_connection_fails_pending_calls() {
    // A server whose method never answers; the client closing must not leave callers hanging.
    struct Never;
    impl RpcTarget for Never {
        fn call<'a>(&'a self, _m: &'a str, _a: Vec<Value>, _c: &'a CallContext) -> BoxFuture<'a, RpcResult> {
            Box::pin(futures::future::pending())
        }
    }
    let app = capnweb::routes(|_| Arc::new(Never) as Arc<dyn RpcTarget>, Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let conn = client::connect(&format!("ws://{addr}/rpc/ws")).await.unwrap();
    let main = conn.main();
    let pending = tokio::spawn(async move { main.call("wait", vec![]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.close().await;
    let outcome = tokio::time::timeout(Duration::from_secs(2), pending).await.unwrap().unwrap();
    assert_eq!(outcome.unwrap_err().kind, capnweb::kinds::CANCELED);
}
