//! The orders service's error type: the failures every service shares (`kit::error`) and the
//! orders service's own, mapped once to problem+json.

use api::money::Money;
use axum::http::StatusCode;
use kit::Problem;
use kit::error::{DomainFailure, ServiceError};

use api::orders::OrderStatus;

pub type OrdersError = ServiceError<OrderFailure>;

pub type Result<T, E = OrdersError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum OrderFailure {
    #[error("the price of item {item} changed")]
    PriceChanged { item: usize, name: String, expected: Money, current: Money },
    #[error("cannot go from {from} to {to}")]
    IllegalTransition { from: OrderStatus, to: OrderStatus },
    #[error("the Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error("the order changed concurrently")]
    Concurrent,
}

impl OrderFailure {
    /// `404`, the same for an order that does not exist and one the caller may not see.
    pub fn no_such_order() -> OrdersError {
        ServiceError::NotFound("No such order.".into())
    }
}

impl DomainFailure for OrderFailure {
    const DATABASE: &'static str = "order";

    fn into_problem(self) -> Problem {
        match self {
            OrderFailure::PriceChanged { item, name, expected, current } => Problem::new(
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
            OrderFailure::IllegalTransition { from, to } => {
                Problem::new(StatusCode::CONFLICT, "illegal-transition", "Illegal status change")
                    .detail(format!("The order is {from}; it cannot become {to}."))
                    .with("current_status", from.as_str())
                    .with("requested_status", to.as_str())
            }
            OrderFailure::IdempotencyMismatch => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency-Key reused")
                    .detail("This Idempotency-Key was already used with a different request body.")
                    .with("field", "Idempotency-Key")
            }
            OrderFailure::Concurrent => {
                Problem::conflict("The order changed while this request ran; reload and retry.")
            }
        }
    }
}
