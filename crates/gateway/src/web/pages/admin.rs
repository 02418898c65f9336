//! The administrators' pages: the dashboard, products, all orders, users. Each checks the
//! role first (403 for anyone else signed in); the services check it again.

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::purchases::{admin_actions, items_summary};
use super::{field, numeric_id, order_id, query_string, see_other};
use crate::web::client::{ApiError, Call, Ctx, Order, Paged, Product, Svc, User};
use crate::web::dashboard::{Series, chart, per_minute};
use crate::web::session::{FlashKind, safe_next};
use crate::web::view::{availability, csrf_field, head_row, money, order_ref, pagination, status_badge, when};
use crate::web::{CsrfForm, PageResult, WebError};

fn admin_nav(current: &str) -> maud::Markup {
    let item = |href: &str, label: &str| {
        html! { li { a href=(href) aria-current=[(href == current).then_some("page")] { (label) } } }
    };
    html! {
        nav.subnav aria-label="Administration" {
            ul {
                (item("/admin", "Dashboard"))
                (item("/admin/products", "Products"))
                (item("/admin/orders", "Orders"))
                (item("/admin/users", "Users"))
            }
        }
    }
}

fn page_number(raw: &Option<String>) -> u32 {
    raw.as_deref().and_then(|p| p.parse::<u32>().ok()).filter(|p| (1..=100_000).contains(p)).unwrap_or(1)
}

/// A refused change as a message on the next page (a 4xx is the service's own words); a
/// service that could not answer is an error page.
pub(super) fn report(ctx: &Ctx, result: Result<String, ApiError>) -> Result<(), WebError> {
    match result {
        Ok(message) => {
            ctx.flash(FlashKind::Success, message);
            Ok(())
        }
        Err(e) if e.status() == Some(StatusCode::UNAUTHORIZED) => Err(WebError::SignIn),
        Err(e) if e.status() == Some(StatusCode::PRECONDITION_FAILED) => {
            ctx.flash(
                FlashKind::Error,
                "Someone else changed this product since you opened it; nothing was saved. Here it is as it is now.",
            );
            Ok(())
        }
        Err(e) if e.status().is_some_and(|s| s.is_client_error()) => {
            ctx.flash(FlashKind::Error, format!("Nothing was changed: {}", e.message()));
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Dashboard

pub async fn dashboard(ctx: Ctx) -> PageResult {
    ctx.require_admin()?;
    let web = ctx.web.clone();
    crate::web::dashboard::ensure_sampling(&web);
    let now = web.dashboard.sample(&web.app.metrics.render()).await;
    let mut samples = web.dashboard.samples();
    if samples.last().is_none_or(|last| now.at - last.at >= 1.0) {
        samples.push(now);
    }
    let report = crate::health::report(&web.app);
    let window = samples.first().map(|f| now.at - f.at).unwrap_or(0.0).max(60.0);
    let requests = per_minute(&samples, |s| Some(s.requests));
    let server_errors = per_minute(&samples, |s| Some(s.server_errors));
    let client_errors = per_minute(&samples, |s| Some(s.client_errors));
    let orders = per_minute(&samples, |s| s.orders);
    let last = |v: &Vec<(f64, f64)>| v.last().map(|p| format!("{:.0}", p.1)).unwrap_or_else(|| "—".into());
    let every = web.app.config.dashboard_sample_interval.as_secs_f64();
    let body = html! {
        h1 { "Administration" }
        (admin_nav("/admin"))
        section aria-labelledby="health-title" {
            h2 #health-title {
                "Platform health: "
                span class={ "badge health-" (report.status) } { (report.status) }
            }
            @if !report.unavailable.is_empty() {
                p.warning role="alert" { "Unavailable: " (report.unavailable.join(", ")) }
            }
            div.table-wrap {
                table.health {
                    caption.visually-hidden { "Every service instance behind the gateway" }
                    (head_row(&["Service", "Instance", "Health", "Breaker", "In flight", "Latency"]))
                    tbody {
                        @for (name, upstream) in &report.upstreams {
                            @for i in &upstream.instances {
                                tr {
                                    th scope="row" { (name) }
                                    td { code { (i.url) } }
                                    td {
                                        @if i.healthy { span.badge.health-ok { "up" } }
                                        @else { span.badge.health-degraded { "down" } }
                                    }
                                    td { (format!("{:?}", i.breaker).to_lowercase()) }
                                    td.num { (i.in_flight) }
                                    td.num { (format!("{:.1} ms", i.latency_ms)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="metrics-title" {
            h2 #metrics-title { "Traffic and orders" }
            ul.kpis {
                li { span.kpi-value #kpi-requests { (last(&requests)) } span.kpi-label { "requests / min" } }
                li { span.kpi-value #kpi-errors { (last(&server_errors)) } span.kpi-label { "server errors / min" } }
                li { span.kpi-value #kpi-orders { (last(&orders)) } span.kpi-label { "orders / min" } }
                li {
                    span.kpi-value { (now.orders.map(|o| format!("{o:.0}")).unwrap_or_else(|| "—".into())) }
                    span.kpi-label { "orders since start" }
                }
            }
            @if samples.len() < 3 {
                p.muted { "Collecting data: a sample is taken every " (format!("{every:.0}")) " s and the charts fill in as they arrive." }
            }
            div.charts {
                (chart("traffic", "Gateway requests per minute", "per minute", &[
                    Series { label: "All requests", class: "s-requests", points: requests },
                    Series { label: "Client errors (4xx)", class: "s-client", points: client_errors },
                    Series { label: "Server errors (5xx)", class: "s-errors", points: server_errors },
                ], window))
                (chart("orders", "Orders per minute", "per minute", &[
                    Series { label: "Orders created", class: "s-orders", points: orders },
                ], window))
            }
            p { a href="/admin" { "Refresh" } " · " a href="/health" { "Health (JSON)" } " · " a href="/metrics" { "Metrics (Prometheus)" } }
        }
    };
    Ok(ctx.page("Dashboard", body))
}

// ---------------------------------------------------------------------------------------------
// Products

#[derive(Debug, Deserialize)]
pub struct ProductsQuery {
    q: Option<String>,
    page: Option<String>,
}

pub async fn products(ctx: Ctx, Query(q): Query<ProductsQuery>) -> PageResult {
    ctx.require_admin()?;
    let page = page_number(&q.page);
    let text: Option<String> = field(&q.q).map(|t| t.chars().take(100).collect());
    let query = query_string(&[
        ("include_inactive", Some("true")),
        ("per_page", Some("20")),
        ("page", Some(&page.to_string())),
        ("q", text.as_deref()),
    ]);
    let list: Paged<Product> = ctx.call(Call::get(Svc::Catalog, format!("/products?{query}"))).await?;
    let csrf = ctx.csrf();
    let body = html! {
        h1 { "Products" }
        (admin_nav("/admin/products"))
        form.search role="search" method="get" action="/admin/products" {
            div.field {
                label for="q" { "Search products" }
                input #q type="search" name="q" maxlength="100" value=[text.as_deref()];
            }
            button type="submit" { "Search" }
        }
        div.table-wrap {
            table {
                caption.visually-hidden { "Products, including deactivated ones" }
                (head_row(&["Product", "SKU", "Category", "Price", "Available", "On hand", "Status"]))
                tbody {
                    @for p in &list.items {
                        tr {
                            th scope="row" { a href={ "/admin/products/" (p.id) } { (p.name) } }
                            td { (p.sku) }
                            td { (p.category) }
                            td.num { (money(p.price, &p.currency)) }
                            @if p.track_stock {
                                td.num { (p.stock) }
                                td.num { (p.stock_on_hand) }
                            } @else {
                                td colspan="2" { "not counted" }
                            }
                            td { @if p.active { "on sale" } @else { span.muted { "deactivated" } } }
                        }
                    }
                }
            }
        }
        (pagination("/admin/products", &[("q", text.clone().unwrap_or_default())], list.page, list.total_pages))
        section aria-labelledby="new-title" {
            h2 #new-title { "New product" }
            form.stack.wide method="post" action="/admin/products" {
                (csrf_field(&csrf))
                label for="new-name" { "Name" }
                input #new-name name="name" type="text" maxlength="200" required;
                label for="new-category" { "Category" }
                input #new-category name="category" type="text" maxlength="64" required;
                label for="new-sku" { "SKU (optional)" }
                input #new-sku name="sku" type="text" maxlength="64" pattern="[A-Za-z0-9_.\\-]+";
                label for="new-price" { "Price" }
                input #new-price name="price" type="text" inputmode="decimal" pattern="[0-9]{1,10}(\\.[0-9]{1,2})?" required
                    aria-describedby="price-hint";
                p.hint #price-hint { "For example 19.99." }
                label for="new-stock" { "Units in stock" }
                input #new-stock name="stock" type="number" min="0" max="1000000000" value="0" required;
                div.field.check {
                    input #new-untracked name="untracked" type="checkbox" value="1" aria-describedby="untracked-hint";
                    label for="new-untracked" { "Made to order: sell without counting stock" }
                }
                p.hint #untracked-hint { "Services, made-to-order and digital goods: always orderable, no count kept." }
                label for="new-description" { "Description" }
                textarea #new-description name="description" maxlength="2000" rows="3" {}
                button.primary type="submit" { "Create product" }
            }
        }
    };
    Ok(ctx.page("Products", body))
}

#[derive(Debug, Deserialize)]
pub struct NewProductForm {
    name: Option<String>,
    category: Option<String>,
    sku: Option<String>,
    price: Option<String>,
    stock: Option<String>,
    untracked: Option<String>,
    description: Option<String>,
}

pub async fn create_product(ctx: Ctx, CsrfForm(f): CsrfForm<NewProductForm>) -> PageResult {
    ctx.require_admin()?;
    let stock = match field(&f.stock).map(|s| s.parse::<i64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            ctx.flash(FlashKind::Error, "Nothing was created: units in stock must be a whole number.");
            return Ok(see_other("/admin/products"));
        }
    };
    let mut body = json!({
        "name": field(&f.name).unwrap_or_default(),
        "category": field(&f.category).unwrap_or_default(),
        "price": field(&f.price).unwrap_or_default(),
    });
    if field(&f.untracked).is_some() {
        body["track_stock"] = json!(false);
    } else {
        body["stock"] = json!(stock);
    }
    if let Some(sku) = field(&f.sku) {
        body["sku"] = json!(sku);
    }
    if let Some(d) = field(&f.description) {
        body["description"] = json!(d);
    }
    let call = Call::new(Svc::Catalog, Method::POST, "/products").json(body);
    match ctx.call::<Product>(call).await {
        Ok(p) => {
            ctx.flash(
                FlashKind::Success,
                if p.track_stock {
                    format!("{} is on sale: {} units at {}.", p.name, p.stock, money(p.price, &p.currency))
                } else {
                    format!("{} is on sale, made to order, at {}.", p.name, money(p.price, &p.currency))
                },
            );
            Ok(see_other(&format!("/admin/products/{}", p.id)))
        }
        Err(e) => {
            report(&ctx, Err(e))?;
            Ok(see_other("/admin/products"))
        }
    }
}

pub async fn product(ctx: Ctx, Path(raw): Path<String>) -> PageResult {
    ctx.require_admin()?;
    let id = numeric_id(&raw)?;
    let res = ctx.send(&Call::get(Svc::Catalog, format!("/products/{id}"))).await?;
    let etag = res.headers().get(axum::http::header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let p: Product = ctx.web.catalog.read_json(res).await.map_err(|e| WebError::from(ApiError(e)))?;
    let csrf = ctx.csrf();
    let body = html! {
        nav.breadcrumbs aria-label="Breadcrumb" {
            ol {
                li { a href="/admin/products" { "Products" } }
                li { a href={ "/admin/products/" (p.id) } aria-current="page" { (p.name) } }
            }
        }
        h1 { (p.name) }
        p {
            (availability(&p)) " · "
            @if p.track_stock { (p.stock_on_hand) " on hand, " (p.stock_reserved) " reserved · " }
            @if p.active { a href={ "/products/" (p.id) } { "View in the shop" } } @else { "deactivated" }
        }
        div.columns {
            section aria-labelledby="details-title" {
                h2 #details-title { "Details" }
                form.stack method="post" action={ "/admin/products/" (p.id) } {
                    (csrf_field(&csrf))
                    input type="hidden" name="etag" value=(etag);
                    label for="name" { "Name" }
                    input #name name="name" type="text" maxlength="200" required value=(p.name);
                    label for="category" { "Category" }
                    input #category name="category" type="text" maxlength="64" required value=(p.category);
                    label for="sku" { "SKU" }
                    input #sku name="sku" type="text" maxlength="64" required value=(p.sku);
                    label for="description" { "Description" }
                    textarea #description name="description" maxlength="2000" rows="4" { (p.description) }
                    button.primary type="submit" { "Save details" }
                }
            }
            section aria-labelledby="price-title" {
                h2 #price-title { "Price" }
                form.stack method="post" action={ "/admin/products/" (p.id) "/price" } {
                    (csrf_field(&csrf))
                    input type="hidden" name="etag" value=(etag);
                    label for="price" { "Price (" (p.currency) ")" }
                    input #price name="price" type="text" inputmode="decimal" pattern="[0-9]{1,10}(\\.[0-9]{1,2})?"
                        required value=(p.price.to_string());
                    button.primary type="submit" { "Set price" }
                }
                h2 #stock-title { "Stock" }
                form.stack method="post" action={ "/admin/products/" (p.id) "/stock" } {
                    (csrf_field(&csrf))
                    input type="hidden" name="etag" value=(etag);
                    label for="on_hand" { "Units on hand" }
                    input #on_hand name="on_hand" type="number" min="0" max="1000000000" required value=(p.stock_on_hand);
                    button.primary type="submit" { "Set stock" }
                }
                h2 #status-title { "On sale" }
                form method="post" action={ "/admin/products/" (p.id) "/active" } {
                    (csrf_field(&csrf))
                    input type="hidden" name="etag" value=(etag);
                    @if p.active {
                        input type="hidden" name="active" value="false";
                        button.danger type="submit" { "Deactivate" }
                        p.hint { "It leaves the catalogue; past orders keep it." }
                    } @else {
                        input type="hidden" name="active" value="true";
                        button.primary type="submit" { "Put back on sale" }
                    }
                }
            }
        }
        (super::pictures::section(&p, &csrf))
    };
    Ok(ctx.page(&p.name, body))
}

#[derive(Debug, Deserialize)]
pub struct EditForm {
    etag: Option<String>,
    name: Option<String>,
    category: Option<String>,
    sku: Option<String>,
    description: Option<String>,
    price: Option<String>,
    on_hand: Option<String>,
    active: Option<String>,
}

/// A product change, sent with the ETag the form was made from (If-Match), so two
/// administrators editing at once cannot overwrite each other unknowingly.
async fn change_product(
    ctx: &Ctx,
    method: Method,
    path: String,
    etag: &Option<String>,
    body: serde_json::Value,
) -> Result<Product, ApiError> {
    let mut call = Call::new(Svc::Catalog, method, path).json(body);
    if let Some(tag) = field(etag) {
        call = call.header("if-match", tag);
    }
    ctx.call::<Product>(call).await
}

pub async fn edit_product(ctx: Ctx, Path(raw): Path<String>, CsrfForm(f): CsrfForm<EditForm>) -> PageResult {
    ctx.require_admin()?;
    let id = numeric_id(&raw)?;
    let body = json!({
        "name": field(&f.name),
        "category": field(&f.category),
        "sku": field(&f.sku),
        "description": f.description.as_deref().map(str::trim).unwrap_or(""),
    });
    let result = change_product(&ctx, Method::PATCH, format!("/products/{id}"), &f.etag, body).await;
    report(&ctx, result.map(|p| format!("{} is saved.", p.name)))?;
    Ok(see_other(&format!("/admin/products/{id}")))
}

pub async fn set_price(ctx: Ctx, Path(raw): Path<String>, CsrfForm(f): CsrfForm<EditForm>) -> PageResult {
    ctx.require_admin()?;
    let id = numeric_id(&raw)?;
    let body = json!({"price": field(&f.price).unwrap_or_default()});
    let result = change_product(&ctx, Method::PUT, format!("/products/{id}/price"), &f.etag, body).await;
    report(&ctx, result.map(|p| format!("{} now costs {}.", p.name, money(p.price, &p.currency))))?;
    Ok(see_other(&format!("/admin/products/{id}")))
}

pub async fn set_stock(ctx: Ctx, Path(raw): Path<String>, CsrfForm(f): CsrfForm<EditForm>) -> PageResult {
    ctx.require_admin()?;
    let id = numeric_id(&raw)?;
    let Some(on_hand) = field(&f.on_hand).and_then(|n| n.parse::<i64>().ok()) else {
        ctx.flash(FlashKind::Error, "Nothing was changed: units on hand must be a whole number.");
        return Ok(see_other(&format!("/admin/products/{id}")));
    };
    let result =
        change_product(&ctx, Method::POST, format!("/products/{id}/stock"), &f.etag, json!({"on_hand": on_hand})).await;
    report(&ctx, result.map(|p| format!("{} has {} units on hand ({} available).", p.name, p.stock_on_hand, p.stock)))?;
    Ok(see_other(&format!("/admin/products/{id}")))
}

pub async fn set_active(ctx: Ctx, Path(raw): Path<String>, CsrfForm(f): CsrfForm<EditForm>) -> PageResult {
    ctx.require_admin()?;
    let id = numeric_id(&raw)?;
    let active = f.active.as_deref() == Some("true");
    let result =
        change_product(&ctx, Method::PATCH, format!("/products/{id}"), &f.etag, json!({"active": active})).await;
    report(
        &ctx,
        result.map(|p| {
            if p.active { format!("{} is back on sale.", p.name) } else { format!("{} is deactivated.", p.name) }
        }),
    )?;
    Ok(see_other(&format!("/admin/products/{id}")))
}

// ---------------------------------------------------------------------------------------------
// Orders

#[derive(Debug, Deserialize)]
pub struct OrdersQuery {
    status: Option<String>,
    user: Option<String>,
    page: Option<String>,
}

const STATUSES: &[&str] = &["pending", "confirmed", "shipped", "delivered", "cancelled"];

pub async fn orders(ctx: Ctx, Query(q): Query<OrdersQuery>) -> PageResult {
    ctx.require_admin()?;
    let page = page_number(&q.page);
    let status = field(&q.status).filter(|s| STATUSES.contains(&s.as_str()));
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
            ("status", status.as_deref()),
            ("user_id", user_id.as_deref()),
        ]);
        ctx.call(Call::get(Svc::Orders, format!("/orders?{query}"))).await?
    };
    let csrf = ctx.csrf();
    let back = format!(
        "/admin/orders?{}",
        query_string(&[("status", status.as_deref()), ("user", user.as_deref()), ("page", Some(&page.to_string()))])
    );
    let body = html! {
        h1 { "All orders" }
        (admin_nav("/admin/orders"))
        form.search role="search" method="get" action="/admin/orders" {
            div.field {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "Any" }
                    @for s in STATUSES {
                        option value=(s) selected[status.as_deref() == Some(*s)] { (s) }
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
                            td { (status_badge(&o.status)) }
                            td { (admin_actions(&csrf, o, &back)) }
                        }
                    }
                }
            }
        }
        (pagination(
            "/admin/orders",
            &[("status", status.clone().unwrap_or_default()), ("user", user.clone().unwrap_or_default())],
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
    if !STATUSES.contains(&f.status.as_str()) {
        return Err(WebError::bad_request("Unknown status."));
    }
    let call = Call::new(Svc::Orders, Method::PUT, format!("/orders/{id}/status")).json(json!({"status": f.status}));
    let result = ctx.call::<Order>(call).await;
    report(&ctx, result.map(|o| format!("Order {} is now {}.", order_ref(&o.id), o.status)))?;
    let back = f.back.as_deref().filter(|b| b.starts_with("/admin/orders") || b.starts_with("/purchases/"));
    Ok(see_other(&safe_next(back.or(Some("/admin/orders")))))
}

// ---------------------------------------------------------------------------------------------
// Users

#[derive(Debug, Deserialize)]
pub struct UsersQuery {
    q: Option<String>,
    role: Option<String>,
    page: Option<String>,
}

pub async fn users(ctx: Ctx, Query(q): Query<UsersQuery>) -> PageResult {
    let me = ctx.require_admin()?;
    let page = page_number(&q.page);
    let text: Option<String> = field(&q.q).map(|t| t.chars().take(100).collect());
    let role = field(&q.role).filter(|r| r == "admin" || r == "user");
    let query = query_string(&[
        ("per_page", Some("20")),
        ("page", Some(&page.to_string())),
        ("q", text.as_deref()),
        ("role", role.as_deref()),
    ]);
    let list: Paged<User> = ctx.call(Call::get(Svc::Users, format!("/users?{query}"))).await?;
    let csrf = ctx.csrf();
    let body = html! {
        h1 { "Users" }
        (admin_nav("/admin/users"))
        form.search role="search" method="get" action="/admin/users" {
            div.field {
                label for="q" { "Search users" }
                input #q type="search" name="q" maxlength="100" value=[text.as_deref()];
            }
            div.field {
                label for="role" { "Role" }
                select #role name="role" {
                    option value="" { "Any" }
                    option value="admin" selected[role.as_deref() == Some("admin")] { "admin" }
                    option value="user" selected[role.as_deref() == Some("user")] { "user" }
                }
            }
            button type="submit" { "Filter" }
        }
        div.table-wrap {
            table {
                caption.visually-hidden { "Users" }
                (head_row(&["Username", "Name", "E-mail", "Joined", "Role"]))
                tbody {
                    @for u in &list.items {
                        tr {
                            th scope="row" { (u.username) }
                            td { (u.name) }
                            td { (u.email.as_deref().unwrap_or("—")) }
                            td { (when(&u.created_at)) }
                            td {
                                form.inline method="post" action={ "/admin/users/" (u.id) "/role" } {
                                    (csrf_field(&csrf))
                                    label.visually-hidden for={ "role-" (u.id) } { "Role of " (u.username) }
                                    select id={ "role-" (u.id) } name="role" disabled[u.id == me.subject] {
                                        option value="user" selected[u.role == "user"] { "user" }
                                        option value="admin" selected[u.role == "admin"] { "admin" }
                                    }
                                    @if u.id != me.subject {
                                        button type="submit" { "Change" span.visually-hidden { " role of " (u.username) } }
                                    } @else {
                                        span.muted { " (you)" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (pagination(
            "/admin/users",
            &[("q", text.clone().unwrap_or_default()), ("role", role.clone().unwrap_or_default())],
            list.page,
            list.total_pages,
        ))
    };
    Ok(ctx.page("Users", body))
}

#[derive(Debug, Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

pub async fn set_role(ctx: Ctx, Path(id): Path<String>, CsrfForm(f): CsrfForm<RoleForm>) -> PageResult {
    ctx.require_admin()?;
    if f.role != "admin" && f.role != "user" {
        return Err(WebError::bad_request("A role is admin or user."));
    }
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(WebError::not_found("There is no such user."));
    }
    let call = Call::new(Svc::Users, Method::PUT, format!("/users/{id}")).json(json!({"role": f.role}));
    let result = ctx.call::<User>(call).await;
    report(&ctx, result.map(|u| format!("{} is now {}; their sessions were signed out.", u.username, u.role)))?;
    Ok(see_other("/admin/users"))
}
