//! HTTP handlers: parse, call the service, shape the answer.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use kit::auth::Auth;
use kit::extract::{Json, OptionalJson, Path, Query};
use kit::pagination::{PageRequest, Paged};
use kit::problem::ProblemResponses;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::domain::{IdempotencyKey, OrderStatus};
use crate::error::Result;
use crate::request::CreateOrderRequest;
use crate::view::Order;

pub fn api() -> Router<AppState> {
    Router::new()
        .route("/orders", get(list_orders).post(create_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/status", put(set_status))
        .route("/orders/{id}/cancel", post(cancel_order))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(minimum = 1, maximum = 100000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
    pub status: Option<OrderStatus>,
    /// Administrators only: one user's orders, by id…
    #[param(max_length = 64)]
    pub user_id: Option<String>,
    /// …or by username (seed 004 addresses users by name).
    #[param(max_length = 64)]
    pub username: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub status: OrderStatus,
    #[schema(max_length = 500)]
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[schema(max_length = 500)]
    pub note: Option<String>,
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[utoipa::path(post, path = "/orders", tag = "orders", security(("bearer" = [])), request_body = CreateOrderRequest,
    params(("idempotency-key" = Option<String>, Header, description = "Retries with the same key and body return the first answer and create nothing")),
    responses(
        (status = 201, description = "Order placed; stock is set aside for it", body = Order,
            headers(("location" = String), ("idempotent-replayed" = Option<String>, description = "true when this is the stored answer to an earlier request"))),
        ProblemResponses))]
pub async fn create_order(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    Json(body): Json<CreateOrderRequest>,
) -> Result<Response> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(IdempotencyKey::parse(v.to_str().unwrap_or(""))?),
    };
    let created = state.orders.create(&caller, &body, key).await?;
    let mut res = (created.status, [(header::CONTENT_TYPE, "application/json")], created.body).into_response();
    if created.replayed {
        res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(id) = created.order_id.and_then(|id| HeaderValue::from_str(&format!("/orders/{id}")).ok()) {
        res.headers_mut().insert(header::LOCATION, id);
    }
    Ok(res)
}

#[utoipa::path(get, path = "/orders", tag = "orders", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "Your orders, newest first (administrators: everyone's)", body = Paged<Order>), ProblemResponses))]
pub async fn list_orders(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Paged<Order>>> {
    let page = PageRequest::new(q.page, q.per_page)?;
    for (name, value) in [("user_id", &q.user_id), ("username", &q.username)] {
        if value.as_deref().is_some_and(|u| u.len() > 64) {
            return Err(kit::Problem::bad_request(format!("{name} is too long")).with("parameter", name).into());
        }
    }
    let username = q.username.map(|u| u.to_ascii_lowercase());
    Ok(Json(state.orders.list(&caller, page, q.status, q.user_id, username).await?))
}

#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid")),
    responses((status = 200, description = "The order with its status history (owner or administrator)", body = Order), ProblemResponses))]
pub async fn get_order(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Order>> {
    Ok(Json(state.orders.get(&caller, &id).await?))
}

#[utoipa::path(put, path = "/orders/{id}/status", tag = "orders", security(("bearer" = [])), request_body = StatusRequest,
    params(("id" = String, Path, format = "uuid")),
    responses((status = 200, description = "Status changed (administrators); `cancelled` cancels", body = Order), ProblemResponses))]
pub async fn set_status(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Json(body): Json<StatusRequest>,
) -> Result<Json<Order>> {
    Ok(Json(state.orders.set_status(&caller, &id, body.status, body.note).await?))
}

#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    request_body(content = Option<CancelRequest>, description = "optional"),
    params(("id" = String, Path, format = "uuid")),
    responses((status = 200, description = "Cancelled (needs order.cancel); the stock returns to the catalog", body = Order), ProblemResponses))]
pub async fn cancel_order(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CancelRequest>,
) -> Result<Json<Order>> {
    Ok(Json(state.orders.cancel(&caller, &id, body.and_then(|b| b.note)).await?))
}
