//! The seeds' own paths on the users service's port, for clients that talk to it directly:
//! thin aliases onto the canonical handlers. See docs/dialects.md for what differs.
//!
//! | seed | path | canonical |
//! |---|---|---|
//! | 001, 003 | `POST /register` | `POST /users/register` |
//! | 001, 003 | `POST /login` | `POST /users/login` |
//! | 003 | `GET`/`PUT /profile`, `POST /logout` | `/users/me`, `/users/logout` |
//! | 004 (auth service) | `POST /auth/login` | `POST /users/login`, with `token` |
//! | 004 (users service) | `POST /users` | `POST /users/register` |
//! | 004 (users service) | `POST /users/verify` | checks a username and password |
//! | 002 | `POST /get-token` | `POST /auth/token` (the service's secret is required) |

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use kit::auth::{ClientCredentials, GrantType, ServiceToken};
use kit::client_ip::ClientIp;
use kit::extract::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{Result, UsersError};
use crate::routes::{self, LoginRequest};
use crate::service::TokenResponse;
use crate::store::User;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/register", post(routes::register))
        .route("/login", post(routes::login))
        .route("/profile", get(routes::me).put(routes::update_me))
        .route("/logout", post(routes::logout))
        .route("/auth/login", post(login_with_token))
        .route("/users", post(routes::register))
        .route("/users/verify", post(verify_credentials))
        .route("/get-token", post(get_token))
}

/// The canonical sign-in answer plus `token`, the access token under the name seed 004's
/// clients read.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenWithAlias {
    #[serde(flatten)]
    pub tokens: TokenResponse,
    pub token: String,
}

impl From<TokenResponse> for TokenWithAlias {
    fn from(tokens: TokenResponse) -> Self {
        let token = tokens.access_token.clone();
        TokenWithAlias { tokens, token }
    }
}

#[utoipa::path(post, path = "/auth/login", tag = "seed dialects", request_body = LoginRequest,
    responses((status = 200, description = "Seed 004's auth service: the canonical sign-in answer plus `token`", body = TokenWithAlias),
        kit::problem::ProblemResponses))]
pub async fn login_with_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginRequest>,
) -> Result<Json<TokenWithAlias>> {
    Ok(Json(state.users.login(body.identifier()?, &body.password, ip).await?.into()))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CredentialCheck {
    pub valid: bool,
    pub user: User,
}

#[utoipa::path(post, path = "/users/verify", tag = "seed dialects", request_body = LoginRequest,
    responses((status = 200, description = "Seed 004's users service: the credentials are right (401 when not)", body = CredentialCheck),
        kit::problem::ProblemResponses))]
pub async fn verify_credentials(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginRequest>,
) -> Result<Json<CredentialCheck>> {
    let user = state.users.check_credentials(body.identifier()?, &body.password, ip).await?;
    Ok(Json(CredentialCheck { valid: true, user }))
}

/// Seed 002 hands a token to anyone naming a service; here the service must also prove who it
/// is with its secret.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GetTokenRequest {
    /// The service's client id; seed 002's `order-service` names the orders service.
    #[schema(min_length = 1, max_length = 100, example = "order-service")]
    pub service_name: String,
    /// Required: seed 002 sent none, but a token without proof would be anyone's to take.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The service the token is for (`users`, `catalog`, `orders`); the catalog by default,
    /// where seed 002 uses it.
    #[serde(default)]
    pub audience: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GetTokenReply {
    #[serde(flatten)]
    pub token: ServiceToken,
    /// The access token again, under seed 002's name.
    #[serde(rename = "token")]
    pub token_alias: String,
}

#[utoipa::path(post, path = "/get-token", tag = "seed dialects", request_body = GetTokenRequest,
    responses((status = 200, description = "Seed 002's service token, for a service that proves itself", body = GetTokenReply),
        kit::problem::ProblemResponses))]
pub async fn get_token(
    State(state): State<AppState>,
    Json(body): Json<GetTokenRequest>,
) -> Result<Json<GetTokenReply>> {
    let client_secret = body.client_secret.ok_or_else(|| {
        UsersError::invalid("client_secret", "is required: service tokens go only to services that prove who they are")
    })?;
    let Json(token) = routes::service_token(
        State(state),
        Json(ClientCredentials {
            grant_type: Some(GrantType::ClientCredentials),
            client_id: body.service_name,
            client_secret,
            audience: body.audience,
        }),
    )
    .await?;
    let alias = token.access_token.clone();
    Ok(Json(GetTokenReply { token, token_alias: alias }))
}
