//! The catalog's configuration.

use kit::service_settings::{ServiceSettings, instances};
use std::net::IpAddr;
use std::time::Duration;

use kit::auth::JwtSettings;
use kit::config::{ConfigError, Settings};
use kit::db::DbConfig;
use kit::server::ServerConfig;
use url::Url;

use crate::domain::parse_currency;

pub const DEFAULT_PORT: u16 = 8083;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub db: DbConfig,
    pub jwt: JwtSettings,
    /// The users service, for its JWKS and revocation feed (`USER_SERVICE_URL`).
    pub users: Vec<Url>,
    /// How long a reservation holds stock before it is released automatically.
    pub reservation_ttl: Duration,
    /// How often expired reservations are looked for.
    pub sweep_interval: Duration,
    pub currency: String,
    /// Seed the demo catalogue on first start.
    pub demo_data: bool,
    pub revocation_poll: Duration,
    /// Who this service is when it asks for service tokens (to read the revocation feed).
    pub identity: kit::auth::ClientIdentity,
    /// Consume order events from NATS JetStream (they can still arrive over HTTP too).
    pub nats: Option<api::events::nats::Topology>,
    /// What a picture upload may be.
    pub images: crate::images::ImageLimits,
}

impl Config {
    pub fn from_settings(settings: &Settings, default_host: IpAddr, port: u16) -> Result<Self, ConfigError> {
        let ServiceSettings { production, server, db, jwt, revocation_poll, demo_data, .. } =
            ServiceSettings::from_settings(settings, "catalog", default_host, port)?;
        let s = settings.scoped("catalog");
        let users = instances(&s, &["USER_SERVICE_URL"], "http://127.0.0.1:8081")?;
        let currency = match s.lookup(&["CURRENCY"]) {
            Some((key, value, origin)) => {
                parse_currency(&value).map_err(|e| ConfigError::invalid(&key, &value, origin, e))?
            }
            None => "USD".to_string(),
        };
        let reservation_ttl = s.duration_or(&["RESERVATION_TTL"], Duration::from_secs(1), Duration::from_secs(300))?;
        if reservation_ttl < Duration::from_secs(1) {
            return Err(s.invalid(&["RESERVATION_TTL"], "must be at least one second"));
        }
        Ok(Config {
            server,
            db,
            jwt,
            identity: kit::auth::ClientIdentity::from_settings(&s, "catalog", production)?,
            users,
            reservation_ttl,
            sweep_interval: s.duration_or(
                &["RESERVATION_SWEEP_INTERVAL"],
                Duration::from_secs(1),
                Duration::from_secs(2),
            )?,
            currency,
            demo_data,
            revocation_poll,
            nats: api::events::nats::Topology::from_settings(&s)?,
            images: image_limits(&s)?,
        })
    }
}

fn image_limits(s: &kit::config::Scoped<'_>) -> Result<crate::images::ImageLimits, ConfigError> {
    let defaults = crate::images::ImageLimits::default();
    Ok(crate::images::ImageLimits {
        max_bytes: s.parse_checked(&["IMAGE_MAX_BYTES"], defaults.max_bytes, |n: &usize| {
            if (1024..=64 * 1024 * 1024).contains(n) { Ok(()) } else { Err("must be between 1 KiB and 64 MiB".into()) }
        })?,
        max_pixels: s.parse_checked(&["IMAGE_MAX_PIXELS"], defaults.max_pixels, |n: &u64| {
            if (1..=100_000_000).contains(n) { Ok(()) } else { Err("must be between 1 and 100000000".into()) }
        })?,
        per_product: s.parse_checked(&["IMAGES_PER_PRODUCT"], defaults.per_product, |n: &usize| {
            if (1..=100).contains(n) { Ok(()) } else { Err("must be between 1 and 100".into()) }
        })?,
    })
}
