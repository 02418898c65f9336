//! The users service's error type: the failures every service shares (`kit::error`) and the
//! users service's own, mapped once to problem+json.

use axum::http::StatusCode;
use kit::Problem;
use kit::error::{DomainFailure, ServiceError};

pub type UsersError = ServiceError<UserFailure>;

pub type Result<T, E = UsersError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum UserFailure {
    #[error("that {0} is already taken")]
    Taken(&'static str),
    #[error("wrong credentials")]
    BadCredentials,
    #[error("too many attempts")]
    Throttled { retry_after_secs: u64 },
    #[error("the refresh token is not valid")]
    BadRefreshToken,
    #[error("the last administrator cannot be removed or demoted")]
    LastAdmin,
    #[error("password hashing is saturated")]
    Busy,
}

impl UserFailure {
    pub fn no_such_user() -> UsersError {
        ServiceError::NotFound("No such user.".into())
    }
}

impl DomainFailure for UserFailure {
    const DATABASE: &'static str = "user";

    fn into_problem(self) -> Problem {
        match self {
            UserFailure::Taken(what) => {
                Problem::conflict(format!("An account with that {what} already exists.")).with("field", what)
            }
            UserFailure::BadCredentials => {
                Problem::new(StatusCode::UNAUTHORIZED, "bad-credentials", "Wrong credentials")
                    .detail("The username/e-mail or the password is wrong.")
            }
            UserFailure::Throttled { retry_after_secs } => Problem::too_many_requests(retry_after_secs)
                .detail(format!("Too many failed sign-ins; try again in {retry_after_secs} s.")),
            UserFailure::BadRefreshToken => {
                Problem::unauthorized("The refresh token is invalid, expired, or was already used.")
            }
            UserFailure::LastAdmin => {
                Problem::conflict("The last administrator cannot be deleted or lose the admin role.")
            }
            UserFailure::Busy => Problem::overloaded("Too many sign-ins are being checked right now.", 1),
        }
    }
}
