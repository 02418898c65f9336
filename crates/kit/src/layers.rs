//! Tower layers every ordermesh HTTP server wears, outermost first:
//! [`RequestIdLayer`] → [`AccessLogLayer`] → [`HttpMetricsLayer`].

use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Request, Response};
use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::context::{RequestContext, TRACEPARENT, X_REQUEST_ID};
use crate::metrics::Metrics;

/// Accepts a well-formed `x-request-id` or makes one, joins or starts a W3C trace, makes both
/// available to handlers and outgoing calls ([`RequestContext::current`]) and echoes the id.
#[derive(Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ctx = RequestContext::from_headers(req.headers().get(&X_REQUEST_ID), req.headers().get(&TRACEPARENT));
        let id = HeaderValue::from_str(&ctx.request_id).ok();
        if let Some(id) = &id {
            req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
        }
        req.extensions_mut().insert(ctx.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut res = ctx.scope(fut).await?;
            if let Some(id) = id {
                res.headers_mut().insert(X_REQUEST_ID.clone(), id);
            }
            Ok(res)
        })
    }
}

/// Opens the request's span (every log line inside carries its request id and trace id) and
/// writes one access-log line when the response is ready.
#[derive(Clone, Copy)]
pub struct AccessLogLayer {
    service: &'static str,
    /// Services log each request at DEBUG; the gateway, the edge, at INFO.
    at_info: bool,
}

impl AccessLogLayer {
    pub fn new(service: &'static str, at_info: bool) -> Self {
        AccessLogLayer { service, at_info }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLogService { inner, service: self.service, at_info: self.at_info }
    }
}

#[derive(Clone)]
pub struct AccessLogService<S> {
    inner: S,
    service: &'static str,
    at_info: bool,
}

impl<S, B, RB> Service<Request<B>> for AccessLogService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ctx = req.extensions().get::<RequestContext>().cloned();
        let (request_id, trace_id) = match &ctx {
            Some(c) => (c.request_id.to_string(), c.trace_id.to_string()),
            None => (String::new(), String::new()),
        };
        let route =
            req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "-".to_string());
        let span = tracing::info_span!(
            "request",
            service = self.service,
            request_id = %request_id,
            trace_id = %trace_id,
            method = %req.method(),
            path = %req.uri().path(),
            route = %route,
            user_id = tracing::field::Empty,
            upstream = tracing::field::Empty,
        );
        let started = Instant::now();
        let at_info = self.at_info;
        let fut = self.inner.call(req);
        Box::pin(
            async move {
                let res = fut.await?;
                let status = res.status().as_u16();
                let latency_us = started.elapsed().as_micros() as u64;
                if at_info {
                    tracing::info!(status, latency_us, "access");
                } else {
                    tracing::debug!(status, latency_us, "access");
                }
                Ok(res)
            }
            .instrument(span),
        )
    }
}

/// Counts requests and records their latency by method, matched route and status.
#[derive(Clone)]
pub struct HttpMetricsLayer {
    metrics: Metrics,
}

impl HttpMetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        HttpMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, RB> Service<Request<B>> for HttpMetricsService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = req.method().as_str().to_string();
        // Only matched routes become label values: raw paths would let clients mint series.
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| "unmatched".to_string());
        let metrics = self.metrics.clone();
        metrics.record(|| metrics::gauge!("http_requests_in_flight").increment(1.0));
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let elapsed = started.elapsed().as_secs_f64();
            let status = match &result {
                Ok(res) => res.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            metrics.record(|| {
                metrics::gauge!("http_requests_in_flight").decrement(1.0);
                metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
                    .increment(1);
                metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
                    .record(elapsed);
            });
            result
        })
    }
}
