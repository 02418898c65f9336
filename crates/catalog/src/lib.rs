//! The catalog service: products, categories, stock and the reservations that keep orders
//! from ever overselling.

pub mod config;
pub mod consumer;
pub mod demo;
pub mod dialects;
pub mod domain;
pub mod error;
pub mod images;
pub mod routes;
pub mod service;
pub mod store;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use kit::auth::TokenVerifier;
use kit::metrics::Metrics;
use kit::problem::SecuritySchemes;
use kit::server::ServiceShell;
use utoipa::OpenApi;

pub use config::Config;
pub use error::CatalogError;
pub use service::Catalog;

pub const SERVICE: &str = "catalog";

#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub metrics: Metrics,
}

impl AppState {
    /// Connects the database, applies migrations, seeds the demo catalogue when configured and
    /// starts the reservation expiry sweeper.
    pub async fn start(config: Config) -> Result<Self, CatalogError> {
        let metrics = Metrics::new(SERVICE);
        metrics.spawn_upkeep();
        let catalog = Catalog::start(config, metrics.clone()).await?;
        catalog.verifier().warm_up().await;
        if let Some(topology) = catalog.config.nats.clone() {
            consumer::spawn(catalog.clone(), topology);
        }
        Ok(AppState { catalog, metrics })
    }
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.catalog.verifier().clone()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ordermesh catalog service", description = "Products, categories, stock and reservations."),
    paths(
        routes::list_products, routes::get_product, routes::create_product, routes::replace_product,
        routes::patch_product, routes::deactivate_product, routes::set_price, routes::adjust_stock,
        routes::categories, routes::reserve, routes::get_reservation, routes::commit, routes::release,
        routes::receive_events, routes::event_stats, routes::processed_events,
        images::routes::upload_image, images::routes::update_image, images::routes::delete_image,
        images::routes::get_rendition,
        dialects::products_in_category, dialects::update_product,
    ),
    components(schemas(kit::Problem)),
    modifiers(&SecuritySchemes, &Links),
    tags(
        (name = "products", description = "The catalogue: public reads, administrator writes"),
        (name = "reservations", description = "Stock held for orders (orders service only)"),
        (name = "events", description = "Order events from the orders service"),
        (name = "seed dialects", description = "The seed systems' own paths; see docs/dialects.md"),
    )
)]
pub struct ApiDoc;

/// Where the ids this service hands out go next (links, for clients and property-based
/// tests), and the seeds' paths that share a canonical handler.
struct Links;

impl utoipa::Modify for Links {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use kit::docs::alias_path;
        use kit::problem::link_response;
        use utoipa::openapi::path::HttpMethod::*;
        for target in
            ["get_product", "replace_product", "patch_product", "deactivate_product", "set_price", "adjust_stock"]
        {
            link_response(doc, "/products", Post, "201", target, "id", "$response.body#/id");
        }
        for target in ["get_reservation", "commit", "release"] {
            link_response(doc, "/reservations", Post, "201", target, "id", "$response.body#/id");
        }
        alias_path(doc, "/products", Post, "/create-product", Post);
        alias_path(doc, "/products", Get, "/inventory/assets", Get);
        alias_path(doc, "/products/{id}", Get, "/inventory/assets/{id}", Get);
    }
}

pub fn router(state: AppState) -> Router {
    let shell =
        ServiceShell::new(SERVICE, state.metrics.clone(), state.catalog.config.server.clone(), ApiDoc::openapi())
            .with_database(state.catalog.store().db().clone());
    shell.wrap(routes::api().merge(images::routes::routes()).merge(dialects::routes()).with_state(state))
}
