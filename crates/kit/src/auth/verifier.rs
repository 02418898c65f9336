//! Checking a bearer token locally: the keys (a shared secret, the users service's own key set,
//! or its JWKS fetched and refreshed on an unknown `kid`), the claims, the audience, revocation,
//! and a cache of tokens already checked.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use jsonwebtoken::{DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AuthError, Claims, JwtSettings, Principal, RevocationSet, Role, unix_now};
use crate::client::JsonCalls;
use crate::client::{ServiceClient, UpstreamError};

/// An Ed25519 public key as published in a JWKS.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    pub kid: String,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(rename = "use", default)]
    pub use_: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    fn decoding_keys(&self) -> HashMap<String, DecodingKey> {
        self.keys
            .iter()
            .filter(|k| k.kty == "OKP" && k.crv.as_deref() == Some("Ed25519"))
            .filter_map(|k| {
                let x = k.x.as_deref()?;
                DecodingKey::from_ed_components(x).ok().map(|d| (k.kid.clone(), d))
            })
            .collect()
    }
}

/// Where a verifier gets its keys.
pub enum KeySource {
    /// HS256 with the shared secret.
    Secret(Arc<[u8]>),
    /// The users service's own key table, for the users service itself.
    Local(Arc<RwLock<JwkSet>>),
    /// `GET /.well-known/jwks.json` on the users service, cached and refreshed on an unknown kid.
    Jwks(ServiceClient),
}

#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    validation: Validation,
    /// The audience user tokens must carry.
    platform_audience: String,
    /// The only audience a service token may carry here (none: no service token is accepted).
    service_audience: Option<String>,
    keys: Keys,
    cache: DashMap<Box<str>, Arc<Principal>>,
    cache_capacity: usize,
    revoked: RevocationSet,
}

enum Keys {
    Secret(DecodingKey),
    Local(Arc<RwLock<JwkSet>>),
    Jwks(JwksCache),
}

struct JwksCache {
    client: ServiceClient,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the last fetch began.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
}

impl JwksCache {
    fn get(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().expect("jwks lock").get(kid).cloned()
    }

    /// Fetches the key set again because a token names `kid`, which we do not know. At most
    /// one fetch starts per `min_interval`, so tokens with invented kids cannot make us hammer
    /// the users service; a caller that comes too soon waits for the next fetch instead of
    /// failing, because a key that appeared by rotation must verify its very first tokens.
    /// A fetch that began after the caller asked answers for it too.
    async fn refresh_for(&self, kid: &str) -> Result<(), UpstreamError> {
        let asked = Instant::now();
        loop {
            let mut last = self.last_fetch.lock().await;
            if self.get(kid).is_some() || last.is_some_and(|began| began >= asked) {
                return Ok(());
            }
            if let Some(began) = *last {
                let wait = self.min_interval.saturating_sub(began.elapsed());
                if !wait.is_zero() {
                    drop(last);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            *last = Some(Instant::now());
            let set: JwkSet = self.client.get_json("/.well-known/jwks.json", None).await?;
            *self.keys.write().expect("jwks lock") = set.decoding_keys();
            return Ok(());
        }
    }
}

impl TokenVerifier {
    pub fn new(settings: &JwtSettings, source: KeySource, revoked: RevocationSet) -> Self {
        let keys = match source {
            KeySource::Secret(secret) => Keys::Secret(DecodingKey::from_secret(&secret)),
            KeySource::Local(set) => Keys::Local(set),
            KeySource::Jwks(client) => Keys::Jwks(JwksCache {
                client,
                keys: RwLock::new(HashMap::new()),
                last_fetch: tokio::sync::Mutex::new(None),
                // One fetch a second is nothing for the users service, and a token from a
                // freshly rotated key waits at most that long.
                min_interval: Duration::from_secs(1),
            }),
        };
        TokenVerifier {
            inner: Arc::new(VerifierInner {
                validation: settings.validation(),
                platform_audience: settings.audience.clone(),
                service_audience: settings.service.as_deref().map(|s| settings.service_audience(s)),
                keys,
                cache: DashMap::new(),
                cache_capacity: 50_000,
                revoked,
            }),
        }
    }

    /// The verifier a service other than users builds from its settings: the shared secret when
    /// HS256 is configured, else the users service's JWKS.
    pub fn for_service(settings: &JwtSettings, users: ServiceClient, revoked: RevocationSet) -> Self {
        let source = match &settings.secret {
            Some(secret) => KeySource::Secret(secret.clone()),
            None => KeySource::Jwks(users),
        };
        TokenVerifier::new(settings, source, revoked)
    }

    pub fn revocations(&self) -> &RevocationSet {
        &self.inner.revoked
    }

    /// Whether a principal [`verify`](Self::verify) gave earlier still holds: not expired (with
    /// the same leeway) and not revoked since. What a holder of one checks on each use instead
    /// of verifying its token again, which would look the whole token up once more.
    pub fn still_valid(&self, principal: &Principal) -> Result<(), AuthError> {
        if principal.exp + (self.inner.validation.leeway as i64) < unix_now() {
            return Err(AuthError::Expired);
        }
        if self.inner.revoked.covers(principal) {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }

    /// Checks a bearer token: signature, algorithm, `exp`/`nbf`/`iss`/`aud`, revocation.
    /// Verified tokens are remembered until they expire, so a client's repeated requests cost
    /// a map lookup instead of a signature check.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        if token.is_empty() || token.len() > 4096 {
            return Err(AuthError::Invalid("wrong length"));
        }
        let now = unix_now();
        if let Some(hit) = self.inner.cache.get(token) {
            let principal = hit.value().clone();
            drop(hit);
            if principal.exp + self.inner.validation.leeway as i64 >= now {
                if self.inner.revoked.covers(&principal) {
                    return Err(AuthError::Revoked);
                }
                return Ok(principal);
            }
            self.inner.cache.remove(token);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::BadSignature)?;
        if !self.inner.validation.algorithms.contains(&header.alg) {
            return Err(AuthError::BadSignature);
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.inner.validation).map_err(map_jwt_error)?;
        // Both audiences passed the check above; which one a token may carry depends on who
        // it speaks for: users for the platform, a service only for this service.
        let fits = if data.claims.role == Role::Service.as_str() {
            self.inner.service_audience.as_deref() == Some(data.claims.aud.as_str())
        } else {
            data.claims.aud == self.inner.platform_audience
        };
        if !fits {
            return Err(AuthError::WrongIssuerOrAudience);
        }
        let principal = Arc::new(Principal::from_claims(&data.claims)?);
        if self.inner.revoked.covers(&principal) {
            return Err(AuthError::Revoked);
        }
        if self.inner.cache.len() >= self.inner.cache_capacity {
            // Rare; dropping everything is simpler and safer than a partial eviction policy.
            self.inner.cache.clear();
        }
        self.inner.cache.insert(token.into(), principal.clone());
        Ok(principal)
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        match &self.inner.keys {
            Keys::Secret(key) => Ok(key.clone()),
            Keys::Local(set) => {
                let kid = kid.ok_or(AuthError::UnknownKey)?;
                let keys = set.read().expect("key set lock").decoding_keys();
                keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
            }
            Keys::Jwks(cache) => {
                let kid = kid.ok_or(AuthError::UnknownKey)?;
                if let Some(key) = cache.get(kid) {
                    return Ok(key);
                }
                if let Err(e) = cache.refresh_for(kid).await {
                    tracing::warn!(error = %e, "could not refresh the users service's JWKS");
                }
                cache.get(kid).ok_or(AuthError::UnknownKey)
            }
        }
    }

    /// Fetches the JWKS now (used at start so the first request does not wait for it).
    pub async fn warm_up(&self) {
        if let Keys::Jwks(cache) = &self.inner.keys
            && let Err(e) = cache.refresh_for("").await
        {
            tracing::debug!(error = %e, "JWKS not available yet; will fetch on first use");
        }
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => AuthError::WrongIssuerOrAudience,
        ErrorKind::MissingRequiredClaim(_) => AuthError::Invalid("a required claim is missing"),
        _ => AuthError::BadSignature,
    }
}
