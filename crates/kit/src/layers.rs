//! Tower layers every ordermesh HTTP server wears, outermost first:
//! [`RequestIdLayer`] → [`AccessLogLayer`] → [`HttpMetricsLayer`] → [`DeadlineLayer`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Request, Response};
use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::context::{
    RequestContext, TRACEPARENT, TRACESTATE, X_REQUEST_ID, X_REQUEST_TIMEOUT_MS, parse_timeout_header,
};
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
        let mut ctx = RequestContext::from_headers(req.headers().get(&X_REQUEST_ID), req.headers().get(&TRACEPARENT))
            .with_tracestate(req.headers().get(&TRACESTATE));
        ctx.deadline =
            req.headers().get(&X_REQUEST_TIMEOUT_MS).and_then(parse_timeout_header).map(|d| Instant::now() + d);
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

/// A response's route, more precise than the one the router matched: a proxy that answers
/// every `/api/{*rest}` names the operation it forwarded to (`/api/products/{id}`), so that
/// metrics and the access log count operations rather than one catch-all. Put on the response
/// by the handler; it must be a template, never a raw path.
#[derive(Clone, Debug)]
pub struct RouteTemplate(pub Arc<str>);

/// The route to label a response with: the handler's template, else the router's match.
fn route_of<B>(res: &Response<B>, matched: String) -> String {
    res.extensions().get::<RouteTemplate>().map(|t| t.0.to_string()).unwrap_or(matched)
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ctx = req.extensions().get::<RequestContext>().cloned();
        let (request_id, trace_id) = match &ctx {
            Some(c) => (c.request_id.to_string(), c.trace_id.to_string()),
            None => (String::new(), String::new()),
        };
        let route =
            req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "-".to_string());
        // Probes, scrapes and static files are logged, not traced: they would crowd the
        // requests people look for out of the traces kept. Nor is a request the sampling
        // leaves out (crate::traces::admits); its calls say so, and their callees skip theirs.
        let recordable = crate::traces::recording() && !crate::traces::untraced_path(req.uri().path());
        let traced = recordable && ctx.as_ref().is_none_or(crate::traces::admits);
        macro_rules! request_span {
            ($target:literal) => {
                tracing::info_span!(
                    target: $target,
                    "request",
                    service = self.service,
                    request_id = %request_id,
                    trace_id = %trace_id,
                    method = %req.method(),
                    path = %req.uri().path(),
                    route = %route,
                    user_id = tracing::field::Empty,
                    upstream = tracing::field::Empty,
                    "otel.name" = tracing::field::Empty,
                    "otel.kind" = tracing::field::Empty,
                    "otel.status_code" = tracing::field::Empty,
                    "http.response.status_code" = tracing::field::Empty,
                )
            };
        }
        let span = if traced { request_span!("kit::layers") } else { request_span!("kit::untraced") };
        // Recorded, the span joins the caller's trace and becomes the parent of this
        // request's own calls (the context they send is this span's).
        let joined = match &ctx {
            Some(ctx) if traced => {
                span.record("otel.name", format!("{} {} {}", self.service, req.method(), route).as_str());
                span.record("otel.kind", "server");
                let joined = crate::traces::join(&span, ctx);
                req.extensions_mut().insert(joined.clone());
                Some(joined)
            }
            Some(ctx) if recordable => {
                let unrecorded = RequestContext { sampled: false, ..ctx.clone() };
                req.extensions_mut().insert(unrecorded.clone());
                Some(unrecorded)
            }
            _ => None,
        };
        let started = Instant::now();
        let at_info = self.at_info;
        let service = self.service;
        let method = req.method().clone();
        let fut = self.inner.call(req);
        Box::pin(
            async move {
                let res = match joined {
                    Some(ctx) => ctx.scope(fut).await?,
                    None => fut.await?,
                };
                let span = tracing::Span::current();
                let template = res.extensions().get::<RouteTemplate>();
                if let Some(template) = template {
                    span.record("route", &*template.0);
                }
                if traced {
                    crate::traces::finish(&span, service, &method, template.map(|t| &*t.0), res.status());
                }
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
        // A recorded trace is the exemplar of its latency bucket.
        let trace = match req.extensions().get::<RequestContext>() {
            Some(ctx) if ctx.sampled && crate::traces::recording() => Some(ctx.trace_id.clone()),
            _ => None,
        };
        let metrics = self.metrics.clone();
        metrics.record(|| metrics::gauge!("http_requests_in_flight").increment(1.0));
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let elapsed = started.elapsed().as_secs_f64();
            let (status, route) = match &result {
                Ok(res) => (res.status().as_u16().to_string(), route_of(res, route)),
                Err(_) => ("error".to_string(), route),
            };
            if let Some(trace) = &trace {
                metrics.exemplar(
                    "http_request_duration_seconds",
                    &[("method", &method), ("route", &route)],
                    elapsed,
                    trace,
                );
            }
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

/// Ends a request that runs past the service's own timeout or past its caller's deadline
/// (`X-Request-Timeout-Ms`), whichever comes first, with a 503 problem: nothing keeps working
/// for a caller that has gone.
#[derive(Clone, Copy)]
pub struct DeadlineLayer {
    timeout: std::time::Duration,
}

impl DeadlineLayer {
    pub fn new(timeout: std::time::Duration) -> Self {
        DeadlineLayer { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner, timeout: self.timeout }
    }
}

#[derive(Clone)]
pub struct DeadlineService<S> {
    inner: S,
    timeout: std::time::Duration,
}

impl<S, B> Service<Request<B>> for DeadlineService<S>
where
    S: Service<Request<B>, Response = axum::response::Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let asked = req.headers().get(&X_REQUEST_TIMEOUT_MS).and_then(parse_timeout_header);
        let limit = asked.map_or(self.timeout, |a| a.min(self.timeout));
        let fut = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(done) => done,
                Err(_) => Ok(axum::response::IntoResponse::into_response(crate::Problem::unavailable(
                    format!("The request took longer than {} ms.", limit.as_millis()),
                    1,
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn slow_service(timeout: Duration) -> Router {
        Router::new()
            .route(
                "/",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "done"
                }),
            )
            .layer(DeadlineLayer::new(timeout))
    }

    #[tokio::test]
    async fn a_request_ends_at_the_callers_deadline_when_it_comes_first() {
        let started = Instant::now();
        let req = Request::get("/").header("x-request-timeout-ms", "50").body(Body::empty()).unwrap();
        let res = slow_service(Duration::from_secs(10)).oneshot(req).await.unwrap();
        assert_eq!(res.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_request_ends_at_the_services_timeout_whatever_the_caller_asks() {
        let started = Instant::now();
        let req = Request::get("/").header("x-request-timeout-ms", "600000").body(Body::empty()).unwrap();
        let res = slow_service(Duration::from_millis(50)).oneshot(req).await.unwrap();
        assert_eq!(res.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
}
