//! Extractors that turn axum's rejections into problem+json with the right 4xx, so a
//! malformed body, query or path never yields a plain-text error or a 5xx.

use axum::extract::rejection::{JsonRejection, MissingJsonContentType, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// `axum::Json`, with rejections as problem+json: 400 for syntax, 422 for wrong types or
/// missing fields, 413 for bodies over the limit, 415 without a JSON content type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // What `axum::Json` does (content type, body within the limit, parse), keeping the
        // bytes to look for NUL characters in them afterwards.
        if !json_content_type(req.headers()) {
            return Err(json_rejection(MissingJsonContentType::default().into()));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| json_rejection(e.into()))?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes).map_err(json_rejection)?;
        if json_has_nul(&bytes) {
            return Err(nul_in_body());
        }
        Ok(Json(value))
    }
}

/// `application/json` or `application/<anything>+json`, as `axum::Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(mime) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    mime.type_() == "application" && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
}

/// Whether JSON text holds a NUL character: `\u0000`, the only way JSON can carry one (or a
/// raw NUL byte, which is not JSON at all). No text this API takes means one, and PostgreSQL
/// cannot store one in a text column, so bodies with one are refused before any handler runs:
/// the same answer on every database.
pub fn json_has_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0 => return true,
            b'\\' => {
                if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000".as_slice()) {
                    return true;
                }
                // Skip the escaped character, so `\\u0000` (a backslash, then text) is not one.
                i += 2;
            }
            _ => i += 1,
        }
    }
    false
}

fn nul_in_body() -> Problem {
    Problem::validation("body", "Text must not contain NUL characters (\\u0000).")
}

/// Whether a query string decodes to a NUL character, and in which parameter.
fn query_nul(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        .map(|(k, _)| k.replace('\0', ""))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

pub fn json_rejection(rejection: JsonRejection) -> Problem {
    let status = rejection.status();
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let detail = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.body_text());
            let field = field_from_serde_message(&detail);
            let mut p =
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request content").detail(detail);
            if let Some(field) = field {
                p = p.with("field", field);
            }
            p
        }
        JsonRejection::JsonSyntaxError(e) => {
            let detail = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.body_text());
            Problem::bad_request(format!("The body is not valid JSON: {detail}"))
        }
        JsonRejection::MissingJsonContentType(_) => {
            Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
                .detail("Send the body as JSON with `Content-Type: application/json`.")
        }
        other if status == StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(other.body_text()),
        other => Problem::new(status, "bad-request", "Bad request").detail(other.body_text()),
    }
}

pub fn payload_too_large(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large").detail(detail)
}

/// Finds the field a serde message is about: `path.to.field: invalid type …` (serde_path_to_error)
/// or "missing field `email`" / "unknown field `x`".
fn field_from_serde_message(message: &str) -> Option<String> {
    if let Some((prefix, _)) = message.split_once(": ")
        && !prefix.is_empty()
        && prefix != "."
        && !prefix.contains([' ', '`'])
    {
        return Some(prefix.to_string());
    }
    let marker = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|m| message.find(m).map(|i| i + m.len()))?;
    let end = marker + message[marker..].find('`')?;
    Some(message[marker..end].to_string())
}

/// A JSON body that may be absent: an empty body is `None`, anything else must be valid JSON
/// of the right shape.
#[derive(Debug, Clone, Default)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_body = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .map(|v| v != "0")
            .unwrap_or_else(|| req.headers().contains_key(axum::http::header::TRANSFER_ENCODING));
        if !has_body {
            return Ok(OptionalJson(None));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large(e.body_text())
            } else {
                Problem::bad_request(e.body_text())
            }
        })?;
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() || trimmed == b"null" {
            return Ok(OptionalJson(None));
        }
        match serde_json::from_slice::<T>(&bytes) {
            Ok(_) if json_has_nul(&bytes) => Err(nul_in_body()),
            Ok(v) => Ok(OptionalJson(Some(v))),
            Err(e) if e.is_syntax() || e.is_eof() => {
                Err(Problem::bad_request(format!("The body is not valid JSON: {e}")))
            }
            Err(e) => {
                let message = e.to_string();
                let field = field_from_serde_message(&message).unwrap_or_else(|| "body".to_string());
                Err(Problem::validation(&field, message))
            }
        }
    }
}

/// `axum::extract::Query` with a 400 problem that names the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if let Some(parameter) = query_nul(query) {
            return Err(Problem::bad_request(format!("Query parameter `{parameter}` contains a NUL character."))
                .with("parameter", parameter));
        }
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(Query).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.inner().to_string();
            let parameter = if path != "." && !path.is_empty() { Some(path) } else { field_from_serde_message(&inner) };
            match parameter {
                Some(p) => Problem::bad_request(format!("Invalid query parameter `{p}`: {inner}")).with("parameter", p),
                None => Problem::bad_request(format!("Invalid query: {inner}")),
            }
        })
    }
}

/// `axum::extract::Path`; an id that does not parse names no resource, so it is a 404.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A NUL (`%00`) names nothing that can exist.
        if parts.uri.path().contains("%00") {
            return Err(Problem::not_found(format!("No resource at {}", parts.uri.path())));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(Problem::not_found(format!("No resource at {}", parts.uri.path())))
            }
            Err(other) => Err(Problem::bad_request(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_characters_in_json_text() {
        assert!(json_has_nul(br#"{"name": "a\u0000b"}"#));
        assert!(json_has_nul(br#"["\\\u0000"]"#), "an escaped backslash, then a NUL");
        assert!(json_has_nul(b"{\"a\": \"\x00\"}"));
        assert!(!json_has_nul(br#"{"name": "a\\u0000b"}"#), "a backslash, then the text u0000");
        assert!(!json_has_nul(br#"{"n": "\u0001", "m": "\u00e9"}"#));
        assert!(!json_has_nul(br#"{"name": "caf\u00e9", "x": "\\"}"#));
        assert!(!json_has_nul(br#"{"trailing": "\"#));
        assert_eq!(query_nul("q=a%00b&x=1").as_deref(), Some("q"));
        assert_eq!(query_nul("q=a&x%00=1").as_deref(), Some("x"));
        assert_eq!(query_nul("q=%2500"), None, "an encoded percent sign, then 00");
    }

    #[test]
    fn finds_field_in_serde_messages() {
        assert_eq!(field_from_serde_message("missing field `email` at line 1 column 2").as_deref(), Some("email"));
        assert_eq!(field_from_serde_message("expected a string").as_deref(), None);
    }
}

/// The path a proxy in front serves this service under (`X-Forwarded-Prefix`; the gateway
/// sends `/api`), for the links a service writes into its answers. It only shapes links in
/// the caller's own answer, so it needs no trust; anything but a short plain path is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardedPrefix(pub String);

impl ForwardedPrefix {
    pub fn parse(value: &str) -> Option<ForwardedPrefix> {
        let plain = value.len() <= 64
            && value.starts_with('/')
            && !value.contains("//")
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
            && !value.split('/').any(|segment| segment == "..");
        plain.then(|| ForwardedPrefix(value.trim_end_matches('/').to_string()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ForwardedPrefix {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .headers
            .get("x-forwarded-prefix")
            .and_then(|v| v.to_str().ok())
            .and_then(ForwardedPrefix::parse)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod forwarded_prefix_tests {
    use super::ForwardedPrefix;

    #[test]
    fn only_plain_paths_become_link_prefixes() {
        assert_eq!(ForwardedPrefix::parse("/api"), Some(ForwardedPrefix("/api".into())));
        assert_eq!(ForwardedPrefix::parse("/shop/api/"), Some(ForwardedPrefix("/shop/api".into())));
        for bad in ["api", "//evil.example", "/a/../b", "/a b", "/\"><script>", "https://x"] {
            assert_eq!(ForwardedPrefix::parse(bad), None, "{bad}");
        }
    }
}
