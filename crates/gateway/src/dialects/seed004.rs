//! Seed 004 (Flask: a gateway with web pages, and auth, users and orders services).
//!
//! | seed call | canonical |
//! |---|---|
//! | `POST /api/login` `{username, password}` → bearer token | `POST /api/users/login`, plus `token` |
//! | `GET /api/purchases` | `GET /api/orders` |
//! | `POST /api/buy` `{article_id, quantity?}` | `POST /api/orders` |
//! | `POST /auth/login` | `POST /api/users/login`, plus `token` |
//! | `POST /auth/verify` `{token}` | `POST /api/auth/verify` |
//! | `POST /users` `{username, password}` | `POST /api/users/register` |
//! | `POST /users/verify` `{username, password}` | the users service's credential check |
//! | `GET /users/<username>` | `GET /api/users/<username>` (yourself, or anyone as an administrator) |
//! | `GET /orders/articles` | `GET /api/products` |
//! | `GET /orders/<username>/purchases` | `GET /api/orders?username=` (yourself, or anyone as an administrator) |
//! | `POST /orders/<username>/buy` | `POST /api/orders` (yourself only: an order belongs to who places it) |
//!
//! Its web pages (`/`, `/register`, `/home`, `/buy/<id>`, `/purchases`, `/logout`) are the
//! storefront's.

use axum::http::Method;
use serde_json::{Value, json};

use super::{Translation, encode, seed002::percent_decode, with_query};

const SEED: &str = "004";

/// `{article_id | product_id | id | name, quantity?}` → one order line.
fn one_article(body: Value) -> Value {
    let product = ["article_id", "product_id", "id"].iter().find_map(|k| body.get(*k).cloned());
    let quantity = body.get("quantity").cloned().unwrap_or(json!(1));
    match (product, body.get("name")) {
        (Some(id), _) => json!({"items": [{"product_id": id, "quantity": quantity}]}),
        (None, Some(name)) => json!({"items": [{"name": name, "quantity": quantity}]}),
        (None, None) => json!({"items": []}),
    }
}

pub fn translate(method: &Method, path: &str, query: Option<&str>, api_call: bool) -> Option<Translation> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let t = match (method, segments.as_slice()) {
        (&Method::POST, ["api", "login"]) | (&Method::POST, ["auth", "login"]) => {
            Translation::new(SEED, Method::POST, "/api/users/login").reply_with_token_alias()
        }
        (&Method::GET, ["api", "purchases"]) => {
            Translation::new(SEED, Method::GET, with_query("/api/orders".into(), query))
        }
        (&Method::POST, ["api", "buy"]) => Translation::new(SEED, Method::POST, "/api/orders").body(one_article),
        (&Method::POST, ["auth", "verify"]) => Translation::new(SEED, Method::POST, "/api/auth/verify"),
        (&Method::POST, ["users"]) => Translation::new(SEED, Method::POST, "/api/users/register"),
        (&Method::POST, ["users", "verify"]) => Translation::new(SEED, Method::POST, "/api/users/verify"),
        (&Method::GET, ["users", username]) if api_call => {
            Translation::new(SEED, Method::GET, format!("/api/users/{}", encode(&percent_decode(username))))
        }
        (&Method::GET, ["orders", "articles"]) => {
            Translation::new(SEED, Method::GET, with_query("/api/products".into(), query.or(Some("per_page=100"))))
        }
        (&Method::GET, ["orders", username, "purchases"]) => {
            let username = percent_decode(username);
            Translation::new(SEED, Method::GET, format!("/api/orders?username={}&per_page=100", encode(&username)))
                .acting_as(&username, true)
        }
        (&Method::POST, ["orders", username, "buy"]) => {
            let username = percent_decode(username);
            Translation::new(SEED, Method::POST, "/api/orders").body(one_article).acting_as(&username, false)
        }
        _ => return None,
    };
    Some(t)
}
