//! The settings every service reads the same way, read here once: where it listens, where its
//! data lives, its database, how it checks tokens, how often it polls the revocation feed,
//! whether it loads demo data, and whether this is production. A service's own `Config` takes
//! these and reads only what is its own.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::auth::JwtSettings;
use crate::client::parse_instance_list;
use crate::config::{ConfigError, Scoped, Settings};
use crate::db::DbConfig;
use crate::server::ServerConfig;

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// `ORDERMESH_ENV=production`: no demo data, no default secrets.
    pub production: bool,
    pub server: ServerConfig,
    /// `DATA_DIR` (default `data`): SQLite files and generated keys.
    pub data_dir: PathBuf,
    pub db: DbConfig,
    pub jwt: JwtSettings,
    /// How often the revocation feed is read (`REVOCATION_POLL_INTERVAL`, default 1 s).
    pub revocation_poll: Duration,
    /// Demo data on a first start (`DEMO_DATA`; on by default outside production).
    pub demo_data: bool,
}

impl ServiceSettings {
    /// The settings of the service `name`, its own scope (`CATALOG_PORT`, …) first.
    pub fn from_settings(
        settings: &Settings,
        name: &str,
        default_host: IpAddr,
        port: u16,
    ) -> Result<Self, ConfigError> {
        let s = settings.scoped(name);
        let production = crate::config::production(settings)?;
        let data_dir: PathBuf = s.parse_or(&["DATA_DIR"], PathBuf::from("data"))?;
        Ok(ServiceSettings {
            production,
            server: ServerConfig::from_settings(&s, default_host, port)?,
            db: DbConfig::from_settings(&s, name, &data_dir)?,
            data_dir,
            jwt: JwtSettings::from_settings(&s)?,
            revocation_poll: s.duration_or(
                &["REVOCATION_POLL_INTERVAL"],
                Duration::from_millis(1),
                Duration::from_secs(1),
            )?,
            demo_data: s.bool_or(&["DEMO_DATA"], !production)?,
        })
    }
}

/// Another service's instances, from the first of `keys` that is set (a comma-separated list
/// of URLs), else `default`.
pub fn instances(s: &Scoped<'_>, keys: &[&str], default: &str) -> Result<Vec<Url>, ConfigError> {
    match s.lookup(keys) {
        Some((key, value, origin)) => parse_instance_list(&key, &value, origin),
        None => Ok(vec![Url::parse(default).expect("a static default URL")]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn localhost() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn a_services_own_scope_wins_and_production_turns_demo_data_off() {
        let s = Settings::from_pairs([("DATA_DIR", "/tmp/x"), ("CATALOG_DATA_DIR", "/tmp/y")]);
        let c = ServiceSettings::from_settings(&s, "catalog", localhost(), 9001).unwrap();
        assert_eq!(c.server.port, 9001, "the port the binary chose");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
        let c = ServiceSettings::from_settings(&s, "orders", localhost(), 9002).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert!(c.demo_data && !c.production);
        assert_eq!(c.revocation_poll, Duration::from_secs(1));
        let s = Settings::from_pairs([("ORDERMESH_ENV", "production"), ("JWT_SECRET", "x".repeat(32).as_str())]);
        let c = ServiceSettings::from_settings(&s, "orders", localhost(), 1).unwrap();
        assert!(c.production && !c.demo_data);
    }

    #[test]
    fn instances_come_from_the_first_key_set_or_the_default() {
        let s = Settings::from_pairs([("PRODUCT_SERVICE_URL", "http://a:1,http://b:2")]);
        let scoped = s.scoped("orders");
        let urls =
            instances(&scoped, &["CATALOG_SERVICE_URL", "PRODUCT_SERVICE_URL"], "http://127.0.0.1:8083").unwrap();
        assert_eq!(urls.len(), 2);
        let urls = instances(&scoped, &["USER_SERVICE_URL"], "http://127.0.0.1:8081").unwrap();
        assert_eq!(urls[0].as_str(), "http://127.0.0.1:8081/");
        let bad = Settings::from_pairs([("USER_SERVICE_URL", "not a url")]);
        let err = instances(&bad.scoped("orders"), &["USER_SERVICE_URL"], "http://x").unwrap_err().to_string();
        assert!(err.contains("USER_SERVICE_URL"), "{err}");
    }
}
