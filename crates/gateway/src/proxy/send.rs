//! The innermost service: one HTTP request to the instance `balance` chose, carrying what is
//! left of the deadline (`X-Request-Timeout-Ms`) so the service stops when the client does.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Uri;
use axum::http::header::{self, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::Service;

use super::BoxFuture;
use super::exchange::{Attempt, Try};
use crate::config::Resilience;

pub type HttpClient = Client<HttpConnector, Body>;

pub fn http_client(r: &Resilience) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(r.connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(512)
        .build(connector)
}

/// Cloned for every attempt, so the client (itself a bundle of `Arc`s) is shared whole.
#[derive(Clone)]
pub struct Send {
    pub client: Arc<HttpClient>,
}

impl Service<Try> for Send {
    type Response = Attempt;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Attempt, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Try) -> Self::Future {
        let exchange = attempt.exchange;
        let Some(instance) = attempt.instance else {
            return Box::pin(async { Ok(Attempt::Failed("no instance was chosen".into())) });
        };
        let uri: Uri =
            match format!("{}{}", instance.url.as_str().trim_end_matches('/'), exchange.path_and_query).parse() {
                Ok(uri) => uri,
                Err(e) => {
                    return Box::pin(async move { Ok(Attempt::Failed(format!("the path cannot be forwarded: {e}"))) });
                }
            };
        let mut outgoing = Request::new(exchange.payload.for_attempt());
        *outgoing.method_mut() = exchange.method.clone();
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = exchange.headers.clone();
        let headers = outgoing.headers_mut();
        if let Ok(host) = HeaderValue::from_str(&instance.authority) {
            headers.insert(header::HOST, host);
        }
        headers.insert(kit::context::X_REQUEST_TIMEOUT_MS.clone(), kit::context::timeout_header(exchange.time_left()));
        // Exported, each attempt is a span of its own, the parent of the service's.
        let traced = kit::traces::outgoing(exchange.upstream.name, &exchange.method, &instance.authority);
        if let Some((_, ctx)) = &traced
            && let Ok(traceparent) = HeaderValue::from_str(&ctx.traceparent())
        {
            headers.insert(kit::context::TRACEPARENT.clone(), traceparent);
        }
        let span = traced.map_or_else(tracing::Span::none, |(span, _)| span);
        // A service this process serves (`ordermesh up`) is called in-process: its router, layers
        // and all, with no socket between (kit::local).
        let here = kit::local::find(&instance.url);
        let client = self.client.clone();
        Box::pin(async move {
            let sent = match here {
                Some(router) => tracing::Instrument::instrument(kit::local::call(router, outgoing), span.clone())
                    .await
                    .map_err(Attempt::Failed),
                None => tracing::Instrument::instrument(client.request(outgoing), span.clone())
                    .await
                    .map(|res| res.map(Body::new))
                    .map_err(|e| {
                        if e.is_connect() { Attempt::NotSent(e.to_string()) } else { Attempt::Failed(e.to_string()) }
                    }),
            };
            if let Ok(res) = &sent {
                span.record("http.response.status_code", res.status().as_u16());
            }
            // A streamed body that failed on the client's side (over the limit, or cut off)
            // fails the request whatever the instance did.
            if let Some(fault) = exchange.payload.client_fault() {
                return Ok(Attempt::ClientFault(fault));
            }
            Ok(sent.map_or_else(|failed| failed, Attempt::Response))
        })
    }
}
