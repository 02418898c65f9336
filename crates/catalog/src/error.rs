//! The catalog's error type: the failures every service shares (`kit::error`) and the
//! catalog's own, mapped once to problem+json.

use axum::http::{HeaderValue, StatusCode, header};
use kit::Problem;
use kit::error::{DomainFailure, ServiceError};

pub type CatalogError = ServiceError<CatalogFailure>;

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CatalogFailure {
    #[error("unknown product in line {line}: {reference}")]
    UnknownProduct { line: usize, reference: String },
    #[error("insufficient stock for product {product_id}")]
    InsufficientStock { product_id: i64, sku: String, requested: i64, available: i64 },
    #[error("the product changed since the given ETag")]
    PreconditionFailed { current_etag: String },
}

impl DomainFailure for CatalogFailure {
    const DATABASE: &'static str = "catalog";

    fn into_problem(self) -> Problem {
        match self {
            CatalogFailure::UnknownProduct { line, reference } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown-product", "Unknown product")
                    .detail(format!("Line {line} names no product on sale: {reference}."))
                    .with("line", line)
                    .with("product", reference)
            }
            CatalogFailure::InsufficientStock { product_id, sku, requested, available } => {
                Problem::new(StatusCode::CONFLICT, "insufficient-stock", "Not enough stock")
                    .detail(format!(
                        "Only {available} of {sku} available; {requested} requested. Nothing was reserved."
                    ))
                    .with("product_id", product_id)
                    .with("sku", sku)
                    .with("requested", requested)
                    .with("available", available)
            }
            CatalogFailure::PreconditionFailed { current_etag } => {
                Problem::new(StatusCode::PRECONDITION_FAILED, "precondition-failed", "The product changed")
                    .detail("Someone else changed this product since you read it; reload and try again.")
                    .header(
                        header::ETAG,
                        HeaderValue::from_str(&current_etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
                    )
            }
        }
    }
}
