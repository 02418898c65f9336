//! The users & auth service: accounts, Argon2id passwords, roles and permissions, sessions
//! with rotating refresh tokens, token signing and JWKS, revocation, service credentials.

pub mod config;
pub mod dialects;
pub mod domain;
pub mod error;
pub mod keys;
pub mod passwords;
pub mod routes;
pub mod service;
pub mod store;
pub mod throttle;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use kit::auth::TokenVerifier;
use kit::client_ip::TrustedProxies;
use kit::metrics::Metrics;
use kit::problem::SecuritySchemes;
use kit::server::ServiceShell;
use utoipa::OpenApi;

pub use config::Config;
pub use error::UsersError;
pub use service::UsersService;

pub const SERVICE: &str = "users";

#[derive(Clone)]
pub struct AppState {
    pub users: Arc<UsersService>,
    pub metrics: Metrics,
}

impl AppState {
    /// Connects the database, applies migrations, loads (or creates) the signing key and seeds
    /// the demo users when configured.
    pub async fn start(config: Config) -> Result<Self, UsersError> {
        let metrics = Metrics::new(SERVICE);
        metrics.spawn_upkeep();
        let users = UsersService::start(config, metrics.clone()).await?;
        Ok(AppState { users, metrics })
    }
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.users.verifier().clone()
    }
}

impl FromRef<AppState> for TrustedProxies {
    fn from_ref(state: &AppState) -> Self {
        state.users.config.trusted_proxies.clone()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ordermesh users & auth service", description = "Accounts, sign-in, sessions, tokens and JWKS."),
    paths(
        routes::register, routes::login, routes::refresh, routes::logout, routes::me, routes::update_me,
        routes::list_users, routes::get_user, routes::update_user, routes::delete_user,
        routes::verify, routes::service_token, routes::revocations, routes::jwks,
        dialects::login_with_token, dialects::verify_credentials, dialects::get_token,
    ),
    components(schemas(kit::Problem)),
    modifiers(&SecuritySchemes, &Links),
    tags(
        (name = "users", description = "Accounts and sessions"),
        (name = "auth", description = "Tokens for clients and services"),
        (name = "seed dialects", description = "The seed systems' own paths; see docs/dialects.md"),
    )
)]
pub struct ApiDoc;

/// Where the ids this service hands out go next (links, for clients and property-based
/// tests), and the seeds' paths that share a canonical handler.
struct Links;

impl utoipa::Modify for Links {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use kit::docs::alias_path;
        use kit::problem::link_response;
        use utoipa::openapi::path::HttpMethod::*;
        for target in ["get_user", "update_user", "delete_user"] {
            link_response(doc, "/users/register", Post, "201", target, "id", "$response.body#/id");
        }
        alias_path(doc, "/users/register", Post, "/register", Post);
        alias_path(doc, "/users/register", Post, "/users", Post);
        alias_path(doc, "/users/login", Post, "/login", Post);
        alias_path(doc, "/users/me", Get, "/profile", Get);
        alias_path(doc, "/users/me", Put, "/profile", Put);
        alias_path(doc, "/users/logout", Post, "/logout", Post);
    }
}

/// The service's whole router: its API plus health, readiness, metrics and docs.
pub fn router(state: AppState) -> Router {
    let shell = ServiceShell::new(SERVICE, state.metrics.clone(), state.users.config.server.clone(), ApiDoc::openapi())
        .with_database(state.users.store().db().clone());
    shell.wrap(routes::api().merge(dialects::routes()).with_state(state))
}
