//! The storefront's pages. GET pages only read; every change is a POST of a CSRF-checked form
//! answered with a redirect (post/redirect/get), so reloading a page never repeats an action.

mod admin;
mod auth;
mod profile;
mod purchases;
mod shop;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::Web;
use super::client::{ApiError, Call, Ctx, Order, Svc};

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/", get(auth::root).post(auth::login_submit))
        .route("/login", get(auth::login_page).post(auth::login_submit))
        .route("/register", get(auth::register_page).post(auth::register_submit))
        .route("/logout", get(auth::logout_page).post(auth::logout_submit))
        .route("/home", get(shop::home))
        .route("/products", get(shop::catalogue))
        .route("/products/{id}", get(shop::product))
        .route("/buy/{id}", get(shop::buy_page).post(shop::buy))
        .route("/cart", get(shop::cart))
        .route("/cart/add", post(shop::cart_add))
        .route("/cart/update", post(shop::cart_update))
        .route("/cart/remove", post(shop::cart_remove))
        .route("/checkout", post(shop::checkout))
        .route("/purchases", get(purchases::list))
        .route("/purchases/{id}", get(purchases::detail))
        .route("/purchases/{id}/cancel", post(purchases::cancel))
        .route("/profile", get(profile::show).post(profile::update))
        .route("/profile/password", post(profile::change_password))
        .route("/admin", get(admin::dashboard))
        .route("/admin/products", get(admin::products).post(admin::create_product))
        .route("/admin/products/{id}", get(admin::product).post(admin::edit_product))
        .route("/admin/products/{id}/price", post(admin::set_price))
        .route("/admin/products/{id}/stock", post(admin::set_stock))
        .route("/admin/products/{id}/active", post(admin::set_active))
        .route(
            "/admin/products/{id}/pictures",
            post(admin::pictures::upload)
                .layer(axum::extract::DefaultBodyLimit::max(admin::pictures::FORM_LIMIT_BYTES)),
        )
        .route("/admin/products/{id}/pictures/{image}/alt", post(admin::pictures::set_alt))
        .route("/admin/products/{id}/pictures/{image}/main", post(admin::pictures::make_main))
        .route("/admin/products/{id}/pictures/{image}/delete", post(admin::pictures::delete))
        .route("/admin/orders", get(admin::orders))
        .route("/admin/orders/{id}/status", post(admin::set_order_status))
        .route("/admin/users", get(admin::users))
        .route("/admin/users/{id}/role", post(admin::set_role))
        .route("/admin/traces", get(admin::traces))
        .route("/admin/traces/{id}", get(admin::trace))
}

/// 303 See Other: after a POST, the browser GETs the target.
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

/// A positive numeric id from a path, or 404.
pub fn numeric_id(raw: &str) -> Result<i64, super::WebError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| super::WebError::not_found("There is no such product."))
}

/// An order id (a UUID) from a path, or 404 (the orders service says the same for an order
/// that is not yours).
pub fn order_id(raw: &str) -> Result<&str, super::WebError> {
    let ok = raw.len() == 36 && raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok { Ok(raw) } else { Err(super::WebError::not_found("There is no such order.")) }
}

/// Places an order with an Idempotency-Key. A request with the same key still running (the
/// other half of a double click) answers 409 "in progress": wait for it and take its answer,
/// which the orders service replays, so both clicks land on the same order.
///
/// The placing runs in its own task: a browser that gives up on the request (a double click
/// cancels the first submission's navigation) must not cut an order off half-way, which would
/// leave its key "in progress" and the second click waiting on it.
pub async fn place_order(ctx: &Ctx, body: serde_json::Value, key: &str) -> Result<Order, ApiError> {
    let detached = ctx.detached();
    let key = key.to_string();
    let timing = super::client::TIMING.try_with(|t| t.clone()).ok();
    let request = kit::context::RequestContext::current();
    let work = async move {
        let call =
            Call::new(Svc::Orders, axum::http::Method::POST, "/orders").json(body).header("idempotency-key", key);
        for _ in 0..40 {
            let res = detached.send(&call).await?;
            if res.status() == StatusCode::CONFLICT && res.headers().contains_key(axum::http::header::RETRY_AFTER) {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                continue;
            }
            return detached.web.orders.read_json(res).await.map_err(ApiError);
        }
        Err(ApiError(kit::client::UpstreamError::Timeout { service: "orders" }))
    };
    let work = async move {
        match timing {
            Some(t) => super::client::TIMING.scope(t, work).await,
            None => work.await,
        }
    };
    let task = match request {
        Some(r) => tokio::spawn(r.scope(work)),
        None => tokio::spawn(work),
    };
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "order placement task failed");
        Err(ApiError(kit::client::UpstreamError::Unreachable { service: "orders", reason: e.to_string() }))
    })
}

/// The problem's `type` slug (`insufficient-stock`, `price-changed`, …).
pub fn problem_kind(e: &ApiError) -> &str {
    e.problem().map(|p| p.kind.trim_start_matches("/problems/")).unwrap_or("")
}

/// Trims a form value; empty is absent.
pub fn field(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// `a=1&b=x%20y` from the pairs that have a value. (A `form_urlencoded::Serializer` is not
/// `Send`, so none may live across an `.await` in a handler.)
pub fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    q.finish()
}
