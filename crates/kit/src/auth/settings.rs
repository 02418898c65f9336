//! How tokens are signed and checked, read once from configuration; the same settings reach the
//! signer and every verifier.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};

use crate::config::{ConfigError, Scoped};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    EdDsa,
    Hs256,
}

/// How tokens are signed and checked; the same settings reach the signer and every verifier.
#[derive(Clone)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    pub secret: Option<Arc<[u8]>>,
    pub issuer: String,
    /// What user tokens are for: the platform's API, at the gateway and every service.
    pub audience: String,
    /// The service these settings were read for; its service tokens carry
    /// [`JwtSettings::service_audience`] and no other service's are accepted.
    pub service: Option<String>,
    pub access_ttl: Duration,
    pub leeway: Duration,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("service", &self.service)
            .field("access_ttl", &self.access_ttl)
            .finish()
    }
}

pub const MIN_SECRET_BYTES: usize = 32;

impl JwtSettings {
    /// `JWT_SECRET`/`JWT_SECRET_KEY` select HS256 unless `JWT_ALGORITHM` says otherwise;
    /// without a secret tokens are EdDSA-signed with the users service's key.
    pub fn from_settings(s: &Scoped<'_>) -> Result<Self, ConfigError> {
        let secret = s.lookup(&["JWT_SECRET", "JWT_SECRET_KEY"]);
        let algorithm = match s.lookup(&["JWT_ALGORITHM"]) {
            None => {
                if secret.is_some() {
                    JwtAlgorithm::Hs256
                } else {
                    JwtAlgorithm::EdDsa
                }
            }
            Some((key, value, origin)) => match value.trim().to_ascii_uppercase().as_str() {
                "EDDSA" | "ED25519" => JwtAlgorithm::EdDsa,
                "HS256" => JwtAlgorithm::Hs256,
                _ => {
                    return Err(ConfigError::invalid(
                        &key,
                        &value,
                        origin,
                        "supported algorithms are EdDSA (default) and HS256",
                    ));
                }
            },
        };
        let secret = match (algorithm, secret) {
            (JwtAlgorithm::Hs256, None) => {
                return Err(ConfigError::Missing {
                    key: "JWT_SECRET".into(),
                    reason: "JWT_ALGORITHM=HS256 signs with a shared secret".into(),
                });
            }
            (JwtAlgorithm::Hs256, Some((key, value, origin))) => {
                if value.len() < MIN_SECRET_BYTES {
                    return Err(ConfigError::invalid(
                        &key,
                        "<redacted>",
                        origin,
                        format!("an HS256 secret must be at least {MIN_SECRET_BYTES} bytes long"),
                    ));
                }
                Some(Arc::from(value.into_bytes()))
            }
            (JwtAlgorithm::EdDsa, _) => None,
        };
        let access_ttl =
            s.duration_or(&["JWT_EXPIRATION_MINUTES"], Duration::from_secs(60), Duration::from_secs(15 * 60))?;
        if access_ttl < Duration::from_secs(10) {
            return Err(s.invalid(&["JWT_EXPIRATION_MINUTES"], "tokens must live at least 10 seconds"));
        }
        Ok(JwtSettings {
            algorithm,
            secret,
            issuer: s.string(&["JWT_ISSUER"]).unwrap_or_else(|| "ordermesh".into()),
            audience: s.string(&["JWT_AUDIENCE"]).unwrap_or_else(|| "ordermesh".into()),
            service: s.scope(),
            access_ttl,
            leeway: s.duration_or(&["JWT_LEEWAY_SECONDS"], Duration::from_secs(1), Duration::from_secs(5))?,
        })
    }

    /// The audience of service tokens meant for `service`: `<JWT_AUDIENCE>:<service>`.
    pub fn service_audience(&self, service: &str) -> String {
        format!("{}:{service}", self.audience)
    }

    pub(super) fn validation(&self) -> Validation {
        let mut v = Validation::new(match self.algorithm {
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
            JwtAlgorithm::Hs256 => Algorithm::HS256,
        });
        v.set_issuer(&[&self.issuer]);
        match &self.service {
            Some(service) => v.set_audience(&[self.audience.clone(), self.service_audience(service)]),
            None => v.set_audience(&[&self.audience]),
        }
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = self.leeway.as_secs();
        v
    }
}
