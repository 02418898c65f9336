//! The gateway's own calls to the services (the storefront, the Cap'n Web shop). They go
//! through the proxy's stack like every proxied request, so they get the same balancing,
//! breakers, retry budget, deadline and metrics instead of a second client that bypasses them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use kit::client::{JsonCalls, MAX_ANSWER_BYTES, UpstreamError, decode_answer};
use serde::de::DeserializeOwned;

use super::{Attempt, Proxy};
use crate::upstream::{Unavailable, Upstream};

#[derive(Clone)]
pub struct UpstreamClient {
    proxy: Arc<Proxy>,
    upstream: Arc<Upstream>,
}

impl UpstreamClient {
    pub fn new(proxy: Arc<Proxy>, upstream: Arc<Upstream>) -> Self {
        UpstreamClient { proxy, upstream }
    }

    pub fn service(&self) -> &'static str {
        self.upstream.name
    }

    /// Sends a request on behalf of the person at `on_behalf_of` (the service sees their
    /// address in `X-Forwarded-For`, as for a proxied request) and returns the service's
    /// answer, whatever its status; an error when no instance answered.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
        on_behalf_of: Option<IpAddr>,
    ) -> Result<Response, UpstreamError> {
        let service = self.service();
        let mut headers = headers;
        // A known length lets the proxy buffer the body, so a call whose connection was refused
        // can move to another instance.
        if !body.is_empty() {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let mut req = Request::new(Body::from(body));
        *req.method_mut() = method;
        *req.headers_mut() = headers;
        if let Some(ip) = on_behalf_of {
            req.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip, 0)));
        }
        let exchange = match self.proxy.prepare(&self.upstream, req, path_and_query).await {
            Ok(exchange) => exchange,
            Err(refused) => {
                return Err(UpstreamError::Status { service, status: refused.status_code(), problem: Some(refused) });
            }
        };
        match self.proxy.run(exchange).await {
            Attempt::Response(res) => Ok(res),
            Attempt::TimedOut(_) => Err(UpstreamError::Timeout { service }),
            Attempt::Refused(why) => {
                let reason = match why {
                    Unavailable::BreakersOpen(_) => "its breakers are open",
                    Unavailable::NoHealthyInstance => "no instance is healthy",
                };
                Err(UpstreamError::Unreachable { service, reason: reason.into() })
            }
            Attempt::NotSent(reason) | Attempt::Failed(reason) => Err(UpstreamError::Unreachable { service, reason }),
            Attempt::ClientFault(fault) => {
                Err(UpstreamError::Decode { service, reason: format!("the request body failed: {fault:?}") })
            }
        }
    }

    /// An answer's JSON, read within [`MAX_ANSWER_BYTES`]; a non-2xx is an error carrying the
    /// service's problem document.
    pub async fn read_json<T: DeserializeOwned>(&self, res: Response) -> Result<T, UpstreamError> {
        let service = self.service();
        let status = res.status();
        let bytes = http_body_util::Limited::new(res.into_body(), MAX_ANSWER_BYTES).collect().await.map_err(|e| {
            UpstreamError::Decode { service, reason: format!("the answer could not be read whole: {e}") }
        })?;
        decode_answer(service, status, &bytes.to_bytes())
    }
}

impl JsonCalls for UpstreamClient {
    fn service_name(&self) -> &'static str {
        self.service()
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        bearer: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<T, UpstreamError> {
        let mut headers = HeaderMap::new();
        if let Some(token) = bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| UpstreamError::Status {
                service: self.service(),
                status: StatusCode::UNAUTHORIZED,
                problem: None,
            })?;
            headers.insert(header::AUTHORIZATION, value);
        }
        if body.is_some() {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let res = self.send(method, path_and_query, headers, body.unwrap_or_default(), None).await?;
        self.read_json(res).await
    }
}
