//! Traces leave the platform over OTLP: `ordermesh up` with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! pointing at a receiver in this test that decodes the OTLP protobuf (the official
//! definitions, `opentelemetry-proto`; over HTTP with axum, over gRPC with tonic), an order
//! placed through the gateway, and the spans of the gateway, the orders service and the
//! catalog found in one trace, each the child of the hop that called it, with the catalog's
//! work on the order's event (through the outbox and the relay) in the same trace.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Value, json};
use support::{Up, login};

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Received {
    resource_service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// The W3C `tracestate` the span carries.
    trace_state: String,
    attributes: HashMap<String, String>,
    /// The span ids it links to.
    links: Vec<String>,
}

impl Received {
    fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map(String::as_str).unwrap_or("")
    }
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with an `application/x-protobuf` body.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

impl Receiver {
    async fn start() -> Receiver {
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = spans.clone();
        let export = move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                assert_eq!(kind, "application/x-protobuf", "OTLP/HTTP with protobuf bodies");
                let request = match ExportTraceServiceRequest::decode(body) {
                    Ok(r) => r,
                    Err(e) => return (StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
                };
                keep(&store, request);
                (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
            }
        };
        let router = axum::Router::new().route("/v1/traces", axum::routing::post(export));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Receiver { url, spans }
    }

    /// An OTLP/gRPC receiver: the collector's `TraceService`, served by tonic.
    async fn start_grpc() -> Receiver {
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let service = TraceServiceServer::new(Grpc(spans.clone()));
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap()
        });
        Receiver { url, spans }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

struct Grpc(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The spans of one export, as the receiver keeps them.
fn keep(store: &Mutex<Vec<Received>>, request: ExportTraceServiceRequest) {
    let mut store = store.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = attributes(&resource_spans.resource.map(|r| r.attributes).unwrap_or_default());
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                store.push(Received {
                    resource_service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    trace_state: span.trace_state,
                    attributes: attributes(&span.attributes),
                    links: span.links.iter().map(|l| hex(&l.span_id)).collect(),
                });
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_across_the_gateway_orders_and_catalog_over_otlp_http() {
    an_order_is_one_trace(Receiver::start().await, "http/protobuf", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_across_the_gateway_orders_and_catalog_over_otlp_grpc() {
    an_order_is_one_trace(Receiver::start_grpc().await, "grpc", &[]).await;
}

/// The event travels through NATS JetStream (a stream of this test's own on the machine's
/// server), its trace context in the message as in the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ORDERMESH_TEST_NATS"]
async fn an_orders_event_joins_its_trace_through_nats() {
    let nats = kit::testing::required_env("ORDERMESH_TEST_NATS");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("TRACES_{}", &id[..12]);
    let env = [
        ("NATS_URL", nats.clone()),
        ("NATS_STREAM", stream.clone()),
        ("NATS_SUBJECT_PREFIX", format!("traces{}", &id[..12])),
    ];
    an_order_is_one_trace(Receiver::start().await, "http/protobuf", &env).await;
    let client = async_nats::connect(&nats).await.expect("NATS");
    let _ = async_nats::jetstream::new(client).delete_stream(&stream).await;
}

async fn an_order_is_one_trace(receiver: Receiver, protocol: &str, extra: &[(&str, String)]) {
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
    ];
    env.extend(extra.iter().cloned());
    let up = Up::start(&env);
    let http = reqwest::Client::new();
    let token = login(&http, &up.gateway, "bob", "bob123").await;
    // Signing in hashes the password: a span of its own under the users service's request.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = receiver.spans();
        let login = spans.iter().find(|s| s.attribute("service") == "users" && s.attribute("route") == "/users/login");
        if let Some(login) = login
            && spans.iter().any(|s| s.name == "users argon2" && s.parent_span_id == login.span_id)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no password hashing span under the users service's /users/login");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client's own trace, with its vendors' state: the order joins it and passes it on.
    let client_trace = uuid::Uuid::new_v4().simple().to_string();
    let tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let res = http
        .post(format!("{}/api/orders", up.gateway))
        .header("traceparent", format!("00-{client_trace}-00f067aa0ba902b7-01"))
        .header("tracestate", tracestate)
        .bearer_auth(&token)
        .json(&json!({"items": [{"sku": "MOUSE-WL", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let order: Value = res.json().await.unwrap();

    // The gateway's span of this order, then every span of its trace.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (gateway, trace) = loop {
        let spans = receiver.spans();
        let gateway = spans.iter().find(|s| {
            s.attribute("service") == "gateway"
                && s.attribute("route") == "/api/orders"
                && s.attribute("method") == "POST"
        });
        if let Some(gateway) = gateway {
            let trace: Vec<Received> = spans.iter().filter(|s| s.trace_id == gateway.trace_id).cloned().collect();
            let has = |service: &str| trace.iter().any(|s| s.attribute("service") == service);
            let applied = trace.iter().any(|s| s.name == "catalog apply order.created");
            if has("orders") && has("catalog") && applied {
                break (gateway.clone(), trace);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no trace of the order {} with gateway, orders, catalog and event spans arrived; received: {:#?}",
            order["id"],
            spans.iter().map(|s| (&s.name, s.attribute("service"), &s.trace_id)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    assert_eq!(gateway.resource_service, "ordermesh", "`up` exports under the platform's name");
    assert_eq!(gateway.trace_id, client_trace, "the order joined the client's trace");
    assert_eq!(gateway.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(gateway.name, "gateway POST /api/orders", "the span is named for the operation, not /api/{{*rest}}");
    assert_eq!(gateway.attribute("http.response.status_code"), "201");
    let orders = trace
        .iter()
        .find(|s| s.attribute("service") == "orders" && s.attribute("route") == "/orders")
        .unwrap_or_else(|| panic!("no orders span for POST /orders in {trace:#?}"));
    // Each call is a client span of the caller's request span, and the parent of the
    // callee's request span.
    let call = |from: &Received, to: &Received, peer: &str| {
        let client = trace.iter().find(|s| s.span_id == to.parent_span_id);
        let client = client.unwrap_or_else(|| panic!("{}'s parent is not in the trace: {trace:#?}", to.name));
        assert_eq!(client.parent_span_id, from.span_id, "{} is a call made by {}", client.name, from.name);
        assert_eq!(client.attribute("peer.service"), peer);
        assert!(client.attribute("server.address").starts_with("127.0.0.1:"), "{client:?}");
    };
    call(&gateway, orders, "orders");
    let catalog = trace
        .iter()
        .find(|s| s.attribute("service") == "catalog" && s.attribute("route") == "/reservations")
        .unwrap_or_else(|| panic!("no catalog span for the reservation in {trace:#?}"));
    call(orders, catalog, "catalog");
    assert!(catalog.name.starts_with("catalog POST /reservations"), "{}", catalog.name);
    // The order.created event, written in the order's transaction, carried the orders span's
    // context through the outbox: the catalog's work on it is that span's child, and the
    // relay's publishing (a batch, for many orders) links to it.
    let applied = trace.iter().find(|s| s.name == "catalog apply order.created").unwrap();
    assert_eq!(applied.parent_span_id, orders.span_id, "the event's consumer span is the order request's child");
    // The database work of each, by operation and table (never values).
    let database = |parent: &Received, name: &str| {
        let found = trace.iter().find(|s| s.parent_span_id == parent.span_id && s.name == name);
        let found = found.unwrap_or_else(|| panic!("no {name} span under {}: {trace:#?}", parent.name));
        assert_eq!(found.attribute("db.system.name"), "sqlite");
        assert!(found.attributes.values().all(|v| !v.contains("MOUSE-WL")), "values stay out of spans: {found:?}");
    };
    // The client's trace state went with every hop, and through the outbox with the event.
    for span in [&gateway, orders, catalog, applied] {
        assert_eq!(span.trace_state, tracestate, "{} carries the client's tracestate", span.name);
    }
    database(orders, "INSERT orders");
    database(catalog, "UPDATE stock");
    database(applied, "INSERT processed_events");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !receiver.spans().iter().any(|s| s.name == "orders publish events" && s.links.contains(&orders.span_id)) {
        assert!(Instant::now() < deadline, "no relay span links to the order's request");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(up);
}
