//! The seeds' own paths on the orders service's port, for clients that talk to it directly:
//! thin aliases onto the canonical handlers. See docs/dialects.md for what differs.
//!
//! | seed | path | canonical |
//! |---|---|---|
//! | 002 (order service) | `POST /create-order` | `POST /orders` |
//! | 004 (orders service) | `GET /orders/articles` | the catalog's `GET /products` |
//! | 004 | `GET /orders/{username}/purchases` | `GET /orders?username=` (yourself, or any as an administrator) |
//! | 004 | `POST /orders/{username}/buy` | `POST /orders` (yourself only: an order belongs to who places it) |

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kit::auth::Auth;
use kit::client::JsonCalls;
use kit::extract::{Json, Path};
use kit::pagination::{PageRequest, Paged};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{OrdersError, Result};
use crate::request::CreateOrderRequest;
use crate::view::Order;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/create-order", post(crate::routes::create_order))
        .route("/orders/articles", get(articles))
        .route("/orders/{id}/purchases", get(purchases))
        .route("/orders/{id}/buy", post(buy))
}

#[utoipa::path(get, path = "/orders/articles", tag = "seed dialects",
    responses((status = 200, description = "Seed 004: the articles on sale (the catalog's first page)", body = Object),
        kit::problem::ProblemResponses))]
pub async fn articles(State(state): State<AppState>) -> Result<Response> {
    let page: serde_json::Value = state
        .orders
        .catalog
        .json(Method::GET, "/products?per_page=100", None, None)
        .await
        .map_err(OrdersError::from)?;
    Ok(axum::Json(page).into_response())
}

/// The user a seed-004 path names must be the caller, unless an administrator may act for
/// others on this path.
fn ensure_caller(caller: &kit::auth::Principal, username: &str, administrators_too: bool) -> Result<()> {
    let is_caller = caller.username.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(username));
    if is_caller || (administrators_too && caller.is_admin()) {
        Ok(())
    } else {
        Err(OrdersError::Forbidden(format!("You act for yourself only, not for {username}.")))
    }
}

#[utoipa::path(get, path = "/orders/{id}/purchases", tag = "seed dialects", security(("bearer" = [])),
    params(("id" = String, Path, description = "The username")),
    responses((status = 200, description = "Seed 004: a user's purchases (yourself; administrators: anyone)", body = Paged<Order>),
        kit::problem::ProblemResponses))]
pub async fn purchases(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(username): Path<String>,
) -> Result<Json<Paged<Order>>> {
    ensure_caller(&caller, &username, true)?;
    let page = PageRequest::new(None, Some(100))?;
    Ok(Json(state.orders.list(&caller, page, None, None, Some(username.to_ascii_lowercase())).await?))
}

/// What seed 004 buys: one article, by `article_id` (or `product_id`/`id`/`name`), one unit
/// unless `quantity` says otherwise.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyRequest {
    pub article_id: Option<i64>,
    pub product_id: Option<i64>,
    pub id: Option<i64>,
    #[schema(max_length = 200)]
    pub name: Option<String>,
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: Option<i64>,
}

impl From<BuyRequest> for CreateOrderRequest {
    fn from(b: BuyRequest) -> Self {
        let product_id = b.article_id.or(b.product_id).or(b.id);
        CreateOrderRequest { product_id, name: b.name, quantity: Some(b.quantity.unwrap_or(1)), ..Default::default() }
    }
}

#[utoipa::path(post, path = "/orders/{id}/buy", tag = "seed dialects", security(("bearer" = [])), request_body = BuyRequest,
    params(("id" = String, Path, description = "The username: your own")),
    responses((status = 201, description = "Seed 004: bought", body = Order), kit::problem::ProblemResponses))]
pub async fn buy(
    state: State<AppState>,
    auth: Auth,
    Path(username): Path<String>,
    headers: HeaderMap,
    Json(body): Json<BuyRequest>,
) -> Result<Response> {
    ensure_caller(&auth.0, &username, false)?;
    crate::routes::create_order(state, auth, headers, Json(body.into())).await
}
