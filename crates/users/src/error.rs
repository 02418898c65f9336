//! The users service's one error type, mapped once to problem+json.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kit::Problem;
use kit::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("that {0} is already taken")]
    Taken(&'static str),
    #[error("wrong credentials")]
    BadCredentials,
    #[error("too many attempts")]
    Throttled { retry_after_secs: u64 },
    #[error("no such user")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("the refresh token is not valid")]
    BadRefreshToken,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the last administrator cannot be removed or demoted")]
    LastAdmin,
    #[error("password hashing is saturated")]
    Busy,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("internal: {0}")]
    Internal(String),
    /// A request-level problem already in its final form (e.g. paging out of range).
    #[error("{0}")]
    Request(Problem),
}

impl From<Problem> for UsersError {
    fn from(p: Problem) -> Self {
        UsersError::Request(p)
    }
}

impl UsersError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        UsersError::Invalid { field, message: message.into() }
    }
}

impl From<UsersError> for Problem {
    fn from(e: UsersError) -> Problem {
        match e {
            UsersError::Invalid { field, message } => Problem::validation(field, format!("{field} {message}")),
            UsersError::Taken(what) => {
                Problem::conflict(format!("An account with that {what} already exists.")).with("field", what)
            }
            UsersError::BadCredentials => {
                Problem::new(StatusCode::UNAUTHORIZED, "bad-credentials", "Wrong credentials")
                    .detail("The username/e-mail or the password is wrong.")
            }
            UsersError::Throttled { retry_after_secs } => Problem::too_many_requests(retry_after_secs)
                .detail(format!("Too many failed sign-ins; try again in {retry_after_secs} s.")),
            UsersError::NotFound => Problem::not_found("No such user."),
            UsersError::Forbidden(why) => Problem::forbidden(why),
            UsersError::BadRefreshToken => {
                Problem::unauthorized("The refresh token is invalid, expired, or was already used.")
            }
            UsersError::Auth(e) => e.into(),
            UsersError::LastAdmin => {
                Problem::conflict("The last administrator cannot be deleted or lose the admin role.")
            }
            UsersError::Busy => Problem::overloaded("Too many sign-ins are being checked right now.", 1),
            UsersError::Db(e) => kit::db::problem(&e, "user"),
            UsersError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                Problem::internal()
            }
            UsersError::Request(p) => p,
        }
    }
}

impl IntoResponse for UsersError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type Result<T, E = UsersError> = std::result::Result<T, E>;
