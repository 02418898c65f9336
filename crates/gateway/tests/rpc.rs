//! The Cap'n Web shop end to end: real services behind a real gateway, driven by the capnweb
//! crate's own client over WebSocket and HTTP batch. The npm and PyPI clients drive the same
//! walkthrough in tests/rpc (run by .ci/run).

mod common;

use std::sync::Arc;

use capnweb::client::{self, BatchClient};
use capnweb::{CallContext, Capability, Message, RpcError, RpcTarget, Value};
use common::{Services, gateway};
use futures::future::BoxFuture;
use serde_json::json;

fn s(text: &str) -> Value {
    Value::from(text)
}

fn seed_items() -> Value {
    let item = |name: &str, price: f64, quantity: i64| {
        Value::object([("name", s(name)), ("price", Value::Float(price)), ("quantity", Value::Int(quantity))])
    };
    Value::Array(vec![item("Laptop", 999.99, 1), item("Mouse", 29.99, 2)])
}

/// A client-side object wrapping a capability the server gave us, forwarding every call to it:
/// what the Python seed client does when it passes a User back.
struct Proxy(Capability);

impl RpcTarget for Proxy {
    fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, _: &'a CallContext) -> BoxFuture<'a, capnweb::RpcResult> {
        Box::pin(async move { self.0.call(method, args).await })
    }
}

/// A client-side object pretending to be a User.
struct Impostor;

impl RpcTarget for Impostor {
    fn call<'a>(&'a self, method: &'a str, _: Vec<Value>, _: &'a CallContext) -> BoxFuture<'a, capnweb::RpcResult> {
        Box::pin(async move {
            match method {
                "$seal" => Ok(s("0123456789abcdef")),
                "getId" => Ok(s("someone-else")),
                "hasPermission" => Ok(Value::Bool(true)),
                "getRole" => Ok(s("admin")),
                other => Err(RpcError::method_not_found(other)),
            }
        })
    }
}

#[tokio::test]
async fn the_seed_000_walkthrough_over_websocket() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let ws = format!("ws://{}/rpc/ws", gw.addr);
    let conn = client::connect(&ws).await.unwrap();
    let api = conn.main();

    let bob = api.call("login", vec![s("bob"), s("bob123")]).await.unwrap();
    assert_eq!(bob.get("username"), Some(&s("bob")));
    assert_eq!(bob.get("role"), Some(&s("user")));
    let token = bob.get("token").cloned().unwrap();
    let user = api.call("getUserByToken", vec![token.clone()]).await.unwrap().as_capability().unwrap().clone();
    let id = user.call("getId", vec![]).await.unwrap();
    assert_eq!(user.call("getUsername", vec![]).await, Ok(s("bob")));
    assert_eq!(user.get("email").await, Ok(s("bob@example.com")));
    assert_eq!(user.call("hasPermission", vec![s("order.create")]).await, Ok(Value::Bool(true)));
    assert_eq!(user.call("hasPermission", vec![s("order.cancel")]).await, Ok(Value::Bool(false)));
    let profile = api.call("getUserProfile", vec![token.clone()]).await.unwrap();
    assert_eq!(profile.get("userId"), Some(&id));

    // The capability, passed back as the server's own object, authorizes the order.
    let order = api.call("createOrder", vec![user.clone().into(), seed_items()]).await.unwrap();
    assert_eq!(order.get("total"), Some(&Value::Float(1059.97)));
    assert_eq!(order.get("status"), Some(&s("pending")));
    assert_eq!(order.get("itemCount"), Some(&Value::Int(2)));
    let order_id = order.get("orderId").cloned().unwrap();
    let listed = api.call("listOrders", vec![user.clone().into()]).await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let refused = api.call("cancelOrder", vec![user.clone().into(), order_id.clone()]).await;
    assert_eq!(refused, Err(RpcError::permission_denied("You don't have permission to cancel orders")));

    // The same order over REST: RPC is another face of the same platform.
    let rest: serde_json::Value = reqwest::Client::new()
        .get(gw.url("/api/orders"))
        .bearer_auth(token.as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"][0]["id"].as_str(), order_id.as_str());
    assert_eq!(rest["items"][0]["total"], "1059.97");

    let alice = api.call("login", vec![s("alice"), s("alice123")]).await.unwrap();
    let admin = api.call("getUserByToken", vec![alice.get("token").cloned().unwrap()]).await.unwrap();
    let admin = admin.as_capability().unwrap().clone();
    let cancelled = api.call("cancelOrder", vec![admin.clone().into(), order_id.clone()]).await.unwrap();
    assert_eq!(cancelled.get("status"), Some(&s("cancelled")));
    let seen = api.call("listOrders", vec![user.clone().into()]).await.unwrap();
    assert_eq!(seen.as_array().unwrap()[0].get("status"), Some(&s("cancelled")));
    let users = api.call("listUsers", vec![admin.into()]).await.unwrap();
    assert!(users.as_array().unwrap().len() >= 3);
    let denied = api.call("listUsers", vec![user.clone().into()]).await;
    assert!(matches!(denied, Err(e) if e.kind == "permission_denied"));
    let wrong = api.call("login", vec![s("bob"), s("nope")]).await;
    assert_eq!(wrong, Err(RpcError::bad_request("Invalid username or password")));
    services.finish().await;
}

#[tokio::test]
async fn a_proxied_capability_is_accepted_and_a_forged_one_refused() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let conn = client::connect(&format!("ws://{}/rpc/ws", gw.addr)).await.unwrap();
    let api = conn.main();
    let login = api.call("login", vec![s("bob"), s("bob123")]).await.unwrap();
    let user = api.call("getUserByToken", vec![login.get("token").cloned().unwrap()]).await.unwrap();
    let user = user.as_capability().unwrap().clone();
    // The Python seed client's way: a client object proxying to the server's User.
    let proxy = Capability::local(Arc::new(Proxy(user.clone())));
    let order = api.call("createOrder", vec![proxy.into(), seed_items()]).await.unwrap();
    assert_eq!(order.get("total"), Some(&Value::Float(1059.97)));
    // An object that merely claims to be a User gets nowhere.
    let forged = Capability::local(Arc::new(Impostor));
    let refused = api.call("listOrders", vec![forged.into()]).await;
    assert!(matches!(&refused, Err(e) if e.kind == "permission_denied"), "{refused:?}");

    // A capability means nothing on another connection.
    let other = client::connect(&format!("ws://{}/rpc/ws", gw.addr)).await.unwrap();
    let refused = other.main().call("listOrders", vec![user.clone().into()]).await;
    assert!(refused.is_err(), "a capability from another connection was accepted");

    // Signing out kills the capability.
    let token = login.get("token").and_then(Value::as_str).unwrap().to_string();
    let res = reqwest::Client::new().post(gw.url("/api/users/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::NO_CONTENT);
    let dead = user.call("getId", vec![]).await;
    assert!(matches!(&dead, Err(e) if e.kind == "cap_revoked"), "{dead:?}");
    services.finish().await;
}

#[tokio::test]
async fn a_pipelined_chain_in_one_http_batch() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let batch = BatchClient::new(format!("http://{}/rpc/batch", gw.addr));
    // login → getUserByToken(login.token) → createOrder(user, items), all before any answer.
    let lines = [
        json!(["push", ["pipeline", 0, ["login"], ["bob", "bob123"]]]),
        json!(["push", ["pipeline", 0, ["getUserByToken"], [["pipeline", 1, ["token"]]]]]),
        json!(["push", ["pipeline", 0, ["createOrder"], [["pipeline", 2], [[
            {"name": "Laptop", "price": 999.99, "quantity": 1},
            {"name": "Mouse", "price": 29.99, "quantity": 2}
        ]]]]]),
        json!(["pull", 3]),
    ];
    let messages: Vec<Message> = lines.iter().map(|l| Message::from_json(l.clone()).unwrap()).collect();
    let answers = batch.send(&messages).await.unwrap();
    let text: Vec<String> = answers.iter().map(|m| m.to_json().to_string()).collect();
    let resolved = text.iter().find(|t| t.starts_with("[\"resolve\",3,")).unwrap_or_else(|| panic!("{text:?}"));
    assert!(resolved.contains("\"total\":1059.97"), "{resolved}");
    assert!(resolved.contains("\"status\":\"pending\""), "{resolved}");
    services.finish().await;
}

#[tokio::test]
async fn sign_ins_over_rpc_count_against_the_same_strict_limit_as_rest() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings().with("AUTH_RATE_LIMIT", "6").with("AUTH_RATE_LIMIT_BURST", "3")).await;
    let conn = client::connect(&format!("ws://{}/rpc/ws", gw.addr)).await.unwrap();
    let api = conn.main();
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let guess = api.call("login", vec![s("bob"), s("nope-nope")]).await;
        kinds.push(guess.err().map(|e| e.kind).unwrap_or_default());
    }
    assert_eq!(kinds, ["bad_request", "bad_request", "bad_request", "overloaded"], "one WebSocket, many guesses");
    // A fresh connection is the same address: still refused, and so is REST.
    let other = client::connect(&format!("ws://{}/rpc/ws", gw.addr)).await.unwrap();
    let refused = other.main().call("login", vec![s("bob"), s("bob123")]).await;
    assert!(matches!(&refused, Err(e) if e.kind == "overloaded"), "{refused:?}");
    let rest = reqwest::Client::new()
        .post(gw.url("/api/users/login"))
        .json(&json!({"username": "bob", "password": "bob123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    services.finish().await;
}

#[tokio::test]
async fn calls_over_one_websocket_count_against_the_client_limit() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings().with("RATE_LIMIT", "60").with("RATE_LIMIT_BURST", "5")).await;
    // The upgrade itself is one request of the five.
    let conn = client::connect(&format!("ws://{}/rpc/ws", gw.addr)).await.unwrap();
    let api = conn.main();
    let mut kinds = Vec::new();
    for _ in 0..6 {
        let answer = api.call("listUsers", vec![s("not-a-token")]).await;
        kinds.push(answer.err().map(|e| e.kind).unwrap_or_default());
    }
    assert_eq!(kinds[..4], ["bad_request"; 4], "{kinds:?}");
    assert_eq!(kinds[4..], ["overloaded"; 2], "{kinds:?}");
    services.finish().await;
}

#[tokio::test]
async fn the_users_service_throttles_the_rpc_guesser_not_everyone_behind_the_gateway() {
    let services = Services::start(&|s| s.with("LOGIN_MAX_FAILURES_PER_ADDRESS", "3")).await;
    let gw = gateway(services.settings().with("TRUSTED_PROXIES", "127.0.0.1")).await;
    let http = reqwest::Client::new();
    let login = |from: &'static str, username: &'static str, password: &'static str| {
        let request = http
            .post(gw.url("/rpc/batch"))
            .header("x-forwarded-for", from)
            .body(format!("[\"push\",[\"pipeline\",0,[\"login\"],[\"{username}\",\"{password}\"]]]\n[\"pull\",1]"));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    for _ in 0..3 {
        let answer = login("203.0.113.7", "bob", "nope-nope").await;
        assert!(answer.contains("Invalid username or password"), "{answer}");
    }
    let throttled = login("203.0.113.7", "charlie", "charlie123").await;
    assert!(throttled.starts_with("[\"reject\"") && throttled.contains("overloaded"), "{throttled}");
    // Someone else, through the same gateway, still signs in.
    let other = login("198.51.100.9", "alice", "alice123").await;
    assert!(other.starts_with("[\"resolve\",1,") && other.contains("\"token\""), "{other}");
    services.finish().await;
}

/// The users service's count of `GET /users/me` answers, from its metrics.
async fn profile_reads(services: &Services) -> u64 {
    let text = reqwest::get(services.users.url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/users/me\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn the_calls_of_one_http_batch_share_one_look_up_of_their_token() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let http = reqwest::Client::new();
    let token = common::login(&http, &gw, "bob", "bob123").await["access_token"].as_str().unwrap().to_string();
    let batch = BatchClient::new(format!("http://{}/rpc/batch", gw.addr));
    let calls = 40;
    let mut messages: Vec<Message> =
        (0..calls).map(|_| Message::Push(json!(["pipeline", 0, ["getUserProfile"], [token]]))).collect();
    messages.extend((1..=calls as i64).map(Message::Pull));
    let before = profile_reads(&services).await;
    let answers = batch.send(&messages).await.unwrap();
    let profiles = answers.iter().filter(|m| matches!(m, Message::Resolve(..))).count();
    assert_eq!(profiles, calls, "{:?}", answers.iter().map(Message::to_json).collect::<Vec<_>>());
    // All 40 arrived before any was answered; one verified the token and read the profile.
    assert_eq!(profile_reads(&services).await - before, 1, "one profile read for the whole batch");
    services.finish().await;
}

/// The next chunk of a feed, failing the test after a few seconds of silence.
async fn next_chunk(chunks: &mut capnweb::Chunks) -> Option<capnweb::RpcResult> {
    use futures::StreamExt as _;
    tokio::time::timeout(std::time::Duration::from_secs(5), chunks.next()).await.expect("the feed went quiet")
}

#[tokio::test]
async fn order_feeds_stream_status_changes_to_the_owner_and_every_order_to_an_administrator() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings().with("RPC_WATCH_INTERVAL", "50ms")).await;
    let conn = client::connect(&format!("ws://{}/rpc/ws", gw.addr)).await.unwrap();
    let api = conn.main();
    let user_of = |name: &'static str, password: &'static str| {
        let api = api.clone();
        async move {
            let login = api.call("login", vec![s(name), s(password)]).await.unwrap();
            api.call("getUserByToken", vec![login.get("token").cloned().unwrap()]).await.unwrap()
        }
    };
    let (bob, alice) = (user_of("bob", "bob123").await, user_of("alice", "alice123").await);
    let stream_of = |value: Value| match value {
        Value::Readable(stream) => stream.take().expect("a fresh stream"),
        other => panic!("expected a ReadableStream, got {other:?}"),
    };

    // The administrator's feed starts before the order exists; bob's may only be his own.
    let refused = api.call("watchOrders", vec![bob.clone()]).await.unwrap_err();
    assert_eq!(refused.kind, "permission_denied");
    let mut everything = stream_of(api.call("watchOrders", vec![alice.clone()]).await.unwrap());
    let order = api.call("createOrder", vec![bob.clone(), seed_items()]).await.unwrap();
    let id = order.get("orderId").cloned().unwrap();

    // (Feeds look every 50 ms here: each change is waited for before the next is made.)
    let placed = next_chunk(&mut everything).await.unwrap().unwrap();
    assert_eq!((placed.get("orderId"), placed.get("status")), (Some(&id), Some(&s("pending"))));

    let mut mine = stream_of(api.call("watchOrder", vec![bob.clone(), id.clone()]).await.unwrap());
    let status = |chunk: Option<capnweb::RpcResult>| chunk.expect("a chunk").expect("no error").get("status").cloned();
    assert_eq!(status(next_chunk(&mut mine).await), Some(s("pending")), "the status now, at once");
    api.call("cancelOrder", vec![alice.clone(), id.clone()]).await.unwrap();
    assert_eq!(status(next_chunk(&mut mine).await), Some(s("cancelled")));
    assert!(next_chunk(&mut mine).await.is_none(), "a cancelled order's feed ends");
    let cancelled = next_chunk(&mut everything).await.unwrap().unwrap();
    assert_eq!((cancelled.get("orderId"), cancelled.get("status")), (Some(&id), Some(&s("cancelled"))));

    let missing = api.call("watchOrder", vec![bob.clone(), s("00000000-0000-0000-0000-000000000000")]).await;
    assert_eq!(missing.unwrap_err().kind, "not_found");
}

#[tokio::test]
async fn a_connection_may_keep_only_eight_order_feeds_open() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let conn = client::connect(&format!("ws://{}/rpc/ws", gw.addr)).await.unwrap();
    let api = conn.main();
    let login = api.call("login", vec![s("bob"), s("bob123")]).await.unwrap();
    let bob = api.call("getUserByToken", vec![login.get("token").cloned().unwrap()]).await.unwrap();
    let order = api.call("createOrder", vec![bob.clone(), seed_items()]).await.unwrap();
    let id = order.get("orderId").cloned().unwrap();
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(api.call("watchOrder", vec![bob.clone(), id.clone()]).await.unwrap());
    }
    let refused = api.call("watchOrder", vec![bob.clone(), id.clone()]).await.unwrap_err();
    assert_eq!(refused.kind, "overloaded", "{refused:?}");
    // The limit is per connection: another one starts with none open.
    let other = client::connect(&format!("ws://{}/rpc/ws", gw.addr)).await.unwrap();
    assert!(other.main().call("watchOrder", vec![login.get("token").cloned().unwrap(), id]).await.is_ok());
}

/// A session remembers the users of the tokens it was shown, so later calls with the same
/// token are cheap. A token that does not verify must not be remembered: each one a client
/// sends would otherwise stay in the session's table (up to 4 KiB) for as long as the session
/// lives, a table the edge's rate limit slows but never bounds.
#[tokio::test]
async fn a_session_does_not_keep_the_tokens_that_failed() {
    let services = Services::start(&|s| s).await;
    let config = gateway::Config::from_settings(&services.settings(), common::localhost(), 0).unwrap();
    let state = gateway::AppState::start(config).await.unwrap();
    let shop = gateway::rpc::Shop::new(state.shop_backend(), common::localhost());
    let ctx = CallContext::direct();
    for n in 0..50 {
        let forged = format!("eyJhbGciOiJIUzI1NiJ9.{n}.{}", "x".repeat(2000));
        let refused = shop.call("getUserProfile", vec![s(&forged)], &ctx).await.unwrap_err();
        assert_eq!(refused.message, "Invalid or expired token");
    }
    assert_eq!(shop.remembered_tokens(), 0, "forged tokens kept by the session");
    let http = reqwest::Client::new();
    let gw = gateway(services.settings()).await;
    let token = common::login(&http, &gw, "bob", "bob123").await["access_token"].as_str().unwrap().to_string();
    shop.call("getUserProfile", vec![s(&token)], &ctx).await.unwrap();
    shop.call("getUserProfile", vec![s(&token)], &ctx).await.unwrap();
    assert_eq!(shop.remembered_tokens(), 1, "a valid token is remembered once");
    services.finish().await;
}
