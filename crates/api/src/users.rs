//! Accounts as the users service shows them, and the tokens a sign-in returns.

use kit::auth::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user as clients see it: never the password hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    #[schema(format = "uuid")]
    pub id: String,
    pub username: String,
    #[schema(format = "email")]
    pub email: Option<String>,
    pub name: String,
    pub role: Role,
    #[schema(format = "date-time")]
    pub created_at: String,
    #[schema(format = "date-time")]
    pub updated_at: String,
}

/// The tokens a successful sign-in or refresh returns.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; exchange it at `/users/refresh` for new tokens. Single use.
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub user: User,
}
