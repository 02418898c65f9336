//! What the users service does, independent of HTTP: accounts, sign-in, sessions, tokens.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use api::{Grants, Permission};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kit::auth::{Claims, Principal, RevocationSet, Role, TokenVerifier, unix_now};
use kit::db::now_ms;
use kit::metrics::Metrics;
use kit::pagination::{PageRequest, Paged};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{Config, ServiceCredential};
use crate::domain::{DisplayName, Email, Password, Username};
use crate::error::{Result, UserFailure, UsersError};
use crate::keys::Signer;
use crate::passwords::PasswordHasher;
use crate::store::{NewUser, Store, User, UserChanges, UserRow};
use crate::throttle::LoginThrottle;

pub use api::users::TokenResponse;

pub struct Registration {
    pub name: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    pub password: String,
}

#[derive(Default)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
    pub role: Option<Role>,
}

pub struct UsersService {
    pub(crate) store: Store,
    pub(crate) hasher: PasswordHasher,
    pub(crate) signer: Signer,
    pub(crate) verifier: TokenVerifier,
    pub(crate) throttle: LoginThrottle,
    pub(crate) metrics: Metrics,
    pub(crate) config: Config,
}

/// What a demo platform starts with: the seed-000 document's users, and seed 004's `victor`
/// (its one example signs in as victor/1234). Demo passwords are set directly, not through
/// registration's rules, and demo data never exists in production mode unless asked for.
pub const DEMO_USERS: &[(&str, &str, &str, &str, Role)] = &[
    ("alice", "alice123", "alice@example.com", "Alice Admin", Role::Admin),
    ("bob", "bob123", "bob@example.com", "Bob", Role::User),
    ("charlie", "charlie123", "charlie@example.com", "Charlie", Role::User),
    ("victor", "1234", "victor@example.com", "Victor", Role::User),
];

impl UsersService {
    pub async fn start(config: Config, metrics: Metrics) -> Result<Arc<Self>> {
        let db = kit::db::Db::connect(&config.db).await?;
        db.migrate(&crate::store::MIGRATOR).await.map_err(|e| UsersError::Internal(format!("migrations: {e}")))?;
        let store = Store::new(db);
        let signer = Signer::load(&config.jwt, &config.keys)?;
        signer.spawn_reloader(config.key_reload);
        let revoked = RevocationSet::default();
        let verifier = TokenVerifier::new(&config.jwt, signer.key_source(), revoked.clone());
        revoked.spawn_poller(store.clone(), config.revocation_poll);
        let service = Arc::new(UsersService {
            hasher: PasswordHasher::new(config.hashing)?,
            throttle: LoginThrottle::new(config.throttle),
            store,
            signer,
            verifier,
            metrics,
            config,
        });
        if service.config.demo_data {
            service.seed_demo_users().await?;
        }
        service.spawn_housekeeping();
        Ok(service)
    }

    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates the demo users when the user table is empty (first start).
    async fn seed_demo_users(&self) -> Result<()> {
        if self.store.count_users().await? > 0 {
            return Ok(());
        }
        let hashes = futures_hash_all(&self.hasher, DEMO_USERS.iter().map(|u| u.1)).await?;
        for ((username, _, email, name, role), hash) in DEMO_USERS.iter().zip(hashes) {
            match self
                .store
                .insert_user(&NewUser { username, email: Some(email), name, password_hash: &hash, role: *role })
                .await
            {
                Ok(_) | Err(UsersError::Domain(UserFailure::Taken(_))) => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!("demo users created: alice/alice123 (admin), bob/bob123, charlie/charlie123, victor/1234");
        Ok(())
    }

    fn spawn_housekeeping(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                let Some(this) = this.upgrade() else { break };
                match this.store.purge_expired().await {
                    Ok(n) if n > 0 => tracing::debug!(purged = n, "expired tokens purged"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purging expired tokens failed"),
                }
            }
        });
    }

    pub async fn register(&self, r: Registration) -> Result<User> {
        let email = r.email.as_deref().map(Email::parse).transpose()?;
        let username = match (&r.username, &email) {
            (Some(u), _) => Username::parse(u)?,
            (None, Some(e)) => self.free_username_for(e).await?,
            (None, None) => return Err(UsersError::invalid("username", "or email is required")),
        };
        let password = Password::parse(&r.password, Some(username.as_str()))?;
        let name = match &r.name {
            Some(n) => DisplayName::parse(n)?,
            None => DisplayName::parse(username.as_str())?,
        };
        let hash = self.hasher.hash(&password).await?;
        let row = self
            .store
            .insert_user(&NewUser {
                username: username.as_str(),
                email: email.as_ref().map(Email::as_str),
                name: name.as_str(),
                password_hash: &hash,
                role: Role::User,
            })
            .await?;
        self.metrics.record(|| metrics::counter!("users_registered_total").increment(1));
        Ok(User::from(&row))
    }

    async fn free_username_for(&self, email: &Email) -> Result<Username> {
        for suffix in std::iter::once(None).chain((2..50).map(Some)) {
            let candidate = Username::derive_from(email, suffix);
            if !self.store.username_exists(candidate.as_str()).await? {
                return Ok(candidate);
            }
        }
        Err(UsersError::invalid("username", "could not be derived from the e-mail; please choose one"))
    }

    /// Signs in by e-mail or username. Unknown accounts cost the same hashing time as wrong
    /// passwords and get the same answer.
    pub async fn login(&self, identifier: &str, password: &str, address: IpAddr) -> Result<TokenResponse> {
        let identifier = identifier.trim();
        if identifier.is_empty() || identifier.len() > 254 || password.is_empty() || password.len() > 1024 {
            return Err(UsersError::Domain(UserFailure::BadCredentials));
        }
        if let Err(retry_after_secs) = self.throttle.check_address(address) {
            self.count_login("throttled");
            return Err(UsersError::Domain(UserFailure::Throttled { retry_after_secs }));
        }
        let row = if identifier.contains('@') {
            self.store.find_by_email(identifier).await?
        } else {
            self.store.find_by_username(identifier).await?
        };
        // Failures count against the account, whichever of its names was typed; a name of no
        // account counts under itself, so the two cases are slowed alike.
        let account = match &row {
            Some(row) => format!("id:{}", row.id),
            None => format!("name:{}", identifier.to_lowercase()),
        };
        let delay = self.throttle.account_delay(&account);
        if !delay.is_zero() {
            self.count_login("slowed");
            tokio::time::sleep(delay).await;
        }
        let ok = match &row {
            Some(row) => self.hasher.verify(password, &row.password_hash).await?,
            None => self.hasher.verify_decoy(password).await?,
        };
        match (ok, row) {
            (true, Some(row)) => {
                self.throttle.record_success(&account);
                self.count_login("success");
                self.start_session(&row).await
            }
            _ => {
                self.throttle.record_failure(&account, address);
                self.count_login("failure");
                Err(UsersError::Domain(UserFailure::BadCredentials))
            }
        }
    }

    fn count_login(&self, outcome: &'static str) {
        self.metrics.record(|| metrics::counter!("logins_total", "outcome" => outcome).increment(1));
    }

    async fn start_session(&self, row: &UserRow) -> Result<TokenResponse> {
        let family = uuid::Uuid::new_v4().to_string();
        let (refresh, refresh_hash) = new_refresh_token();
        let refresh_expires = now_ms() + self.config.refresh_ttl.as_millis() as i64;
        self.store.insert_refresh(&refresh_hash, &family, &row.id, refresh_expires).await?;
        self.tokens_for(row, &family, refresh)
    }

    fn tokens_for(&self, row: &UserRow, family: &str, refresh: String) -> Result<TokenResponse> {
        let ttl = self.config.jwt.access_ttl.as_secs();
        let access = self.sign_access(row, family, ttl)?;
        Ok(TokenResponse {
            access_token: access,
            token_type: "bearer".into(),
            expires_in: ttl,
            refresh_token: refresh,
            refresh_expires_in: self.config.refresh_ttl.as_secs(),
            user: User::from(row),
        })
    }

    fn sign_access(&self, row: &UserRow, family: &str, ttl: u64) -> Result<String> {
        let now = unix_now();
        let role = row.role();
        let claims = Claims {
            sub: row.id.clone(),
            username: Some(row.username.clone()),
            role: role.as_str().into(),
            perms: Permission::names_of_role(role),
            iss: self.config.jwt.issuer.clone(),
            aud: self.config.jwt.audience.clone(),
            exp: now + ttl as i64,
            iat: now,
            nbf: Some(now),
            jti: uuid::Uuid::new_v4().to_string(),
            sid: Some(family.to_string()),
        };
        self.signer.sign(&claims)
    }

    /// Exchanges a refresh token for new tokens, rotating it. Presenting a token that was
    /// already exchanged means it leaked: the whole session is revoked.
    pub async fn refresh(&self, token: &str) -> Result<TokenResponse> {
        if token.is_empty() || token.len() > 256 {
            return Err(UsersError::Domain(UserFailure::BadRefreshToken));
        }
        let hash = hash_refresh(token);
        let record = self.store.find_refresh(&hash).await?.ok_or(UsersError::Domain(UserFailure::BadRefreshToken))?;
        if record.revoked_at.is_some() || record.expires_at < now_ms() {
            return Err(UsersError::Domain(UserFailure::BadRefreshToken));
        }
        if record.used_at.is_some() {
            self.reuse_detected(&record.family_id).await?;
            return Err(UsersError::Domain(UserFailure::BadRefreshToken));
        }
        let row =
            self.store.find_by_id(&record.user_id).await?.ok_or(UsersError::Domain(UserFailure::BadRefreshToken))?;
        let (next, next_hash) = new_refresh_token();
        let expires = now_ms() + self.config.refresh_ttl.as_millis() as i64;
        let rotated = self.store.rotate_refresh(&hash, &next_hash, &record.family_id, &row.id, expires).await?;
        if !rotated {
            // Someone exchanged it between our read and our write: a concurrent replay.
            self.reuse_detected(&record.family_id).await?;
            return Err(UsersError::Domain(UserFailure::BadRefreshToken));
        }
        self.tokens_for(&row, &record.family_id, next)
    }

    async fn reuse_detected(&self, family: &str) -> Result<()> {
        tracing::warn!(session = family, "a rotated refresh token was presented again; revoking its session");
        self.metrics.record(|| metrics::counter!("refresh_token_reuse_total").increment(1));
        self.revoke_session(family).await
    }

    async fn revoke_session(&self, family: &str) -> Result<()> {
        let access_expiry = unix_now() + self.config.jwt.access_ttl.as_secs() as i64 + 60;
        self.store.revoke_family(family, access_expiry).await?;
        self.verifier.revocations().revoke(&kit::auth::session_key(family), access_expiry);
        Ok(())
    }

    /// Ends the caller's session: the access token, every other access token of the session
    /// and its refresh tokens stop working.
    pub async fn logout(&self, principal: &Principal, refresh_token: Option<&str>) -> Result<()> {
        self.store.revoke_token(&principal.jti, principal.exp).await?;
        self.verifier.revocations().revoke(&principal.jti, principal.exp);
        if let Some(family) = &principal.session_id {
            self.revoke_session(family).await?;
        }
        if let Some(token) = refresh_token
            && let Some(record) = self.store.find_refresh(&hash_refresh(token)).await?
            && Some(&record.user_id) == principal.user_id.map(|u| u.to_string()).as_ref()
        {
            self.revoke_session(&record.family_id).await?;
        }
        Ok(())
    }

    pub async fn get(&self, caller: &Principal, id_or_username: &str) -> Result<User> {
        let row = self.find(id_or_username).await?;
        self.ensure_self_or_admin(caller, &row)?;
        Ok(User::from(&row))
    }

    /// Finds by id, or by username when the text is not an id (seed 004 addresses users by
    /// name).
    async fn find(&self, id_or_username: &str) -> Result<UserRow> {
        let found = if uuid::Uuid::parse_str(id_or_username).is_ok() {
            self.store.find_by_id(id_or_username).await?
        } else {
            self.store.find_by_username(id_or_username).await?
        };
        found.ok_or_else(UserFailure::no_such_user)
    }

    /// Others' accounts are invisible to non-admins: 404, not 403, so ids cannot be probed.
    fn ensure_self_or_admin(&self, caller: &Principal, row: &UserRow) -> Result<()> {
        if caller.is_admin() || caller.user_id.map(|u| u.to_string()).as_deref() == Some(row.id.as_str()) {
            Ok(())
        } else {
            Err(UserFailure::no_such_user())
        }
    }

    pub async fn me(&self, caller: &Principal) -> Result<User> {
        let id = caller.user_id.ok_or_else(|| UsersError::Forbidden("services have no profile".into()))?;
        let row = self.store.find_by_id(&id.to_string()).await?.ok_or_else(UserFailure::no_such_user)?;
        Ok(User::from(&row))
    }

    pub async fn update(&self, caller: &Principal, id_or_username: &str, update: ProfileUpdate) -> Result<User> {
        let row = self.find(id_or_username).await?;
        self.ensure_self_or_admin(caller, &row)?;
        let is_self = caller.user_id.map(|u| u.to_string()).as_deref() == Some(row.id.as_str());
        if !caller.is_admin() && !caller.has(Permission::ProfileEdit) {
            return Err(UsersError::Forbidden("This needs the permission profile.edit.".into()));
        }
        let mut changes = UserChanges::default();
        if let Some(role) = update.role
            && role != row.role()
        {
            if !caller.is_admin() {
                return Err(UsersError::Forbidden("Only administrators change roles.".into()));
            }
            if role == Role::Service {
                return Err(UsersError::invalid("role", "must be admin or user"));
            }
            changes.role = Some(role);
        }
        if let Some(name) = &update.name {
            changes.name = Some(DisplayName::parse(name)?.as_str().to_string());
        }
        if let Some(username) = &update.username {
            let u = Username::parse(username)?;
            if u.as_str() != row.username {
                changes.username = Some(u.as_str().to_string());
            }
        }
        if let Some(email) = &update.email {
            let e = Email::parse(email)?;
            if Some(e.as_str()) != row.email.as_deref() {
                changes.email = Some(e.as_str().to_string());
            }
        }
        if let Some(password) = &update.password {
            // Administrators may reset someone else's password; changing your own always
            // needs the current one, so a stolen session cannot take the account over.
            if is_self {
                let current = update
                    .current_password
                    .as_deref()
                    .ok_or_else(|| UsersError::invalid("current_password", "is required to change the password"))?;
                if !self.hasher.verify(current, &row.password_hash).await? {
                    return Err(UsersError::invalid("current_password", "is wrong"));
                }
            }
            let username = changes.username.as_deref().unwrap_or(&row.username);
            let password = Password::parse(password, Some(username))?;
            changes.password_hash = Some(self.hasher.hash(&password).await?);
        }
        let revoke_sessions = changes.password_hash.is_some() || changes.role.is_some();
        // Changing your own password keeps the session you changed it from; a new role ends
        // every session, yours too, since the tokens you hold still carry the old role's rights.
        let keep = if is_self && changes.role.is_none() { caller.session_id.as_deref() } else { None };
        let updated = self.store.update_user(&row.id, changes).await?;
        if revoke_sessions {
            self.revoke_user_sessions(&row.id, keep).await?;
        }
        Ok(User::from(&updated))
    }

    /// Revokes a user's sessions, except `keep` (the caller's own, when they changed their
    /// own password and nothing else that their tokens carry).
    async fn revoke_user_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<()> {
        let access_expiry = unix_now() + self.config.jwt.access_ttl.as_secs() as i64 + 60;
        // The kept session stays open everywhere: the store leaves it out of the revocations
        // every gateway and service reads, not only out of this process's own list.
        for family in self.store.revoke_user_sessions(user_id, keep, access_expiry).await? {
            self.verifier.revocations().revoke(&kit::auth::session_key(&family), access_expiry);
        }
        Ok(())
    }

    pub async fn delete(&self, caller: &Principal, id_or_username: &str) -> Result<()> {
        let row = self.find(id_or_username).await?;
        self.ensure_self_or_admin(caller, &row)?;
        let is_self = caller.user_id.map(|u| u.to_string()).as_deref() == Some(row.id.as_str());
        if !is_self && !caller.has(Permission::UserDelete) {
            return Err(UsersError::Forbidden("This needs the permission user.delete.".into()));
        }
        self.revoke_user_sessions(&row.id, None).await?;
        self.store.delete_user(&row.id).await
    }

    pub async fn list(
        &self,
        caller: &Principal,
        page: PageRequest,
        q: Option<&str>,
        role: Option<Role>,
    ) -> Result<Paged<User>> {
        if !caller.is_admin() {
            return Err(UsersError::Forbidden("Only administrators list users.".into()));
        }
        let (rows, total) = self.store.list(page, q, role).await?;
        Ok(Paged::new(rows.iter().map(User::from).collect(), page, total))
    }

    /// Checks a user's password without starting a session (seed 004's `/users/verify`).
    pub async fn check_credentials(&self, identifier: &str, password: &str, address: IpAddr) -> Result<User> {
        let tokens = self.login(identifier, password, address).await?;
        Ok(tokens.user)
    }

    /// Client-credentials grant for services: a token for one service, `audience` (the catalog
    /// when not said, as seed 002's token is used there).
    pub fn service_token(&self, client_id: &str, secret: &str, audience: Option<&str>) -> Result<(String, u64)> {
        const AUDIENCES: &[&str] = &["users", "catalog", "orders"];
        let audience = audience.unwrap_or("catalog");
        if !AUDIENCES.contains(&audience) {
            return Err(UsersError::invalid(
                "audience",
                "must name the service the token is for: users, catalog or orders",
            ));
        }
        // Seed 002 calls the orders service `order-service`.
        let client_id = if client_id == "order-service" { "orders" } else { client_id };
        let known: Option<&ServiceCredential> =
            self.config.service_clients.iter().find(|c| c.matches(client_id, secret));
        let Some(client) = known else {
            return Err(UsersError::Domain(UserFailure::BadCredentials));
        };
        let now = unix_now();
        let ttl = self.config.service_token_ttl.as_secs();
        let claims = Claims {
            sub: format!("service:{}", client.client_id),
            username: None,
            role: Role::Service.as_str().into(),
            perms: Permission::names_of_role(Role::Service),
            iss: self.config.jwt.issuer.clone(),
            aud: self.config.jwt.service_audience(audience),
            exp: now + ttl as i64,
            iat: now,
            nbf: Some(now),
            jti: uuid::Uuid::new_v4().to_string(),
            sid: None,
        };
        Ok((self.signer.sign(&claims)?, ttl))
    }

    pub fn jwks(&self) -> kit::auth::JwkSet {
        self.signer.jwks()
    }
}

async fn futures_hash_all<'a>(
    hasher: &PasswordHasher,
    passwords: impl Iterator<Item = &'a str>,
) -> Result<Vec<String>> {
    let jobs: Vec<_> = passwords
        .map(|p| {
            let hasher = hasher.clone();
            let p = Password::unchecked(p);
            tokio::spawn(async move { hasher.hash_at_startup(&p).await })
        })
        .collect();
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        out.push(job.await.map_err(|e| UsersError::Internal(e.to_string()))??);
    }
    Ok(out)
}

fn new_refresh_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh(&token);
    (token, hash)
}

/// Refresh tokens are 256 random bits, so a fast hash is enough to make a stolen table useless.
fn hash_refresh(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl kit::auth::RevocationSource for Store {
    fn since(
        &self,
        after_ms: i64,
    ) -> futures::future::BoxFuture<'_, std::result::Result<Vec<kit::auth::Revocation>, String>> {
        Box::pin(async move { self.revocations_since(after_ms).await.map_err(|e| e.to_string()) })
    }
}
