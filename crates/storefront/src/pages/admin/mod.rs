//! The administrators' pages: the dashboard here, products, all orders, users and traces in
//! their own modules. Each checks the role first (403 for anyone else signed in); the services check it
//! again.

mod orders;
pub mod pictures;
mod products;
mod traces;
mod users;

pub use orders::{orders, set_order_status};
pub use products::{create_product, edit_product, product, products, set_active, set_price, set_stock};
pub use traces::{trace, traces};
pub use users::{set_role, users};

use axum::http::StatusCode;
use maud::html;

use crate::client::{ApiError, Ctx};
use crate::dashboard::{Series, chart, per_minute};
use crate::session::FlashKind;
use crate::view::head_row;
use crate::{PageResult, WebError};

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
                (item("/admin/traces", "Traces"))
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
    crate::dashboard::ensure_sampling(&web);
    let now = web.dashboard.sample(&web.app.metrics.render()).await;
    let mut samples = web.dashboard.samples();
    if samples.last().is_none_or(|last| now.at - last.at >= 1.0) {
        samples.push(now);
    }
    let report = gateway::health::report(&web.app);
    let window = samples.first().map(|f| now.at - f.at).unwrap_or(0.0).max(60.0);
    let requests = per_minute(&samples, |s| Some(s.requests));
    let server_errors = per_minute(&samples, |s| Some(s.server_errors));
    let client_errors = per_minute(&samples, |s| Some(s.client_errors));
    let orders = per_minute(&samples, |s| s.orders);
    let last = |v: &Vec<(f64, f64)>| v.last().map(|p| format!("{:.0}", p.1)).unwrap_or_else(|| "—".into());
    let every = web.config.dashboard_sample_interval.as_secs_f64();
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
