//! The platform's services (its table, `ordermesh::services::SERVICES`) in this process, each
//! on 127.0.0.1 port 0 with a database of its own (SQLite, or a PostgreSQL schema with
//! `ORDERMESH_TEST_POSTGRES`), wired as `ordermesh up` wires them: one service secret they all
//! prove themselves with, the services believing the client address a gateway on loopback
//! forwards. Every crate's end-to-end tests start the platform here, so a change to how
//! services find or trust each other is made once.

use std::net::{IpAddr, Ipv4Addr};

use kit::config::Settings;
use kit::testing::{TestData, TestServer};
pub use ordermesh::services::ServiceName;
use ordermesh::services::{self, SERVICES};

/// The client secret every service proves itself with (`SERVICE_CLIENTS` on the users side).
pub const SERVICE_SECRET: &str = "testkit-service-secret";

pub fn localhost() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Every service of the platform's table (`ordermesh::services::SERVICES`) but the edge, started
/// in its order; the three the tests talk to most are named.
pub struct Services {
    pub users: TestServer,
    pub catalog: TestServer,
    pub orders: TestServer,
    /// Any other service behind the gateway, by name.
    pub others: Vec<(ServiceName, TestServer)>,
    /// Each service's data, in start order.
    data: Vec<(ServiceName, TestData)>,
}

impl Services {
    /// With `extra` applied to every service's settings last (it wins).
    pub async fn start(extra: &dyn Fn(Settings) -> Settings) -> Self {
        Self::start_on(TestData::new, extra).await
    }

    /// With each service's data from `data` (e.g. `TestData::sqlite` for what only SQLite does).
    /// Every service gets the settings `ordermesh up` gives it: where the services started
    /// before it listen, the one secret they share, loopback believed as a forwarding gateway.
    pub async fn start_on(data: fn(&str) -> (TestData, Settings), extra: &dyn Fn(Settings) -> Settings) -> Self {
        let mut shared = vec![
            ("SERVICE_CLIENTS", services::clients_sharing(SERVICE_SECRET)),
            ("CLIENT_SECRET", SERVICE_SECRET.to_string()),
            ("TRUSTED_PROXIES", kit::client_ip::LOOPBACK.to_string()),
            // Events reach their consumers within a test's patience.
            ("RELAY_INTERVAL", "100ms".to_string()),
        ];
        let mut servers = Vec::new();
        let mut kept = Vec::new();
        for service in SERVICES.iter().filter(|s| !s.edge) {
            let (service_data, mut s) = data(service.as_str);
            for (key, value) in &shared {
                s = s.with(key, value.clone());
            }
            let s = extra(s);
            let started = (service.start)(&s, localhost(), 0)
                .await
                .unwrap_or_else(|e| panic!("the {} service starts: {e:#}", service.as_str));
            let server = TestServer::start(started.server.router).await;
            shared.push((service.url_key, server.base()));
            servers.push((service.name, server));
            kept.push((service.name, service_data));
        }
        let mut take = |name: ServiceName| {
            let at = servers.iter().position(|(n, _)| *n == name).expect("the platform has this service");
            servers.remove(at).1
        };
        let (users, catalog, orders) =
            (take(ServiceName::Users), take(ServiceName::Catalog), take(ServiceName::Orders));
        Services { users, catalog, orders, others: servers, data: kept }
    }

    /// The data (database, directory) of one service.
    pub fn data_of(&self, name: ServiceName) -> &TestData {
        self.data.iter().find(|(n, _)| *n == name).map(|(_, d)| d).expect("the platform has this service")
    }

    /// What a gateway (or another client of the services) in front of them is configured with.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::from_pairs([("CLIENT_SECRET", SERVICE_SECRET)]);
        for service in SERVICES.iter().filter(|s| !s.edge) {
            s = s.with(service.url_key, self.server(service.name).base());
        }
        s
    }

    pub fn server(&self, name: ServiceName) -> &TestServer {
        match name {
            ServiceName::Users => &self.users,
            ServiceName::Catalog => &self.catalog,
            ServiceName::Orders => &self.orders,
            other => self.others.iter().find(|(n, _)| *n == other).map(|(_, s)| s).expect("a service behind the edge"),
        }
    }

    /// Drops each service's data (PostgreSQL schemas, SQLite directories).
    pub async fn finish(self) {
        for (_, d) in self.data {
            d.cleanup().await;
        }
    }
}

/// Signs `username` in at this users service and gives its access token.
pub async fn token(users: &TestServer, username: &str, password: &str) -> String {
    let body = serde_json::json!({"username": username, "password": password});
    access_token(users, "/users/login", &body).await
}

/// A service token for `client_id` (`orders`, `catalog`, …) from this users service, for the
/// routes only services may call; like the orders service's own, it is good at the catalog.
pub async fn service_token(users: &TestServer, client_id: &str) -> String {
    let body = serde_json::json!({"client_id": client_id, "client_secret": SERVICE_SECRET});
    access_token(users, "/auth/token", &body).await
}

async fn access_token(users: &TestServer, path: &str, body: &serde_json::Value) -> String {
    let http = reqwest::Client::new();
    let (status, answer) =
        kit::testing::send_json(&http, reqwest::Method::POST, &users.url(path), None, Some(body)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{path}: {answer}");
    answer["access_token"].as_str().expect("an access token").to_string()
}
