//! RFC 9457 problem details: the one error body every ordermesh endpoint returns.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Marks a 503 as deliberate load shedding of one request ([`Problem::overloaded`]), not the
/// instance being unable to serve: the gateway's breakers and ejection do not count it.
pub const LOAD_SHED: &str = "x-load-shed";

/// An error as the client sees it. `type` is a stable URI-ish slug (`/problems/<kind>`),
/// `title` a short summary, `detail` what went wrong this time; extra members carry
/// machine-readable specifics (which field, the current price, …).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Self {
        Problem {
            kind: format!("/problems/{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            extensions: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.extensions.insert(key.to_string(), serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").detail(detail)
    }

    /// A request that parsed but whose content is not acceptable, naming the offending field.
    pub fn validation(field: &str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request content")
            .detail(detail)
            .with("field", field)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required")
            .detail(detail)
            .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed").detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(detail)
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let secs = retry_after_secs.max(1);
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
            .detail(format!("Slow down; retry in {secs} s."))
            .header(header::RETRY_AFTER, HeaderValue::from(secs))
    }

    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
            .detail(detail)
            .header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)))
    }

    /// A 503 that sheds this one request on purpose (too much of one kind of work right now,
    /// say password hashing during a sign-in flood) while the service goes on serving others.
    /// It carries [`LOAD_SHED`], so a load balancer does not take it for the instance failing.
    pub fn overloaded(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Problem::unavailable(detail, retry_after_secs)
            .header(HeaderName::from_static(LOAD_SHED), HeaderValue::from_static("true"))
    }

    pub fn internal() -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error")
            .detail("Something went wrong on our side; it has been logged.")
    }

    pub fn headers(&self) -> impl Iterator<Item = &(HeaderName, HeaderValue)> {
        self.headers.iter()
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        (status, headers, body).into_response()
    }
}

/// The problem+json error answers an operation can give, for its OpenAPI description. Every
/// operation lists the whole set: an undocumented status is worse than a documented one that
/// a given operation happens never to use.
pub struct ProblemResponses;

impl utoipa::IntoResponses for ProblemResponses {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        [
            ("400", "Malformed request: bad JSON, query or header"),
            ("401", "Missing, invalid, expired or revoked credentials"),
            ("403", "Authenticated, but not allowed to do this"),
            ("404", "No such resource (or not yours to see)"),
            ("409", "Conflicts with the current state"),
            ("412", "The resource changed since the given ETag (If-Match)"),
            ("413", "Request body too large"),
            ("415", "Body of a type this operation does not take (not JSON; not a JPEG, PNG or WebP picture)"),
            ("422", "Well-formed but invalid content; `field` names the culprit"),
            ("429", "Rate limited; see Retry-After"),
            ("503", "A dependency is unavailable; see Retry-After"),
        ]
        .into_iter()
        .map(|(code, description)| {
            let response = ResponseBuilder::new()
                .description(description)
                .content(CONTENT_TYPE, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
                .build();
            (code.to_string(), response.into())
        })
        .collect()
    }
}

/// Adds the bearer security schemes every service's OpenAPI document refers to.
pub struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A user's access token from POST /users/login"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "service_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A service token from POST /auth/token (client credentials)"))
                    .build(),
            ),
        );
    }
}

/// The fallback for paths no route matches.
pub async fn not_found_fallback(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("No resource at {}", uri.path()))
}

/// A 405 for a known path and an unsupported method.
pub async fn method_not_allowed_fallback(method: axum::http::Method) -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
        .detail(format!("{method} is not supported here"))
}

/// Adds an OpenAPI link from the answer of one operation to another, so clients and property
/// testers know where a created resource's id goes next (`id` of the body → `{id}` of the path).
pub fn link_response(
    doc: &mut utoipa::openapi::OpenApi,
    path: &str,
    method: utoipa::openapi::path::HttpMethod,
    status: &str,
    to_operation: &str,
    parameter: &str,
    expression: &str,
) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::link::LinkBuilder;
    use utoipa::openapi::path::HttpMethod;
    let Some(item) = doc.paths.paths.get_mut(path) else { return };
    let operation = match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    };
    let Some(operation) = operation else { return };
    let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) else { return };
    let link = LinkBuilder::new().operation_id(to_operation).parameter(parameter, expression).build();
    response.links.insert(to_operation.to_string(), RefOr::T(link));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_rfc9457_with_extensions() {
        let p = Problem::validation("email", "not an email address");
        let v: Value = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "/problems/validation");
        assert_eq!(v["status"], 422);
        assert_eq!(v["field"], "email");
        assert_eq!(v["detail"], "not an email address");
    }

    #[test]
    fn response_has_problem_content_type_and_headers() {
        let r = Problem::too_many_requests(7).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
    }
}
