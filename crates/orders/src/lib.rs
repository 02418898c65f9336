//! The orders service: order lifecycle, stock-safe creation through catalog reservations,
//! Idempotency-Key, and a transactional outbox whose relay never loses an event.

pub mod config;
pub mod dialects;
pub mod domain;
pub mod error;
pub mod relay;
pub mod request;
pub mod routes;
pub mod service;
pub mod store;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use kit::auth::{HttpRevocations, RevocationSet, ServiceTokenSource, TokenVerifier};
use kit::client::ServiceClient;
use kit::metrics::Metrics;
use kit::problem::SecuritySchemes;
use kit::server::ServiceShell;
use tokio::sync::Notify;
use utoipa::OpenApi;

pub use config::Config;
pub use error::OrdersError;
pub use service::Orders;

use crate::relay::{Relay, Transport};
use crate::store::Store;

pub const SERVICE: &str = "orders";

#[derive(Clone)]
pub struct AppState {
    pub orders: Arc<Orders>,
    pub metrics: Metrics,
}

impl AppState {
    /// Connects the database, applies migrations, and starts the outbox relay on the
    /// configured transport.
    pub async fn start(config: Config) -> Result<Self, OrdersError> {
        let metrics = Metrics::new(SERVICE);
        metrics.spawn_upkeep();
        let db = kit::db::Db::connect(&config.db).await?;
        db.migrate(&store::MIGRATOR).await.map_err(|e| OrdersError::Internal(format!("migrations: {e}")))?;
        let store = Store::new(db);
        let users = ServiceClient::new("users", config.users.clone(), config.upstream_timeouts);
        let catalog = ServiceClient::new("catalog", config.catalog.clone(), config.upstream_timeouts);
        let tokens = Arc::new(ServiceTokenSource::new(users.clone(), config.identity.clone()));
        let revoked = RevocationSet::default();
        revoked.spawn_poller(HttpRevocations { users: users.clone(), tokens: tokens.clone() }, config.revocation_poll);
        let verifier = TokenVerifier::for_service(&config.jwt, users, revoked);
        verifier.warm_up().await;
        let transport = match &config.nats {
            Some(topology) => {
                let js = api::events::nats::connect(&topology.url, "ordermesh-orders")
                    .await
                    .map_err(OrdersError::Internal)?;
                if let Err(e) = api::events::nats::ensure_stream(&js, topology).await {
                    // The broker may be down right now; publishing retries until it is back.
                    tracing::warn!(error = %e, "NATS stream not ready yet");
                }
                Transport::Nats { jetstream: js, subject_prefix: topology.subject_prefix.clone() }
            }
            None => Transport::Http {
                subscribers: ServiceClient::new(
                    "event subscribers",
                    config.event_subscribers.clone(),
                    config.upstream_timeouts,
                ),
                tokens: tokens.clone(),
            },
        };
        let relay_wake = Arc::new(Notify::new());
        Relay {
            store: store.clone(),
            transport,
            wake: relay_wake.clone(),
            batch: config.relay_batch,
            interval: config.relay_interval,
            linger: config.relay_linger,
            metrics: metrics.clone(),
        }
        .spawn();
        spawn_housekeeping(store.clone(), config.idempotency_ttl, metrics.clone());
        let commit_by_call = !config.events_commit_reservations();
        let orders = Arc::new(Orders {
            store,
            config,
            metrics: metrics.clone(),
            verifier,
            catalog,
            tokens,
            relay_wake,
            commit_by_call,
        });
        Ok(AppState { orders, metrics })
    }
}

/// Idempotency answers live `ttl`; published events are kept a week for inspection. The
/// outbox backlog is published as a gauge, the first thing to look at when events lag.
fn spawn_housekeeping(store: Store, ttl: Duration, metrics: Metrics) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut rounds = 0u64;
        loop {
            tick.tick().await;
            if let Ok(n) = store.outbox_backlog().await {
                metrics.record(|| metrics::gauge!("outbox_backlog").set(n as f64));
            }
            rounds += 1;
            if rounds % 720 != 1 {
                continue;
            }
            match store.purge(ttl.as_millis() as i64, 7 * 86_400_000).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "old idempotency keys and events purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purge failed"),
            }
        }
    });
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.orders.verifier().clone()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ordermesh orders service", description = "Placing orders, reading them, moving them through their statuses."),
    paths(
        routes::create_order, routes::list_orders, routes::get_order, routes::set_status, routes::cancel_order,
        dialects::articles, dialects::purchases, dialects::buy,
    ),
    components(schemas(kit::Problem)),
    modifiers(&SecuritySchemes, &Links),
    tags(
        (name = "orders", description = "Orders and their lifecycle"),
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
        for target in ["get_order", "set_status", "cancel_order"] {
            link_response(doc, "/orders", Post, "201", target, "id", "$response.body#/id");
        }
        alias_path(doc, "/orders", Post, "/create-order", Post);
    }
}

pub fn router(state: AppState) -> Router {
    let shell =
        ServiceShell::new(SERVICE, state.metrics.clone(), state.orders.config.server.clone(), ApiDoc::openapi())
            .with_database(state.orders.store().db().clone());
    shell.wrap(routes::api().merge(dialects::routes()).with_state(state))
}
