//! The orders service's configuration.

use kit::service_settings::{ServiceSettings, instances};
use std::net::IpAddr;
use std::time::Duration;

use kit::auth::{ClientIdentity, JwtSettings};
use kit::client::{ClientTimeouts, parse_instance_list};
use kit::config::{ConfigError, Settings};
use kit::db::DbConfig;
use kit::server::ServerConfig;
use url::Url;

pub const DEFAULT_PORT: u16 = 8082;

#[derive(Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub db: DbConfig,
    pub jwt: JwtSettings,
    pub users: Vec<Url>,
    pub catalog: Vec<Url>,
    /// Who the orders service is when it asks for service tokens.
    pub identity: ClientIdentity,
    /// Timeouts for calls to the catalog and users services.
    pub upstream_timeouts: ClientTimeouts,
    /// How long an Idempotency-Key and its answer are kept.
    pub idempotency_ttl: Duration,
    /// Most lines in one order.
    pub max_items: usize,
    /// Publish events to NATS JetStream; without it they are pushed over HTTP to the
    /// subscribers below (the embedded relay).
    pub nats: Option<api::events::nats::Topology>,
    /// Where the embedded relay delivers events (`EVENT_SUBSCRIBERS`; default: the catalog's
    /// `/events`).
    pub event_subscribers: Vec<Url>,
    pub relay_batch: usize,
    pub relay_interval: Duration,
    /// How long the relay waits, once woken by a new order, for others to share its batch.
    pub relay_linger: Duration,
    pub revocation_poll: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("db", &self.db.url)
            .field("users", &self.users)
            .field("catalog", &self.catalog)
            .field("identity", &self.identity)
            .field("nats", &self.nats)
            .finish()
    }
}

/// The catalog's event endpoints, where events go without a broker unless told otherwise.
fn catalogs_events(catalog: &[Url]) -> Vec<Url> {
    catalog.iter().map(|c| c.join("events").expect("joinable")).collect()
}

impl Config {
    /// Whether an order's event is what commits its reservation. It is when the relay hands
    /// events to the catalog itself: the event then depends on nothing a direct commit call
    /// would not (the catalog being up) and arrives as soon as the order is written, so a
    /// second call and a second transaction per order would add nothing. Through a broker,
    /// whose outage could outlast the reservation, or to other subscribers, the orders service
    /// also commits it with a call.
    pub fn events_commit_reservations(&self) -> bool {
        self.nats.is_none() && self.event_subscribers == catalogs_events(&self.catalog)
    }

    pub fn from_settings(settings: &Settings, default_host: IpAddr, port: u16) -> Result<Self, ConfigError> {
        let ServiceSettings { production, server, db, jwt, revocation_poll, .. } =
            ServiceSettings::from_settings(settings, "orders", default_host, port)?;
        let s = settings.scoped("orders");
        let users = instances(&s, &["USER_SERVICE_URL"], "http://127.0.0.1:8081")?;
        let catalog = instances(
            &s,
            &["CATALOG_SERVICE_URL", "PRODUCT_SERVICE_URL", "INVENTORY_SERVICE_URL"],
            "http://127.0.0.1:8083",
        )?;
        let event_subscribers = match s.lookup(&["EVENT_SUBSCRIBERS"]) {
            Some((key, value, origin)) => parse_instance_list(&key, &value, origin)?,
            None => catalogs_events(&catalog),
        };
        let timeout = s.duration_or(&["UPSTREAM_TIMEOUT"], Duration::from_secs(1), Duration::from_secs(5))?;
        Ok(Config {
            server,
            db,
            jwt,
            users,
            catalog,
            identity: ClientIdentity::from_settings(&s, "orders", production)?,
            upstream_timeouts: ClientTimeouts {
                connect: s.duration_or(
                    &["UPSTREAM_CONNECT_TIMEOUT"],
                    Duration::from_millis(1),
                    Duration::from_millis(500),
                )?,
                total: timeout,
            },
            idempotency_ttl: s.duration_or(
                &["IDEMPOTENCY_KEY_TTL"],
                Duration::from_secs(3600),
                Duration::from_secs(48 * 3600),
            )?,
            max_items: s.parse_checked(&["MAX_ORDER_ITEMS"], 100usize, |n| {
                if (1..=1000).contains(n) { Ok(()) } else { Err("must be between 1 and 1000".into()) }
            })?,
            nats: api::events::nats::Topology::from_settings(&s)?,
            event_subscribers,
            relay_batch: s.parse_checked(&["RELAY_BATCH"], 200usize, |n| {
                if (1..=1000).contains(n) { Ok(()) } else { Err("must be between 1 and 1000".into()) }
            })?,
            relay_interval: s.duration_or(&["RELAY_INTERVAL"], Duration::from_millis(1), Duration::from_millis(500))?,
            relay_linger: s.duration_or(&["RELAY_LINGER"], Duration::from_millis(1), Duration::from_millis(5))?,
            revocation_poll,
        })
    }
}
