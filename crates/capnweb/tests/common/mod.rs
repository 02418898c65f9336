//! Shared test fixtures: the demo gateway, a `Lab` target with probing methods, and a harness
//! that drives a session with raw wire text.
#![allow(dead_code)]

#[path = "../../examples/demo/gateway.rs"]
pub mod gateway;

use std::sync::Arc;
use std::time::Duration;

use capnweb::{
    CallContext, Capability, Limits, Outbox, Outgoing, ReadableStream, RpcError, RpcResult, RpcTarget, Session, Value,
};
use futures::StreamExt as _;
use futures::future::BoxFuture;

pub fn gateway() -> Arc<dyn RpcTarget> {
    Arc::new(gateway::Gateway::new(Arc::new(gateway::DemoData::default())))
}

/// An object whose identity tests can check.
pub struct Marker;

impl RpcTarget for Marker {
    fn call<'a>(&'a self, method: &'a str, _args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(async move {
            match method {
                "name" => Ok("marker".into()),
                _ => Err(RpcError::method_not_found(method)),
            }
        })
    }

    fn get(&self, property: &str) -> Result<Value, RpcError> {
        match property {
            "kind" => Ok("marker".into()),
            _ => Err(RpcError::property_not_found(property)),
        }
    }
}

/// A main object with methods that exercise the session machinery.
pub struct Lab {
    pub marker: Arc<Marker>,
}

impl Lab {
    pub fn new() -> Arc<Self> {
        Arc::new(Lab { marker: Arc::new(Marker) })
    }
}

fn cap_arg(args: &[Value], index: usize) -> Result<Capability, RpcError> {
    args.get(index)
        .and_then(Value::as_capability)
        .cloned()
        .ok_or_else(|| RpcError::bad_request("expected a capability"))
}

impl RpcTarget for Lab {
    fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(async move {
            match method {
                "echo" => Ok(args.into_iter().next().unwrap_or_default()),
                "marker" => Ok(Capability::local(self.marker.clone()).into()),
                // {"inner": x}: lets tests walk a path into data holding a capability.
                "nest" => Ok(Value::object([("inner", args.into_iter().next().unwrap_or_default())])),
                "isMarker" => {
                    let cap = cap_arg(&args, 0)?;
                    let same = cap.same_as(&Capability::local(self.marker.clone()));
                    let ptr_same = cap.downcast_local::<Marker>().is_some_and(|m| std::ptr::eq(m, &*self.marker));
                    Ok((same && ptr_same).into())
                }
                "isRemote" => Ok(cap_arg(&args, 0)?.is_remote().into()),
                // Calls `method` on the capability passed (a call into the client when remote).
                "callOn" => {
                    let cap = cap_arg(&args, 0)?;
                    let method = args.get(1).and_then(Value::as_str).unwrap_or("getId").to_owned();
                    cap.call(&method, args.into_iter().skip(2).collect()).await
                }
                "callPeerMain" => {
                    let peer = ctx.peer_main().ok_or_else(|| RpcError::internal("no peer"))?;
                    peer.call("hello", args).await
                }
                "sleep" => {
                    let ms = args.first().and_then(Value::as_i64).unwrap_or(50);
                    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                    Ok("slept".into())
                }
                // {"now": x, "later": <y 20 ms later, or a rejection without y>}: a result
                // holding a call still running.
                "later" => {
                    let mut args = args.into_iter();
                    let now = args.next().unwrap_or_default();
                    let then = args.next();
                    let later = Value::pending(async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        then.ok_or_else(|| RpcError::bad_request("nothing later"))
                    });
                    Ok(Value::object([("now", now), ("later", later)]))
                }
                // Streams: read one whole, make one (0..n, then an error when asked), write
                // into the peer's.
                "collect" => match args.first() {
                    Some(Value::Readable(stream)) => Ok(Value::Array(stream.collect().await?)),
                    _ => Err(RpcError::bad_request("expected a ReadableStream")),
                },
                // Reads only after a while, so a stream's writer can get ahead of it.
                "collectLater" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    match args.first() {
                        Some(Value::Readable(stream)) => Ok(Value::Array(stream.collect().await?)),
                        _ => Err(RpcError::bad_request("expected a ReadableStream")),
                    }
                }
                "countTo" => {
                    let n = args.first().and_then(Value::as_i64).unwrap_or(3);
                    let fail = args.get(1).and_then(Value::as_bool).unwrap_or(false);
                    let numbers = futures::stream::iter((0..n).map(|i| Ok(Value::Int(i))));
                    let end = futures::stream::iter(fail.then(|| Err(RpcError::new("RangeError", "ran out"))));
                    Ok(Value::Readable(ReadableStream::new(numbers.chain(end))))
                }
                "writeTo" => {
                    let Some(Value::Writable(out)) = args.first() else {
                        return Err(RpcError::bad_request("expected a WritableStream"));
                    };
                    for i in 0..args.get(1).and_then(Value::as_i64).unwrap_or(2) {
                        out.write(format!("line {i}").into()).await?;
                    }
                    out.close().await?;
                    Ok("done".into())
                }
                "fail" => Err(RpcError::permission_denied("nope")),
                "panic" => panic!("deliberate panic in a test method"),
                "transport" => Ok(format!("{:?}", ctx.transport()).into()),
                "deep" => {
                    let mut value = Value::Null;
                    for _ in 0..200 {
                        value = Value::Array(vec![value]);
                    }
                    Ok(value)
                }
                _ => Err(RpcError::method_not_found(method)),
            }
        })
    }

    fn get(&self, property: &str) -> Result<Value, RpcError> {
        match property {
            "version" => Ok(Value::Int(7)),
            "child" => Ok(Capability::local(self.marker.clone()).into()),
            _ => Err(RpcError::property_not_found(property)),
        }
    }
}

/// Drives a session with wire text, as a peer would.
pub struct Wire {
    pub session: Session,
    pub outbox: Outbox,
}

impl Wire {
    pub fn new(main: Arc<dyn RpcTarget>) -> Self {
        Self::with_limits(main, Limits::default())
    }

    pub fn with_limits(main: Arc<dyn RpcTarget>, limits: Limits) -> Self {
        let (session, outbox) = Session::new(Capability::Local(main), capnweb::TransportKind::WebSocket, limits);
        Wire { session, outbox }
    }

    pub fn with_transport(main: Arc<dyn RpcTarget>, transport: capnweb::TransportKind) -> Self {
        let (session, outbox) = Session::new(Capability::Local(main), transport, Limits::default());
        Wire { session, outbox }
    }

    pub fn send(&self, text: &str) {
        self.session.receive_frame(text.as_bytes());
    }

    /// The next outgoing message, failing the test after a second of silence.
    pub async fn recv(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(2), self.outbox.next()).await {
            Ok(Some(Outgoing::Message(text))) => text,
            Ok(other) => panic!("expected a message, got {other:?}"),
            Err(_) => panic!("no message within 2s"),
        }
    }

    pub async fn recv_outgoing(&mut self) -> Option<Outgoing> {
        tokio::time::timeout(Duration::from_secs(2), self.outbox.next()).await.expect("outbox stalled")
    }

    /// Asserts nothing is sent for a short while.
    pub async fn quiet(&mut self) {
        if let Ok(Some(out)) = tokio::time::timeout(Duration::from_millis(100), self.outbox.next()).await {
            panic!("unexpected outgoing {out:?}");
        }
    }

    /// Receives `n` messages and returns them sorted (for messages whose order is completion order).
    pub async fn recv_sorted(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.recv().await);
        }
        out.sort();
        out
    }
}
