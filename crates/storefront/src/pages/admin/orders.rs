//! The administrators' order list, and moving an order along its statuses.

use api::orders::OrderStatus;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::super::purchases::{admin_actions, items_summary};
use super::super::{field, order_id, query_string, see_other};
use super::{admin_nav, page_number, report};
use crate::client::{Call, Ctx, Order, Paged, Svc, User};
use crate::session::safe_next;
use crate::view::{head_row, money, order_ref, pagination, status_badge, when};
use crate::{CsrfForm, PageResult, WebError};

#[derive(Debug, Deserialize)]
pub struct OrdersQuery {
    status: Option<String>,
    user: Option<String>,
    page: Option<String>,
}

pub async fn orders(ctx: Ctx, Query(q): Query<OrdersQuery>) -> PageResult {
    ctx.require_admin()?;
    let page = page_number(&q.page);
    let status = field(&q.status).and_then(|s| OrderStatus::parse(&s));
    let user: Option<String> = field(&q.user).map(|u| u.chars().take(64).collect());
    let mut user_id = None;
    let mut unknown_user = false;
    if let Some(u) = &user {
        // A username or an id: the users service knows both.
        let path = format!("/users/{}", url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>());
        match ctx.call::<User>(Call::get(Svc::Users, path)).await {
            Ok(found) => user_id = Some(found.id),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => unknown_user = true,
            Err(e) => return Err(e.into()),
        }
    }
    let list: Paged<Order> = if unknown_user {
        Paged { items: Vec::new(), page: 1, per_page: 20, total: 0, total_pages: 0 }
    } else {
        let query = query_string(&[
            ("per_page", Some("20")),
            ("page", Some(&page.to_string())),
            ("status", status.map(OrderStatus::as_str)),
            ("user_id", user_id.as_deref()),
        ]);
        ctx.call(Call::get(Svc::Orders, format!("/orders?{query}"))).await?
    };
    let csrf = ctx.csrf();
    let back = format!(
        "/admin/orders?{}",
        query_string(&[
            ("status", status.map(OrderStatus::as_str)),
            ("user", user.as_deref()),
            ("page", Some(&page.to_string()))
        ])
    );
    let body = html! {
        h1 { "All orders" }
        (admin_nav("/admin/orders"))
        form.search role="search" method="get" action="/admin/orders" {
            div.field {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "Any" }
                    @for s in OrderStatus::ALL {
                        option value=(s.as_str()) selected[status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            div.field {
                label for="user" { "Customer (username)" }
                input #user type="search" name="user" maxlength="64" value=[user.as_deref()];
            }
            button type="submit" { "Filter" }
        }
        @if unknown_user { p.warning role="status" { "There is no user " (user.as_deref().unwrap_or("")) "." } }
        p.muted role="status" { (list.total) " orders" }
        div.table-wrap {
            table.orders-admin {
                caption.visually-hidden { "Orders, newest first" }
                (head_row(&["Order", "Customer", "Placed", "Items", "Total", "Status", "Actions"]))
                tbody {
                    @for o in &list.items {
                        tr id={ "order-" (o.id) } {
                            th scope="row" { a href={ "/purchases/" (o.id) } { (order_ref(&o.id)) } }
                            td { (o.username.as_deref().unwrap_or(&o.user_id)) }
                            td { (when(&o.created_at)) }
                            td { (items_summary(o)) }
                            td.num { (money(o.total, &o.currency)) }
                            td { (status_badge(o.status)) }
                            td { (admin_actions(&csrf, o, &back)) }
                        }
                    }
                }
            }
        }
        (pagination(
            "/admin/orders",
            &[("status", status.map(|s| s.as_str().to_string()).unwrap_or_default()), ("user", user.clone().unwrap_or_default())],
            list.page,
            list.total_pages,
        ))
    };
    Ok(ctx.page("All orders", body))
}

#[derive(Debug, Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
    back: Option<String>,
}

pub async fn set_order_status(ctx: Ctx, Path(raw): Path<String>, CsrfForm(f): CsrfForm<StatusForm>) -> PageResult {
    ctx.require_admin()?;
    let id = order_id(&raw)?.to_string();
    let Some(status) = OrderStatus::parse(&f.status) else {
        return Err(WebError::bad_request("Unknown status."));
    };
    let call = Call::new(Svc::Orders, Method::PUT, format!("/orders/{id}/status")).json(json!({"status": status}));
    let result = ctx.call::<Order>(call).await;
    report(&ctx, result.map(|o| format!("Order {} is now {}.", order_ref(&o.id), o.status)))?;
    let back = f.back.as_deref().filter(|b| b.starts_with("/admin/orders") || b.starts_with("/purchases/"));
    Ok(see_other(&safe_next(back.or(Some("/admin/orders")))))
}
