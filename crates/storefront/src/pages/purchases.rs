//! The signed-in user's orders: a list, each order with its items, total and status history,
//! and cancelling where the platform allows it. Administrators see any order here, with the
//! buttons that move it along.

use api::orders::OrderStatus;
use api::{Grants, Permission};
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use kit::auth::Principal;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::{field, order_id, see_other};
use crate::client::{Call, Ctx, Order, Paged, Svc};
use crate::session::FlashKind;
use crate::view::{csrf_field, head_row, money, order_ref, pagination, status_badge, when};
use crate::{CsrfForm, PageResult, WebError};

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    page: Option<String>,
}

pub fn items_summary(o: &Order) -> String {
    let mut parts: Vec<String> = o.items.iter().take(3).map(|i| format!("{} × {}", i.quantity, i.name)).collect();
    if o.items.len() > 3 {
        parts.push(format!("and {} more", o.items.len() - 3));
    }
    parts.join(", ")
}

pub async fn list(ctx: Ctx, Query(q): Query<PageQuery>) -> PageResult {
    ctx.require_user()?;
    let page = q.page.as_deref().and_then(|p| p.parse::<u32>().ok()).filter(|p| (1..=100_000).contains(p)).unwrap_or(1);
    let orders: Paged<Order> = ctx.call(Call::get(Svc::Orders, format!("/orders?page={page}&per_page=10"))).await?;
    let body = html! {
        h1 { "Your purchases" }
        @if orders.items.is_empty() && page == 1 {
            p { "No purchases yet. " a href="/products" { "Browse the catalogue" } "." }
        } @else {
            ol.orders {
                @for o in &orders.items {
                    li.card.order {
                        h2 { a href={ "/purchases/" (o.id) } { "Order " (order_ref(&o.id)) } }
                        p { (status_badge(o.status)) " · placed " (when(&o.created_at)) }
                        p { (items_summary(o)) }
                        p.price { (money(o.total, &o.currency)) }
                    }
                }
            }
            (pagination("/purchases", &[], orders.page, orders.total_pages))
        }
    };
    Ok(ctx.page("Purchases", body))
}

/// The status an administrator can move an order on to from `status`, with its button's label.
pub fn next_step(status: OrderStatus) -> Option<(OrderStatus, &'static str)> {
    let next = status.next()?;
    let label = match next {
        OrderStatus::Confirmed => "Confirm",
        OrderStatus::Shipped => "Ship",
        OrderStatus::Delivered => "Mark delivered",
        OrderStatus::Pending | OrderStatus::Cancelled => return None,
    };
    Some((next, label))
}

fn who(change_by: &str, order: &Order, me: &Principal) -> String {
    if change_by == order.user_id {
        if me.subject == order.user_id {
            "you".into()
        } else {
            order.username.clone().unwrap_or_else(|| "the customer".into())
        }
    } else if me.subject == change_by {
        "you".into()
    } else if change_by.starts_with("service:") {
        "the platform".into()
    } else {
        "the shop".into()
    }
}

/// The administrator's buttons for one order (also used in the all-orders table).
pub fn admin_actions(csrf: &str, o: &Order, back: &str) -> Markup {
    html! {
        div.actions {
            @if let Some((to, label)) = next_step(o.status) {
                form.inline method="post" action={ "/admin/orders/" (o.id) "/status" } {
                    (csrf_field(csrf))
                    input type="hidden" name="status" value=(to.as_str());
                    input type="hidden" name="back" value=(back);
                    button type="submit" { (label) span.visually-hidden { " order " (order_ref(&o.id)) } }
                }
            }
            @if o.status.cancellable() {
                form.inline method="post" action={ "/admin/orders/" (o.id) "/status" } {
                    (csrf_field(csrf))
                    input type="hidden" name="status" value="cancelled";
                    input type="hidden" name="back" value=(back);
                    button.danger type="submit" { "Cancel" span.visually-hidden { " order " (order_ref(&o.id)) } }
                }
            }
        }
    }
}

pub async fn detail(ctx: Ctx, Path(raw): Path<String>) -> PageResult {
    let me = ctx.require_user()?;
    let id = order_id(&raw)?;
    let o: Order = ctx.call(Call::get(Svc::Orders, format!("/orders/{id}"))).await.map_err(|e| {
        if e.status() == Some(StatusCode::NOT_FOUND) {
            WebError::not_found("There is no such order.")
        } else {
            e.into()
        }
    })?;
    let csrf = ctx.csrf();
    let own = o.user_id == me.subject;
    let may_cancel = me.has(Permission::OrderCancel) && o.status.cancellable();
    let body = html! {
        nav.breadcrumbs aria-label="Breadcrumb" {
            ol {
                @if own { li { a href="/purchases" { "Your purchases" } } } @else { li { a href="/admin/orders" { "All orders" } } }
                li { a href={ "/purchases/" (o.id) } aria-current="page" { "Order " (order_ref(&o.id)) } }
            }
        }
        article.order-detail aria-labelledby="order-title" {
            h1 #order-title { "Order " (order_ref(&o.id)) }
            p #order-status { "Status: " (status_badge(o.status)) }
            p.muted {
                "Placed " (when(&o.created_at))
                @if !own { " by " (o.username.as_deref().unwrap_or(&o.user_id)) }
                " · reference " code { (o.id) }
            }
            div.table-wrap {
                table {
                    caption { "Items" }
                    (head_row(&["Product", "SKU", "Quantity", "Unit price", "Subtotal"]))
                    tbody {
                        @for i in &o.items {
                            tr {
                                th scope="row" { a href={ "/products/" (i.product_id) } { (i.name) } }
                                td { (i.sku) }
                                td.num { (i.quantity) }
                                td.num { (money(i.unit_price, &o.currency)) }
                                td.num { (money(i.line_total, &o.currency)) }
                            }
                        }
                    }
                    tfoot { tr { th scope="row" colspan="4" { "Total" } td.num #order-total { (money(o.total, &o.currency)) } } }
                }
            }
            section aria-labelledby="history-title" {
                h2 #history-title { "Status history" }
                ol.history {
                    @for h in &o.status_history {
                        li {
                            (status_badge(h.status)) " "
                            time datetime=(h.changed_at) { (when(&h.changed_at)) }
                            " by " (who(&h.changed_by, &o, &me))
                            @if let Some(n) = &h.note { " — " q { (n) } }
                        }
                    }
                }
            }
            @if me.is_admin() {
                section aria-labelledby="manage-title" {
                    h2 #manage-title { "Manage" }
                    (admin_actions(&csrf, &o, &format!("/purchases/{}", o.id)))
                }
            } @else if may_cancel {
                form method="post" action={ "/purchases/" (o.id) "/cancel" } {
                    (csrf_field(&csrf))
                    button.danger type="submit" { "Cancel this order" }
                }
            } @else if o.status.cancellable() {
                p.muted { "To cancel this order, contact the shop." }
            }
        }
    };
    Ok(ctx.page(&format!("Order {}", order_ref(&o.id)), body))
}

#[derive(Debug, Deserialize)]
pub struct CancelForm {
    note: Option<String>,
}

pub async fn cancel(ctx: Ctx, Path(raw): Path<String>, CsrfForm(f): CsrfForm<CancelForm>) -> PageResult {
    ctx.require_user()?;
    let id = order_id(&raw)?.to_string();
    let call =
        Call::new(Svc::Orders, Method::POST, format!("/orders/{id}/cancel")).json(json!({"note": field(&f.note)}));
    match ctx.call::<Order>(call).await {
        Ok(_) => ctx.flash(FlashKind::Success, "The order is cancelled; its stock has gone back on sale."),
        Err(e) if e.status().is_some_and(|s| s.is_client_error() && s != StatusCode::UNAUTHORIZED) => {
            ctx.flash(FlashKind::Error, format!("The order was not cancelled: {}", e.message()));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(see_other(&format!("/purchases/{id}")))
}
