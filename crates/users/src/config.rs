//! The users service's configuration.

use kit::service_settings::ServiceSettings;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use kit::auth::{JwtAlgorithm, JwtSettings};
use kit::client_ip::TrustedProxies;
use kit::config::{ConfigError, Settings};
use kit::db::DbConfig;
use kit::server::ServerConfig;
use subtle::ConstantTimeEq;

use crate::keys::KeyConfig;
use crate::passwords::HashingConfig;
use crate::throttle::ThrottleConfig;

pub const DEFAULT_PORT: u16 = 8081;

/// A service allowed to obtain service tokens (`POST /auth/token`).
#[derive(Clone)]
pub struct ServiceCredential {
    pub client_id: String,
    secret: String,
}

impl ServiceCredential {
    pub fn new(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        ServiceCredential { client_id: client_id.into(), secret: secret.into() }
    }

    pub fn matches(&self, client_id: &str, secret: &str) -> bool {
        // Constant time in the secret, so timing does not reveal a prefix.
        self.client_id == client_id && bool::from(self.secret.as_bytes().ct_eq(secret.as_bytes()))
    }
}

impl std::fmt::Debug for ServiceCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceCredential({}, <redacted>)", self.client_id)
    }
}

/// The client credentials a development setup uses when none are configured; refused in
/// production mode. (The `ordermesh` binary configures its own, one for each service in its
/// table that asks for service tokens.)
pub const DEV_SERVICE_CLIENTS: &str = "orders:dev-orders-secret,gateway:dev-gateway-secret,catalog:dev-catalog-secret";

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub db: DbConfig,
    pub jwt: JwtSettings,
    pub keys: KeyConfig,
    /// How often the key file is checked for a rotation.
    pub key_reload: Duration,
    pub refresh_ttl: Duration,
    pub service_token_ttl: Duration,
    pub hashing: HashingConfig,
    pub throttle: ThrottleConfig,
    pub trusted_proxies: TrustedProxies,
    pub service_clients: Vec<ServiceCredential>,
    /// Seed alice, bob and charlie on first start.
    pub demo_data: bool,
    pub revocation_poll: Duration,
}

impl Config {
    /// Reads `USERS_*` then plain keys. `port` and `default_host` depend on how the process
    /// was started (`up` or `serve`), so the caller decides them.
    pub fn from_settings(settings: &Settings, default_host: IpAddr, port: u16) -> Result<Self, ConfigError> {
        let ServiceSettings { production, server, data_dir, db, jwt, revocation_poll, demo_data } =
            ServiceSettings::from_settings(settings, "users", default_host, port)?;
        let s = settings.scoped("users");
        let keys = match (s.string(&["JWT_PRIVATE_KEY"]), s.string(&["JWT_PRIVATE_KEY_FILE"])) {
            (Some(pem), _) => KeyConfig::Pem(pem),
            (None, Some(path)) => KeyConfig::File { path: PathBuf::from(path), create: false },
            (None, None) => {
                if production && jwt.algorithm == JwtAlgorithm::EdDsa {
                    return Err(ConfigError::Missing {
                        key: "JWT_PRIVATE_KEY_FILE".into(),
                        reason: "production mode needs the signing key from configuration (or JWT_SECRET for HS256), \
                                 so every instance signs with the same key"
                            .into(),
                    });
                }
                KeyConfig::File { path: data_dir.join("jwt-ed25519.pem"), create: true }
            }
        };
        let clients_raw = match s.lookup(&["SERVICE_CLIENTS"]) {
            Some((key, value, origin)) => Some((key, value, origin)),
            None if production => None,
            None => {
                Some(("SERVICE_CLIENTS".to_string(), DEV_SERVICE_CLIENTS.to_string(), kit::config::Origin::Default))
            }
        };
        let mut service_clients = Vec::new();
        if let Some((key, value, origin)) = clients_raw {
            for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (id, secret) = pair.split_once(':').ok_or_else(|| {
                    ConfigError::invalid(
                        &key,
                        "<redacted>",
                        origin,
                        "expected client_id:secret pairs separated by commas",
                    )
                })?;
                if id.trim().is_empty() || secret.len() < 12 {
                    return Err(ConfigError::invalid(
                        &key,
                        "<redacted>",
                        origin,
                        format!("client {id:?} needs an id and a secret of at least 12 characters"),
                    ));
                }
                if production && secret.starts_with("dev-") {
                    return Err(ConfigError::invalid(
                        &key,
                        "<redacted>",
                        origin,
                        "development secrets are not allowed in production mode",
                    ));
                }
                service_clients.push(ServiceCredential::new(id.trim(), secret.trim()));
            }
        }
        let defaults = HashingConfig::default();
        Ok(Config {
            server,
            db,
            jwt,
            keys,
            key_reload: s.duration_or(&["JWT_KEY_RELOAD_INTERVAL"], Duration::from_secs(1), Duration::from_secs(2))?,
            refresh_ttl: s.duration_or(
                &["REFRESH_TOKEN_TTL_DAYS"],
                Duration::from_secs(86_400),
                Duration::from_secs(30 * 86_400),
            )?,
            service_token_ttl: s.duration_or(
                &["SERVICE_TOKEN_TTL_MINUTES"],
                Duration::from_secs(60),
                Duration::from_secs(10 * 60),
            )?,
            hashing: HashingConfig {
                memory_kib: s.parse_checked(&["ARGON2_MEMORY_KIB"], defaults.memory_kib, |m| {
                    if (8..=1_048_576).contains(m) { Ok(()) } else { Err("must be between 8 and 1048576".into()) }
                })?,
                iterations: s.parse_checked(&["ARGON2_ITERATIONS"], defaults.iterations, |t| {
                    if (1..=20).contains(t) { Ok(()) } else { Err("must be between 1 and 20".into()) }
                })?,
                parallelism: 1,
                concurrency: s.parse_checked(&["PASSWORD_HASH_CONCURRENCY"], defaults.concurrency, |c| {
                    if (1..=256).contains(c) { Ok(()) } else { Err("must be between 1 and 256".into()) }
                })?,
                queue_timeout: s.duration_or(
                    &["PASSWORD_HASH_QUEUE_TIMEOUT"],
                    Duration::from_millis(1),
                    defaults.queue_timeout,
                )?,
            },
            throttle: ThrottleConfig {
                max_failures_per_account: s.parse_or(&["LOGIN_MAX_FAILURES_PER_ACCOUNT"], 5)?,
                max_failures_per_address: s.parse_or(&["LOGIN_MAX_FAILURES_PER_ADDRESS"], 20)?,
                window: s.duration_or(
                    &["LOGIN_FAILURE_WINDOW"],
                    Duration::from_secs(60),
                    Duration::from_secs(15 * 60),
                )?,
                slowdown_base: s.duration_or(
                    &["LOGIN_SLOWDOWN_BASE"],
                    Duration::from_millis(1),
                    Duration::from_millis(500),
                )?,
                slowdown_max: s.duration_or(
                    &["LOGIN_SLOWDOWN_MAX"],
                    Duration::from_millis(1),
                    Duration::from_secs(5),
                )?,
            },
            trusted_proxies: TrustedProxies::from_settings(&s)?,
            service_clients,
            demo_data,
            revocation_poll,
        })
    }
}

impl Config {
    /// How long a signed token can be good for: a retired signing key stays published this long.
    pub fn longest_token_life(&self) -> Duration {
        self.jwt.access_ttl.max(self.service_token_ttl) + self.jwt.leeway
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn localhost() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn production_refuses_generated_keys_and_dev_secrets() {
        let s = Settings::from_pairs([("ORDERMESH_ENV", "production")]);
        let err = Config::from_settings(&s, localhost(), 1).unwrap_err().to_string();
        assert!(err.contains("JWT_PRIVATE_KEY_FILE"), "{err}");
        let s = Settings::from_pairs([
            ("ORDERMESH_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("SERVICE_CLIENTS", "orders:dev-orders-secret"),
        ]);
        let err = Config::from_settings(&s, localhost(), 1).unwrap_err().to_string();
        assert!(err.contains("SERVICE_CLIENTS"), "{err}");
        assert!(!err.contains("dev-orders-secret"), "secret leaked: {err}");
    }

    #[test]
    fn production_has_no_demo_data_unless_asked() {
        let base = [("ORDERMESH_ENV", "production"), ("JWT_SECRET", "0123456789abcdef0123456789abcdef")];
        let c = Config::from_settings(&Settings::from_pairs(base), localhost(), 1).unwrap();
        assert!(!c.demo_data);
        assert!(c.service_clients.is_empty());
        let c = Config::from_settings(&Settings::from_pairs(base).with("DEMO_DATA", "true"), localhost(), 1).unwrap();
        assert!(c.demo_data);
    }

    #[test]
    fn credentials_compare_exactly() {
        let c = ServiceCredential::new("orders", "a-long-secret");
        assert!(c.matches("orders", "a-long-secret"));
        assert!(!c.matches("orders", "a-long-secreT"));
        assert!(!c.matches("gateway", "a-long-secret"));
    }
}
