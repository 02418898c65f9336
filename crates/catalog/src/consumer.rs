//! Order events from NATS JetStream, when the platform runs with a broker (`NATS_URL`). A
//! durable pull consumer remembers what was acknowledged; a message is acknowledged only
//! after its effect is committed, so a crash means redelivery, and the processed-events table
//! makes redelivery harmless.

use std::sync::Arc;
use std::time::Duration;

use api::events::Event;
use api::events::nats::Topology;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures::StreamExt;

use crate::service::Catalog;

pub const DURABLE_NAME: &str = "catalog";

pub fn spawn(catalog: Arc<Catalog>, topology: Topology) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = consume(&catalog, &topology).await {
                tracing::warn!(error = %e, "order event consumer stopped; reconnecting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn consume(catalog: &Catalog, topology: &Topology) -> Result<(), String> {
    let js = api::events::nats::connect(&topology.url, "ordermesh-catalog").await?;
    let stream = api::events::nats::ensure_stream(&js, topology).await?;
    let consumer = stream
        .get_or_create_consumer(
            DURABLE_NAME,
            pull::Config {
                durable_name: Some(DURABLE_NAME.to_string()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot create the {DURABLE_NAME} consumer: {e}"))?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?.ready_chunks(256);
    tracing::info!("consuming order events from NATS JetStream");
    while let Some(chunk) = messages.next().await {
        let mut received = Vec::with_capacity(chunk.len());
        for item in chunk {
            received.push(item.map_err(|e| e.to_string())?);
        }
        let mut events = Vec::with_capacity(received.len());
        for message in &received {
            match serde_json::from_slice::<Event>(&message.payload) {
                Ok(event) if event.validate().is_ok() => events.push(event),
                Ok(event) => tracing::error!(event_id = event.id, "malformed order event dropped"),
                // Redelivering a message that cannot be read would never succeed.
                Err(e) => tracing::error!(error = %e, subject = %message.subject, "unreadable order event dropped"),
            }
        }
        match catalog.apply_events(&events).await {
            Ok(_) => {
                for message in &received {
                    if let Err(e) = message.ack().await {
                        tracing::debug!(error = %e, "ack failed; the event will be redelivered and skipped");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "order events not applied; they will be redelivered");
                for message in &received {
                    let _ = message.ack_with(async_nats::jetstream::AckKind::Nak(Some(Duration::from_secs(2)))).await;
                }
            }
        }
    }
    Err("the NATS message stream ended".into())
}
