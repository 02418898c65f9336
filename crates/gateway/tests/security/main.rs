//! Hostile input and access, end to end (issue 12, with the OWASP API Security Top 10 as the
//! checklist): the three real services on 127.0.0.1 port 0 behind a real gateway, attacked
//! through the gateway and, where a service could be reached directly, on its own port too.
//! docs/security.md lists what each test here shows. Everything runs on loopback and is
//! bounded in count and time.
//!
//! - tokens: forged (`alg: none`, HS256 keyed with the public key, foreign keys, wrong or no
//!   `kid`, embedded `jwk`), expired, not yet valid, another issuer or audience, tampered,
//!   revoked, a rotated refresh token replayed;
//! - authorization (API1/API5): a matrix generated from the gateway's own OpenAPI document,
//!   every operation without a token, with another user's token and with a user's token on
//!   administrators' routes; mass assignment of server-owned fields (API3/API6);
//! - resource consumption (API4): oversized bodies, huge pages, deep JSON, many small
//!   requests, slow clients, login floods;
//! - injection and parsing: SQL and template strings in every text field, the storefront's
//!   escaping, invalid UTF-8 and NUL bytes, header injection, path traversal, request
//!   smuggling;
//! - headers and secrets (API8): security headers on HTML, cookie attributes, no password or
//!   hash in any answer.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway::rules::{self, Access, Service};
use jsonwebtoken::{Algorithm, EncodingKey};
use kit::config::Settings;
use kit::testing::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod authorization;
#[path = "../common/mod.rs"]
mod common;
mod headers;
mod injection;
mod resources;
mod tokens;

use authorization::{METHODS, assert_no_credentials};
use common::{Services, localhost, public_document};

// ---------------------------------------------------------------------------------------------
// The platform under attack
// ---------------------------------------------------------------------------------------------

struct Platform {
    services: Services,
    gw: TestServer,
    http: reqwest::Client,
}

/// Edge limits high enough that a test's own traffic is never what gets refused (tests of the
/// limits set their own).
const GENEROUS: &[(&str, &str)] = &[
    ("RATE_LIMIT", "10000000"),
    ("RATE_LIMIT_BURST", "1000000"),
    ("USER_RATE_LIMIT", "10000000"),
    ("USER_RATE_LIMIT_BURST", "1000000"),
    ("AUTH_RATE_LIMIT", "10000000"),
    ("AUTH_RATE_LIMIT_BURST", "1000000"),
];

fn with_all(mut s: Settings, pairs: &[(String, String)]) -> Settings {
    for (k, v) in pairs {
        s = s.with(k, v.clone());
    }
    s
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Platform {
    async fn start(services_extra: &[(&str, &str)], gateway_extra: &[(&str, &str)]) -> Platform {
        let mut service_settings = owned(&[("REVOCATION_POLL_INTERVAL", "200ms")]);
        service_settings.extend(owned(services_extra));
        let services = Services::start(&|s| with_all(s, &service_settings)).await;
        let mut gateway_settings = owned(&[("REVOCATION_POLL_INTERVAL", "200ms")]);
        gateway_settings.extend(owned(GENEROUS));
        gateway_settings.extend(owned(gateway_extra));
        let settings = with_all(services.settings(), &gateway_settings);
        let config = gateway::Config::from_settings(&settings, localhost(), 0).expect("gateway config");
        let mut state = gateway::AppState::start(config).await.expect("gateway starts");
        state.openapi = Arc::new(public_document());
        let pages = storefront::config::Config::from_settings(&settings).expect("storefront config");
        let gw = TestServer::start(storefront::with_gateway(state, pages)).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Platform { services, gw, http }
    }

    async fn finish(self) {
        self.services.finish().await;
    }

    fn service(&self, service: Service) -> &TestServer {
        match service {
            Service::Users => &self.services.users,
            Service::Catalog => &self.services.catalog,
            Service::Orders => &self.services.orders,
        }
    }

    /// Sends a request; the answer's status, headers and body text.
    async fn send(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut req = self.http.request(method.parse().unwrap(), url).timeout(Duration::from_secs(20));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = res.status();
        let headers = res.headers().clone();
        (status, headers, res.text().await.unwrap_or_default())
    }

    async fn json(&self, method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (StatusCode, Value) {
        let (status, _, text) = self.send(method, url, token, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Signs in at the users service directly.
    async fn login(&self, username: &str, password: &str) -> Value {
        let (status, body) = self
            .json(
                "POST",
                &self.services.users.url("/users/login"),
                None,
                Some(&json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        body
    }

    async fn token(&self, username: &str, password: &str) -> String {
        self.login(username, password).await["access_token"].as_str().unwrap().to_string()
    }

    /// The users service's Ed25519 signing key (generated in its data directory), for minting
    /// tokens with chosen claims that only the claims make invalid.
    fn signing_key(&self) -> EncodingKey {
        let pem = std::fs::read(self.services.data_of(testkit::ServiceName::Users).dir.join("jwt-ed25519.pem"))
            .expect("the signing key");
        EncodingKey::from_ed_pem(&pem).expect("a PKCS#8 Ed25519 key")
    }

    async fn jwk(&self) -> Value {
        let (status, jwks) = self.json("GET", &self.services.users.url("/.well-known/jwks.json"), None, None).await;
        assert_eq!(status, StatusCode::OK);
        jwks["keys"][0].clone()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// A JWT with exactly this header and these claims, signed with `key` under `alg`.
fn forge(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign");
    format!("{message}.{signature}")
}

/// An Ed25519 key that is not the platform's (PKCS#8 v1 around a fixed seed).
fn foreign_key() -> EncodingKey {
    let mut der = hex_bytes("302e020100300506032b657004220420");
    der.extend([7u8; 32]);
    EncodingKey::from_ed_der(&der)
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Sends raw bytes on a new connection and reads until the server closes it (or `wait`
/// passes): everything the server answered.
async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status codes of every response in a raw answer.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| answer[i + 9..].get(..3).and_then(|s| s.parse().ok()))
        .collect()
}
