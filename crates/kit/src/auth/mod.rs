//! Tokens as every service sees them: roles, the JWT claims and who they name,
//! and the pieces around them, one module each: how tokens are signed and checked
//! (`settings`), the verifier each service uses to check a bearer token locally (`verifier`:
//! keys from the users service's JWKS, cached and refreshed on an unknown `kid`, or a shared
//! HS256 secret), the revocation set that makes a logout stick everywhere (`revocation`), and
//! the service-token source for calls between services (`service_tokens`).

mod revocation;
mod service_tokens;
mod settings;
mod verifier;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::Problem;

pub use revocation::{HttpRevocations, Revocation, RevocationFeed, RevocationSet, RevocationSource, session_key};
pub use service_tokens::{ClientCredentials, ClientIdentity, GrantType, ServiceToken, ServiceTokenSource};
pub use settings::{JwtAlgorithm, JwtSettings, MIN_SECRET_BYTES};
pub use verifier::{Jwk, JwkSet, KeySource, TokenVerifier};

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
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// The permission names the token claims; what they allow is the API's business
    /// (`api::access`), which also holds them to what the role allows.
    claimed: Box<[Box<str>]>,
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
        Ok(Principal {
            subject: claims.sub.clone(),
            user_id,
            username: claims.username.clone(),
            role,
            claimed: claims.perms.iter().map(|p| p.as_str().into()).collect(),
            jti: claims.jti.clone(),
            session_id: claims.sid.clone(),
            exp: claims.exp,
        })
    }

    /// Whether the token claims the permission of this name (not whether its role allows it).
    pub fn claims_permission(&self, name: &str) -> bool {
        self.claimed.iter().any(|p| &**p == name)
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
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

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;

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

    /// A verifier of HS256 tokens signed with `secret`, and the key that signs them.
    fn hs256(secret: &str) -> (TokenVerifier, jsonwebtoken::EncodingKey) {
        let settings = crate::config::Settings::from_pairs([("JWT_SECRET", secret)]);
        let jwt = JwtSettings::from_settings(&settings.global()).unwrap();
        let verifier =
            TokenVerifier::new(&jwt, KeySource::Secret(jwt.secret.clone().unwrap()), RevocationSet::default());
        (verifier, jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()))
    }

    #[tokio::test]
    async fn hs256_round_trip_and_wrong_audience() {
        let (verifier, key) = hs256("0123456789abcdef0123456789abcdef");
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

    /// A principal verified once stays valid until it expires or is revoked, checked without
    /// its token.
    #[tokio::test]
    async fn a_verified_principal_is_still_valid_until_revoked_or_expired() {
        let (verifier, key) = hs256("0123456789abcdef0123456789abcdef");
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims("user", &[]), &key);
        let principal = verifier.verify(&token.unwrap()).await.unwrap();
        assert_eq!(verifier.still_valid(&principal), Ok(()));
        let mut lapsed = (*principal).clone();
        lapsed.exp = unix_now() - 3600;
        assert_eq!(verifier.still_valid(&lapsed), Err(AuthError::Expired));
        verifier.revocations().revoke(&principal.jti, principal.exp);
        assert_eq!(verifier.still_valid(&principal), Err(AuthError::Revoked));
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
