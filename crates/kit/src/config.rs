//! Layered configuration: built-in defaults < TOML file < environment < command-line `--set`.
//!
//! Keys are the environment-variable names the seeds already use (`PORT`, `JWT_SECRET`,
//! `USER_SERVICE_URL`, …). A TOML file uses the same names in lower case at the top level, and
//! `[users]`/`[catalog]`/… tables for service-scoped keys (`[users] port = 9001` is `USERS_PORT`).
//! Every lookup that fails to parse names the key and where its value came from, so a bad
//! setting stops the process at start with a message a person can act on.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Where a value came from, reported in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    File,
    Environment,
    CommandLine,
    Test,
    /// Not set anywhere: the built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::File => "config file",
            Origin::Environment => "environment",
            Origin::CommandLine => "command line",
            Origin::Test => "test settings",
            Origin::Default => "the default",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {key} (from {origin}): {reason}")]
    Invalid { key: String, value: String, origin: Origin, reason: String },
    #[error("{key} is required: {reason}")]
    Missing { key: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: &str, value: &str, origin: Origin, reason: impl fmt::Display) -> Self {
        ConfigError::Invalid { key: key.to_string(), value: value.to_string(), origin, reason: reason.to_string() }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: BTreeMap<String, (String, Origin)>,
}

impl Settings {
    /// Reads the optional TOML file, then the process environment, then `overrides`
    /// (`KEY=VALUE` pairs from the command line), later sources winning.
    pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut settings = Settings::default();
        if let Some(path) = file {
            settings.merge_toml_file(path)?;
        }
        for (key, value) in std::env::vars() {
            settings.insert(&key, value, Origin::Environment);
        }
        for (key, value) in overrides {
            settings.insert(key, value.clone(), Origin::CommandLine);
        }
        Ok(settings)
    }

    /// Settings from literal pairs only (no environment): what tests use.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut settings = Settings::default();
        for (key, value) in pairs {
            settings.insert(key.as_ref(), value.into(), Origin::Test);
        }
        settings
    }

    pub fn insert(&mut self, key: &str, value: String, origin: Origin) {
        self.values.insert(normalise_key(key), (value, origin));
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.insert(key, value.into(), Origin::Test);
        self
    }

    fn merge_toml_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File { path: path.display().to_string(), reason: e.to_string() })?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.merge_toml_table("", &table);
        Ok(())
    }

    fn merge_toml_table(&mut self, prefix: &str, table: &toml::Table) {
        for (key, value) in table {
            let full = if prefix.is_empty() { key.clone() } else { format!("{prefix}_{key}") };
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                toml::Value::Table(inner) => {
                    self.merge_toml_table(&full, inner);
                    continue;
                }
                toml::Value::Datetime(d) => d.to_string(),
            };
            self.insert(&full, text, Origin::File);
        }
    }

    /// A view that looks a key up as `<SCOPE>_<KEY>` first, then as `<KEY>`.
    pub fn scoped(&self, scope: &str) -> Scoped<'_> {
        Scoped { settings: self, scope: Some(normalise_key(scope)) }
    }

    /// A view without a scope: only plain `<KEY>`.
    pub fn global(&self) -> Scoped<'_> {
        Scoped { settings: self, scope: None }
    }

    fn raw(&self, key: &str) -> Option<(&str, &str, Origin)> {
        self.values.get_key_value(key).map(|(k, (v, o))| (k.as_str(), v.as_str(), *o))
    }
}

fn normalise_key(key: &str) -> String {
    key.trim().to_ascii_uppercase().replace(['-', '.'], "_")
}

/// A lookup view over [`Settings`]; see [`Settings::scoped`].
#[derive(Clone)]
pub struct Scoped<'a> {
    settings: &'a Settings,
    scope: Option<String>,
}

impl Scoped<'_> {
    /// An error about the value `keys` resolve to, naming the key it was found under (scoped
    /// or plain) and where it came from: the file, the environment or the command line.
    pub fn invalid(&self, keys: &[&str], reason: impl fmt::Display) -> ConfigError {
        match self.lookup(keys) {
            Some((key, value, origin)) => ConfigError::invalid(&key, &value, origin, reason),
            None => ConfigError::invalid(&normalise_key(keys[0]), "(default)", Origin::Default, reason),
        }
    }

    /// The service this view is scoped to, lower case (`None` for [`Settings::global`]).
    pub fn scope(&self) -> Option<String> {
        self.scope.as_ref().map(|s| s.to_ascii_lowercase())
    }

    /// The raw value of the first of `keys` that is set (scoped name before plain name for
    /// each), with the name it was found under and its origin. Blank values count as unset.
    pub fn lookup(&self, keys: &[&str]) -> Option<(String, String, Origin)> {
        for key in keys {
            let key = normalise_key(key);
            if let Some(scope) = &self.scope {
                let scoped = format!("{scope}_{key}");
                if let Some((k, v, o)) = self.settings.raw(&scoped)
                    && !v.trim().is_empty()
                {
                    return Some((k.to_string(), v.to_string(), o));
                }
            }
            if let Some((k, v, o)) = self.settings.raw(&key)
                && !v.trim().is_empty()
            {
                return Some((k.to_string(), v.to_string(), o));
            }
        }
        None
    }

    pub fn string(&self, keys: &[&str]) -> Option<String> {
        self.lookup(keys).map(|(_, v, _)| v.trim().to_string())
    }

    /// Parses the first set key of `keys`; an unparsable value is an error naming that key.
    pub fn parse<T>(&self, keys: &[&str]) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.lookup(keys) {
            None => Ok(None),
            Some((key, value, origin)) => {
                value.trim().parse::<T>().map(Some).map_err(|e| ConfigError::invalid(&key, &value, origin, e))
            }
        }
    }

    pub fn parse_or<T>(&self, keys: &[&str], default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.parse(keys)?.unwrap_or(default))
    }

    /// Like [`Scoped::parse_or`], then checks the value with `valid`, naming the key on failure.
    pub fn parse_checked<T>(
        &self,
        keys: &[&str],
        default: T,
        valid: impl Fn(&T) -> Result<(), String>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let value = self.parse_or(keys, default)?;
        if let Err(reason) = valid(&value) {
            return Err(self.invalid(keys, reason));
        }
        Ok(value)
    }

    pub fn bool_or(&self, keys: &[&str], default: bool) -> Result<bool, ConfigError> {
        match self.lookup(keys) {
            None => Ok(default),
            Some((key, value, origin)) => parse_bool(&value).ok_or_else(|| {
                ConfigError::invalid(&key, &value, origin, "expected true/false, yes/no, on/off or 1/0")
            }),
        }
    }

    /// A duration given in whole units of `unit` (e.g. `JWT_EXPIRATION_MINUTES`) or, when the
    /// value has a suffix, in that unit (`250ms`, `30s`, `5m`, `2h`).
    pub fn duration_or(&self, keys: &[&str], unit: Duration, default: Duration) -> Result<Duration, ConfigError> {
        match self.lookup(keys) {
            None => Ok(default),
            Some((key, value, origin)) => {
                parse_duration(&value, unit).map_err(|reason| ConfigError::invalid(&key, &value, origin, reason))
            }
        }
    }

    /// A comma-separated list; empty when unset.
    pub fn list(&self, keys: &[&str]) -> Vec<String> {
        self.string(keys)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
}

pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

pub fn parse_duration(value: &str, unit: Duration) -> Result<Duration, String> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    let number: f64 =
        number.parse().map_err(|_| "expected a number, optionally with a unit (ms, s, m, h)".to_string())?;
    if !number.is_finite() || number < 0.0 {
        return Err("must be a non-negative number".into());
    }
    let unit = match suffix.trim() {
        "" => unit,
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    let duration = unit.mul_f64(number);
    if duration > Duration::from_secs(365 * 24 * 3600) {
        return Err("is longer than a year".into());
    }
    Ok(duration)
}

/// Whether the platform runs in production mode (`ORDERMESH_ENV=production`): no demo data,
/// no default secrets.
pub fn production(settings: &Settings) -> Result<bool, ConfigError> {
    match settings.global().lookup(&["ORDERMESH_ENV", "APP_ENV"]) {
        None => Ok(false),
        Some((key, value, origin)) => match value.trim().to_ascii_lowercase().as_str() {
            "production" | "prod" => Ok(true),
            "development" | "dev" | "test" => Ok(false),
            _ => Err(ConfigError::invalid(&key, &value, origin, "expected production or development")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_key_wins_over_plain_key() {
        let s = Settings::from_pairs([("PORT", "1"), ("USERS_PORT", "2")]);
        assert_eq!(s.scoped("users").parse::<u16>(&["PORT"]).unwrap(), Some(2));
        assert_eq!(s.scoped("orders").parse::<u16>(&["PORT"]).unwrap(), Some(1));
    }

    #[test]
    fn parse_error_names_the_key_and_origin() {
        let s = Settings::from_pairs([("PORT", "eighty")]);
        let err = s.global().parse::<u16>(&["PORT"]).unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
        assert!(err.contains("eighty"), "{err}");
        assert!(err.contains("test settings"), "{err}");
    }

    #[test]
    fn first_alias_that_is_set_is_used() {
        let s = Settings::from_pairs([("JWT_SECRET_KEY", "b")]);
        assert_eq!(s.global().string(&["JWT_SECRET", "JWT_SECRET_KEY"]).as_deref(), Some("b"));
    }

    #[test]
    fn durations_accept_units() {
        let minute = Duration::from_secs(60);
        assert_eq!(parse_duration("15", minute).unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("250ms", minute).unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1", minute).is_err());
        assert!(parse_duration("5 parsecs", minute).is_err());
    }

    #[test]
    fn toml_tables_become_scoped_keys() {
        let dir = std::env::temp_dir().join(format!("kit-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "log_level = \"debug\"\n[users]\nport = 9001\n").unwrap();
        let mut s = Settings::default();
        s.merge_toml_file(&path).unwrap();
        assert_eq!(s.scoped("users").parse::<u16>(&["PORT"]).unwrap(), Some(9001));
        assert_eq!(s.global().string(&["LOG_LEVEL"]).as_deref(), Some("debug"));
    }

    #[test]
    fn bad_bool_is_refused() {
        let s = Settings::from_pairs([("DEMO_DATA", "maybe")]);
        assert!(s.global().bool_or(&["DEMO_DATA"], false).is_err());
    }
}
