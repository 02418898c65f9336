//! Order events as they travel between services: the envelope, and the names of their types.
//! The orders service writes them to its outbox in the same transaction as the change; a relay
//! delivers them at least once; consumers deduplicate by `id`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const ORDER_CREATED: &str = "order.created";
pub const ORDER_STATUS_CHANGED: &str = "order.status_changed";
pub const ORDER_CANCELLED: &str = "order.cancelled";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Unique per event (UUIDv7); consumers apply each id at most once.
    #[schema(format = "uuid")]
    pub id: String,
    /// `order.created`, `order.status_changed` or `order.cancelled`.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 64)]
    pub kind: String,
    #[schema(format = "date-time")]
    pub occurred_at: String,
    #[schema(min_length = 1, max_length = 64)]
    pub order_id: String,
    /// The order's version after this change: events of one order are applied in this order.
    pub version: i64,
    /// A snapshot of the order after the change.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The W3C trace context of the request that made the change (as CloudEvents' distributed
    /// tracing attribute): a consumer's work on the event joins that request's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub traceparent: Option<String>,
    /// The W3C `tracestate` that came with that trace context (vendors' own data), passed on
    /// unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub tracestate: Option<String>,
}

impl Event {
    /// The NATS subject for this event: `<prefix>.created`, `<prefix>.status_changed`, …
    pub fn subject(&self, prefix: &str) -> String {
        format!("{prefix}.{}", self.kind.trim_start_matches("order."))
    }

    /// Checks the envelope; on failure names the field and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if uuid::Uuid::parse_str(&self.id).is_err() {
            return Err(("id", "must be a UUID"));
        }
        if self.kind.is_empty() || self.kind.len() > 64 {
            return Err(("type", "must be 1 to 64 characters"));
        }
        if self.order_id.is_empty() || self.order_id.len() > 64 {
            return Err(("order_id", "must be 1 to 64 characters"));
        }
        if time::OffsetDateTime::parse(&self.occurred_at, &time::format_description::well_known::Rfc3339).is_err() {
            return Err(("occurred_at", "must be an RFC 3339 date-time"));
        }
        if !self.data.is_object() {
            return Err(("data", "must be an object (the order's snapshot)"));
        }
        if self.traceparent.as_ref().is_some_and(|t| t.len() > 128) {
            return Err(("traceparent", "must be at most 128 characters"));
        }
        if self.tracestate.as_ref().is_some_and(|t| t.len() > 512) {
            return Err(("tracestate", "must be at most 512 characters"));
        }
        Ok(())
    }

    /// The catalog reservation that holds this order's stock, when the snapshot names one.
    pub fn reservation_id(&self) -> Option<&str> {
        self.data.get("reservation_id").and_then(|v| v.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventBatch {
    pub events: Vec<Event>,
}

/// What a consumer reports back for a delivered batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryReport {
    /// Events applied now.
    pub applied: u64,
    /// Events seen before (duplicates of an at-least-once delivery), not applied again.
    pub duplicates: u64,
    /// Events of types this consumer does not act on.
    pub ignored: u64,
}

/// NATS JetStream plumbing shared by the publisher (orders) and the consumer (catalog).
pub mod nats {
    use std::time::Duration;

    use async_nats::jetstream;

    use kit::config::{ConfigError, Scoped};

    /// Where order events live in NATS: a JetStream stream and the subject prefix of its
    /// messages (`NATS_STREAM`, `NATS_SUBJECT_PREFIX`; default `ORDERS` and `orders`).
    #[derive(Debug, Clone)]
    pub struct Topology {
        pub url: String,
        pub stream: String,
        pub subject_prefix: String,
    }

    impl Topology {
        /// `None` without `NATS_URL`: the platform then uses the embedded relay.
        pub fn from_settings(s: &Scoped<'_>) -> Result<Option<Self>, ConfigError> {
            let Some(url) = s.string(&["NATS_URL"]) else { return Ok(None) };
            let stream = s.string(&["NATS_STREAM"]).unwrap_or_else(|| "ORDERS".into());
            let subject_prefix = s.string(&["NATS_SUBJECT_PREFIX"]).unwrap_or_else(|| "orders".into());
            let token_ok =
                |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !token_ok(&stream) {
                return Err(s.invalid(&["NATS_STREAM"], "letters, digits, _ and - only"));
            }
            if !subject_prefix.split('.').all(token_ok) {
                return Err(s.invalid(&["NATS_SUBJECT_PREFIX"], "dot-separated words of letters, digits, _ and -"));
            }
            Ok(Some(Topology { url, stream, subject_prefix }))
        }
    }

    /// Connects to NATS. When the server is down at start the client keeps trying in the
    /// background, so the service starts anyway and events wait in the outbox.
    pub async fn connect(url: &str, name: &str) -> Result<jetstream::Context, String> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
        Ok(jetstream::new(client))
    }

    /// The order event stream, created when missing. Its duplicate window drops a message
    /// published twice with the same id (a relay retrying after a lost acknowledgement).
    pub async fn ensure_stream(
        js: &jetstream::Context,
        topology: &Topology,
    ) -> Result<jetstream::stream::Stream, String> {
        js.get_or_create_stream(jetstream::stream::Config {
            name: topology.stream.clone(),
            subjects: vec![format!("{}.>", topology.subject_prefix)],
            duplicate_window: Duration::from_secs(120),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create the {} stream: {e}", topology.stream))
    }
}
