//! The seed systems' calls, translated at the edge into canonical API calls, so a client built
//! against any seed can point at ordermesh. Each seed is one table-like module mapping its
//! paths and bodies onto the canonical API; the translated request then goes through the same
//! layers as any other (rate limits, edge auth, the proxy) — there is no second implementation
//! of anything. Seed 001's gateway paths are the canonical ones and need no table; seed 000 is
//! Cap'n Web (`/rpc`). What each seed's calls need beyond the seed's own behaviour (credentials
//! where the seed had none) is listed in docs/dialects.md.

mod seed002;
mod seed003;
mod seed004;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kit::Problem;
use serde_json::Value;

/// A seed request's canonical form.
pub struct Translation {
    pub seed: &'static str,
    pub method: Method,
    /// `/api/...` with any query.
    pub path_and_query: String,
    pub body: BodyChange,
    pub acting_as: Option<ActingAs>,
    pub reply: Reply,
}

pub enum BodyChange {
    Keep,
    Rewrite(fn(Value) -> Value),
}

pub enum Reply {
    AsIs,
    /// Also give the access token as `token`, the name several seeds' clients read.
    WithTokenAlias,
}

/// The user a seed path names (`/orders/<username>/buy`): the caller must be that user, or an
/// administrator where `administrators_too`. Checked by `edge_auth` once the caller is known.
#[derive(Debug, Clone)]
pub struct ActingAs {
    pub username: String,
    pub administrators_too: bool,
}

impl Translation {
    fn new(seed: &'static str, method: Method, path_and_query: impl Into<String>) -> Self {
        Translation {
            seed,
            method,
            path_and_query: path_and_query.into(),
            body: BodyChange::Keep,
            acting_as: None,
            reply: Reply::AsIs,
        }
    }

    fn body(mut self, rewrite: fn(Value) -> Value) -> Self {
        self.body = BodyChange::Rewrite(rewrite);
        self
    }

    fn reply_with_token_alias(mut self) -> Self {
        self.reply = Reply::WithTokenAlias;
        self
    }

    fn acting_as(mut self, username: &str, administrators_too: bool) -> Self {
        self.acting_as = Some(ActingAs { username: username.to_string(), administrators_too });
        self
    }
}

/// Whether a request is an API call rather than a browser asking for a page: it sends JSON or
/// a bearer token, or does not ask for HTML. Paths that the storefront also serves (`/login`,
/// `/products`, …) are translated only for API calls.
fn api_call(headers: &HeaderMap) -> bool {
    let sends_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    let wants_html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"));
    sends_json || bearer || !wants_html
}

/// `path` with `query` appended (`?` or `&` as needed).
fn with_query(path: String, query: Option<&str>) -> String {
    match query.filter(|q| !q.is_empty()) {
        Some(q) if path.contains('?') => format!("{path}&{q}"),
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub fn translate(method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap) -> Option<Translation> {
    if path.starts_with("/api/") && !matches!(path, "/api/login" | "/api/purchases" | "/api/buy") {
        return None;
    }
    let api = api_call(headers);
    seed002::translate(method, path, query, api)
        .or_else(|| seed003::translate(method, path, query, api))
        .or_else(|| seed004::translate(method, path, query, api))
}

/// What the layer may spend reading a body it rewrites: it runs before the service shell's
/// own limits, so it applies the same ones itself.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// `BODY_LIMIT_BYTES`
    pub bytes: usize,
    /// `REQUEST_TIMEOUT`: a client that trickles its body is cut off after it.
    pub time: std::time::Duration,
}

/// The layer: translates a seed's request into its canonical form before anything else sees
/// it, and shapes the answer the way that seed's clients read it.
pub async fn seed_dialects(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Some(t) = translate(&parts.method, parts.uri.path(), parts.uri.query(), &parts.headers) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let Ok(uri) = t.path_and_query.parse() else {
        return Problem::bad_request("This request cannot be translated.").into_response();
    };
    tracing::debug!(seed = t.seed, from = %parts.uri, to = %t.path_and_query, "seed dialect");
    parts.uri = uri;
    parts.method = t.method;
    let body = match t.body {
        BodyChange::Keep => body,
        BodyChange::Rewrite(rewrite) => {
            let bytes = match tokio::time::timeout(limits.time, axum::body::to_bytes(body, limits.bytes)).await {
                Ok(Ok(b)) => b,
                Ok(Err(_)) => {
                    return kit::extract::payload_too_large(format!("The body may be at most {} bytes.", limits.bytes))
                        .into_response();
                }
                Err(_) => {
                    return Problem::new(StatusCode::REQUEST_TIMEOUT, "request-timeout", "Request timeout")
                        .detail(format!("The request body did not arrive within {} ms.", limits.time.as_millis()))
                        .into_response();
                }
            };
            // A body that is not JSON goes on unchanged, for the canonical handler to refuse
            // with its usual, precise answer.
            let rewritten = match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) => Bytes::from(serde_json::to_vec(&rewrite(value)).unwrap_or_default()),
                Err(_) => bytes,
            };
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Body::from(rewritten)
        }
    };
    if let Some(acting) = t.acting_as {
        parts.extensions.insert(acting);
    }
    let res = next.run(Request::from_parts(parts, body)).await;
    match t.reply {
        Reply::AsIs => res,
        Reply::WithTokenAlias => add_token_alias(res).await,
    }
}

async fn add_token_alias(res: Response) -> Response {
    if !res.status().is_success() {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Problem::internal().into_response();
    };
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(token) = object.get("access_token").cloned() {
        object.insert("token".into(), token);
    }
    let out = serde_json::to_vec(&object).unwrap_or_default();
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(parts, Body::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn browsers_keep_their_pages_and_api_clients_get_the_api() {
        let browser = headers(&[("accept", "text/html,application/xhtml+xml")]);
        let form = headers(&[("accept", "text/html"), ("content-type", "application/x-www-form-urlencoded")]);
        let json = headers(&[("content-type", "application/json")]);
        assert!(translate(&Method::GET, "/products", None, &browser).is_none());
        assert!(translate(&Method::POST, "/login", None, &form).is_none());
        assert_eq!(translate(&Method::POST, "/login", None, &json).unwrap().path_and_query, "/api/users/login");
        assert_eq!(
            translate(&Method::GET, "/products", Some("page=2"), &HeaderMap::new()).unwrap().path_and_query,
            "/api/products?page=2"
        );
    }

    #[test]
    fn canonical_paths_pass_through() {
        assert!(translate(&Method::GET, "/api/products", None, &HeaderMap::new()).is_none());
        assert!(translate(&Method::GET, "/health", None, &HeaderMap::new()).is_none());
    }

    #[test]
    fn path_values_become_query_values() {
        let t = translate(&Method::GET, "/products/category/Home%20%26%20Garden", Some("page=1"), &HeaderMap::new())
            .unwrap();
        assert_eq!(t.path_and_query, "/api/products?category=Home+%26+Garden&page=1");
        let t = translate(&Method::GET, "/orders/bob/purchases", None, &HeaderMap::new()).unwrap();
        assert_eq!(t.path_and_query, "/api/orders?username=bob&per_page=100");
        assert_eq!(t.acting_as.unwrap().username, "bob");
    }
}
