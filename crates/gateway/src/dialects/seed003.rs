//! Seed 003 (FastAPI user and inventory services behind a Go gateway).
//!
//! | seed call | canonical |
//! |---|---|
//! | `POST /login` `{username, password}` → `{access_token, token_type: "bearer"}` | `POST /api/users/login` |
//! | `POST /register` | `POST /api/users/register` |
//! | `GET`/`PUT /profile` | `GET`/`PUT /api/users/me` |
//! | `POST /logout` | `POST /api/users/logout` |
//! | `GET /inventory/assets` (public; filters and pages) | `GET /api/products` |
//! | `GET /inventory/assets/{id}` (public) | `GET /api/products/{id}` |
//! | `POST /inventory/orders` (authenticated) | `POST /api/orders` |
//!
//! `/login`, `/register`, `/profile` and `/logout` are also storefront pages: browsers get the
//! pages, API calls (JSON or a bearer token) get the API.

use axum::http::Method;

use super::{Translation, with_query};

const SEED: &str = "003";

pub fn translate(method: &Method, path: &str, query: Option<&str>, api_call: bool) -> Option<Translation> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let t = match (method, segments.as_slice()) {
        (&Method::POST, ["login"]) if api_call => Translation::new(SEED, Method::POST, "/api/users/login"),
        (&Method::POST, ["register"]) if api_call => Translation::new(SEED, Method::POST, "/api/users/register"),
        (&Method::GET, ["profile"]) if api_call => Translation::new(SEED, Method::GET, "/api/users/me"),
        (&Method::PUT, ["profile"]) if api_call => Translation::new(SEED, Method::PUT, "/api/users/me"),
        (&Method::POST, ["logout"]) if api_call => Translation::new(SEED, Method::POST, "/api/users/logout"),
        (&Method::GET, ["inventory", "assets"]) => {
            Translation::new(SEED, Method::GET, with_query("/api/products".into(), query))
        }
        (&Method::GET, ["inventory", "assets", id]) => {
            Translation::new(SEED, Method::GET, format!("/api/products/{id}"))
        }
        (&Method::POST, ["inventory", "orders"]) => Translation::new(SEED, Method::POST, "/api/orders"),
        _ => return None,
    };
    Some(t)
}
