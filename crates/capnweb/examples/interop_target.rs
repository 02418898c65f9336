//! The test target Cap'n Web implementations use to test each other (the reference's
//! `TestTarget` and `Counter`, with the special-value methods of the Python fork's interop
//! suite), with JavaScript semantics for numbers and errors, so a client sees the same answers
//! from this server as from the npm `capnweb` reference serving the same target
//! (`tests/interop/target.mjs`; `tests/interop/compare.mjs` checks that they do).
//!
//! Usage: `interop_target [PORT]` (0 picks a free port). Listens on 127.0.0.1, prints
//! `listening on http://127.0.0.1:<port>`, serves WebSocket and HTTP batch on `/`, and on
//! `/rpc/ws` and `/rpc/batch`. Before that line it prints `webtransport on
//! https://127.0.0.1:<udp port>/rpc/wt sha-256 <hex>`: the same target over WebTransport (on `/`
//! too), with a self-signed certificate of that hash.

#[path = "demo/serve.rs"]
mod serve;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use capnweb::webtransport::{WebTransportLimits, WebTransportServer, WebTransportTls};
use capnweb::{CallContext, Capability, Limits, ReadableStream, RpcError, RpcResult, RpcTarget, Value};
use futures::StreamExt as _;
use futures::future::BoxFuture;

const USERS: [&str; 3] = ["alice", "bob", "charlie"];
const ORDERS: [(&str, f64, &str); 3] =
    [("order1", 1059.97, "pending"), ("order2", 29.99, "shipped"), ("order3", 1000.0, "cancelled")];
const STATUSES: [&str; 4] = ["pending", "confirmed", "shipped", "delivered"];

/// `slowMethod` waits at most this long, so a client cannot park the server's tasks for ever.
const LONGEST_SLOW_METHOD: Duration = Duration::from_secs(60);

#[derive(Default)]
struct TestTarget {
    callback: Mutex<Option<Capability>>,
}

struct Counter {
    value: Mutex<f64>,
}

impl RpcTarget for TestTarget {
    fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(async move {
            let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
            match method {
                "square" => Ok(Value::Float(to_number(&arg(0)) * to_number(&arg(0)))),
                "callSquare" => {
                    // Not awaited, as in the reference: the result holds a call still running.
                    let (target, i) = (capability(&arg(0))?, arg(1));
                    let square = Value::pending(async move { target.call("square", vec![i]).await });
                    Ok(Value::object([("result", square)]))
                }
                "callFunction" => {
                    let result = capability(&arg(0))?.call_function(vec![arg(1)]).await?;
                    Ok(Value::object([("result", result)]))
                }
                "throwError" => Err(RpcError::new("RangeError", "test error")),
                "makeCounter" => {
                    let start = if arg(0).is_undefined() { 0.0 } else { to_number(&arg(0)) };
                    Ok(Capability::local(Arc::new(Counter { value: Mutex::new(start) })).into())
                }
                "incrementCounter" => {
                    let amount = if arg(1).is_undefined() { Value::Int(1) } else { arg(1) };
                    capability(&arg(0))?.call("increment", vec![amount]).await
                }
                "generateFibonacci" => Ok(fibonacci(to_number(&arg(0)))),
                "returnNull" => Ok(Value::Null),
                "returnUndefined" => Ok(Value::Undefined),
                "returnNumber" | "echo" | "echoBytes" | "echoDate" | "echoBigInt" => Ok(arg(0)),
                "returnInfinity" => Ok(Value::Float(f64::INFINITY)),
                "returnNegativeInfinity" => Ok(Value::Float(f64::NEG_INFINITY)),
                "returnNaN" => Ok(Value::Float(f64::NAN)),
                "makeBytes" => {
                    let text = js_string(&arg(0));
                    // Padding is optional, as for Buffer.from(text, "base64").
                    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(text.trim_end_matches('='))
                        .map_err(|e| RpcError::new("TypeError", format!("invalid base64: {e}")))?;
                    Ok(Value::Bytes(bytes))
                }
                "makeDate" => Ok(Value::Date(to_number(&arg(0)))),
                "makeBigInt" => make_bigint(&arg(0)),
                "getTimestamp" => match arg(0) {
                    Value::Date(ms) => Ok(Value::Float(ms)),
                    other => Err(not_a_function("getTime", &other)),
                },
                "getBytesLength" => match arg(0) {
                    Value::Bytes(bytes) => Ok(Value::from(bytes.len())),
                    Value::String(text) => Ok(Value::from(text.encode_utf16().count())),
                    Value::Array(items) => Ok(Value::from(items.len())),
                    _ => Ok(Value::Undefined),
                },
                "getBigIntString" => Ok(Value::String(js_string(&arg(0)))),
                "add" => Ok(add(&arg(0), &arg(1))),
                "slowMethod" => {
                    let ms = to_number(&arg(0));
                    let wait = Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(LONGEST_SLOW_METHOD.as_secs_f64()));
                    tokio::time::sleep(wait).await;
                    Ok(Value::String(format!("slow result after {}ms", js_string(&arg(0)))))
                }
                "greet" => Ok(Value::String(format!("Hello, {}!", js_string(&arg(0))))),
                "getList" => Ok(Value::Array((1..=5).map(Value::Int).collect())),
                // The shop's shapes (not in the reference's own TestTarget), for .map() and a
                // feed.
                "listUsers" => Ok(Value::Array(
                    USERS
                        .iter()
                        .enumerate()
                        .map(|(i, name)| {
                            let role = if i == 0 { "admin" } else { "user" };
                            Value::object([
                                ("id", Value::String(format!("user{}", i + 1))),
                                ("username", (*name).into()),
                                ("role", role.into()),
                            ])
                        })
                        .collect(),
                )),
                "listOrders" => Ok(Value::Array(
                    ORDERS
                        .iter()
                        .map(|(id, total, status)| {
                            Value::object([
                                ("orderId", (*id).into()),
                                ("total", Value::Float(*total)),
                                ("status", (*status).into()),
                            ])
                        })
                        .collect(),
                )),
                "watchOrder" => {
                    let id = arg(0);
                    let statuses = STATUSES
                        .iter()
                        .map(move |status| Ok(Value::object([("orderId", id.clone()), ("status", (*status).into())])));
                    Ok(Value::Readable(ReadableStream::new(futures::stream::iter(statuses))))
                }
                // Streams (not in the reference's own TestTarget): one made here, one read
                // here, and the client's WritableStream written here.
                "countTo" => {
                    let n = to_number(&arg(0)).max(0.0) as u64;
                    let fail_at_end = matches!(arg(1), Value::Bool(true));
                    let counted =
                        futures::stream::iter((0..n).map(|i| Ok(Value::object([("i", Value::from(i as f64))]))));
                    let end = futures::stream::iter(fail_at_end.then(|| Err(RpcError::new("RangeError", "ran out"))));
                    Ok(Value::Readable(ReadableStream::new(counted.chain(end))))
                }
                "sumStream" => match arg(0) {
                    Value::Readable(stream) => Ok(Value::Float(stream.collect().await?.iter().map(to_number).sum())),
                    other => Err(not_a_function("getReader", &other)),
                },
                "writeLines" => match arg(0) {
                    Value::Writable(out) => {
                        for i in 0..to_number(&arg(1)).max(0.0) as u64 {
                            out.write(format!("line {i}").into()).await?;
                        }
                        out.close().await?;
                        Ok("done".into())
                    }
                    other => Err(not_a_function("getWriter", &other)),
                },
                "registerCallback" => {
                    *self.callback.lock().unwrap() = Some(capability(&arg(0))?);
                    Ok("registered".into())
                }
                "triggerCallback" => {
                    let callback = self.callback.lock().unwrap().clone();
                    match callback {
                        Some(callback) => callback.call("notify", vec!["ping".into()]).await,
                        None => Ok("no callback".into()),
                    }
                }
                _ => Err(not_a_method(method)),
            }
        })
    }

    /// Like a JavaScript object: a property it does not have reads as `undefined`.
    fn get(&self, _property: &str) -> RpcResult {
        Ok(Value::Undefined)
    }
}

impl RpcTarget for Counter {
    fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(async move {
            match method {
                "increment" => {
                    let amount = args.first().filter(|a| !a.is_undefined()).map_or(1.0, to_number);
                    let mut value = self.value.lock().unwrap();
                    *value += amount;
                    Ok(Value::Float(*value))
                }
                _ => Err(not_a_method(method)),
            }
        })
    }

    fn get(&self, property: &str) -> RpcResult {
        match property {
            "value" => Ok(Value::Float(*self.value.lock().unwrap())),
            _ => Ok(Value::Undefined),
        }
    }
}

fn capability(value: &Value) -> Result<Capability, RpcError> {
    value.as_capability().cloned().ok_or_else(|| not_a_function("call", value))
}

/// The reference's answer to a call of a method the target does not have.
fn not_a_method(method: &str) -> RpcError {
    RpcError::new("TypeError", format!("'{method}' is not a function."))
}

fn not_a_function(what: &str, value: &Value) -> RpcError {
    RpcError::new("TypeError", format!("{what} is not a function on {}", js_string(value)))
}

/// JavaScript's `Number(value)` for the values a client sends.
fn to_number(value: &Value) -> f64 {
    match value {
        Value::Int(i) => *i as f64,
        Value::Float(f) | Value::Date(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Null => 0.0,
        Value::String(s) if s.trim().is_empty() => 0.0,
        Value::String(s) => s.trim().parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

/// JavaScript's `String(value)` for the values the target formats.
fn js_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => "NaN".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { "Infinity" } else { "-Infinity" }.into(),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        Value::Float(f) => f.to_string(),
        Value::BigInt(digits) => digits.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Undefined => "undefined".into(),
        Value::Array(items) => items.iter().map(js_string).collect::<Vec<_>>().join(","),
        _ => "[object Object]".into(),
    }
}

/// `a + b`: concatenation when either side is a string, arithmetic otherwise.
fn add(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::String(_), _) | (_, Value::String(_)) => Value::String(js_string(a) + &js_string(b)),
        _ => Value::Float(to_number(a) + to_number(b)),
    }
}

fn fibonacci(length: f64) -> Value {
    let length = if length.is_nan() { 0 } else { length.clamp(0.0, 10_000.0) as usize };
    let mut out: Vec<f64> = Vec::with_capacity(length);
    for i in 0..length {
        out.push(if i < 2 { i as f64 } else { out[i - 1] + out[i - 2] });
    }
    Value::Array(out.into_iter().map(Value::Float).collect())
}

/// `BigInt(text)`: decimal digits with an optional sign, surrounding spaces allowed.
fn make_bigint(value: &Value) -> RpcResult {
    let text = js_string(value);
    let trimmed = text.trim();
    let (sign, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RpcError::new("SyntaxError", format!("Cannot convert {text} to a BigInt")));
    }
    let digits = digits.trim_start_matches('0');
    Ok(Value::BigInt(if digits.is_empty() { "0".into() } else { format!("{sign}{digits}") }))
}

fn main_object(_: &axum::http::request::Parts) -> Arc<dyn RpcTarget> {
    Arc::new(TestTarget::default())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).map(|p| p.parse().expect("port must be a number")).unwrap_or(8080);
    let webtransport = WebTransportServer::bind(
        ([127, 0, 0, 1], 0).into(),
        WebTransportTls::SelfSigned { names: vec!["localhost".into(), "127.0.0.1".into()] },
        WebTransportLimits::default(),
    )
    .map_err(std::io::Error::other)?;
    let hash = webtransport.certificate_hash().expect("a self-signed certificate").now();
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    println!("webtransport on https://{}/rpc/wt sha-256 {hex}", webtransport.local_addr());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(webtransport.serve(&["/", "/rpc/wt"], main_object, Limits::default(), stop));
    serve::serve_on_loopback(port, capnweb::routes_on(&["/"], main_object, Limits::default())).await
}
