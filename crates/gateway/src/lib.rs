//! The API gateway: the one address clients use. A stack of small, named layers (request
//! ids, access log, metrics, rate limits, CORS, edge authentication) in front of a reverse
//! proxy that balances load across service instances, trips circuit breakers, retries what is
//! safe to retry, and reports every upstream instance's health.

pub mod config;
pub mod dialects;
pub mod edge;
pub mod health;
pub mod openapi;
pub mod proxy;
pub mod ratelimit;
pub mod route_templates;
pub mod rpc;
pub mod rules;
pub mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use kit::Problem;
use kit::auth::{HttpRevocations, RevocationSet, ServiceTokenSource, TokenVerifier};
use kit::client::ServiceClient;
use kit::metrics::Metrics;
use kit::server::{Readiness, ServiceShell};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;

pub use config::Config;

use crate::edge::Edge;
use crate::proxy::{Proxy, ProxySettings};
use crate::ratelimit::Limiter;
use crate::route_templates::RouteTemplates;
use crate::rules::{PerService, Service};
use crate::upstream::Upstream;

pub const SERVICE: &str = "gateway";

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub proxy: Arc<Proxy>,
    pub upstreams: PerService<Arc<Upstream>>,
    pub edge: Arc<Edge>,
    pub metrics: Metrics,
    /// What `/openapi.json`, `/docs` and `/redoc` describe: the gateway's own endpoints, or,
    /// when the binary provides the services' documents, the whole public API.
    pub openapi: Arc<utoipa::openapi::OpenApi>,
    /// The shop's WebTransport endpoint, once the binary has bound it (`GET /rpc/wt` describes it).
    pub webtransport: Option<rpc::webtransport::WebTransportInfo>,
}

impl AppState {
    pub async fn start(config: Config) -> Result<Self, String> {
        let metrics = Metrics::new(SERVICE);
        metrics.spawn_upkeep();
        let r = &config.resilience;
        let upstreams =
            PerService::from_fn(|service| Arc::new(Upstream::new(service.name(), &config.upstreams[service], r)));
        let probe = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
        for upstream in upstreams.values() {
            upstream.spawn_health_checks(probe.clone(), r.health_interval);
        }
        let users_client = ServiceClient::new("users", config.upstreams[Service::Users].clone(), Default::default());
        let revoked = RevocationSet::default();
        let tokens = Arc::new(ServiceTokenSource::new(users_client.clone(), config.identity.clone()));
        revoked.spawn_poller(HttpRevocations { users: users_client.clone(), tokens }, config.revocation_poll);
        let verifier = TokenVerifier::for_service(&config.jwt, users_client, revoked);
        verifier.warm_up().await;
        let limits = &config.rate_limits;
        let limiter = Limiter::new(limits.redis_url.clone(), limits.redis_prefix.clone(), metrics.clone());
        if let Some(url) = &limits.redis_url {
            edge::spawn_revocation_listener(
                url.clone(),
                edge::revocation_channel(&limits.redis_prefix),
                verifier.clone(),
            );
        }
        let edge = Arc::new(Edge {
            verifier,
            limiter,
            limits: config.rate_limits.clone(),
            trusted: config.trusted_proxies.clone(),
            metrics: metrics.clone(),
        });
        let proxy = Arc::new(Proxy::new(ProxySettings {
            client: proxy::http_client(r),
            resilience: r.clone(),
            trusted: config.trusted_proxies.clone(),
            body_limit: config.server.body_limit,
            upload_limit: config.upload_limit,
            metrics: metrics.clone(),
        }));
        health::spawn_breaker_gauges(metrics.clone(), upstreams.values().cloned().collect());
        Ok(AppState {
            config: Arc::new(config),
            proxy,
            upstreams,
            edge,
            metrics,
            openapi: Arc::new(ApiDoc::openapi()),
            webtransport: None,
        })
    }

    /// What the Cap'n Web shop calls: the users and orders services, and the edge (its token
    /// verifier and rate limits).
    pub fn shop_backend(&self) -> rpc::ShopBackend {
        rpc::ShopBackend {
            users: self.upstream_client(Service::Users),
            orders: self.upstream_client(Service::Orders),
            edge: self.edge.clone(),
            watch_interval: self.config.rpc_watch_interval,
        }
    }

    /// The gateway's own calls to a service, through the proxy's stack.
    pub fn upstream_client(&self, service: Service) -> proxy::UpstreamClient {
        proxy::UpstreamClient::new(self.proxy.clone(), self.upstreams[service].clone())
    }
}

/// Every `/api/...` request: find the service, forward it.
/// The answer carries the operation's route template, for the metrics and access log.
async fn proxy_api(state: AppState, templates: &RouteTemplates, req: Request) -> Response {
    let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let Some((service, upstream_path)) = rules::route(&path_and_query) else {
        return Problem::not_found(format!("No API at {}", req.uri().path())).into_response();
    };
    let template = templates.of_path(req.uri().path()).cloned();
    let upstream_path = upstream_path.to_string();
    let mut res = state.proxy.forward(&state.upstreams[service], req, &upstream_path).await;
    if let Some(template) = template {
        res.extensions_mut().insert(template);
    }
    res
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ordermesh gateway", description = "The platform's single entry point."),
    paths(health::health),
    components(schemas(kit::Problem, health::PlatformHealth, health::UpstreamHealth, health::InstanceHealth))
)]
pub struct ApiDoc;

fn cors(config: &config::Cors) -> CorsLayer {
    let origins: Vec<HeaderValue> =
        config.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let allow_origin =
        if config.allowed_origins.iter().any(|o| o == "*") { AllowOrigin::any() } else { AllowOrigin::list(origins) };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            "idempotency-key".parse().expect("static"),
        ])
        .expose_headers([header::ETAG, header::LOCATION, header::RETRY_AFTER, "x-request-id".parse().expect("static")])
        .allow_credentials(config.allow_credentials)
        .max_age(std::time::Duration::from_secs(600))
}

/// The gateway: the public API, `/health` and the Cap'n Web shop, behind the edge's layers.
pub fn router(state: AppState) -> Router {
    router_with_pages(state, Router::new())
}

/// The gateway with `pages` (the storefront, `crates/storefront`) served behind the same layers
/// as the API: the same client and user rate limits, headers and request log. The storefront is
/// a crate of its own that builds on this one, so it is handed in rather than named here.
pub fn router_with_pages(state: AppState, pages: Router) -> Router {
    let edge = state.edge.clone();
    let templates = Arc::new(RouteTemplates::of(&state.openapi));
    let proxy = move |State(state): State<AppState>, req: Request| {
        let templates = templates.clone();
        async move { proxy_api(state, &templates, req).await }
    };
    let api = Router::new()
        .route("/api/{*rest}", any(proxy.clone()))
        .route("/api", any(proxy))
        .route("/health", get(health::health))
        .with_state(state.clone())
        .merge(rpc::routes(state.shop_backend(), capnweb::Limits::default()))
        .merge(rpc::webtransport::info_route(state.webtransport.clone()))
        .merge(pages)
        .layer(axum::middleware::from_fn(edge::api_response_headers))
        .layer(axum::middleware::from_fn_with_state(edge.clone(), edge::user_rate_limit))
        .layer(axum::middleware::from_fn_with_state(edge.clone(), edge::edge_auth))
        .layer(cors(&state.config.cors))
        .layer(axum::middleware::from_fn_with_state(edge, edge::client_rate_limit));
    let ready_state = state.clone();
    // Ready while some service can be reached: a partial outage degrades /health but must not
    // take every gateway out of rotation, or the whole site would go dark with one service.
    let readiness = Readiness::default().check("upstreams", move || {
        let state = ready_state.clone();
        async move {
            let report = health::report(&state);
            if report.unavailable.len() < report.upstreams.len() {
                Ok(())
            } else {
                Err("no service can be reached".to_string())
            }
        }
    });
    let gateway =
        ServiceShell::new(SERVICE, state.metrics.clone(), state.config.server.clone(), (*state.openapi).clone())
            .with_readiness(readiness)
            .with_own_health()
            .logging_each_request()
            .wrap(api);
    // Seed requests are translated before routing, so they are routed, limited and
    // authorised exactly as the canonical requests they become.
    let limits =
        dialects::BodyLimits { bytes: state.config.server.body_limit, time: state.config.server.request_timeout };
    Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(limits, dialects::seed_dialects))
            .service(gateway),
    )
}
