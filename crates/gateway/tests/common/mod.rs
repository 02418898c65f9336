//! What the gateway's end-to-end suites share: the three real services on port 0, and a
//! gateway in front of them.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use axum::http::StatusCode;
use kit::config::Settings;
use kit::testing::{TestData, TestServer};
use serde_json::{Value, json};

pub const SECRET: &str = "gateway-test-service-secret";
pub const HS_SECRET: &str = "a-shared-hs256-secret-for-gateway-tests";

pub fn localhost() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// The three real services.
pub struct Services {
    pub users: TestServer,
    pub catalog: TestServer,
    pub orders: TestServer,
    pub data: Vec<TestData>,
}

impl Services {
    pub async fn start(extra: &dyn Fn(Settings) -> Settings) -> Self {
        let (ud, s) = TestData::new("users");
        // As in `ordermesh up`: the users service believes the gateway's X-Forwarded-For.
        let s = extra(
            s.with("SERVICE_CLIENTS", users::config::clients_sharing(SECRET, users::config::TOKEN_CLIENTS))
                .with("TRUSTED_PROXIES", kit::client_ip::LOOPBACK),
        );
        let users = TestServer::start(users::router(
            users::AppState::start(users::Config::from_settings(&s, localhost(), 0).unwrap()).await.unwrap(),
        ))
        .await;
        let (cd, s) = TestData::new("catalog");
        let s = extra(s.with("USER_SERVICE_URL", users.base()).with("CLIENT_SECRET", SECRET));
        let catalog = TestServer::start(catalog::router(
            catalog::AppState::start(catalog::Config::from_settings(&s, localhost(), 0).unwrap()).await.unwrap(),
        ))
        .await;
        let (od, s) = TestData::new("orders");
        let s = extra(
            s.with("USER_SERVICE_URL", users.base())
                .with("CATALOG_SERVICE_URL", catalog.base())
                .with("CLIENT_SECRET", SECRET),
        );
        let orders = TestServer::start(orders::router(
            orders::AppState::start(orders::Config::from_settings(&s, localhost(), 0).unwrap()).await.unwrap(),
        ))
        .await;
        Services { users, catalog, orders, data: vec![ud, cd, od] }
    }

    pub fn settings(&self) -> Settings {
        Settings::from_pairs([
            ("USER_SERVICE_URL", self.users.base()),
            ("CATALOG_SERVICE_URL", self.catalog.base()),
            ("ORDER_SERVICE_URL", self.orders.base()),
            ("CLIENT_SECRET", SECRET.into()),
        ])
    }

    pub async fn finish(self) {
        for d in self.data {
            d.cleanup().await;
        }
    }
}

pub async fn gateway(settings: Settings) -> TestServer {
    let config = gateway::Config::from_settings(&settings, localhost(), 0).expect("gateway config");
    TestServer::start(gateway::router(gateway::AppState::start(config).await.expect("gateway starts"))).await
}

pub async fn login(http: &reqwest::Client, gw: &TestServer, username: &str, password: &str) -> Value {
    let res = http
        .post(gw.url("/api/users/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}
