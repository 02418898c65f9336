//! HTTP handlers: parse, call the service, shape the answer. Nothing else.

use api::Grants;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use kit::auth::{Auth, ClientCredentials, JwkSet, Role, ServiceToken, bearer_token};
use kit::client_ip::ClientIp;
use kit::extract::{Json, OptionalJson, Path, Query};
use kit::pagination::{PageRequest, Paged};
use kit::problem::ProblemResponses;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{Result, UsersError};
use crate::service::{ProfileUpdate, Registration, TokenResponse};
use crate::store::User;

pub fn api() -> Router<AppState> {
    Router::new()
        .route("/users/register", post(register))
        .route("/users/login", post(login))
        .route("/users/refresh", post(refresh))
        .route("/users/logout", post(logout))
        .route("/users/me", get(me).put(update_me))
        .route("/users", get(list_users))
        .route("/users/{id}", get(get_user).put(update_user).delete(delete_user))
        .route("/auth/verify", post(verify))
        .route("/auth/token", post(service_token))
        .route("/auth/revocations", get(revocations))
        .route("/.well-known/jwks.json", get(jwks))
}

/// A new account. `username` or `email` (or both) identify it; a missing username is derived
/// from the e-mail. Everyone registers as a `user`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(min_length = 1, max_length = 100, example = "John Doe")]
    pub name: Option<String>,
    #[schema(min_length = 3, max_length = 32, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$", example = "john")]
    pub username: Option<String>,
    #[schema(format = "email", max_length = 254, example = "john@example.com")]
    pub email: Option<String>,
    #[schema(min_length = 8, max_length = 128, example = "correct-horse-42")]
    pub password: String,
    /// Only `user` is accepted here; administrators grant other roles.
    pub role: Option<Role>,
}

/// Sign in with `email` or `username` (or `login`, either one) and the password.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    pub username: Option<String>,
    pub email: Option<String>,
    pub login: Option<String>,
    pub password: String,
}

/// At least one of `username`, `email` or `login` names the account: the schema says so with
/// `anyOf`, which the derive cannot express.
impl utoipa::PartialSchema for LoginRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, SchemaType, Type};
        let text = |max: usize| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .min_length(Some(1))
                .max_length(Some(max))
        };
        let with = |identifier: &str| {
            ObjectBuilder::new()
                .property("username", text(254))
                .property("email", text(254))
                .property("login", text(254))
                .property(
                    "password",
                    ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(1024)),
                )
                .required(identifier)
                .required("password")
        };
        AnyOfBuilder::new()
            .item(with("username"))
            .item(with("email"))
            .item(with("login"))
            .description(Some("Sign in with `username`, `email` or `login` (either one) and the password."))
            .examples([serde_json::json!({"username": "alice", "password": "alice123"})])
            .into()
    }
}

impl utoipa::ToSchema for LoginRequest {}

impl LoginRequest {
    pub fn identifier(&self) -> Result<&str> {
        self.login
            .as_deref()
            .or(self.username.as_deref())
            .or(self.email.as_deref())
            .ok_or_else(|| UsersError::invalid("username", "or email is required"))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LogoutRequest {
    /// Also end the session this refresh token belongs to (normally the same session).
    pub refresh_token: Option<String>,
}

/// Fields to change; absent fields stay as they are. Changing your own password needs
/// `current_password`. Only administrators may send a different `role`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(min_length = 3, max_length = 32)]
    pub username: Option<String>,
    #[schema(format = "email", max_length = 254)]
    pub email: Option<String>,
    #[schema(min_length = 8, max_length = 128)]
    pub password: Option<String>,
    pub current_password: Option<String>,
    pub role: Option<Role>,
}

impl From<UpdateRequest> for ProfileUpdate {
    fn from(r: UpdateRequest) -> Self {
        ProfileUpdate {
            name: r.name,
            username: r.username,
            email: r.email,
            password: r.password,
            current_password: r.current_password,
            role: r.role,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(minimum = 1, maximum = 100000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
    /// Matches username, e-mail or name.
    #[param(max_length = 100)]
    pub q: Option<String>,
    pub role: Option<Role>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The token to check; when absent, the bearer token of the request is checked.
    pub token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    pub sub: String,
    pub username: Option<String>,
    pub role: Role,
    pub permissions: Vec<String>,
    pub exp: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevocationsQuery {
    /// Unix milliseconds; only revocations after this are returned.
    #[param(minimum = 0)]
    pub since: Option<i64>,
}

#[utoipa::path(post, path = "/users/register", tag = "users", request_body = RegisterRequest,
    responses((status = 201, description = "Account created", body = User, headers(("location" = String))), ProblemResponses))]
pub async fn register(State(state): State<AppState>, Json(body): Json<RegisterRequest>) -> Result<impl IntoResponse> {
    if body.role.is_some_and(|r| r != Role::User) {
        return Err(UsersError::Forbidden("Roles are granted by administrators; register as a user.".into()));
    }
    let user = state
        .users
        .register(Registration { name: body.name, username: body.username, email: body.email, password: body.password })
        .await?;
    let location = format!("/users/{}", user.id);
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, location)], Json(user)))
}

#[utoipa::path(post, path = "/users/login", tag = "users", request_body = LoginRequest,
    responses((status = 200, description = "Signed in", body = TokenResponse), ProblemResponses))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginRequest>,
) -> Result<Json<TokenResponse>> {
    Ok(Json(state.users.login(body.identifier()?, &body.password, ip).await?))
}

#[utoipa::path(post, path = "/users/refresh", tag = "users", request_body = RefreshRequest,
    responses((status = 200, description = "New tokens; the presented refresh token is spent", body = TokenResponse), ProblemResponses))]
pub async fn refresh(State(state): State<AppState>, Json(body): Json<RefreshRequest>) -> Result<Json<TokenResponse>> {
    Ok(Json(state.users.refresh(&body.refresh_token).await?))
}

#[utoipa::path(post, path = "/users/logout", tag = "users", request_body(content = Option<LogoutRequest>, description = "optional"),
    security(("bearer" = [])),
    responses((status = 204, description = "Session ended"), ProblemResponses))]
pub async fn logout(
    State(state): State<AppState>,
    Auth(principal): Auth,
    OptionalJson(body): OptionalJson<LogoutRequest>,
) -> Result<StatusCode> {
    let refresh = body.and_then(|b| b.refresh_token);
    state.users.logout(&principal, refresh.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The caller's account", body = User), ProblemResponses))]
pub async fn me(State(state): State<AppState>, Auth(principal): Auth) -> Result<Json<User>> {
    Ok(Json(state.users.me(&principal).await?))
}

#[utoipa::path(put, path = "/users/me", tag = "users", security(("bearer" = [])), request_body = UpdateRequest,
    responses((status = 200, description = "Updated", body = User), ProblemResponses))]
pub async fn update_me(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Json(body): Json<UpdateRequest>,
) -> Result<Json<User>> {
    let id = principal.user_id.ok_or_else(|| UsersError::Forbidden("services have no profile".into()))?.to_string();
    Ok(Json(state.users.update(&principal, &id, body.into()).await?))
}

#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "One page of users (administrators only)", body = Paged<User>), ProblemResponses))]
pub async fn list_users(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Paged<User>>> {
    let page = PageRequest::new(q.page, q.per_page)?;
    if q.q.as_deref().is_some_and(|s| s.chars().count() > 100) {
        return Err(kit::Problem::bad_request("q must be at most 100 characters").with("parameter", "q").into());
    }
    Ok(Json(state.users.list(&principal, page, q.q.as_deref(), q.role).await?))
}

#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "User id, or username")),
    responses((status = 200, description = "The user (yourself, or anyone for administrators)", body = User), ProblemResponses))]
pub async fn get_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<User>> {
    Ok(Json(state.users.get(&principal, &id).await?))
}

#[utoipa::path(put, path = "/users/{id}", tag = "users", security(("bearer" = [])), request_body = UpdateRequest,
    params(("id" = String, Path, description = "User id, or username")),
    responses((status = 200, description = "Updated", body = User), ProblemResponses))]
pub async fn update_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Json(body): Json<UpdateRequest>,
) -> Result<Json<User>> {
    Ok(Json(state.users.update(&principal, &id, body.into()).await?))
}

#[utoipa::path(delete, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "User id, or username")),
    responses((status = 204, description = "Deleted; the user's sessions ended"), ProblemResponses))]
pub async fn delete_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.users.delete(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/auth/verify", tag = "auth", request_body(content = Option<VerifyRequest>, description = "optional; defaults to the bearer token"),
    responses((status = 200, description = "The token is valid; its claims", body = VerifyResponse), ProblemResponses))]
pub async fn verify(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    OptionalJson(body): OptionalJson<VerifyRequest>,
) -> Result<Json<VerifyResponse>> {
    let from_header = bearer_token(&headers)?.map(str::to_string);
    let token = body.and_then(|b| b.token).or(from_header).ok_or(kit::auth::AuthError::Missing)?;
    let p = state.users.verifier().verify(&token).await?;
    Ok(Json(VerifyResponse {
        valid: true,
        sub: p.subject.clone(),
        username: p.username.clone(),
        role: p.role,
        permissions: p.permissions().into_iter().map(String::from).collect(),
        exp: p.exp,
    }))
}

#[utoipa::path(post, path = "/auth/token", tag = "auth", request_body = ClientCredentials,
    responses((status = 200, description = "A service token (client-credentials grant)", body = ServiceToken), ProblemResponses))]
pub async fn service_token(
    State(state): State<AppState>,
    Json(body): Json<ClientCredentials>,
) -> Result<Json<ServiceToken>> {
    let (token, ttl) = state.users.service_token(&body.client_id, &body.client_secret, body.audience.as_deref())?;
    Ok(Json(ServiceToken { access_token: token, token_type: "bearer".into(), expires_in: ttl }))
}

#[utoipa::path(get, path = "/auth/revocations", tag = "auth", params(RevocationsQuery), security(("service_token" = [])),
    responses((status = 200, description = "Access tokens and sessions revoked since `since`; for services only", body = kit::auth::RevocationFeed), ProblemResponses))]
pub async fn revocations(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<RevocationsQuery>,
) -> Result<Json<kit::auth::RevocationFeed>> {
    // Which tokens and sessions ended, and when, is for the services that enforce it.
    if caller.role != Role::Service {
        return Err(UsersError::Forbidden("the revocation feed is for services (a service token for users)".into()));
    }
    let since = q.since.unwrap_or(0);
    if since < 0 {
        return Err(UsersError::invalid("since", "must not be negative"));
    }
    Ok(Json(kit::auth::RevocationFeed { revocations: state.users.store().revocations_since(since).await? }))
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "Public keys that verify this service's tokens", body = JwkSet), ProblemResponses))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    ([(axum::http::header::CACHE_CONTROL, "public, max-age=300")], Json(state.users.jwks()))
}
