//! End-to-end tests of the users service: the real service on 127.0.0.1 port 0, over HTTP, on
//! SQLite, or on PostgreSQL when `ORDERMESH_TEST_POSTGRES` is set.
//!
//! By subject: [`accounts`] (registering, signing in, throttled guessing, request ids),
//! [`tokens`] (forged, expired and rotated tokens, service tokens, keys, the revocation feed),
//! [`admin`] (who may change whom, roles, the last administrator, passwords).

mod accounts;
mod admin;
mod tokens;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kit::config::Settings;
use kit::testing::{TestData, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Harness {
    server: TestServer,
    http: reqwest::Client,
    data: Option<TestData>,
}

impl Harness {
    async fn start() -> Self {
        Self::with(|s| s).await
    }

    async fn with(extra: impl FnOnce(Settings) -> Settings) -> Self {
        let (data, settings) = TestData::new("users");
        let settings = extra(settings.with("JWT_EXPIRATION_MINUTES", "15"));
        let config = users::Config::from_settings(&settings, IpAddr::V4(Ipv4Addr::LOCALHOST), 0).expect("config");
        let state = users::AppState::start(config).await.expect("users service starts");
        let server = TestServer::start(users::router(state)).await;
        Harness { server, http: reqwest::Client::new(), data: Some(data) }
    }

    async fn finish(mut self) {
        if let Some(d) = self.data.take() {
            d.cleanup().await;
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        kit::testing::send_json(&self.http, method, &self.server.url(path), token, body.as_ref()).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body)).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    async fn login(&self, username: &str, password: &str) -> Value {
        let (status, body) = self.post("/users/login", None, json!({"username": username, "password": password})).await;
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        body
    }

    async fn token(&self, username: &str, password: &str) -> String {
        self.login(username, password).await["access_token"].as_str().unwrap().to_string()
    }
}

fn assert_problem(body: &Value, status: StatusCode) {
    assert_eq!(body["status"], status.as_u16(), "not a problem document for {status}: {body}");
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{body}");
}
