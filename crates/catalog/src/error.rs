//! The catalog's one error type, mapped once to problem+json.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kit::Problem;
use kit::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unknown product in line {line}: {reference}")]
    UnknownProduct { line: usize, reference: String },
    #[error("insufficient stock for product {product_id}")]
    InsufficientStock { product_id: i64, sku: String, requested: i64, available: i64 },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the product changed since the given ETag")]
    PreconditionFailed { current_etag: String },
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("internal: {0}")]
    Internal(String),
    #[error("{0}")]
    Request(Problem),
}

impl CatalogError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        CatalogError::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<Problem> for CatalogError {
    fn from(p: Problem) -> Self {
        CatalogError::Request(p)
    }
}

impl From<CatalogError> for Problem {
    fn from(e: CatalogError) -> Problem {
        match e {
            CatalogError::Invalid { field, message } => Problem::validation(&field, format!("{field} {message}")),
            CatalogError::NotFound(what) => Problem::not_found(what),
            CatalogError::UnknownProduct { line, reference } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown-product", "Unknown product")
                    .detail(format!("Line {line} names no product on sale: {reference}."))
                    .with("line", line)
                    .with("product", reference)
            }
            CatalogError::InsufficientStock { product_id, sku, requested, available } => {
                Problem::new(StatusCode::CONFLICT, "insufficient-stock", "Not enough stock")
                    .detail(format!(
                        "Only {available} of {sku} available; {requested} requested. Nothing was reserved."
                    ))
                    .with("product_id", product_id)
                    .with("sku", sku)
                    .with("requested", requested)
                    .with("available", available)
            }
            CatalogError::Conflict(why) => Problem::conflict(why),
            CatalogError::PreconditionFailed { current_etag } => {
                Problem::new(StatusCode::PRECONDITION_FAILED, "precondition-failed", "The product changed")
                    .detail("Someone else changed this product since you read it; reload and try again.")
                    .header(
                        header::ETAG,
                        HeaderValue::from_str(&current_etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
                    )
            }
            CatalogError::Forbidden(why) => Problem::forbidden(why),
            CatalogError::Auth(e) => e.into(),
            CatalogError::Db(e) => kit::db::problem(&e, "catalog"),
            CatalogError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                Problem::internal()
            }
            CatalogError::Request(p) => p,
        }
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
