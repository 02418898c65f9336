//! The HTTP side: one pooled keep-alive client, and answers reduced to what the journeys and
//! the statistics need.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;

/// How a request ended: an HTTP status, or no answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// No answer within --timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The connection broke, or the answer could not be read.
    Io,
}

impl Outcome {
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(&s))
    }

    pub fn is_rate_limited(self) -> bool {
        self == Outcome::Status(429)
    }

    /// An outcome that says nothing about whether the request took effect.
    pub fn is_unknown(self) -> bool {
        matches!(self, Outcome::Timeout | Outcome::Connect | Outcome::Io)
            || matches!(self, Outcome::Status(s) if s >= 500)
    }

    /// The label used in the "errors by status" tables.
    pub fn key(self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Connect => "connect".into(),
            Outcome::Io => "io".into(),
        }
    }
}

#[derive(Debug)]
pub struct Answer {
    pub outcome: Outcome,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// From sending the request to the last byte of the answer.
    pub latency: Duration,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.outcome.is_success()
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as one of the API's answer types, or None when it is not one.
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Retry-After in seconds, for a 429.
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after").and_then(|v| v.trim().parse::<f64>().ok()).map(Duration::from_secs_f64)
    }

    /// A 409 for an Idempotency-Key whose first request is still being processed (as earlier
    /// versions of the orders service answer): the outcome is not known yet.
    pub fn is_in_progress(&self) -> bool {
        self.outcome == Outcome::Status(409) && self.problem().contains("still being processed")
    }

    /// The problem+json `detail` (or `title`), for error messages.
    pub fn problem(&self) -> String {
        let detail = self
            .json()
            .and_then(|v| v.get("detail").or_else(|| v.get("title")).and_then(|d| d.as_str()).map(str::to_string));
        detail.unwrap_or_else(|| String::from_utf8_lossy(&self.body[..self.body.len().min(200)]).into_owned())
    }
}

/// A request to make. Paths are relative to the base URL (`/api/products`).
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub token: Option<&'a str>,
    pub body: Option<&'a serde_json::Value>,
    pub idempotency_key: Option<&'a str>,
    pub if_match: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub fn get(path: &'a str) -> Self {
        Call { method: Method::GET, path, token: None, body: None, idempotency_key: None, if_match: None }
    }

    pub fn post(path: &'a str, body: Option<&'a serde_json::Value>) -> Self {
        Call { method: Method::POST, body, ..Call::get(path) }
    }

    pub fn put(path: &'a str, body: &'a serde_json::Value) -> Self {
        Call { method: Method::PUT, body: Some(body), ..Call::get(path) }
    }

    pub fn bearer(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }
}

#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("ordermesh-load/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Api { client, base: base.trim_end_matches('/').to_string() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn send(&self, call: Call<'_>) -> Answer {
        let mut req = self.client.request(call.method, format!("{}{}", self.base, call.path));
        if let Some(token) = call.token {
            req = req.bearer_auth(token);
        }
        if let Some(key) = call.idempotency_key {
            req = req.header("idempotency-key", key);
        }
        if let Some(tag) = call.if_match {
            req = req.header("if-match", tag);
        }
        if let Some(body) = call.body {
            req = req.json(body);
        }
        let started = Instant::now();
        let failed = |e: reqwest::Error| {
            let outcome = if e.is_timeout() {
                Outcome::Timeout
            } else if e.is_connect() {
                Outcome::Connect
            } else {
                Outcome::Io
            };
            Answer { outcome, headers: HeaderMap::new(), body: Bytes::new(), latency: started.elapsed() }
        };
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) => return failed(e),
        };
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        match res.bytes().await {
            Ok(body) => Answer { outcome: Outcome::Status(status), headers, body, latency: started.elapsed() },
            Err(e) => failed(e),
        }
    }

    /// For setup and reconciliation: a 429 is waited out (Retry-After, at most `patience` in
    /// all) and the request sent again; every other answer is returned.
    pub async fn send_patiently<'a>(&self, make: impl Fn() -> Call<'a>, patience: Duration) -> Answer {
        let deadline = Instant::now() + patience;
        loop {
            let answer = self.send(make()).await;
            if !answer.outcome.is_rate_limited() || Instant::now() >= deadline {
                return answer;
            }
            let wait = answer.retry_after().unwrap_or(Duration::from_millis(500)).clamp(
                Duration::from_millis(50),
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(50)),
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert!(Outcome::Status(201).is_success());
        assert!(!Outcome::Status(429).is_success());
        assert!(Outcome::Status(429).is_rate_limited());
        assert!(Outcome::Status(503).is_unknown());
        assert!(Outcome::Timeout.is_unknown());
        assert!(!Outcome::Status(409).is_unknown());
        assert_eq!(Outcome::Connect.key(), "connect");
        assert_eq!(Outcome::Status(404).key(), "404");
        assert_eq!(encode("a b&c"), "a+b%26c");
    }

    #[test]
    fn answers() {
        let answer = |status: u16, body: &str| Answer {
            outcome: Outcome::Status(status),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
            latency: Duration::ZERO,
        };
        let busy =
            answer(409, r#"{"detail":"A request with this Idempotency-Key is still being processed; retry shortly."}"#);
        assert!(busy.is_in_progress());
        assert!(!answer(409, r#"{"detail":"Reservation x already exists with different lines."}"#).is_in_progress());
        assert_eq!(answer(404, r#"{"title":"Not Found"}"#).problem(), "Not Found");
        assert_eq!(answer(502, "bad gateway").problem(), "bad gateway");
    }
}
