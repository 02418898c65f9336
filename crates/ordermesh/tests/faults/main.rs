//! The fault suite: ordermesh under load while its parts die, hang, crawl, fill up or lock,
//! each test on servers of its own (PostgreSQL, Redis, NATS started here on free ports), with
//! the real binary as separate processes. Every scenario prints its figures (`FAULT …`) and
//! ends with a reconciliation: every acknowledged order exists exactly once and whole, stock
//! moved by exactly what the orders hold with nothing left reserved, and each order's event was
//! applied exactly once.
//!
//! They are ignored unless asked for (`cargo test -p ordermesh --test faults -- --ignored
//! --test-threads=1`; `.ci/run` runs them one at a time against its test build); the figures
//! and what each promise means are in docs/reliability.md.
//!
//! By what fails: [`processes`] (instances and the whole platform killed, stopped, their key
//! rotated), [`backing`] (a slow upstream, PostgreSQL, NATS and Redis going away), [`storage`]
//! (a locked SQLite file, a full disk).

#[path = "../support/mod.rs"]
mod support;

mod backing;
mod processes;
mod storage;

use std::time::Duration;

use serde_json::Value;

pub(crate) fn secs_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

pub(crate) async fn health(http: &reqwest::Client, gateway: &str) -> Value {
    match http.get(format!("{gateway}/health")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

pub(crate) fn healthy_instances(health: &Value, service: &str) -> usize {
    health["upstreams"][service]["instances"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["healthy"] == true).count())
        .unwrap_or(0)
}

/// `PRAGMA integrity_check` on each service's SQLite file ("ok" when all are).
pub(crate) async fn sqlite_integrity(dir: &std::path::Path) -> String {
    use sqlx::ConnectOptions;
    let mut verdicts = Vec::new();
    for service in ["users", "catalog", "orders"] {
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join(format!("{service}.db"))).read_only(true);
        let mut conn = options.connect().await.unwrap();
        let verdict: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.unwrap();
        if verdict != "ok" {
            verdicts.push(format!("{service}: {verdict}"));
        }
    }
    if verdicts.is_empty() { "ok".into() } else { verdicts.join("; ") }
}
