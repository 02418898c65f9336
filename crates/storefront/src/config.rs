//! The storefront's own settings: its session cookies and the admin dashboard. Read from the
//! gateway's scope (`GATEWAY_SESSION_KEY` or `SESSION_KEY`, …), as the storefront is served on
//! the gateway's port.

use std::time::Duration;

use kit::config::{ConfigError, Settings};

#[derive(Debug, Clone)]
pub struct Config {
    /// Signs and encrypts the session cookies; 64 bytes (hex or base64) from `SESSION_KEY`,
    /// random per process when unset (sessions then do not survive a restart or span gateway
    /// instances). Required in production mode.
    pub session_key: Option<Vec<u8>>,
    /// Mark cookies `Secure` (`SECURE_COOKIES`; on by default in production and when the
    /// gateway serves TLS, off for http://localhost).
    pub secure_cookies: bool,
    /// How often the admin dashboard samples the platform's metrics
    /// (`DASHBOARD_SAMPLE_INTERVAL`, seconds or with a unit; 1 s to 10 min).
    pub dashboard_sample_interval: Duration,
    /// How long after a session's refresh token was exchanged the same token still gets the
    /// new tokens (`SESSION_REFRESH_GRACE`, default 15 s: the requests that set out with the
    /// old cookie). Later, it is a replay: the users service sees it and ends the whole session.
    pub session_refresh_grace: Duration,
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let s = settings.scoped("gateway");
        let production = kit::config::production(settings)?;
        let session_key = match s.lookup(&["SESSION_KEY"]) {
            None if production => {
                return Err(ConfigError::Missing {
                    key: "SESSION_KEY".into(),
                    reason: "production mode needs a fixed session key (64 bytes, hex) so sessions span instances and restarts"
                        .into(),
                });
            }
            None => None,
            Some((key, value, origin)) => Some(parse_key_material(&value).ok_or_else(|| {
                ConfigError::invalid(&key, "<redacted>", origin, "expected at least 64 bytes as hex (128 hex digits)")
            })?),
        };
        let dashboard_sample_interval =
            s.duration_or(&["DASHBOARD_SAMPLE_INTERVAL"], Duration::from_secs(1), Duration::from_secs(5))?;
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&dashboard_sample_interval) {
            return Err(s.invalid(&["DASHBOARD_SAMPLE_INTERVAL"], "must be between 1 s and 10 min"));
        }
        let session_refresh_grace =
            s.duration_or(&["SESSION_REFRESH_GRACE"], Duration::from_secs(1), Duration::from_secs(15))?;
        if session_refresh_grace > Duration::from_secs(120) {
            return Err(s.invalid(
                &["SESSION_REFRESH_GRACE"],
                "must be at most 2 min: a stolen cookie is good for this long after a refresh",
            ));
        }
        Ok(Config {
            session_key,
            secure_cookies: s
                .bool_or(&["SECURE_COOKIES"], production || kit::tls::TlsSettings::from_settings(&s)?.is_some())?,
            dashboard_sample_interval,
            session_refresh_grace,
        })
    }
}

fn parse_key_material(value: &str) -> Option<Vec<u8>> {
    let value = value.trim();
    let bytes = hex::decode(value).ok().or_else(|| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(value).ok()
    })?;
    (bytes.len() >= 64).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_on_plain_http_localhost() {
        let c = Config::from_settings(&Settings::from_pairs([("GATEWAY_UNUSED", "1")])).unwrap();
        assert_eq!(c.dashboard_sample_interval, Duration::from_secs(5));
        assert_eq!(c.session_refresh_grace, Duration::from_secs(15));
        assert!(!c.secure_cookies, "plain http://localhost works out of the box");
        assert!(c.session_key.is_none(), "a random key per process");
    }

    #[test]
    fn settings_are_read_and_bad_values_name_their_setting() {
        let key = "ab".repeat(64);
        let s = Settings::from_pairs([
            ("DASHBOARD_SAMPLE_INTERVAL", "2s"),
            ("SECURE_COOKIES", "true"),
            ("SESSION_KEY", key.as_str()),
        ]);
        let c = Config::from_settings(&s).unwrap();
        assert_eq!(c.dashboard_sample_interval, Duration::from_secs(2));
        assert!(c.secure_cookies);
        assert_eq!(c.session_key.as_deref().map(<[u8]>::len), Some(64));
        for (key, bad) in [
            ("DASHBOARD_SAMPLE_INTERVAL", "0"),
            ("DASHBOARD_SAMPLE_INTERVAL", "1h"),
            ("DASHBOARD_SAMPLE_INTERVAL", "soon"),
            ("SESSION_REFRESH_GRACE", "5m"),
            ("SESSION_KEY", "short"),
        ] {
            let err = Config::from_settings(&Settings::from_pairs([(key, bad)])).unwrap_err().to_string();
            assert!(err.contains(key), "{key}={bad}: {err}");
        }
    }

    #[test]
    fn production_needs_a_session_key_and_marks_cookies_secure() {
        let err = Config::from_settings(&Settings::from_pairs([("ORDERMESH_ENV", "production")])).unwrap_err();
        assert!(err.to_string().contains("SESSION_KEY"), "{err}");
        let key = "cd".repeat(64);
        let s = Settings::from_pairs([("ORDERMESH_ENV", "production"), ("SESSION_KEY", key.as_str())]);
        assert!(Config::from_settings(&s).unwrap().secure_cookies);
    }

    #[test]
    fn cookies_are_secure_when_the_gateway_serves_tls() {
        let tls = [("TLS_CERT_FILE", "/etc/edge.crt"), ("TLS_KEY_FILE", "/etc/edge.key")];
        assert!(Config::from_settings(&Settings::from_pairs(tls)).unwrap().secure_cookies);
        let behind_a_terminator = Settings::from_pairs(tls).with("SECURE_COOKIES", "false");
        assert!(!Config::from_settings(&behind_a_terminator).unwrap().secure_cookies, "an explicit choice wins");
    }
}
