//! Seed 002 (Flask: a product service and an order service).
//!
//! | seed call | canonical |
//! |---|---|
//! | `POST /get-token` `{service_name, client_secret}` | not translated: the gateway answers 404, service tokens come from the users port (its own `/get-token`) |
//! | `GET /products` | `GET /api/products` |
//! | `GET /products/category/<category>` | `GET /api/products?category=<category>` |
//! | `POST /create-product` `{name, price: "50000", category}` | `POST /api/products` (administrators), `track_stock: false` unless the body counts stock |
//! | `PUT /update-product/<id>` `{price}` | `PATCH /api/products/<id>` (administrators) |
//! | `POST /create-order` `{product_id, quantity, customer_name}` | `POST /api/orders` |
//! | `GET /orders` | `GET /api/orders` (your own; administrators: all) |

use axum::http::Method;
use serde_json::Value;

use super::{Translation, encode, with_query};

const SEED: &str = "002";

/// Seed 002 creates products without a stock figure and orders them straight away: such a
/// product is sold without counting stock, unless the request counts it.
fn untracked_unless_counted(mut body: Value) -> Value {
    if let Some(fields) = body.as_object_mut()
        && !fields.contains_key("stock")
        && !fields.contains_key("track_stock")
    {
        fields.insert("track_stock".into(), Value::Bool(false));
    }
    body
}

pub fn translate(method: &Method, path: &str, query: Option<&str>, api_call: bool) -> Option<Translation> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let t = match (method, segments.as_slice()) {
        (&Method::GET, ["products"]) if api_call => {
            Translation::new(SEED, Method::GET, with_query("/api/products".into(), query))
        }
        (&Method::GET, ["products", "category", category]) => {
            let decoded = percent_decode(category);
            Translation::new(
                SEED,
                Method::GET,
                with_query(format!("/api/products?category={}", encode(&decoded)), query),
            )
        }
        (&Method::POST, ["create-product"]) => {
            Translation::new(SEED, Method::POST, "/api/products").body(untracked_unless_counted)
        }
        (&Method::PUT, ["update-product", id]) => Translation::new(SEED, Method::PATCH, format!("/api/products/{id}")),
        (&Method::POST, ["create-order"]) => Translation::new(SEED, Method::POST, "/api/orders"),
        (&Method::GET, ["orders"]) if api_call => {
            Translation::new(SEED, Method::GET, with_query("/api/orders".into(), query))
        }
        _ => return None,
    };
    Some(t)
}

/// A path segment with its `%XX` escapes decoded (`+` stays a plus in a path).
pub(super) fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
