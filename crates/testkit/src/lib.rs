//! The users, catalog and orders services in this process, each on 127.0.0.1 port 0 with a
//! database of its own (SQLite, or a PostgreSQL schema with `ORDERMESH_TEST_POSTGRES`), wired
//! as `ordermesh up` wires them: one service secret they all prove themselves with, the users
//! service believing the client address a gateway on loopback forwards. Every crate's
//! end-to-end tests start the platform here, so a change to how services find or trust each
//! other is made once.

use std::net::{IpAddr, Ipv4Addr};

use kit::config::Settings;
use kit::testing::{TestData, TestServer};

/// The client secret every service proves itself with (`SERVICE_CLIENTS` on the users side).
pub const SERVICE_SECRET: &str = "testkit-service-secret";

pub fn localhost() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// The three services, started in dependency order.
pub struct Services {
    pub users: TestServer,
    pub catalog: TestServer,
    pub orders: TestServer,
    /// Each service's data, in the order users, catalog, orders.
    pub data: Vec<TestData>,
}

impl Services {
    /// With `extra` applied to every service's settings last (it wins).
    pub async fn start(extra: &dyn Fn(Settings) -> Settings) -> Self {
        Self::start_on(TestData::new, extra).await
    }

    /// With each service's data from `data` (e.g. `TestData::sqlite` for what only SQLite does).
    pub async fn start_on(data: fn(&str) -> (TestData, Settings), extra: &dyn Fn(Settings) -> Settings) -> Self {
        let clients = users::config::clients_sharing(SERVICE_SECRET, users::config::TOKEN_CLIENTS);
        let (users_data, s) = data("users");
        let s = extra(s.with("SERVICE_CLIENTS", clients).with("TRUSTED_PROXIES", kit::client_ip::LOOPBACK));
        let config = users::Config::from_settings(&s, localhost(), 0).expect("users config");
        let users = TestServer::start(users::router(users::AppState::start(config).await.expect("users starts"))).await;

        let (catalog_data, s) = data("catalog");
        let s = extra(s.with("USER_SERVICE_URL", users.base()).with("CLIENT_SECRET", SERVICE_SECRET));
        let config = catalog::Config::from_settings(&s, localhost(), 0).expect("catalog config");
        let catalog =
            TestServer::start(catalog::router(catalog::AppState::start(config).await.expect("catalog starts"))).await;

        let (orders_data, s) = data("orders");
        let s = extra(
            s.with("USER_SERVICE_URL", users.base())
                .with("CATALOG_SERVICE_URL", catalog.base())
                .with("CLIENT_SECRET", SERVICE_SECRET)
                // Events reach the catalog within a test's patience.
                .with("RELAY_INTERVAL", "100ms"),
        );
        let config = orders::Config::from_settings(&s, localhost(), 0).expect("orders config");
        let orders =
            TestServer::start(orders::router(orders::AppState::start(config).await.expect("orders starts"))).await;
        Services { users, catalog, orders, data: vec![users_data, catalog_data, orders_data] }
    }

    /// What a gateway (or another client of the services) in front of them is configured with.
    pub fn settings(&self) -> Settings {
        Settings::from_pairs([
            ("USER_SERVICE_URL", self.users.base()),
            ("CATALOG_SERVICE_URL", self.catalog.base()),
            ("ORDER_SERVICE_URL", self.orders.base()),
            ("CLIENT_SECRET", SERVICE_SECRET.into()),
        ])
    }

    /// Drops each service's data (PostgreSQL schemas, SQLite directories).
    pub async fn finish(self) {
        for d in self.data {
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
