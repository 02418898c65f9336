//! The one description of each service this binary runs. `up`, `serve`, `migrate`, `openapi`,
//! `cluster` and the test kit's `Services::start` read everything they need about a service
//! from here: adding a service means a variant of [`ServiceName`] and an entry in [`SERVICES`]
//! (plus its routes at the gateway, and its deployment files if it has them).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use futures::future::BoxFuture;
use kit::config::Settings;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    Gateway,
    Users,
    Catalog,
    Orders,
}

/// What the binary knows about one service.
pub struct Service {
    pub name: ServiceName,
    pub as_str: &'static str,
    /// Its port in `serve`, and in `up` unless `PORT` (gateway) or `<NAME>_PORT` says otherwise.
    pub default_port: u16,
    /// The setting other services read its address from (the seeds' names).
    pub url_key: &'static str,
    /// The database it keeps, if any: what `migrate` applies and `cluster` gives a schema.
    pub migrator: Option<&'static Migrator>,
    /// Whether clients reach it directly (the gateway); the others sit behind it and believe
    /// the client address it forwards.
    pub edge: bool,
    /// Whether it proves itself to the other services with a service token from the users
    /// service (to call them, or to read the revocation feed): the users service is told to
    /// accept its client credentials.
    pub token_client: bool,
    pub start: for<'a> fn(&'a Settings, IpAddr, u16) -> BoxFuture<'a, anyhow::Result<Started>>,
    pub openapi: fn() -> utoipa::openapi::OpenApi,
}

/// Every service, in start order: a service's dependencies come before it.
pub static SERVICES: &[Service] = &[
    Service {
        name: ServiceName::Users,
        as_str: "users",
        token_client: false,
        default_port: users::config::DEFAULT_PORT,
        url_key: "USER_SERVICE_URL",
        migrator: Some(&users::store::MIGRATOR),
        edge: false,
        start: start_users,
        openapi: users::ApiDoc::openapi,
    },
    Service {
        name: ServiceName::Catalog,
        as_str: "catalog",
        token_client: true,
        default_port: catalog::config::DEFAULT_PORT,
        url_key: "CATALOG_SERVICE_URL",
        migrator: Some(&catalog::store::MIGRATOR),
        edge: false,
        start: start_catalog,
        openapi: catalog::ApiDoc::openapi,
    },
    Service {
        name: ServiceName::Orders,
        as_str: "orders",
        token_client: true,
        default_port: orders::config::DEFAULT_PORT,
        url_key: "ORDER_SERVICE_URL",
        migrator: Some(&orders::store::MIGRATOR),
        edge: false,
        start: start_orders,
        openapi: orders::ApiDoc::openapi,
    },
    Service {
        name: ServiceName::Gateway,
        as_str: "gateway",
        token_client: true,
        default_port: gateway::config::DEFAULT_PORT,
        url_key: "GATEWAY_URL",
        migrator: None,
        edge: true,
        start: start_gateway,
        openapi: public_api,
    },
];

impl ServiceName {
    pub fn spec(self) -> &'static Service {
        SERVICES.iter().find(|s| s.name == self).expect("every service has an entry in SERVICES")
    }

    pub fn as_str(self) -> &'static str {
        self.spec().as_str
    }
}

/// The services that ask the users service for service tokens (`SERVICE_CLIENTS` names them).
pub fn token_clients() -> Vec<&'static str> {
    SERVICES.iter().filter(|s| s.token_client).map(|s| s.as_str).collect()
}

/// `SERVICE_CLIENTS` for `clients` that all prove themselves with `secret` (with
/// `CLIENT_SECRET=<secret>` on their side): `up` and `cluster`, which start them together, and
/// tests.
pub fn clients_sharing(secret: &str) -> String {
    token_clients().iter().map(|c| format!("{c}:{secret}")).collect::<Vec<_>>().join(",")
}

/// `SERVICE_CLIENTS` in development when none is configured: each client with the secret it
/// uses by default (`dev-<name>-secret`, refused in production mode on both sides).
pub fn development_clients() -> String {
    token_clients().iter().map(|c| format!("{c}:dev-{c}-secret")).collect::<Vec<_>>().join(",")
}

/// A started service: how it serves, and how to close what it holds open (database pools).
pub struct Started {
    pub server: Server,
    pub close: BoxFuture<'static, ()>,
}

/// What a started service serves on its port, and how.
pub struct Server {
    pub router: Router,
    pub shutdown_grace: Duration,
    /// TLS on its port when configured (the gateway's `TLS_CERT_FILE`/`TLS_KEY_FILE`).
    pub tls: Option<kit::tls::Tls>,
    /// More ports it answers on, each with its own router (the gateway's `HTTP_REDIRECT_PORT`).
    pub also: Vec<(tokio::net::TcpListener, Router)>,
    /// What else it serves until stopped (the gateway's WebTransport endpoint, on UDP).
    pub beside: Vec<Beside>,
}

/// Something served beside the HTTP port until the token is cancelled.
pub type Beside = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

impl Server {
    fn new(router: Router, shutdown_grace: Duration) -> Self {
        Server { router, shutdown_grace, tls: None, also: Vec::new(), beside: Vec::new() }
    }

    /// Serves on `listener`, and on its other ports, until `stop`; in-flight requests get the
    /// shutdown grace.
    pub async fn run(self, listener: tokio::net::TcpListener, stop: CancellationToken) -> std::io::Result<()> {
        let grace = self.shutdown_grace;
        let others: Vec<_> = self
            .also
            .into_iter()
            .map(|(listener, router)| tokio::spawn(kit::server::serve(listener, router, stop.clone(), grace)))
            .collect();
        let beside: Vec<_> = self.beside.into_iter().map(|serve| tokio::spawn(serve(stop.clone()))).collect();
        let served = match self.tls {
            Some(tls) => kit::server::serve_tls(listener, self.router, tls, stop, grace).await,
            None => kit::server::serve(listener, self.router, stop, grace).await,
        };
        for other in others {
            other.await.map_err(std::io::Error::other)??;
        }
        for task in beside {
            task.await.map_err(std::io::Error::other)?;
        }
        served
    }
}

fn start_users(settings: &Settings, host: IpAddr, port: u16) -> BoxFuture<'_, anyhow::Result<Started>> {
    Box::pin(async move {
        let config = users::Config::from_settings(settings, host, port)?;
        let shutdown_grace = config.server.shutdown_grace;
        let state = users::AppState::start(config).await.context("the users service could not start")?;
        let db = state.users.store().db().clone();
        Ok(Started {
            server: Server::new(users::router(state), shutdown_grace),
            close: Box::pin(async move { db.close().await }),
        })
    })
}

fn start_catalog(settings: &Settings, host: IpAddr, port: u16) -> BoxFuture<'_, anyhow::Result<Started>> {
    Box::pin(async move {
        let config = catalog::Config::from_settings(settings, host, port)?;
        let shutdown_grace = config.server.shutdown_grace;
        let state = catalog::AppState::start(config).await.context("the catalog service could not start")?;
        let db = state.catalog.store().db().clone();
        Ok(Started {
            server: Server::new(catalog::router(state), shutdown_grace),
            close: Box::pin(async move { db.close().await }),
        })
    })
}

fn start_orders(settings: &Settings, host: IpAddr, port: u16) -> BoxFuture<'_, anyhow::Result<Started>> {
    Box::pin(async move {
        let config = orders::Config::from_settings(settings, host, port)?;
        let shutdown_grace = config.server.shutdown_grace;
        let state = orders::AppState::start(config).await.context("the orders service could not start")?;
        let db = state.orders.store().db().clone();
        Ok(Started {
            server: Server::new(orders::router(state), shutdown_grace),
            close: Box::pin(async move { db.close().await }),
        })
    })
}

fn start_gateway(settings: &Settings, host: IpAddr, port: u16) -> BoxFuture<'_, anyhow::Result<Started>> {
    Box::pin(async move {
        let config = gateway::Config::from_settings(settings, host, port)?;
        let pages = storefront::config::Config::from_settings(settings)?;
        let shutdown_grace = config.server.shutdown_grace;
        // Before anything connects anywhere: a certificate that cannot be served stops the start.
        let tls = match &config.tls {
            Some(tls) => {
                Some(kit::tls::Tls::load(tls).map_err(|e| anyhow::anyhow!("the gateway cannot serve TLS: {e}"))?)
            }
            None => None,
        };
        let mut also = Vec::new();
        if let Some(redirect_port) = config.http_redirect_port {
            let addr = std::net::SocketAddr::new(host, redirect_port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("the gateway cannot listen on {addr} for HTTP_REDIRECT_PORT: {e}"))?;
            also.push((listener, kit::tls::redirect_to_https(port)));
        }
        let webtransport = gateway::rpc::webtransport::bind(config.webtransport, host, port, tls.as_ref())
            .map_err(|e| anyhow::anyhow!("the gateway cannot serve WebTransport: {e}"))?;
        let mut state =
            gateway::AppState::start(config).await.map_err(|e| anyhow::anyhow!("the gateway could not start: {e}"))?;
        state.openapi = Arc::new(public_api());
        if let Some(tls) = &tls {
            tls.report_to(state.metrics.clone());
        }
        let mut beside: Vec<Beside> = Vec::new();
        if let Some((server, info)) = webtransport {
            state.webtransport = Some(info);
            tracing::info!(addr = %server.local_addr(), "the Cap'n Web shop over WebTransport at /rpc/wt (UDP)");
            let backend = state.shop_backend();
            beside.push(Box::new(move |stop| Box::pin(gateway::rpc::webtransport::serve(server, backend, stop))));
        }
        let server =
            Server { tls, also, beside, ..Server::new(storefront::with_gateway(state, pages), shutdown_grace) };
        Ok(Started { server, close: Box::pin(async {}) })
    })
}

/// The gateway's public API document, from each service's own.
fn public_api() -> utoipa::openapi::OpenApi {
    use gateway::rules::Service;
    gateway::openapi::public_api(&[
        (Service::Users, users::ApiDoc::openapi()),
        (Service::Catalog, catalog::ApiDoc::openapi()),
        (Service::Orders, orders::ApiDoc::openapi()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_one_entry_and_its_dependencies_start_first() {
        use clap::ValueEnum;
        for name in ServiceName::value_variants() {
            assert_eq!(SERVICES.iter().filter(|s| s.name == *name).count(), 1, "{name:?}");
            assert_eq!(name.to_possible_value().unwrap().get_name(), name.as_str());
        }
        let position = |n: ServiceName| SERVICES.iter().position(|s| s.name == n).unwrap();
        assert!(position(ServiceName::Users) < position(ServiceName::Orders));
        assert!(position(ServiceName::Catalog) < position(ServiceName::Orders));
        assert_eq!(SERVICES.last().map(|s| s.name), Some(ServiceName::Gateway), "the edge starts last");
    }

    /// The gateway keeps its own table of the services behind it (it is a library, and cannot
    /// see this one): each row must name the setting and default port this table gives.
    #[test]
    fn the_gateways_upstream_table_agrees_with_this_one() {
        for upstream in gateway::rules::Service::ALL {
            let service = SERVICES.iter().find(|s| s.as_str == upstream.name());
            let service = service.unwrap_or_else(|| panic!("the gateway proxies to {:?}, which is not here", upstream));
            assert_eq!(upstream.url_keys()[0], service.url_key, "{upstream:?}");
            let default = reqwest::Url::parse(upstream.default_url()).unwrap();
            assert_eq!(default.port(), Some(service.default_port), "{upstream:?}");
        }
        let behind = SERVICES.iter().filter(|s| !s.edge).count();
        assert_eq!(behind, gateway::rules::Service::ALL.len(), "a service the gateway does not proxy to");
    }

    /// The deployment files are the operators' copy of this table (`deploy/check.sh` checks
    /// them against Kubernetes and Compose, and `deploy/checks/policy.py` against its own list
    /// of services and ports): a service added here must be deployed there too.
    #[test]
    fn the_deployment_files_deploy_every_service_of_this_table() {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let read = |path: &str| std::fs::read_to_string(deploy.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (compose, kustomization, policy) =
            (read("compose.yaml"), read("k8s/base/kustomization.yaml"), read("checks/policy.py"));
        for service in SERVICES {
            let name = service.as_str;
            assert!(compose.contains(&format!(r#"["serve", "{name}"]"#)), "deploy/compose.yaml does not serve {name}");
            assert!(
                kustomization.contains(&format!("- {name}.yaml")),
                "deploy/k8s/base/kustomization.yaml has no {name}.yaml"
            );
            assert!(
                policy.contains(&format!(r#""{name}": {}"#, service.default_port)),
                "deploy/checks/policy.py's SERVICES lacks {name} on port {}",
                service.default_port
            );
        }
    }
}
