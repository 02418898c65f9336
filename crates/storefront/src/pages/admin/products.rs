//! The administrators' product pages: the list, a new product, and one product's details,
//! price, stock and sale status (its pictures are in [`super::pictures`]).

use axum::extract::{Path, Query};
use axum::http::Method;
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::super::{field, numeric_id, query_string, see_other};
use super::{admin_nav, page_number, report};
use crate::client::{ApiError, Call, Ctx, Paged, Product, Svc};
use crate::session::FlashKind;
use crate::view::{availability, csrf_field, head_row, money, pagination};
use crate::{CsrfForm, PageResult, WebError};

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
