//! The page layout and small pieces every page uses. Everything interpolated with `(…)` is
//! HTML-escaped by maud.

use api::money::Money;
use api::orders::OrderStatus;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::client::{Ctx, Product, ReqState, lock};
use super::session::{Flash, FlashKind};

pub const CSS: &str = include_str!("assets/style.css");
pub const FAVICON: &str = include_str!("assets/favicon.svg");

/// FNV-1a, to version the asset URLs by their content (a changed stylesheet is a new URL, so
/// the old one can be cached forever).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const CSS_VERSION: u64 = fnv1a(CSS.as_bytes());
const FAVICON_VERSION: u64 = fnv1a(FAVICON.as_bytes());

fn css_href() -> String {
    format!("/assets/style.css?v={CSS_VERSION:016x}")
}

fn favicon_href() -> String {
    format!("/assets/favicon.svg?v={FAVICON_VERSION:016x}")
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, IMMUTABLE)], CSS).into_response()
}

pub async fn favicon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, IMMUTABLE)], FAVICON).into_response()
}

pub fn html(markup: Markup) -> Html<String> {
    Html(markup.into_string())
}

/// Who is looking, for the navigation.
pub struct NavUser {
    pub username: String,
    pub display: String,
    pub admin: bool,
}

/// What the layout needs from the request: the visitor, the CSRF token (for the sign-out
/// form), the cart's size, a flash message, and the current path.
pub struct Chrome {
    pub user: Option<NavUser>,
    pub csrf: String,
    pub cart_units: u32,
    pub flash: Option<Flash>,
    pub path: String,
}

impl Chrome {
    pub fn from_state(st: &ReqState, path: &str) -> Self {
        Chrome {
            user: st.user.as_ref().map(|p| {
                let username = p.username.clone().unwrap_or_else(|| "you".into());
                NavUser {
                    display: st.session.name.clone().unwrap_or_else(|| username.clone()),
                    username,
                    admin: p.is_admin(),
                }
            }),
            csrf: st.session.csrf.clone(),
            cart_units: st.cart.units(),
            flash: st.flash_in.clone(),
            path: path.to_string(),
        }
    }
}

impl Ctx {
    pub fn chrome(&self) -> Chrome {
        Chrome::from_state(&lock(&self.shared), &self.path)
    }

    /// A full page, 200.
    pub fn page(&self, title: &str, body: Markup) -> Response {
        self.page_with(StatusCode::OK, title, body)
    }

    pub fn page_with(&self, status: StatusCode, title: &str, body: Markup) -> Response {
        (status, html(layout(&self.chrome(), title, body))).into_response()
    }
}

fn nav_link(chrome: &Chrome, href: &str, label: &str) -> Markup {
    let current = chrome.path == href || (href != "/" && chrome.path.starts_with(&format!("{href}/")));
    html! {
        li { a href=(href) aria-current=[current.then_some("page")] { (label) } }
    }
}

pub fn layout(chrome: &Chrome, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ordermesh" }
                link rel="stylesheet" href=(css_href());
                link rel="icon" type="image/svg+xml" href=(favicon_href());
            }
            body {
                a.skip href="#main" { "Skip to main content" }
                header.site {
                    div.bar {
                        a.brand href="/home" { "ordermesh" }
                        @if let Some(u) = &chrome.user {
                            p.who { "Signed in as " strong { (u.display) } }
                        }
                    }
                    nav aria-label="Main" {
                        ul {
                            (nav_link(chrome, "/products", "Catalogue"))
                            li {
                                a href="/cart" aria-current=[(chrome.path == "/cart").then_some("page")] {
                                    "Cart "
                                    span.count { (chrome.cart_units) }
                                    span.visually-hidden { " items" }
                                }
                            }
                            @if let Some(u) = &chrome.user {
                                (nav_link(chrome, "/purchases", "Purchases"))
                                (nav_link(chrome, "/profile", "Profile"))
                                @if u.admin {
                                    (nav_link(chrome, "/admin", "Admin"))
                                }
                                li {
                                    form.inline method="post" action="/logout" {
                                        (csrf_field(&chrome.csrf))
                                        button.link type="submit" { "Sign out" }
                                    }
                                }
                            } @else {
                                (nav_link(chrome, "/login", "Sign in"))
                                (nav_link(chrome, "/register", "Register"))
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    @if let Some(f) = &chrome.flash {
                        (flash(f))
                    }
                    (body)
                }
                footer.site {
                    p {
                        "ordermesh storefront: the same services as the "
                        a href="/docs" { "REST API" }
                        "."
                    }
                }
            }
        }
    }
}

pub fn flash(f: &Flash) -> Markup {
    match f.kind {
        FlashKind::Success => html! { div.flash.success role="status" { (f.text) } },
        FlashKind::Error => html! { div.flash.error role="alert" { (f.text) } },
    }
}

/// An error message inside a form's page.
pub fn alert(message: &str) -> Markup {
    html! { div.flash.error role="alert" { (message) } }
}

pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="_csrf" value=(token); }
}

pub fn error_page(chrome: &Chrome, status: StatusCode, title: &str, message: &str) -> Markup {
    layout(
        chrome,
        title,
        html! {
            section.error-page aria-labelledby="error-title" {
                h1 #error-title { (title) }
                p { (message) }
                p.muted { "HTTP " (status.as_u16()) }
                p {
                    a href="/products" { "Browse the catalogue" }
                    @if chrome.user.is_none() && status == StatusCode::FORBIDDEN {
                        " or " a href="/login" { "sign in" }
                    }
                }
            }
        },
    )
}

/// `999.99 USD`, or `$999.99` for dollars.
pub fn money(m: Money, currency: &str) -> String {
    match currency {
        "USD" => format!("${m}"),
        "EUR" => format!("€{m}"),
        "GBP" => format!("£{m}"),
        other => format!("{m} {other}"),
    }
}

/// `2026-11-23T06:06:31.123Z` → `2026-11-23 06:06 UTC`.
pub fn when(rfc3339: &str) -> String {
    if rfc3339.len() >= 16 { format!("{} {} UTC", &rfc3339[..10], &rfc3339[11..16]) } else { rfc3339.to_string() }
}

/// An order's short, readable reference (its id's last 8 characters).
pub fn order_ref(id: &str) -> &str {
    if id.len() > 8 { &id[id.len() - 8..] } else { id }
}

pub fn status_badge(status: OrderStatus) -> Markup {
    html! { span class={ "badge status-" (status.as_str()) } { (status.as_str()) } }
}

/// A table's header row of column headings.
pub fn head_row(columns: &[&str]) -> Markup {
    html! {
        thead { tr { @for c in columns { th scope="col" { (c) } } } }
    }
}

/// Availability in words.
pub fn availability(p: &Product) -> Markup {
    if !p.active {
        return html! { span.stock.out { "No longer sold" } };
    }
    if !p.track_stock {
        return html! { span.stock.in { "Made to order" span.muted { " (always available)" } } };
    }
    match p.stock {
        s if s <= 0 => html! { span.stock.out { "Out of stock" } },
        s if s < 5 => html! { span.stock.low { "Only " (s) " left" } },
        s => html! { span.stock.in { "In stock" span.muted { " (" (s) " available)" } } },
    }
}

/// A product's main picture for lists: the thumbnail, or the display size on screens that
/// draw it larger; loaded lazily, with its size given so the page does not jump.
pub fn thumbnail(p: &Product) -> Markup {
    match p.images.first() {
        Some(img) => html! {
            img.thumb src=(img.thumbnail_url) alt=(img.alt) width=(img.thumbnail_width) height=(img.thumbnail_height)
                srcset={ (img.thumbnail_url) " " (img.thumbnail_width) "w, " (img.url) " " (img.width) "w" }
                sizes="(max-width: 40rem) 90vw, 16rem" loading="lazy" decoding="async";
        },
        None => html! { div.thumb.no-picture aria-hidden="true" {} },
    }
}

/// A product's pictures on its own page: the main one large, the others as a gallery of
/// links to their full size.
pub fn gallery(p: &Product) -> Markup {
    let Some((main, rest)) = p.images.split_first() else { return html! {} };
    html! {
        figure.main-picture {
            img src=(main.url) alt=(main.alt) width=(main.width) height=(main.height)
                srcset={ (main.thumbnail_url) " " (main.thumbnail_width) "w, " (main.url) " " (main.width) "w" }
                sizes="(max-width: 40rem) 90vw, 32rem";
        }
        @if !rest.is_empty() {
            ul.gallery aria-label="More pictures" {
                @for img in rest {
                    li { a href=(img.url) {
                        img src=(img.thumbnail_url) alt=(img.alt) width=(img.thumbnail_width)
                            height=(img.thumbnail_height) loading="lazy";
                    } }
                }
            }
        }
    }
}

/// Previous/next links keeping the other query parameters.
pub fn pagination(base: &str, params: &[(&str, String)], page: u32, total_pages: u64) -> Markup {
    if total_pages <= 1 {
        return html! {};
    }
    let link = |p: u32| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("page", &p.to_string());
        format!("{base}?{}", q.finish())
    };
    html! {
        nav.pagination aria-label="Pagination" {
            @if page > 1 {
                a rel="prev" href=(link(page - 1)) { "← Previous" }
            }
            span { "Page " (page) " of " (total_pages) }
            @if (page as u64) < total_pages {
                a rel="next" href=(link(page + 1)) { "Next →" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrome() -> Chrome {
        Chrome {
            user: Some(NavUser { username: "eve".into(), display: "<script>alert(1)</script>".into(), admin: false }),
            csrf: "tok\"en".into(),
            cart_units: 3,
            flash: Some(Flash { kind: FlashKind::Error, text: "<img src=x onerror=alert(1)>".into() }),
            path: "/cart".into(),
        }
    }

    #[test]
    fn everything_interpolated_is_escaped() {
        let page = layout(&chrome(), "<b>title</b>", html! { p { ("\"><svg onload=alert(1)>") } }).into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img src=x"));
        assert!(!page.contains("<svg onload"));
        assert!(!page.contains("<b>title"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("value=\"tok&quot;en\""), "attribute values are escaped too");
    }

    #[test]
    fn the_layout_is_accessible_and_self_contained() {
        let page = layout(&chrome(), "Cart", html! { p { "x" } }).into_string();
        assert!(page.starts_with("<!DOCTYPE html><html lang=\"en\">"));
        assert!(page.contains("name=\"viewport\""));
        assert!(page.contains("href=\"#main\""), "skip link");
        assert!(page.contains("<nav aria-label=\"Main\">"));
        assert!(page.contains("aria-current=\"page\""), "the cart link is marked current");
        assert!(page.contains("role=\"alert\""));
        assert!(!page.contains("<script"), "no script at all");
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing from another origin");
    }

    #[test]
    fn helpers() {
        assert_eq!(money(Money::from_cents(99999).unwrap(), "USD"), "$999.99");
        assert_eq!(money(Money::from_cents(100).unwrap(), "CHF"), "1.00 CHF");
        assert_eq!(when("2026-11-23T06:06:31.123Z"), "2026-11-23 06:06 UTC");
        assert_eq!(order_ref("0192f1a4-aaaa-7bbb-8ccc-1234567890ab"), "567890ab");
        let p = pagination("/products", &[("q", "a&b".into()), ("category", String::new())], 2, 3).into_string();
        assert!(p.contains("href=\"/products?q=a%26b&amp;page=1\""), "{p}");
        assert!(p.contains("page=3"));
        assert!(pagination("/products", &[], 1, 1).into_string().is_empty());
    }
}
