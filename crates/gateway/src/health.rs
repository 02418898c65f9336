//! The platform's health as the gateway sees it: every upstream instance, up or down, its
//! breaker and latency. 200 while every service has an instance that can serve; 503 otherwise.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use kit::metrics::Metrics;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::upstream::{BreakerState, Upstream};

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceHealth {
    pub url: String,
    pub healthy: bool,
    #[schema(value_type = String)]
    pub breaker: BreakerState,
    pub in_flight: usize,
    pub latency_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UpstreamHealth {
    pub status: &'static str,
    pub instances: Vec<InstanceHealth>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformHealth {
    /// `ok` when every service has an instance that can serve, else `degraded`.
    pub status: &'static str,
    pub service: &'static str,
    pub version: &'static str,
    pub rate_limits_shared: bool,
    pub upstreams: std::collections::BTreeMap<&'static str, UpstreamHealth>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<&'static str>,
}

fn upstream_health(u: &Upstream) -> UpstreamHealth {
    let instances: Vec<InstanceHealth> = u
        .instances
        .iter()
        .map(|i| InstanceHealth {
            url: i.url.to_string(),
            healthy: i.is_healthy(),
            breaker: i.breaker_state(),
            in_flight: i.outstanding(),
            latency_ms: i.latency().as_secs_f64() * 1000.0,
        })
        .collect();
    let up = instances.iter().any(|i| i.healthy && i.breaker != BreakerState::Open);
    UpstreamHealth { status: if up { "up" } else { "down" }, instances }
}

pub fn report(state: &AppState) -> PlatformHealth {
    let mut upstreams = std::collections::BTreeMap::new();
    let mut unavailable = Vec::new();
    for u in state.upstreams.values() {
        let h = upstream_health(u);
        if h.status != "up" {
            unavailable.push(u.name);
        }
        upstreams.insert(u.name, h);
    }
    PlatformHealth {
        status: if unavailable.is_empty() { "ok" } else { "degraded" },
        service: crate::SERVICE,
        version: env!("CARGO_PKG_VERSION"),
        rate_limits_shared: state.edge.limiter.shared(),
        upstreams,
        unavailable,
    }
}

#[utoipa::path(get, path = "/health", tag = "system",
    responses(
        (status = 200, description = "Every service can serve", body = PlatformHealth),
        (status = 503, description = "A service has no instance that can serve", body = PlatformHealth)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<PlatformHealth>) {
    let r = report(&state);
    let status = if r.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r))
}

/// Breaker states as gauges (0 closed, 1 half-open, 2 open), refreshed every second.
pub fn spawn_breaker_gauges(metrics: Metrics, upstreams: Vec<Arc<Upstream>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for u in &upstreams {
                for i in &u.instances {
                    let value = match i.breaker_state() {
                        BreakerState::Closed => 0.0,
                        BreakerState::HalfOpen => 1.0,
                        BreakerState::Open => 2.0,
                    };
                    let healthy = if i.is_healthy() { 1.0 } else { 0.0 };
                    let instance = i.authority.clone();
                    metrics.record(|| {
                        metrics::gauge!("upstream_breaker_state", "upstream" => u.name, "instance" => instance.clone())
                            .set(value);
                        metrics::gauge!("upstream_healthy", "upstream" => u.name, "instance" => instance).set(healthy);
                    });
                }
            }
        }
    });
}
