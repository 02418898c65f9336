//! The seeds' own paths on the catalog's port, for clients that talk to it directly: thin
//! aliases onto the canonical handlers. See docs/dialects.md for what differs.
//!
//! | seed | path | canonical |
//! |---|---|---|
//! | 002 (product service) | `GET /products/category/{category}` | `GET /products?category=` |
//! | 002 | `POST /create-product` | `POST /products` (administrators); `track_stock: false` unless the body counts stock |
//! | 002 | `PUT /update-product/{id}` | `PATCH /products/{id}` (administrators) |
//! | 003 (inventory service) | `GET /inventory/assets`, `GET /inventory/assets/{id}` | `GET /products`, `GET /products/{id}` |

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post, put};
use kit::auth::{Auth, MaybeAuth};
use kit::extract::{ForwardedPrefix, Json, Path, Query};

use crate::AppState;
use crate::error::Result;
use crate::routes::{self, CreateProduct, ListQuery, UpdateProduct};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/products/category/{category}", get(products_in_category))
        .route("/create-product", post(create_product))
        .route("/update-product/{id}", put(update_product))
        .route("/inventory/assets", get(routes::list_products))
        .route("/inventory/assets/{id}", get(routes::get_product))
}

#[utoipa::path(get, path = "/products/category/{category}", tag = "seed dialects",
    params(("category" = String, Path, max_length = 64), ListQuery),
    responses((status = 200, description = "Seed 002: one category's products", body = kit::pagination::Paged<crate::service::Product>),
        kit::problem::ProblemResponses))]
pub async fn products_in_category(
    state: State<AppState>,
    caller: MaybeAuth,
    prefix: ForwardedPrefix,
    Path(category): Path<String>,
    Query(mut q): Query<ListQuery>,
) -> Result<Response> {
    // The path names the category; a different one in the query is a contradiction, not a filter.
    if q.category.as_deref().is_some_and(|given| !given.trim().eq_ignore_ascii_case(category.trim())) {
        return Err(kit::Problem::bad_request("category is given in the path; the query must not name another one")
            .with("parameter", "category")
            .into());
    }
    q.category = Some(category);
    routes::list_products(state, caller, prefix, Query(q)).await
}

#[utoipa::path(put, path = "/update-product/{id}", tag = "seed dialects", security(("bearer" = [])), request_body = UpdateProduct,
    params(("id" = i64, Path)),
    responses((status = 200, description = "Seed 002: change a product (its price, typically); administrators", body = crate::service::Product),
        kit::problem::ProblemResponses))]
pub async fn update_product(
    state: State<AppState>,
    caller: Auth,
    id: Path<String>,
    prefix: ForwardedPrefix,
    headers: HeaderMap,
    body: Json<UpdateProduct>,
) -> Result<Response> {
    routes::patch_product(state, caller, id, prefix, headers, body).await
}

/// Seed 002 creates products without a stock figure and orders them straight away: such a
/// product is sold without counting stock, unless the request counts it.
pub async fn create_product(
    state: State<AppState>,
    caller: Auth,
    prefix: ForwardedPrefix,
    Json(mut body): Json<CreateProduct>,
) -> Result<Response> {
    if body.stock.is_none() && body.track_stock.is_none() {
        body.track_stock = Some(false);
    }
    routes::create_product(state, caller, prefix, Json(body)).await
}
