//! The orders service's one error type, mapped once to problem+json.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kit::Problem;
use kit::auth::AuthError;
use kit::client::UpstreamError;
use kit::money::Money;

use crate::domain::OrderStatus;

#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("no such order")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("the price of item {item} changed")]
    PriceChanged { item: usize, name: String, expected: Money, current: Money },
    #[error("cannot go from {from} to {to}")]
    IllegalTransition { from: OrderStatus, to: OrderStatus },
    #[error("the Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error("the order changed concurrently")]
    Concurrent,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("internal: {0}")]
    Internal(String),
    #[error("{0}")]
    Request(Problem),
}

impl OrdersError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        OrdersError::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<Problem> for OrdersError {
    fn from(p: Problem) -> Self {
        OrdersError::Request(p)
    }
}

impl From<OrdersError> for Problem {
    fn from(e: OrdersError) -> Problem {
        match e {
            OrdersError::Invalid { field, message } => Problem::validation(&field, format!("{field} {message}")),
            OrdersError::NotFound => Problem::not_found("No such order."),
            OrdersError::Forbidden(why) => Problem::forbidden(why),
            OrdersError::PriceChanged { item, name, expected, current } => Problem::new(
                StatusCode::CONFLICT,
                "price-changed",
                "The price changed",
            )
            .detail(format!(
                "{name} costs {current} now, not {expected}; nothing was ordered. Confirm the new price to order it."
            ))
            .with("item", item)
            .with("name", name)
            .with("expected_price", expected)
            .with("current_price", current),
            OrdersError::IllegalTransition { from, to } => {
                Problem::new(StatusCode::CONFLICT, "illegal-transition", "Illegal status change")
                    .detail(format!("The order is {from}; it cannot become {to}."))
                    .with("current_status", from.as_str())
                    .with("requested_status", to.as_str())
            }
            OrdersError::IdempotencyMismatch => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency-Key reused")
                    .detail("This Idempotency-Key was already used with a different request body.")
                    .with("field", "Idempotency-Key")
            }
            OrdersError::Concurrent => Problem::conflict("The order changed while this request ran; reload and retry."),
            OrdersError::Upstream(e) => e.to_problem(),
            OrdersError::Auth(e) => e.into(),
            OrdersError::Db(e) => kit::db::problem(&e, "order"),
            OrdersError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                Problem::internal()
            }
            OrdersError::Request(p) => p,
        }
    }
}

impl IntoResponse for OrdersError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type Result<T, E = OrdersError> = std::result::Result<T, E>;
