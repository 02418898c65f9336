//! The catalogue, product pages, the cart, checkout and one-click buying.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::{field, numeric_id, place_order, problem_kind, query_string, see_other};
use crate::client::{ApiError, Call, Categories, Ctx, Paged, Product, Svc};
use crate::session::{Cart, FlashKind, MAX_QUANTITY, random_token};
use crate::view::{availability, csrf_field, gallery, money, pagination, thumbnail};
use crate::{CsrfForm, PageResult, WebError};

const PER_PAGE: u32 = 12;

#[derive(Debug, Default, Deserialize)]
pub struct CatalogueQuery {
    q: Option<String>,
    category: Option<String>,
    sort: Option<String>,
    page: Option<String>,
    in_stock: Option<String>,
}

const SORTS: &[(&str, &str)] = &[
    ("", "Featured"),
    ("name", "Name, A–Z"),
    ("price", "Price, low to high"),
    ("-price", "Price, high to low"),
    ("newest", "Newest"),
];

pub async fn home(ctx: Ctx, q: Query<CatalogueQuery>) -> PageResult {
    catalogue_page(ctx, q.0, true).await
}

pub async fn catalogue(ctx: Ctx, q: Query<CatalogueQuery>) -> PageResult {
    catalogue_page(ctx, q.0, false).await
}

async fn catalogue_page(ctx: Ctx, q: CatalogueQuery, home: bool) -> PageResult {
    let text: Option<String> = field(&q.q).map(|s| s.chars().take(100).collect());
    let category: Option<String> = field(&q.category).map(|s| s.chars().take(64).collect());
    let sort = field(&q.sort).filter(|s| SORTS.iter().any(|(v, _)| v == s)).unwrap_or_default();
    let page = q.page.as_deref().and_then(|p| p.parse::<u32>().ok()).filter(|p| (1..=100_000).contains(p)).unwrap_or(1);
    let in_stock = field(&q.in_stock).is_some();
    let page_s = page.to_string();
    let upstream = query_string(&[
        ("page", Some(&page_s)),
        ("per_page", Some(&PER_PAGE.to_string())),
        ("q", text.as_deref()),
        ("category", category.as_deref()),
        ("sort", Some(sort.as_str()).filter(|s| !s.is_empty())),
        ("in_stock", in_stock.then_some("true")),
    ]);
    let list_call = Call::get(Svc::Catalog, format!("/products?{upstream}")).anonymous();
    let categories_call = Call::get(Svc::Catalog, "/categories").anonymous();
    let (listing, categories) =
        tokio::join!(ctx.call::<Paged<Product>>(list_call), ctx.call::<Categories>(categories_call));
    let listing = listing?;
    let categories = categories.map(|c| c.items).unwrap_or_default();
    let params = [
        ("q", text.clone().unwrap_or_default()),
        ("category", category.clone().unwrap_or_default()),
        ("sort", sort.clone()),
        ("in_stock", if in_stock { "1".to_string() } else { String::new() }),
    ];
    let base = if home { "/home" } else { "/products" };
    let csrf = ctx.csrf();
    let heading = match &category {
        Some(c) => c.clone(),
        None => "All products".to_string(),
    };
    let greeting = ctx.display_name().filter(|_| home && ctx.user().is_some());
    let body = html! {
        @if let Some(name) = greeting {
            p.lead { "Hello, " (name) ". Here is what is on sale today." }
        }
        div.shop {
            nav.categories aria-label="Categories" {
                h2 { "Categories" }
                ul {
                    li {
                        a href=(base) aria-current=[category.is_none().then_some("page")] { "All products" }
                    }
                    @for c in &categories {
                        li {
                            a href={ (base) "?category=" (urlencode(&c.name)) }
                                aria-current=[(category.as_deref() == Some(c.name.as_str())).then_some("page")] {
                                (c.name) " " span.muted { "(" (c.count) ")" }
                            }
                        }
                    }
                }
            }
            section.listing aria-labelledby="listing-title" {
                h1 #listing-title { (heading) }
                form.search role="search" method="get" action=(base) {
                    @if let Some(c) = &category { input type="hidden" name="category" value=(c); }
                    div.field {
                        label for="q" { "Search products" }
                        input #q type="search" name="q" maxlength="100" value=[text.as_deref()];
                    }
                    div.field {
                        label for="sort" { "Sort by" }
                        select #sort name="sort" {
                            @for (value, label) in SORTS {
                                option value=(value) selected[*value == sort] { (label) }
                            }
                        }
                    }
                    div.field.check {
                        input #in_stock type="checkbox" name="in_stock" value="1" checked[in_stock];
                        label for="in_stock" { "In stock only" }
                    }
                    button type="submit" { "Search" }
                }
                p.muted role="status" {
                    (listing.total) @if listing.total == 1 { " product" } @else { " products" }
                    @if let Some(t) = &text { " matching “" (t) "”" }
                }
                @if listing.items.is_empty() {
                    p { "Nothing matches. " a href=(base) { "See all products" } "." }
                }
                ul.products {
                    @for p in &listing.items {
                        li.card {
                            a.picture href={ "/products/" (p.id) } tabindex="-1" aria-hidden="true" { (thumbnail(p)) }
                            h2 { a href={ "/products/" (p.id) } { (p.name) } }
                            p.muted { (p.category) }
                            p.price { (money(p.price, &p.currency)) }
                            p { (availability(p)) }
                            @if p.orderable() {
                                form method="post" action="/cart/add" {
                                    (csrf_field(&csrf))
                                    input type="hidden" name="product_id" value=(p.id);
                                    input type="hidden" name="quantity" value="1";
                                    button type="submit" { "Add to cart" span.visually-hidden { ": " (p.name) } }
                                }
                            }
                        }
                    }
                }
                (pagination(base, &params, listing.page, listing.total_pages))
            }
        }
    };
    Ok(ctx.page(if home { "Home" } else { "Catalogue" }, body))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn fetch_product(ctx: &Ctx, id: i64) -> Result<Product, WebError> {
    ctx.call::<Product>(Call::get(Svc::Catalog, format!("/products/{id}")).anonymous()).await.map_err(|e| {
        if e.status() == Some(StatusCode::NOT_FOUND) {
            WebError::not_found("There is no such product, or it is no longer sold.")
        } else {
            e.into()
        }
    })
}

pub async fn product(ctx: Ctx, Path(raw): Path<String>) -> PageResult {
    let id = numeric_id(&raw)?;
    let p = fetch_product(&ctx, id).await?;
    let csrf = ctx.csrf();
    let body = html! {
        nav.breadcrumbs aria-label="Breadcrumb" {
            ol {
                li { a href="/products" { "Catalogue" } }
                li { a href={ "/products?category=" (urlencode(&p.category)) } { (p.category) } }
                li { a href={ "/products/" (p.id) } aria-current="page" { (p.name) } }
            }
        }
        article.product aria-labelledby="product-title" {
            (gallery(&p))
            h1 #product-title { (p.name) }
            p.muted { "SKU " (p.sku) }
            p.price.big { (money(p.price, &p.currency)) }
            p { (availability(&p)) }
            @if !p.description.is_empty() { p.description { (p.description) } }
            @if p.orderable() {
                div.actions {
                    form.inline-form method="post" action="/cart/add" {
                        (csrf_field(&csrf))
                        input type="hidden" name="product_id" value=(p.id);
                        label for="quantity" { "Quantity" }
                        input #quantity type="number" name="quantity" value="1" min="1" max=(MAX_QUANTITY)
                            inputmode="numeric" required;
                        button.primary type="submit" { "Add to cart" }
                    }
                    (buy_form(&csrf, &p))
                }
            }
        }
    };
    Ok(ctx.page(&p.name, body))
}

/// One click, one unit: the form carries a fresh Idempotency-Key (a double click or a
/// resubmission of this same form is one order) and the price shown (a price changed since
/// is refused, not charged).
fn buy_form(csrf: &str, p: &Product) -> Markup {
    html! {
        form.inline-form method="post" action={ "/buy/" (p.id) } {
            (csrf_field(csrf))
            input type="hidden" name="key" value=(random_token(16));
            input type="hidden" name="price" value=(p.price.to_string());
            button type="submit" { "Buy now" span.visually-hidden { ": one " (p.name) " for " (money(p.price, &p.currency)) } }
        }
    }
}

/// Seed 004's `GET /buy/{id}`: here it shows the one-click form (buying is a POST).
pub async fn buy_page(ctx: Ctx, Path(raw): Path<String>) -> PageResult {
    ctx.require_user()?;
    let id = numeric_id(&raw)?;
    let p = fetch_product(&ctx, id).await?;
    let body = html! {
        section.narrow aria-labelledby="buy-title" {
            h1 #buy-title { "Buy " (p.name) }
            p { "One " (p.name) " for " strong { (money(p.price, &p.currency)) } "." }
            p { (availability(&p)) }
            @if p.orderable() {
                (buy_form(&ctx.csrf(), &p))
            }
            p { a href={ "/products/" (p.id) } { "Back to the product" } }
        }
    };
    Ok(ctx.page(&format!("Buy {}", p.name), body))
}

#[derive(Debug, Deserialize)]
pub struct BuyForm {
    #[serde(default)]
    key: String,
    price: Option<String>,
}

pub async fn buy(ctx: Ctx, Path(raw): Path<String>, CsrfForm(f): CsrfForm<BuyForm>) -> PageResult {
    ctx.require_user()?;
    let id = numeric_id(&raw)?;
    let key = if valid_key(&f.key) { f.key.clone() } else { random_token(16) };
    let mut item = json!({"product_id": id, "quantity": 1});
    if let Some(price) = field(&f.price) {
        item["price"] = json!(price);
    }
    match place_order(&ctx, json!({"items": [item]}), &format!("buy-{key}")).await {
        Ok(order) => {
            ctx.flash(FlashKind::Success, "Thank you! Your order is placed.");
            Ok(see_other(&format!("/purchases/{}", order.id)))
        }
        Err(e) => {
            order_refused(&ctx, &e)?;
            Ok(see_other(&format!("/buy/{id}")))
        }
    }
}

fn valid_key(k: &str) -> bool {
    (8..=64).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Shows why the orders service refused an order (stock, price, validation) as a message on
/// the next page; anything else is an error page.
fn order_refused(ctx: &Ctx, e: &ApiError) -> Result<(), WebError> {
    match e.status() {
        Some(StatusCode::UNAUTHORIZED) => Err(WebError::SignIn),
        Some(s) if s.is_client_error() => {
            let lead = match problem_kind(e) {
                "insufficient-stock" => "Not enough stock: ",
                "price-changed" => "The price changed: ",
                "unknown-product" => "A product is no longer sold: ",
                _ => "Your order was not placed: ",
            };
            ctx.flash(FlashKind::Error, format!("{lead}{}", e.message()));
            Ok(())
        }
        _ => Err(WebError::page(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable", e.message())),
    }
}

// ---------------------------------------------------------------------------------------------
// The cart.

pub async fn cart(ctx: Ctx) -> PageResult {
    let cart = ctx.cart();
    let fetches =
        cart.lines.iter().map(|l| {
            let ctx = &ctx;
            async move {
                ctx.call::<Product>(Call::get(Svc::Catalog, format!("/products/{}", l.product_id)).anonymous()).await
            }
        });
    let products = futures::future::join_all(fetches).await;
    let csrf = ctx.csrf();
    let signed_in = ctx.user().is_some();
    let mut total_cents: i64 = 0;
    let mut currency = "USD".to_string();
    let mut problems = 0;
    let rows: Vec<Markup> = cart
        .lines
        .iter()
        .zip(&products)
        .map(|(line, product)| match product {
            Ok(p) => {
                currency = p.currency.clone();
                let line_cents = p.price.cents() * line.quantity as i64;
                total_cents += line_cents;
                let changed = p.price.cents() != line.price_cents;
                let short = p.track_stock && p.stock < line.quantity as i64;
                if short || changed || !p.active {
                    problems += 1;
                }
                html! {
                    tr {
                        th scope="row" {
                            a href={ "/products/" (p.id) } { (p.name) }
                            @if short { p.warning { "Only " (p.stock.max(0)) " available now." } }
                            @if !p.active { p.warning { "No longer sold." } }
                        }
                        td.num {
                            (money(p.price, &p.currency))
                            @if changed { p.warning { "Was " (money(line.price(), &p.currency)) " when you added it." } }
                        }
                        td {
                            form.qty method="post" action="/cart/update" {
                                (csrf_field(&csrf))
                                input type="hidden" name="product_id" value=(p.id);
                                label.visually-hidden for={ "qty-" (p.id) } { "Quantity of " (p.name) }
                                input id={ "qty-" (p.id) } type="number" name="quantity" min="0" max=(MAX_QUANTITY)
                                    value=(line.quantity) inputmode="numeric" required;
                                button type="submit" { "Update" span.visually-hidden { " " (p.name) } }
                            }
                        }
                        td.num { (money(api::money::Money::from_cents(line_cents).unwrap_or_default(), &p.currency)) }
                        td {
                            form method="post" action="/cart/remove" {
                                (csrf_field(&csrf))
                                input type="hidden" name="product_id" value=(p.id);
                                button.link type="submit" { "Remove" span.visually-hidden { " " (p.name) } }
                            }
                        }
                    }
                }
            }
            Err(e) => {
                problems += 1;
                let why = if e.status() == Some(StatusCode::NOT_FOUND) {
                    "This product is no longer sold.".to_string()
                } else {
                    e.message()
                };
                html! {
                    tr {
                        th scope="row" { "Product " (line.product_id) p.warning { (why) } }
                        td.num { (money(line.price(), &currency)) }
                        td { (line.quantity) }
                        td.num { "—" }
                        td {
                            form method="post" action="/cart/remove" {
                                (csrf_field(&csrf))
                                input type="hidden" name="product_id" value=(line.product_id);
                                button.link type="submit" { "Remove" }
                            }
                        }
                    }
                }
            }
        })
        .collect();
    let total = api::money::Money::from_cents(total_cents).unwrap_or_default();
    let body = html! {
        h1 { "Your cart" }
        @if cart.is_empty() {
            p { "Your cart is empty. " a href="/products" { "Browse the catalogue" } "." }
        } @else {
            div.table-wrap {
                table.cart {
                    caption.visually-hidden { "Products in your cart" }
                    thead {
                        tr {
                            @for c in ["Product", "Price", "Quantity", "Subtotal"] { th scope="col" { (c) } }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        }
                    }
                    tbody { @for r in &rows { (r) } }
                    tfoot { tr { th scope="row" colspan="3" { "Total" } td.num #cart-total { (money(total, &currency)) } td {} } }
                }
            }
            @if problems > 0 {
                p.warning { "Some lines need your attention; the shop will refuse what it cannot deliver at the price shown." }
            }
            @if signed_in {
                form #checkout method="post" action="/checkout" {
                    (csrf_field(&csrf))
                    input type="hidden" name="key" value=(cart.key);
                    button.primary type="submit" { "Check out (" (money(total, &currency)) ")" }
                }
            } @else {
                p { a.button.primary href="/login?next=%2Fcart" { "Sign in to check out" } }
            }
        }
    };
    Ok(ctx.page("Cart", body))
}

#[derive(Debug, Deserialize)]
pub struct LineForm {
    #[serde(default)]
    product_id: String,
    quantity: Option<String>,
}

fn parse_line(f: &LineForm) -> Result<(i64, Option<u32>), WebError> {
    let id = f
        .product_id
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| WebError::bad_request("Which product?"))?;
    let qty = match field(&f.quantity) {
        None => None,
        Some(q) => Some(q.parse::<u32>().map_err(|_| WebError::bad_request("The quantity must be a whole number."))?),
    };
    Ok((id, qty))
}

pub async fn cart_add(ctx: Ctx, CsrfForm(f): CsrfForm<LineForm>) -> PageResult {
    let (id, qty) = parse_line(&f)?;
    let qty = qty.unwrap_or(1);
    let p = fetch_product(&ctx, id).await?;
    if !p.active {
        ctx.flash(FlashKind::Error, format!("{} is no longer sold.", p.name));
        return Ok(see_other(&format!("/products/{id}")));
    }
    let mut cart = ctx.cart();
    match cart.add(id, qty, p.price.cents()) {
        Ok(()) => {
            ctx.set_cart(cart);
            ctx.flash(FlashKind::Success, format!("Added {qty} × {} to your cart.", p.name));
            Ok(see_other("/cart"))
        }
        Err(e) => {
            ctx.flash(FlashKind::Error, e.to_string());
            Ok(see_other(&format!("/products/{id}")))
        }
    }
}

pub async fn cart_update(ctx: Ctx, CsrfForm(f): CsrfForm<LineForm>) -> PageResult {
    let (id, qty) = parse_line(&f)?;
    let mut cart = ctx.cart();
    match cart.set_quantity(id, qty.unwrap_or(0)) {
        Ok(()) => {
            ctx.set_cart(cart);
            ctx.flash(FlashKind::Success, "Cart updated.");
        }
        Err(e) => ctx.flash(FlashKind::Error, e.to_string()),
    }
    Ok(see_other("/cart"))
}

pub async fn cart_remove(ctx: Ctx, CsrfForm(f): CsrfForm<LineForm>) -> PageResult {
    let (id, _) = parse_line(&f)?;
    let mut cart = ctx.cart();
    if cart.remove(id).is_ok() {
        ctx.set_cart(cart);
        ctx.flash(FlashKind::Success, "Removed from your cart.");
    }
    Ok(see_other("/cart"))
}

#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    #[serde(default)]
    key: String,
}

/// Orders the cart. The order's Idempotency-Key is the cart's checkout key: the same cart
/// submitted twice (a double click, a resubmitted form) is the same order; a cart already
/// ordered is empty, so submitting its old form again orders nothing.
pub async fn checkout(ctx: Ctx, CsrfForm(f): CsrfForm<CheckoutForm>) -> PageResult {
    ctx.require_user()?;
    let cart = ctx.cart();
    if cart.is_empty() {
        ctx.flash(FlashKind::Error, "Your cart is empty, so nothing was ordered.");
        return Ok(see_other("/cart"));
    }
    if f.key != cart.key {
        ctx.flash(FlashKind::Error, "Your cart changed since that page was shown; check it and check out again.");
        return Ok(see_other("/cart"));
    }
    let items: Vec<_> = cart
        .lines
        .iter()
        .map(|l| json!({"product_id": l.product_id, "quantity": l.quantity, "price": l.price().to_string()}))
        .collect();
    match place_order(&ctx, json!({"items": items}), &format!("cart-{}", cart.key)).await {
        Ok(order) => {
            ctx.set_cart(Cart::default());
            ctx.flash(FlashKind::Success, "Thank you! Your order is placed.");
            Ok(see_other(&format!("/purchases/{}", order.id)))
        }
        Err(e) => {
            if problem_kind(&e) == "price-changed" {
                // The shopper has now been told the new price: the next checkout confirms it.
                let item = e.problem().and_then(|p| p.extensions.get("item")).and_then(|v| v.as_u64());
                let current = e
                    .problem()
                    .and_then(|p| p.extensions.get("current_price"))
                    .and_then(|v| serde_json::from_value::<api::money::Money>(v.clone()).ok());
                if let (Some(i), Some(price)) = (item, current)
                    && let Some(line) = cart.lines.get(i as usize)
                {
                    let mut cart = cart.clone();
                    cart.confirm_price(line.product_id, price.cents());
                    ctx.set_cart(cart);
                }
            }
            order_refused(&ctx, &e)?;
            Ok(see_other("/cart"))
        }
    }
}
