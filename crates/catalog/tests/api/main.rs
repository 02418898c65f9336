//! End-to-end tests of the catalog: the real catalog and users services on 127.0.0.1 port 0,
//! over HTTP, on SQLite, or PostgreSQL when `ORDERMESH_TEST_POSTGRES` is set.
//!
//! By subject: [`products`] (browsing, writes, ETags, untracked stock), [`reservations`]
//! (all-or-nothing, expiry, concurrency, order events, late commits, two instances).

mod products;
mod reservations;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use kit::config::Settings;
use kit::testing::{TestData, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The platform, and a client to call it with.
struct Harness {
    services: testkit::Services,
    http: reqwest::Client,
}

impl std::ops::Deref for Harness {
    type Target = testkit::Services;

    fn deref(&self) -> &testkit::Services {
        &self.services
    }
}

impl Harness {
    async fn start() -> Self {
        Self::with(|s| s).await
    }

    async fn with(extra: impl Fn(Settings) -> Settings) -> Self {
        let s = testkit::Services::start(&extra).await;
        Harness { services: s, http: reqwest::Client::new() }
    }

    async fn finish(self) {
        self.services.finish().await;
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        kit::testing::send_json(&self.http, method, &self.catalog.url(path), token, body.as_ref()).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body)).await
    }

    async fn user_token(&self, username: &str, password: &str) -> String {
        testkit::token(&self.users, username, password).await
    }

    async fn service_token(&self) -> String {
        testkit::service_token(&self.users, "orders").await
    }

    async fn product(&self, id: i64) -> Value {
        let (status, p) = self.get(&format!("/products/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        p
    }

    async fn create(&self, admin: &str, name: &str, price: &str, stock: i64) -> Value {
        let (status, p) = self
            .post("/products", Some(admin), json!({"name": name, "category": "Test", "price": price, "stock": stock}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{p}");
        p
    }
}
