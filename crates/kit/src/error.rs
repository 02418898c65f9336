//! The one error type every service uses: the failures all of them share (bad input, not
//! found, forbidden, conflicts, tokens, the database, other services, bugs), plus the
//! service's own domain failures, mapped once to problem+json.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};

use crate::Problem;
use crate::auth::AuthError;
use crate::client::UpstreamError;

/// A service's own failures: the ones only it can have (not enough stock, an illegal status
/// change, wrong credentials), each with its own problem type.
pub trait DomainFailure: std::fmt::Debug + std::fmt::Display {
    /// What the service's database holds, for "the … database is not available right now".
    const DATABASE: &'static str;

    fn into_problem(self) -> Problem;
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError<D: DomainFailure> {
    #[error("{field}: {message}")]
    Invalid { field: Cow<'static, str>, message: String },
    /// The detail says what was not found ("No such order.").
    #[error("not found: {0}")]
    NotFound(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A bug or a broken invariant: logged, and answered with a bare 500.
    #[error("internal: {0}")]
    Internal(String),
    /// A request-level problem already in its final form (e.g. paging out of range).
    #[error("{0}")]
    Request(Problem),
    #[error("{0}")]
    Domain(D),
}

impl<D: DomainFailure> ServiceError<D> {
    /// Bad input: `422` naming the field.
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ServiceError::Invalid { field: field.into(), message: message.into() }
    }
}

impl<D: DomainFailure> From<D> for ServiceError<D> {
    fn from(failure: D) -> Self {
        ServiceError::Domain(failure)
    }
}

impl<D: DomainFailure> From<Problem> for ServiceError<D> {
    fn from(p: Problem) -> Self {
        ServiceError::Request(p)
    }
}

impl<D: DomainFailure> From<ServiceError<D>> for Problem {
    fn from(e: ServiceError<D>) -> Problem {
        match e {
            ServiceError::Invalid { field, message } => Problem::validation(&field, format!("{field} {message}")),
            ServiceError::NotFound(what) => Problem::not_found(what),
            ServiceError::Forbidden(why) => Problem::forbidden(why),
            ServiceError::Conflict(why) => Problem::conflict(why),
            ServiceError::Auth(e) => e.into(),
            ServiceError::Db(e) => crate::db::problem(&e, D::DATABASE),
            ServiceError::Upstream(e) => e.to_problem(),
            ServiceError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                Problem::internal()
            }
            ServiceError::Request(p) => p,
            ServiceError::Domain(d) => d.into_problem(),
        }
    }
}

impl<D: DomainFailure> IntoResponse for ServiceError<D> {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("out of biscuits")]
    struct OutOfBiscuits;

    impl DomainFailure for OutOfBiscuits {
        const DATABASE: &'static str = "biscuit";
        fn into_problem(self) -> Problem {
            Problem::conflict("No biscuits left.")
        }
    }

    type BiscuitError = ServiceError<OutOfBiscuits>;

    #[test]
    fn shared_failures_and_domain_failures_map_to_their_problems() {
        let invalid = Problem::from(BiscuitError::invalid("flavour", "must not be empty"));
        assert_eq!((invalid.status, invalid.detail.as_deref()), (422, Some("flavour must not be empty")));
        assert_eq!(Problem::from(BiscuitError::NotFound("No such biscuit.".into())).status, 404);
        assert_eq!(Problem::from(BiscuitError::Domain(OutOfBiscuits)).status, 409);
        let down = Problem::from(BiscuitError::Db(sqlx::Error::PoolTimedOut));
        assert_eq!(down.status, 503);
        assert!(down.detail.unwrap().contains("biscuit database"));
    }
}
