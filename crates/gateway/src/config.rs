//! The gateway's configuration: where the services are, and every limit and timeout of the
//! edge, each with a default that suits one laptop and a setting to change it.

use std::net::IpAddr;
use std::time::Duration;

use kit::auth::JwtSettings;
use kit::client::parse_instance_list;
use kit::client_ip::TrustedProxies;
use kit::config::{ConfigError, Scoped, Settings};
use kit::server::ServerConfig;
use kit::tls::TlsSettings;
use url::Url;

use crate::rules::PerService;

pub const DEFAULT_PORT: u16 = 8080;

/// Each service's instances, from the settings [`Service::url_keys`](crate::rules::Service::url_keys) names.
pub type UpstreamUrls = PerService<Vec<Url>>;

/// Requests per minute with a burst allowance, per key (client address or user).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Every request, by client address (`RATE_LIMIT`, requests per minute, as in seed 001).
    pub per_client: Quota,
    /// Authenticated requests, by user.
    pub per_user: Quota,
    /// Sign-in and registration attempts, by client address: far stricter.
    pub auth: Quota,
    /// Shared counters across gateway instances (`REDIS_URL`).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel this gateway uses (`REDIS_KEY_PREFIX`), so
    /// several platforms can share one Redis.
    pub redis_prefix: String,
}

#[derive(Debug, Clone)]
pub struct Resilience {
    pub connect_timeout: Duration,
    /// Longest wait for an upstream's response headers.
    pub request_timeout: Duration,
    /// Retries of one request (idempotent ones only).
    pub max_retries: u32,
    /// Retries allowed as a fraction of requests, so retries never multiply an outage.
    pub retry_budget_ratio: f64,
    pub retry_backoff: Duration,
    /// A breaker opens when at least this share of the window's requests failed…
    pub breaker_failure_ratio: f64,
    /// …and the window held at least this many requests.
    pub breaker_min_requests: u32,
    pub breaker_window: Duration,
    /// How long an open breaker fails fast before letting a probe through.
    pub breaker_open_for: Duration,
    pub health_interval: Duration,
    /// Consecutive failures after which an instance is taken out until a health check passes.
    pub eject_after_failures: u32,
}

impl Resilience {
    /// The longest the proxy can spend on one request: every attempt timing out, with the
    /// longest back-off (base doubling, plus jitter up to as much again) between them.
    pub fn longest_request(&self) -> Duration {
        let backoff = (0..self.max_retries).map(|a| self.retry_backoff * 2 * 2u32.pow(a)).sum::<Duration>();
        self.request_timeout * (self.max_retries + 1) + backoff
    }
}

#[derive(Debug, Clone)]
pub struct Cors {
    /// Origins allowed to call the API from a browser; empty means same-origin only.
    pub allowed_origins: Vec<String>,
    pub allow_credentials: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstreams: UpstreamUrls,
    pub jwt: JwtSettings,
    pub trusted_proxies: TrustedProxies,
    pub rate_limits: RateLimits,
    pub resilience: Resilience,
    pub cors: Cors,
    pub revocation_poll: Duration,
    /// Who this service is when it asks for service tokens (to read the revocation feed).
    pub identity: kit::auth::ClientIdentity,
    /// The body limit for file uploads through `/api` (product pictures;
    /// `UPLOAD_LIMIT_BYTES`, default 16 MiB); every other request keeps `BODY_LIMIT_BYTES`.
    /// The catalog's `IMAGE_MAX_BYTES` is the limit a picture is judged by.
    pub upload_limit: usize,
    /// TLS at the edge (`TLS_CERT_FILE`, `TLS_KEY_FILE`); plain HTTP without them.
    pub tls: Option<TlsSettings>,
    /// `HTTP_REDIRECT_PORT`: with TLS on, a plain-HTTP port that sends every request to HTTPS.
    pub http_redirect_port: Option<u16>,
    /// How often the Cap'n Web order feeds (`watchOrder`, `watchOrders`) look at the orders
    /// service for changes (`RPC_WATCH_INTERVAL`, default 1 s).
    pub rpc_watch_interval: Duration,
    /// `WEBTRANSPORT_PORT`: the UDP port of the Cap'n Web shop over WebTransport (`/rpc/wt`).
    pub webtransport: WebTransportPort,
}

/// Where the shop is served over WebTransport (HTTP/3, UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebTransportPort {
    /// The default: the same number as the gateway's HTTP port (UDP beside TCP), if it is free.
    SameAsHttp,
    Port(u16),
    /// `WEBTRANSPORT_PORT=off`.
    Off,
}

fn quota(
    s: &Scoped<'_>,
    per_minute_keys: &[&str],
    burst_keys: &[&str],
    per_minute: u32,
    burst: u32,
) -> Result<Quota, ConfigError> {
    let check =
        |n: &u32| if (1..=10_000_000).contains(n) { Ok(()) } else { Err("must be between 1 and 10000000".to_string()) };
    Ok(Quota {
        per_minute: s.parse_checked(per_minute_keys, per_minute, check)?,
        burst: s.parse_checked(burst_keys, burst, check)?,
    })
}

fn fraction(s: &Scoped<'_>, keys: &[&str], default: f64) -> Result<f64, ConfigError> {
    s.parse_checked(keys, default, |v: &f64| {
        if (0.0..=1.0).contains(v) { Ok(()) } else { Err("must be between 0 and 1".to_string()) }
    })
}

impl Config {
    pub fn from_settings(settings: &Settings, default_host: IpAddr, port: u16) -> Result<Self, ConfigError> {
        let s = settings.scoped("gateway");
        let production = kit::config::production(settings)?;
        let upstreams = UpstreamUrls::try_from_fn(|service| match s.lookup(service.url_keys()) {
            Some((key, value, origin)) => parse_instance_list(&key, &value, origin),
            None => Ok(vec![Url::parse(service.default_url()).expect("static url")]),
        })?;
        let redis_url = match s.string(&["REDIS_URL"]) {
            Some(url) => Some(url),
            // Seed 003 configures Redis by parts.
            None => s.string(&["REDIS_HOST"]).map(|host| {
                let port = s.string(&["REDIS_PORT"]).unwrap_or_else(|| "6379".into());
                let db = s.string(&["REDIS_DB"]).unwrap_or_else(|| "0".into());
                match s.string(&["REDIS_PASSWORD"]) {
                    Some(p) => format!("redis://:{p}@{host}:{port}/{db}"),
                    None => format!("redis://{host}:{port}/{db}"),
                }
            }),
        };
        let allowed_origins = s.list(&["CORS_ALLOWED_ORIGINS", "CORS_ORIGINS"]);
        for origin in &allowed_origins {
            if origin != "*" && Url::parse(origin).is_err() {
                return Err(
                    s.invalid(&["CORS_ALLOWED_ORIGINS", "CORS_ORIGINS"], format!("{origin:?} is not an origin URL"))
                );
            }
        }
        let allow_credentials = s.bool_or(&["CORS_ALLOW_CREDENTIALS"], false)?;
        if allow_credentials && allowed_origins.iter().any(|o| o == "*") {
            return Err(s.invalid(
                &["CORS_ALLOWED_ORIGINS", "CORS_ORIGINS"],
                "'*' cannot be combined with CORS_ALLOW_CREDENTIALS; list the origins",
            ));
        }
        let server = ServerConfig::from_settings(&s, default_host, port)?;
        let resilience = Resilience {
            connect_timeout: s.duration_or(
                &["UPSTREAM_CONNECT_TIMEOUT"],
                Duration::from_millis(1),
                Duration::from_millis(500),
            )?,
            // Three attempts (RETRY_MAX 2) and their back-off fit in REQUEST_TIMEOUT's 15 s.
            request_timeout: s.duration_or(&["UPSTREAM_TIMEOUT"], Duration::from_secs(1), Duration::from_secs(4))?,
            max_retries: s
                .parse_checked(&["RETRY_MAX"], 2u32, |n| if *n <= 10 { Ok(()) } else { Err("at most 10".into()) })?,
            retry_budget_ratio: fraction(&s, &["RETRY_BUDGET_RATIO"], 0.1)?,
            retry_backoff: s.duration_or(&["RETRY_BACKOFF"], Duration::from_millis(1), Duration::from_millis(25))?,
            breaker_failure_ratio: fraction(&s, &["BREAKER_FAILURE_RATIO"], 0.5)?,
            breaker_min_requests: s.parse_or(&["BREAKER_MIN_REQUESTS"], 10u32)?,
            breaker_window: s.duration_or(&["BREAKER_WINDOW"], Duration::from_secs(1), Duration::from_secs(10))?,
            breaker_open_for: s.duration_or(&["BREAKER_OPEN_FOR"], Duration::from_secs(1), Duration::from_secs(5))?,
            health_interval: s.duration_or(
                &["HEALTH_CHECK_INTERVAL"],
                Duration::from_secs(1),
                Duration::from_secs(2),
            )?,
            eject_after_failures: s.parse_or(&["EJECT_AFTER_FAILURES"], 5u32)?,
        };
        // Timeouts nest: a retried call must end with the proxy's own 504 before the whole
        // request's timeout cuts it off with a bare 503.
        if resilience.longest_request() >= server.request_timeout {
            return Err(s.invalid(
                &["REQUEST_TIMEOUT"],
                format!(
                    "must be longer than UPSTREAM_TIMEOUT × (1 + RETRY_MAX) with the retries' back-off ({:?}), \
                     or lower UPSTREAM_TIMEOUT or RETRY_MAX",
                    resilience.longest_request()
                ),
            ));
        }
        let upload_limit = s.parse_checked(&["UPLOAD_LIMIT_BYTES"], 16 * 1024 * 1024, |n: &usize| {
            if (1024..=256 * 1024 * 1024).contains(n) {
                Ok(())
            } else {
                Err("must be between 1 KiB and 256 MiB".into())
            }
        })?;
        let tls = TlsSettings::from_settings(&s)?;
        let http_redirect_port: Option<u16> = s.parse(&["HTTP_REDIRECT_PORT"])?;
        if http_redirect_port.is_some() && tls.is_none() {
            return Err(s.invalid(&["HTTP_REDIRECT_PORT"], "redirects to HTTPS need TLS_CERT_FILE and TLS_KEY_FILE"));
        }
        let rpc_watch_interval =
            s.duration_or(&["RPC_WATCH_INTERVAL"], Duration::from_millis(1), Duration::from_secs(1))?;
        if rpc_watch_interval < Duration::from_millis(10) {
            return Err(s.invalid(&["RPC_WATCH_INTERVAL"], "must be at least 10ms"));
        }
        let webtransport = match s.string(&["WEBTRANSPORT_PORT"]) {
            None => WebTransportPort::SameAsHttp,
            Some(v) if v.eq_ignore_ascii_case("off") => WebTransportPort::Off,
            Some(v) => WebTransportPort::Port(
                v.parse().map_err(|_| s.invalid(&["WEBTRANSPORT_PORT"], "must be a UDP port number or off"))?,
            ),
        };
        Ok(Config {
            webtransport,
            upload_limit,
            tls,
            http_redirect_port,
            server,
            upstreams,
            jwt: JwtSettings::from_settings(&s)?,
            identity: kit::auth::ClientIdentity::from_settings(&s, "gateway", production)?,
            trusted_proxies: TrustedProxies::from_settings(&s)?,
            rate_limits: RateLimits {
                per_client: quota(&s, &["RATE_LIMIT", "RATE_LIMIT_PER_MINUTE"], &["RATE_LIMIT_BURST"], 1200, 200)?,
                per_user: quota(&s, &["USER_RATE_LIMIT"], &["USER_RATE_LIMIT_BURST"], 1200, 200)?,
                auth: quota(&s, &["AUTH_RATE_LIMIT"], &["AUTH_RATE_LIMIT_BURST"], 30, 10)?,
                redis_url,
                redis_prefix: s.string(&["REDIS_KEY_PREFIX"]).unwrap_or_else(|| "ordermesh".into()),
            },
            resilience,
            cors: Cors { allowed_origins, allow_credentials },
            revocation_poll: s.duration_or(
                &["REVOCATION_POLL_INTERVAL"],
                Duration::from_millis(1),
                Duration::from_secs(1),
            )?,
            rpc_watch_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn localhost() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn the_order_feeds_look_no_more_often_than_every_10ms() {
        let config =
            |value: &str| Config::from_settings(&Settings::from_pairs([("RPC_WATCH_INTERVAL", value)]), localhost(), 0);
        assert_eq!(config("250ms").unwrap().rpc_watch_interval, Duration::from_millis(250));
        let c = Config::from_settings(&Settings::from_pairs([("UNUSED", "1")]), localhost(), 0).unwrap();
        assert_eq!(c.rpc_watch_interval, Duration::from_secs(1));
        let refused = config("0").unwrap_err().to_string();
        assert!(refused.contains("RPC_WATCH_INTERVAL") && refused.contains("at least 10ms"), "{refused}");
    }

    #[test]
    fn tls_at_the_edge_and_its_redirect_port() {
        let c = Config::from_settings(&Settings::from_pairs([("UNUSED", "1")]), localhost(), 0).unwrap();
        assert!(c.tls.is_none() && c.http_redirect_port.is_none(), "plain HTTP by default");
        let s = Settings::from_pairs([
            ("TLS_CERT_FILE", "/e.crt"),
            ("TLS_KEY_FILE", "/e.key"),
            ("HTTP_REDIRECT_PORT", "80"),
        ]);
        let c = Config::from_settings(&s, localhost(), 0).unwrap();
        assert_eq!(c.tls.map(|t| t.cert_file), Some("/e.crt".into()));
        assert_eq!(c.http_redirect_port, Some(80));
        let err = Config::from_settings(&Settings::from_pairs([("HTTP_REDIRECT_PORT", "80")]), localhost(), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP_REDIRECT_PORT") && err.contains("TLS_CERT_FILE"), "{err}");
    }

    #[test]
    fn defaults_and_instance_lists() {
        use crate::rules::Service;
        let s = Settings::from_pairs([("ORDER_SERVICE_URL", "http://a:8082,http://b:8092"), ("RATE_LIMIT", "100")]);
        let c = Config::from_settings(&s, localhost(), 0).unwrap();
        assert_eq!(c.upstreams[Service::Orders].len(), 2);
        assert_eq!(c.upstreams[Service::Catalog][0].as_str(), "http://127.0.0.1:8083/");
        assert_eq!(c.rate_limits.per_client.per_minute, 100);
        assert!(c.cors.allowed_origins.is_empty());
    }

    #[test]
    fn wildcard_with_credentials_is_refused() {
        let s = Settings::from_pairs([("CORS_ALLOWED_ORIGINS", "*"), ("CORS_ALLOW_CREDENTIALS", "true")]);
        let err = Config::from_settings(&s, localhost(), 0).unwrap_err().to_string();
        assert!(err.contains("CORS_ALLOWED_ORIGINS"), "{err}");
    }

    #[test]
    fn seed_003_redis_parts_make_a_url() {
        let s = Settings::from_pairs([("REDIS_HOST", "cache"), ("REDIS_PORT", "6380"), ("REDIS_DB", "2")]);
        let c = Config::from_settings(&s, localhost(), 0).unwrap();
        assert_eq!(c.rate_limits.redis_url.as_deref(), Some("redis://cache:6380/2"));
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (key, value) in [("RATE_LIMIT", "0"), ("RETRY_BUDGET_RATIO", "2"), ("UPSTREAM_TIMEOUT", "soon")] {
            let err =
                Config::from_settings(&Settings::from_pairs([(key, value)]), localhost(), 0).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    /// Issue 17, defect 3: REQUEST_TIMEOUT (15 s) was shorter than UPSTREAM_TIMEOUT × (1 +
    /// RETRY_MAX) (30 s), so a retry after an upstream timeout was cut off by the outer timeout
    /// with a bare 503 instead of the proxy's 504. The defaults nest, and settings that do not
    /// are refused at start with the setting to change.
    #[test]
    fn timeouts_nest_and_settings_that_do_not_are_refused() {
        let c = Config::from_settings(&Settings::default(), localhost(), 0).unwrap();
        let r = &c.resilience;
        assert!(
            r.request_timeout * (r.max_retries + 1) < c.server.request_timeout,
            "{:?} × {} attempts against {:?}",
            r.request_timeout,
            r.max_retries + 1,
            c.server.request_timeout
        );
        let err = Config::from_settings(&Settings::from_pairs([("UPSTREAM_TIMEOUT", "10s")]), localhost(), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("REQUEST_TIMEOUT") && err.contains("UPSTREAM_TIMEOUT"), "{err}");
        let roomy = Settings::from_pairs([("UPSTREAM_TIMEOUT", "10s"), ("REQUEST_TIMEOUT", "31s")]);
        Config::from_settings(&roomy, localhost(), 0).expect("30 s of attempts and back-off fit in 31 s");
    }
}
