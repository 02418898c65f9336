//! What the gateway's end-to-end suites share: the three real services on port 0, and a
//! gateway in front of them.
#![allow(dead_code, unused_imports)] // each suite uses its own part of this

use axum::http::StatusCode;
use kit::config::Settings;
use kit::testing::TestServer;
use serde_json::{Value, json};

pub use testkit::{SERVICE_SECRET as SECRET, Services, localhost};
pub const HS_SECRET: &str = "a-shared-hs256-secret-for-gateway-tests";

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
