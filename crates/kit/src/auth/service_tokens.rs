//! A service's own tokens for calling another service (client-credentials grant), and the
//! credentials it proves itself with.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::client::JsonCalls;
use crate::client::{ServiceClient, UpstreamError};
use crate::config::{ConfigError, Scoped};

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
