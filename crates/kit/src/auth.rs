//! Tokens as every service sees them: roles and permissions, the JWT claims, the verifier each
//! service uses to check a bearer token locally (keys from the users service's JWKS, cached and
//! refreshed on an unknown `kid`, or a shared HS256 secret), the revocation set that makes a
//! logout stick everywhere, and the service-token source for calls between services.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use dashmap::DashMap;
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::client::{ServiceClient, UpstreamError};
use crate::config::{ConfigError, Scoped};
use crate::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "service" => Some(Role::Service),
            _ => None,
        }
    }

    /// What a role may do. Services get only what service-to-service calls need.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::User => &[OrderCreate, OrderView, ProfileEdit],
            Role::Admin => Permission::ALL,
            Role::Service => &[StockReserve],
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    OrderCreate,
    OrderView,
    OrderCancel,
    OrderManage,
    ProfileEdit,
    UserCreate,
    UserDelete,
    UserManage,
    ProductManage,
    StockReserve,
    SystemAdmin,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::OrderCreate,
        Permission::OrderView,
        Permission::OrderCancel,
        Permission::OrderManage,
        Permission::ProfileEdit,
        Permission::UserCreate,
        Permission::UserDelete,
        Permission::UserManage,
        Permission::ProductManage,
        Permission::StockReserve,
        Permission::SystemAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::OrderCreate => "order.create",
            Permission::OrderView => "order.view",
            Permission::OrderCancel => "order.cancel",
            Permission::OrderManage => "order.manage",
            Permission::ProfileEdit => "profile.edit",
            Permission::UserCreate => "user.create",
            Permission::UserDelete => "user.delete",
            Permission::UserManage => "user.manage",
            Permission::ProductManage => "product.manage",
            Permission::StockReserve => "stock.reserve",
            Permission::SystemAdmin => "system.admin",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The claims of every token the users service signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub role: String,
    #[serde(default)]
    pub perms: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// The login session (refresh-token family) the token belongs to; revoking the session
    /// revokes every access token issued in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Who is calling, once their token checked out.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `sub`: a user's id, or `service:<name>` for a service.
    pub subject: String,
    pub user_id: Option<Uuid>,
    pub username: Option<String>,
    pub role: Role,
    perms: u32,
    pub jti: String,
    pub session_id: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

impl Principal {
    pub fn from_claims(claims: &Claims) -> Result<Self, AuthError> {
        let role = Role::parse(&claims.role).ok_or(AuthError::Invalid("unknown role"))?;
        let user_id = match role {
            Role::Service => None,
            _ => Some(Uuid::parse_str(&claims.sub).map_err(|_| AuthError::Invalid("malformed subject"))?),
        };
        // A token can only narrow its role's permissions, never widen them: a tampered `perms`
        // claim would fail the signature anyway, but a key leak should not mint super-users.
        let allowed: u32 = role.permissions().iter().map(|p| p.bit()).fold(0, |a, b| a | b);
        let claimed: u32 =
            claims.perms.iter().filter_map(|p| Permission::parse(p)).map(|p| p.bit()).fold(0, |a, b| a | b);
        Ok(Principal {
            subject: claims.sub.clone(),
            user_id,
            username: claims.username.clone(),
            role,
            perms: allowed & claimed,
            jti: claims.jti.clone(),
            session_id: claims.sid.clone(),
            exp: claims.exp,
        })
    }

    pub fn has(&self, permission: Permission) -> bool {
        self.perms & permission.bit() != 0
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn require(&self, permission: Permission) -> Result<(), Problem> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!("This needs the permission {}.", permission.as_str()))
                .with("required_permission", permission.as_str()))
        }
    }

    pub fn permissions(&self) -> Vec<&'static str> {
        Permission::ALL.iter().filter(|p| self.has(**p)).map(|p| p.as_str()).collect()
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token was sent")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token's signature or format is invalid")]
    BadSignature,
    #[error("the token was issued by someone else or for someone else")]
    WrongIssuerOrAudience,
    #[error("the token is signed with a key this service does not know")]
    UnknownKey,
    #[error("the token is invalid: {0}")]
    Invalid(&'static str),
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Problem {
        Problem::unauthorized(format!("{}.", capitalise(&e.to_string())))
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

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

    fn validation(&self) -> Validation {
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

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Revoked access-token ids (`jti`) with their expiry; entries leave when the token would have
/// expired anyway.
#[derive(Clone, Default)]
pub struct RevocationSet {
    revoked: Arc<DashMap<String, i64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Revocation {
    pub jti: String,
    /// When the revoked token expires, Unix seconds.
    pub exp: i64,
    /// When it was revoked, Unix milliseconds.
    pub revoked_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevocationFeed {
    pub revocations: Vec<Revocation>,
}

impl RevocationSet {
    pub fn revoke(&self, jti: &str, exp: i64) {
        if exp >= unix_now() {
            self.revoked.insert(jti.to_string(), exp);
        }
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    /// Whether the token itself or its whole session was revoked. Sessions are kept in the
    /// same set under `sid:<id>`.
    pub fn covers(&self, principal: &Principal) -> bool {
        if self.revoked.is_empty() {
            return false;
        }
        self.is_revoked(&principal.jti)
            || principal.session_id.as_deref().is_some_and(|sid| self.revoked.contains_key(&session_key(sid)))
    }

    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    pub fn purge_expired(&self) {
        let now = unix_now();
        self.revoked.retain(|_, exp| *exp >= now);
    }

    /// Keeps the set in step with `source`, polling every `interval`. Each poll asks for what
    /// was revoked since a little before the newest revocation seen, so revocations committed
    /// out of order are not missed; duplicates are harmless.
    pub fn spawn_poller<R: RevocationSource>(&self, source: R, interval: Duration) -> tokio::task::JoinHandle<()> {
        let set = self.clone();
        tokio::spawn(async move {
            let mut newest_ms = 0i64;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut polls = 0u64;
            // Said once when polling starts failing and once when it works again: a service
            // that cannot read the feed (wrong credentials, say) must not fail silently.
            let mut failing = false;
            loop {
                tick.tick().await;
                let since = (newest_ms - 10_000).max(0);
                match source.since(since).await {
                    Ok(items) => {
                        for r in items {
                            newest_ms = newest_ms.max(r.revoked_at);
                            set.revoke(&r.jti, r.exp);
                        }
                        if std::mem::take(&mut failing) {
                            tracing::info!("the revocation feed is readable again");
                        }
                    }
                    // The first polls may come before the users service listens.
                    Err(e) if polls < 5 => tracing::debug!(error = %e, "revocation poll failed; will retry"),
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %e, "cannot read the revocation feed; logouts elsewhere are not seen here until it works");
                        }
                    }
                }
                polls += 1;
                if polls.is_multiple_of(60) {
                    set.purge_expired();
                }
            }
        })
    }
}

/// The revocation-set key under which a whole session is revoked.
pub fn session_key(session_id: &str) -> String {
    format!("sid:{session_id}")
}

/// Somewhere to learn about revocations from.
pub trait RevocationSource: Send + Sync + 'static {
    fn since(&self, after_ms: i64) -> BoxFuture<'_, Result<Vec<Revocation>, String>>;
}

/// The users service's `GET /auth/revocations?since=<ms>` feed, read with a service token
/// for the users service.
pub struct HttpRevocations {
    pub users: ServiceClient,
    pub tokens: Arc<ServiceTokenSource>,
}

impl RevocationSource for HttpRevocations {
    fn since(&self, after_ms: i64) -> BoxFuture<'_, Result<Vec<Revocation>, String>> {
        Box::pin(async move {
            let token = self.tokens.token_for("users").await.map_err(|e| e.to_string())?;
            let path = format!("/auth/revocations?since={after_ms}");
            match self.users.get_json::<RevocationFeed>(&path, Some(&token)).await {
                Ok(feed) => Ok(feed.revocations),
                Err(e) => {
                    if e.status() == Some(axum::http::StatusCode::UNAUTHORIZED) {
                        self.tokens.invalidate().await;
                    }
                    Err(e.to_string())
                }
            }
        })
    }
}

/// Extracts the token from `Authorization: Bearer <token>`.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::Invalid("unreadable Authorization header"))?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid("expected `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Invalid("expected `Bearer <token>`"));
    }
    Ok(Some(token.trim()))
}

/// A handler argument that requires a valid bearer token (else 401 problem+json).
#[derive(Debug, Clone)]
pub struct Auth(pub Arc<Principal>);

impl<S> FromRequestParts<S> for Auth
where
    TokenVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Arc<Principal>>() {
            return Ok(Auth(principal.clone()));
        }
        let token = bearer_token(&parts.headers)?.ok_or(AuthError::Missing)?;
        let verifier = TokenVerifier::from_ref(state);
        let principal = verifier.verify(token).await?;
        tracing::Span::current().record("user_id", principal.subject.as_str());
        parts.extensions.insert(principal.clone());
        Ok(Auth(principal))
    }
}

/// Like [`Auth`] but lets anonymous callers through; a token that is present must be valid.
#[derive(Debug, Clone)]
pub struct MaybeAuth(pub Option<Arc<Principal>>);

impl<S> FromRequestParts<S> for MaybeAuth
where
    TokenVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if bearer_token(&parts.headers)?.is_none() {
            return Ok(MaybeAuth(None));
        }
        Auth::from_request_parts(parts, state).await.map(|Auth(p)| MaybeAuth(Some(p)))
    }
}

/// A service's own tokens for calling other services, one per service called (each token is
/// for one audience), fetched from the users service with the service's client credentials and
/// renewed before they expire.
pub struct ServiceTokenSource {
    users: ServiceClient,
    client_id: String,
    client_secret: String,
    cached: tokio::sync::Mutex<HashMap<String, (String, Instant)>>,
}

/// OAuth 2 client-credentials grant; the only grant `/auth/token` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClientCredentials {
    #[serde(default)]
    pub grant_type: Option<GrantType>,
    pub client_id: String,
    pub client_secret: String,
    /// The service the token is for (`users`, `catalog` or `orders`); the token works there
    /// only. Without it, the catalog (what seed 002's token is used at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceToken {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

impl ServiceTokenSource {
    pub fn new(users: ServiceClient, identity: ClientIdentity) -> Self {
        ServiceTokenSource {
            users,
            client_id: identity.client_id,
            client_secret: identity.secret,
            cached: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A token for calling `service` (`users`, `catalog`, `orders`).
    pub async fn token_for(&self, service: &str) -> Result<String, UpstreamError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.get(service)
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let issued: ServiceToken = self
            .users
            .post_json(
                "/auth/token",
                None,
                &ClientCredentials {
                    grant_type: Some(GrantType::ClientCredentials),
                    client_id: self.client_id.clone(),
                    client_secret: self.client_secret.clone(),
                    audience: Some(service.to_string()),
                },
            )
            .await?;
        // Renew at 80% of the lifetime so a token never expires mid-call.
        let renew_at = Instant::now() + Duration::from_secs(issued.expires_in.saturating_mul(4) / 5);
        cached.insert(service.to_string(), (issued.access_token.clone(), renew_at));
        Ok(issued.access_token)
    }

    /// Forgets the cached tokens (after a 401, e.g. when signing keys rotated).
    pub async fn invalidate(&self) {
        self.cached.lock().await.clear();
    }
}

/// Who a service is when it asks the users service for service tokens: its name, and the
/// secret the users service's `SERVICE_CLIENTS` lists for it.
#[derive(Clone)]
pub struct ClientIdentity {
    pub client_id: String,
    pub secret: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientIdentity({}, <redacted>)", self.client_id)
    }
}

impl ClientIdentity {
    /// `<SERVICE>_CLIENT_ID` (default: the service's name) and `<SERVICE>_CLIENT_SECRET` (or the
    /// plain keys). Outside production a missing secret is the well-known `dev-<service>-secret`;
    /// production refuses both that and a missing one.
    pub fn from_settings(s: &Scoped<'_>, service: &str, production: bool) -> Result<Self, ConfigError> {
        let secret = match s.lookup(&["CLIENT_SECRET"]) {
            Some((key, value, origin)) => {
                let value = value.trim().to_string();
                if production && value.starts_with("dev-") {
                    return Err(ConfigError::invalid(
                        &key,
                        "<redacted>",
                        origin,
                        "development secrets are not allowed in production mode",
                    ));
                }
                value
            }
            None if production => {
                return Err(ConfigError::Missing {
                    key: format!("{}_CLIENT_SECRET", service.to_ascii_uppercase()),
                    reason: format!(
                        "the {service} service proves itself with it to obtain service tokens (the users service's SERVICE_CLIENTS lists it)"
                    ),
                });
            }
            None => format!("dev-{service}-secret"),
        };
        Ok(ClientIdentity { client_id: s.string(&["CLIENT_ID"]).unwrap_or_else(|| service.to_string()), secret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: &str, perms: &[&str]) -> Claims {
        Claims {
            sub: Uuid::new_v4().to_string(),
            username: Some("bob".into()),
            role: role.into(),
            perms: perms.iter().map(|s| s.to_string()).collect(),
            iss: "ordermesh".into(),
            aud: "ordermesh".into(),
            exp: unix_now() + 60,
            iat: unix_now(),
            nbf: None,
            jti: Uuid::new_v4().to_string(),
            sid: Some("s1".into()),
        }
    }

    #[test]
    fn a_token_cannot_claim_more_than_its_role_allows() {
        let p = Principal::from_claims(&claims("user", &["order.create", "order.cancel", "system.admin"])).unwrap();
        assert!(p.has(Permission::OrderCreate));
        assert!(!p.has(Permission::OrderCancel));
        assert!(!p.has(Permission::SystemAdmin));
    }

    #[test]
    fn revoking_a_session_revokes_its_tokens() {
        let set = RevocationSet::default();
        let p = Principal::from_claims(&claims("user", &[])).unwrap();
        assert!(!set.covers(&p));
        set.revoke(&session_key("s1"), unix_now() + 60);
        assert!(set.covers(&p));
    }

    #[test]
    fn unknown_roles_are_refused() {
        assert!(Principal::from_claims(&claims("root", &[])).is_err());
    }

    #[test]
    fn revocations_expire() {
        let set = RevocationSet::default();
        set.revoke("a", unix_now() + 10);
        set.revoke("b", unix_now() - 10);
        assert!(set.is_revoked("a"));
        assert!(!set.is_revoked("b"));
    }

    #[test]
    fn short_hs256_secrets_are_refused() {
        let settings = crate::config::Settings::from_pairs([("JWT_SECRET", "your-secret-key")]);
        let err = JwtSettings::from_settings(&settings.global()).unwrap_err().to_string();
        assert!(err.contains("JWT_SECRET"), "{err}");
        assert!(!err.contains("your-secret-key"), "secret leaked into: {err}");
    }

    #[tokio::test]
    async fn hs256_round_trip_and_wrong_audience() {
        let secret = "0123456789abcdef0123456789abcdef";
        let settings = crate::config::Settings::from_pairs([("JWT_SECRET", secret)]);
        let jwt = JwtSettings::from_settings(&settings.global()).unwrap();
        let verifier =
            TokenVerifier::new(&jwt, KeySource::Secret(jwt.secret.clone().unwrap()), RevocationSet::default());
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        let header = jsonwebtoken::Header::new(Algorithm::HS256);
        let good = jsonwebtoken::encode(&header, &claims("user", &["order.create"]), &key).unwrap();
        assert!(verifier.verify(&good).await.is_ok());
        let mut other = claims("user", &[]);
        other.aud = "someone-else".into();
        let bad = jsonwebtoken::encode(&header, &other, &key).unwrap();
        assert_eq!(verifier.verify(&bad).await.unwrap_err(), AuthError::WrongIssuerOrAudience);
        let mut expired = claims("user", &[]);
        expired.exp = unix_now() - 3600;
        let old = jsonwebtoken::encode(&header, &expired, &key).unwrap();
        assert_eq!(verifier.verify(&old).await.unwrap_err(), AuthError::Expired);
    }

    /// Service tokens are for one service each; user tokens are for the platform.
    #[tokio::test]
    async fn a_service_token_works_only_at_the_service_it_was_minted_for() {
        let secret = "0123456789abcdef0123456789abcdef";
        let settings = crate::config::Settings::from_pairs([("JWT_SECRET", secret)]);
        let verifier_at = |service: &str| {
            let jwt = JwtSettings::from_settings(&settings.scoped(service)).unwrap();
            TokenVerifier::new(&jwt, KeySource::Secret(jwt.secret.clone().unwrap()), RevocationSet::default())
        };
        let (catalog, users) = (verifier_at("catalog"), verifier_at("users"));
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        let sign = |role: &str, aud: &str| {
            let mut c = claims(role, &[]);
            c.sub = if role == "service" { "service:orders".into() } else { c.sub };
            c.aud = aud.into();
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &c, &key).unwrap()
        };
        let for_catalog = sign("service", "ordermesh:catalog");
        assert!(catalog.verify(&for_catalog).await.is_ok());
        assert_eq!(users.verify(&for_catalog).await.unwrap_err(), AuthError::WrongIssuerOrAudience);
        // A service token for the whole platform, as every token was before audiences.
        let for_everyone = sign("service", "ordermesh");
        assert_eq!(catalog.verify(&for_everyone).await.unwrap_err(), AuthError::WrongIssuerOrAudience);
        // A user's token is for the platform, never dressed as one service's.
        assert!(catalog.verify(&sign("user", "ordermesh")).await.is_ok());
        assert_eq!(
            catalog.verify(&sign("user", "ordermesh:catalog")).await.unwrap_err(),
            AuthError::WrongIssuerOrAudience
        );
    }

    /// Issue 17, defect 2: a bad value was always blamed on the environment and the plain key,
    /// even when it came from the TOML file or a scoped `--set`.
    #[test]
    fn a_bad_value_is_blamed_on_the_key_and_the_source_it_came_from() {
        let dir = std::env::temp_dir().join(format!("kit-config-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ordermesh.toml");
        std::fs::write(&file, "jwt_expiration_minutes = \"5s\"\n").unwrap();
        let from_file = crate::config::Settings::load(Some(&file), &[]).unwrap();
        let err = JwtSettings::from_settings(&from_file.scoped("users")).unwrap_err().to_string();
        assert!(err.contains("JWT_EXPIRATION_MINUTES") && err.contains("config file"), "{err}");
        let set = [("USERS_JWT_EXPIRATION_MINUTES".to_string(), "5s".to_string())];
        let from_command_line = crate::config::Settings::load(None, &set).unwrap();
        let err = JwtSettings::from_settings(&from_command_line.scoped("users")).unwrap_err().to_string();
        assert!(err.contains("USERS_JWT_EXPIRATION_MINUTES") && err.contains("command line"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}
