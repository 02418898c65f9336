//! The outbox relay: publishes the events the orders service wrote in its transactions, at
//! least once and oldest first, to NATS JetStream or, without a broker, straight to the
//! consumers over HTTP (the embedded relay, which works across processes too). An event is
//! marked published only after the transport acknowledged it; until then it stays in the
//! outbox, so a broker outage delays events but loses none.

use std::sync::Arc;
use std::time::Duration;

use api::events::{Event, EventBatch};
use async_nats::jetstream;
use kit::auth::ServiceTokenSource;
use kit::client::JsonCalls;
use kit::client::ServiceClient;
use kit::metrics::Metrics;
use tokio::sync::Notify;

use crate::store::{OutboxRow, Store};

pub enum Transport {
    /// POST the batch to one instance of the consuming service (`/events`).
    Http { subscribers: ServiceClient, tokens: Arc<ServiceTokenSource> },
    /// Publish each event to JetStream with its id as the message id, so the broker drops
    /// duplicates within its window, and wait for the acknowledgements.
    Nats { jetstream: jetstream::Context, subject_prefix: String },
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Http { .. } => "http",
            Transport::Nats { .. } => "nats",
        }
    }

    async fn deliver(&self, events: &[Event]) -> Result<(), String> {
        match self {
            Transport::Http { subscribers, tokens } => {
                // The subscribers are the catalog (`EVENT_SUBSCRIBERS`, by default its `/events`).
                let token = tokens.token_for("catalog").await.map_err(|e| e.to_string())?;
                let body = serde_json::to_vec(&EventBatch { events: events.to_vec() }).map_err(|e| e.to_string())?;
                let result = subscribers
                    .json::<api::events::DeliveryReport>(axum::http::Method::POST, "", Some(&token), Some(body.into()))
                    .await;
                if let Err(e) = &result
                    && e.status() == Some(axum::http::StatusCode::UNAUTHORIZED)
                {
                    tokens.invalidate().await;
                }
                result.map(|_| ()).map_err(|e| e.to_string())
            }
            Transport::Nats { jetstream, subject_prefix } => {
                let mut acks = Vec::with_capacity(events.len());
                for event in events {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", event.id.as_str());
                    if let Some(traceparent) = &event.traceparent {
                        headers.insert("traceparent", traceparent.as_str());
                    }
                    if let Some(tracestate) = &event.tracestate {
                        headers.insert("tracestate", tracestate.as_str());
                    }
                    let payload = serde_json::to_vec(event).map_err(|e| e.to_string())?;
                    let ack = jetstream
                        .publish_with_headers(event.subject(subject_prefix), headers, payload.into())
                        .await
                        .map_err(|e| e.to_string())?;
                    acks.push(ack);
                }
                for ack in acks {
                    ack.await.map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }
}

pub struct Relay {
    pub store: Store,
    pub transport: Transport,
    pub wake: Arc<Notify>,
    pub batch: usize,
    pub interval: Duration,
    /// How long to wait after a wake-up for more events to join the batch.
    pub linger: Duration,
    pub metrics: Metrics,
}

/// How long a relay may hold claimed events before another relay may take them over.
const LEASE_MS: i64 = 30_000;

impl Relay {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.run().await })
    }

    async fn run(self) {
        let mut failures = 0u32;
        loop {
            match self.drain().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6))).min(Duration::from_secs(5));
                    tracing::warn!(error = %e, transport = self.transport.name(), retry_in_ms = backoff.as_millis() as u64,
                        "event delivery failed; events stay in the outbox");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {
                    // Woken by an order: the orders written in the next moment go with it,
                    // one claim, one delivery and one commit at the catalog for all of them
                    // instead of three transactions each.
                    if !self.linger.is_zero() {
                        tokio::time::sleep(self.linger).await;
                    }
                }
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Publishes everything pending, batch by batch.
    pub async fn drain(&self) -> Result<usize, String> {
        let mut total = 0;
        loop {
            let rows = self.store.claim_outbox(self.batch, LEASE_MS).await.map_err(|e| e.to_string())?;
            if rows.is_empty() {
                return Ok(total);
            }
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let events: Vec<Event> = rows.iter().map(to_event).collect();
            let started = std::time::Instant::now();
            let traces = events.iter().filter_map(|e| Some((e.traceparent.as_deref()?, e.tracestate.as_deref())));
            let delivered = kit::traces::linked(
                "orders",
                "orders publish events",
                "producer",
                traces,
                self.transport.deliver(&events),
            );
            if let Err(e) = delivered.await {
                if let Err(u) = self.store.unclaim(&ids).await {
                    tracing::debug!(error = %u, "could not unclaim; the lease will expire");
                }
                self.metrics.record(|| {
                    metrics::counter!("events_publish_failures_total", "transport" => self.transport.name())
                        .increment(1)
                });
                return Err(e);
            }
            self.store.mark_published(&ids).await.map_err(|e| e.to_string())?;
            let n = ids.len() as u64;
            let elapsed = started.elapsed().as_secs_f64();
            self.metrics.record(|| {
                metrics::counter!("events_published_total", "transport" => self.transport.name()).increment(n);
                metrics::histogram!("event_batch_publish_seconds", "transport" => self.transport.name())
                    .record(elapsed);
            });
            total += ids.len();
            if rows.len() < self.batch {
                return Ok(total);
            }
        }
    }
}

fn to_event(row: &OutboxRow) -> Event {
    Event {
        id: row.id.clone(),
        kind: row.event_type.clone(),
        occurred_at: kit::db::rfc3339(row.occurred_at),
        order_id: row.order_id.clone(),
        version: row.version,
        data: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
        traceparent: row.traceparent.clone(),
        tracestate: row.tracestate.clone(),
    }
}
