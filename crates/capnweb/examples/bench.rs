//! Load generator for Cap'n Web servers on this machine, bounded in time: over WebSocket (one
//! connection with many calls in flight, then several connections) and over HTTP batch (one
//! call per request, then many calls per request).
//!
//! Usage: `bench [BASE_URL] [SECONDS_PER_RUN] [CALL] [TRANSPORTS]`, e.g.
//! `bench http://127.0.0.1:8080 5 getUserProfile ws,batch` (`ws:4x64` for one shape only:
//! 4 connections × 64 calls in flight). CALL is
//! - `ping` (default): the demo server's trivial method;
//! - `getUserProfile`: the seed-000 shop interface, `getUserProfile(token)` after one `login`;
//! - `createOrder`: the seed-000 `createOrder(user, items)` with one item; over WebSocket the
//!   user is the User capability from `getUserByToken`, passed as the seed's own Python client
//!   passes it: wrapped in an object of the client's, so the server calls back through the
//!   client to reach it (the seed's server accepts nothing else); over HTTP batch, where a
//!   capability lives for one request and the server cannot call back, it is the token.
//!
//! The seed-000 calls log in as `BENCH_USER`/`BENCH_PASSWORD` (alice/alice123) and order
//! `BENCH_ITEM` (Mouse) at `BENCH_PRICE` (29.99). Each run prints one line and, at the end, one
//! `RPC_BENCH {json}` line with every figure. Only point it at a server on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use capnweb::client::{self, BatchClient};
use capnweb::{Message, Value};
use serde_json::{Value as Json, json};

/// The call a run repeats, with what it needs from a login.
#[derive(Clone)]
enum Workload {
    Ping,
    Profile { token: String },
    CreateOrder { token: String, items: Json },
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::Ping => "ping",
            Workload::Profile { .. } => "getUserProfile",
            Workload::CreateOrder { .. } => "createOrder",
        }
    }

    /// Whether an answer is what this call returns when it worked.
    fn succeeded(&self, answer: &Value) -> bool {
        match self {
            Workload::Ping => answer.as_str() == Some("pong"),
            Workload::Profile { .. } => answer.get("username").is_some_and(|u| u.as_str().is_some()),
            Workload::CreateOrder { .. } => answer.get("orderId").is_some_and(|id| !id.is_undefined()),
        }
    }

    /// The `push` expression of one call on an HTTP batch (where arrays are escaped `[[…]]`).
    fn batch_push(&self) -> Message {
        Message::Push(match self {
            Workload::Ping => json!(["pipeline", 0, ["ping"], []]),
            Workload::Profile { token } => json!(["pipeline", 0, ["getUserProfile"], [token]]),
            Workload::CreateOrder { token, items } => json!(["pipeline", 0, ["createOrder"], [token, [items]]]),
        })
    }
}

/// Where a WebSocket worker sends its calls: the main object, and the argument that says who
/// is calling (the User capability, for createOrder).
struct WsCaller {
    main: capnweb::Capability,
    user: Option<Value>,
    items: Option<Value>,
}

impl WsCaller {
    async fn open(conn: &client::Connection, workload: &Workload) -> Result<Self, Box<dyn std::error::Error>> {
        let main = conn.main();
        let (user, items) = match workload {
            Workload::CreateOrder { token, items } => {
                let user = main.call("getUserByToken", vec![Value::String(token.clone())]).await?;
                let user = user.as_capability().ok_or("getUserByToken answered no capability")?.clone();
                let wrapped = capnweb::Capability::local(Arc::new(Forward(user)));
                (Some(Value::Capability(wrapped)), Some(Value::from_serde(items)?))
            }
            _ => (None, None),
        };
        Ok(WsCaller { main, user, items })
    }

    async fn call(&self, workload: &Workload) -> Result<Value, String> {
        let answer = match workload {
            Workload::Ping => self.main.call("ping", vec![]).await,
            Workload::Profile { token } => self.main.call("getUserProfile", vec![Value::String(token.clone())]).await,
            Workload::CreateOrder { .. } => {
                let (user, items) = (self.user.clone().unwrap_or_default(), self.items.clone().unwrap_or_default());
                self.main.call("createOrder", vec![user, items]).await
            }
        };
        answer.map_err(|e| format!("{}: {}", e.kind, e.message))
    }
}

/// An object of ours standing for a capability of the server's, forwarding every call to it:
/// how the seed's Python client passes a User back.
struct Forward(capnweb::Capability);

impl capnweb::RpcTarget for Forward {
    fn call<'a>(
        &'a self,
        method: &'a str,
        args: Vec<Value>,
        _: &'a capnweb::CallContext,
    ) -> futures::future::BoxFuture<'a, capnweb::RpcResult> {
        Box::pin(async move { self.0.call(method, args).await })
    }
}

#[derive(serde::Serialize)]
struct Run {
    call: &'static str,
    transport: &'static str,
    connections: usize,
    in_flight: usize,
    calls_per_request: usize,
    calls_per_second: f64,
    failed: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let call = args.next().unwrap_or_else(|| "ping".into());
    let transports = args.next().unwrap_or_else(|| "ws,batch".into());
    let run_for = Duration::from_secs(seconds);
    let ws_url = format!("{}/rpc/ws", base.replacen("http", "ws", 1));
    let batch_url = format!("{base}/rpc/batch");
    let workload = workload(&call, &ws_url).await?;

    let mut runs = Vec::new();
    // `ws` runs the three standard shapes; `ws:CxN` only C connections × N calls in flight.
    let mut shapes = Vec::new();
    for t in transports.split(',') {
        if t == "ws" {
            shapes.extend([(1, 1), (1, 64), (4, 64)]);
        } else if let Some((c, n)) = t.strip_prefix("ws:").and_then(|s| s.split_once('x')) {
            shapes.push((c.parse()?, n.parse()?));
        }
    }
    if !shapes.is_empty() {
        for (connections, in_flight) in shapes {
            let (rate, failed) = websocket(&ws_url, &workload, connections, in_flight, run_for).await?;
            println!(
                "{:<15} websocket  connections={connections:<2} in_flight/conn={in_flight:<4} {rate:>10.0} calls/s{}",
                workload.name(),
                failures(failed)
            );
            runs.push(Run {
                call: workload.name(),
                transport: "websocket",
                connections,
                in_flight,
                calls_per_request: 1,
                calls_per_second: rate,
                failed,
            });
        }
    }
    if transports.split(',').any(|t| t == "batch") {
        for (concurrency, calls_per_batch) in [(1, 1), (16, 1), (16, 100)] {
            let (rate, failed) = batch(&batch_url, &workload, concurrency, calls_per_batch, run_for).await?;
            println!(
                "{:<15} http-batch concurrency={concurrency:<2} calls/request={calls_per_batch:<4} {rate:>10.0} calls/s{}",
                workload.name(),
                failures(failed)
            );
            runs.push(Run {
                call: workload.name(),
                transport: "http-batch",
                connections: concurrency,
                in_flight: 1,
                calls_per_request: calls_per_batch,
                calls_per_second: rate,
                failed,
            });
        }
    }
    println!("RPC_BENCH {}", serde_json::to_string(&runs)?);
    Ok(())
}

/// Logs in once (over WebSocket, which every seed-000 server speaks) for the calls that need it.
async fn workload(call: &str, ws_url: &str) -> Result<Workload, Box<dyn std::error::Error>> {
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_string());
    let token = || async {
        let conn = client::connect(ws_url).await?;
        let login = conn
            .main()
            .call(
                "login",
                vec![Value::String(env("BENCH_USER", "alice")), Value::String(env("BENCH_PASSWORD", "alice123"))],
            )
            .await?;
        let token = login.get("token").and_then(Value::as_str).ok_or("login answered without a token")?.to_string();
        conn.close().await;
        Ok::<_, Box<dyn std::error::Error>>(token)
    };
    Ok(match call {
        "ping" => Workload::Ping,
        "getUserProfile" => Workload::Profile { token: token().await? },
        "createOrder" => {
            let price: f64 = env("BENCH_PRICE", "29.99").parse()?;
            let items = json!([{ "name": env("BENCH_ITEM", "Mouse"), "quantity": 1, "price": price }]);
            Workload::CreateOrder { token: token().await?, items }
        }
        other => return Err(format!("unknown call {other}: ping, getUserProfile or createOrder").into()),
    })
}

fn failures(failed: u64) -> String {
    if failed > 0 { format!("  ({failed} failed)") } else { String::new() }
}

async fn websocket(
    url: &str,
    workload: &Workload,
    connections: usize,
    in_flight: usize,
    run_for: Duration,
) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let conn = client::connect(url).await?;
        let caller = Arc::new(WsCaller::open(&conn, workload).await?);
        for _ in 0..in_flight {
            let (caller, workload) = (caller.clone(), workload.clone());
            let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match caller.call(&workload).await {
                        Ok(answer) if workload.succeeded(&answer) => done.fetch_add(1, Ordering::Relaxed),
                        outcome => {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("  first failure: {outcome:?}");
                            }
                            0
                        }
                    };
                }
            }));
        }
        conns.push(conn);
    }
    let started = Instant::now();
    tokio::time::sleep(run_for).await;
    let completed = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    for conn in conns {
        conn.close().await;
    }
    Ok((completed as f64 / elapsed, failed.load(Ordering::Relaxed)))
}

async fn batch(
    url: &str,
    workload: &Workload,
    concurrency: usize,
    calls: usize,
    run_for: Duration,
) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let client = BatchClient::new(url);
    let mut request: Vec<Message> = (0..calls).map(|_| workload.batch_push()).collect();
    request.extend((1..=calls as i64).map(Message::Pull));
    let request = Arc::new(request);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + run_for;
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, request, done, failed) = (client.clone(), request.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    match client.send(&request).await {
                        Ok(reply) => {
                            let resolved = reply.iter().filter(|m| matches!(m, Message::Resolve(..))).count() as u64;
                            done.fetch_add(resolved, Ordering::Relaxed);
                            let missing = calls as u64 - resolved.min(calls as u64);
                            if missing > 0 && failed.fetch_add(missing, Ordering::Relaxed) == 0 {
                                let other = reply.iter().find(|m| !matches!(m, Message::Resolve(..)));
                                eprintln!("  first failure: {:?}", other.map(Message::to_json));
                            }
                        }
                        Err(e) => {
                            if failed.fetch_add(calls as u64, Ordering::Relaxed) == 0 {
                                eprintln!("  first failure: {e}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    Ok((done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed)))
}
