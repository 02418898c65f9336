//! The users service's SQL, beside the domain it serves.

use kit::auth::{Revocation, Role};
use kit::db::{Backend, Db, escape_like, is_unique_violation, now_ms};
use kit::pagination::PageRequest;
use sqlx::Row;

use crate::error::{Result, UserFailure, UsersError};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub name: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UserRow {
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::User)
    }
}

pub use api::users::User;

impl From<&UserRow> for User {
    fn from(r: &UserRow) -> Self {
        User {
            id: r.id.clone(),
            username: r.username.clone(),
            email: r.email.clone(),
            name: r.name.clone(),
            role: r.role(),
            created_at: kit::db::rfc3339(r.created_at),
            updated_at: kit::db::rfc3339(r.updated_at),
        }
    }
}

const USER_COLUMNS: &str = "id, username, email, name, password_hash, role, created_at, updated_at";

#[derive(Clone)]
pub struct Store {
    db: Db,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Default)]
pub struct UserChanges {
    pub username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub role: Option<Role>,
}

pub struct RefreshRecord {
    pub family_id: String,
    pub user_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn insert_user(&self, new: &NewUser<'_>) -> Result<UserRow> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let result = sqlx::query(
            "INSERT INTO users (id, username, email, name, password_hash, role, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&id)
        .bind(new.username)
        .bind(new.email)
        .bind(new.name)
        .bind(new.password_hash)
        .bind(new.role.as_str())
        .bind(now)
        .execute(self.db.write())
        .await;
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(self.which_is_taken(new.username, new.email).await);
            }
            Err(e) => return Err(e.into()),
        }
        self.find_by_id(&id).await?.ok_or_else(UserFailure::no_such_user)
    }

    async fn which_is_taken(&self, username: &str, email: Option<&str>) -> UsersError {
        if let Some(email) = email
            && let Ok(Some(_)) = self.find_by_email(email).await
        {
            return UsersError::Domain(UserFailure::Taken("email"));
        }
        let _ = username;
        UsersError::Domain(UserFailure::Taken("username"))
    }

    pub async fn username_exists(&self, username: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(self.db.read())
            .await?
            .is_some())
    }

    pub async fn find_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        Ok(sqlx::query_as::<_, UserRow>(&sql).bind(id).fetch_optional(self.db.write()).await?)
    }

    pub async fn find_by_username(&self, username: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        Ok(sqlx::query_as::<_, UserRow>(&sql)
            .bind(username.to_ascii_lowercase())
            .fetch_optional(self.db.read())
            .await?)
    }

    pub async fn find_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        Ok(sqlx::query_as::<_, UserRow>(&sql).bind(email.to_lowercase()).fetch_optional(self.db.read()).await?)
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(self.db.read()).await?.try_get::<i64, _>("n")?)
    }

    /// One page of users, optionally only those whose username, e-mail or name contains `q`.
    pub async fn list(&self, page: PageRequest, q: Option<&str>, role: Option<Role>) -> Result<(Vec<UserRow>, u64)> {
        let pattern = q.map(|q| format!("%{}%", escape_like(&q.to_lowercase())));
        let role = role.map(Role::as_str);
        let filter = "($1 IS NULL OR LOWER(username) LIKE $1 ESCAPE '\\' OR LOWER(COALESCE(email, '')) LIKE $1 ESCAPE '\\' OR LOWER(name) LIKE $1 ESCAPE '\\')
                      AND ($2 IS NULL OR role = $2)";
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {filter} ORDER BY created_at, id LIMIT $3 OFFSET $4");
        let rows = sqlx::query_as::<_, UserRow>(&sql)
            .bind(pattern.as_deref())
            .bind(role)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(self.db.read())
            .await?;
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM users WHERE {filter}"))
            .bind(pattern.as_deref())
            .bind(role)
            .fetch_one(self.db.read())
            .await?
            .try_get("n")?;
        Ok((rows, total as u64))
    }

    /// Applies `changes`; refuses to leave the platform without an administrator.
    pub async fn update_user(&self, id: &str, changes: UserChanges) -> Result<UserRow> {
        let mut tx = self.db.begin_write().await?;
        let current = sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(UserFailure::no_such_user)?;
        if current.role() == Role::Admin
            && changes.role.is_some_and(|r| r != Role::Admin)
            && self.admins_held(&mut tx).await? <= 1
        {
            return Err(UsersError::Domain(UserFailure::LastAdmin));
        }
        let result = sqlx::query(
            "UPDATE users SET
                username = COALESCE($2, username),
                email = COALESCE($3, email),
                name = COALESCE($4, name),
                password_hash = COALESCE($5, password_hash),
                role = COALESCE($6, role),
                updated_at = $7
             WHERE id = $1",
        )
        .bind(id)
        .bind(changes.username.as_deref())
        .bind(changes.email.as_deref())
        .bind(changes.name.as_deref())
        .bind(changes.password_hash.as_deref())
        .bind(changes.role.map(Role::as_str))
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                return Err(
                    if changes.email.is_some()
                        && self.find_by_email(changes.email.as_deref().unwrap_or_default()).await?.is_some()
                    {
                        UsersError::Domain(UserFailure::Taken("email"))
                    } else {
                        UsersError::Domain(UserFailure::Taken("username"))
                    },
                );
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        self.find_by_id(id).await?.ok_or_else(UserFailure::no_such_user)
    }

    pub async fn delete_user(&self, id: &str) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        let role: Option<String> = sqlx::query("SELECT role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("role"))
            .transpose()?;
        match role.as_deref() {
            None => return Err(UserFailure::no_such_user()),
            Some("admin") => {
                if self.admins_held(&mut tx).await? <= 1 {
                    return Err(UsersError::Domain(UserFailure::LastAdmin));
                }
            }
            Some(_) => {}
        }
        sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// How many administrators there are, counted so that two transactions taking away
    /// administrators cannot both count the same ones: on PostgreSQL (where `BEGIN` reads
    /// committed rows, so two administrators demoting each other at once both saw two) the
    /// administrators' rows stay locked until this transaction ends, in one order so that two
    /// such transactions queue instead of deadlocking. SQLite's `BEGIN IMMEDIATE` already lets
    /// one writer in at a time.
    async fn admins_held(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<usize> {
        let sql = match self.db.backend() {
            Backend::Postgres => "SELECT id FROM users WHERE role = 'admin' ORDER BY id FOR UPDATE",
            Backend::Sqlite => "SELECT id FROM users WHERE role = 'admin'",
        };
        Ok(sqlx::query(sql).fetch_all(&mut **tx).await?.len())
    }

    pub async fn insert_refresh(
        &self,
        token_hash: &str,
        family_id: &str,
        user_id: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(family_id)
        .bind(user_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(self.db.write())
        .await?;
        Ok(())
    }

    pub async fn find_refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>> {
        let row = sqlx::query(
            "SELECT family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.db.write())
        .await?;
        row.map(|r| {
            Ok(RefreshRecord {
                family_id: r.try_get("family_id")?,
                user_id: r.try_get("user_id")?,
                expires_at: r.try_get("expires_at")?,
                used_at: r.try_get("used_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .transpose()
    }

    /// Marks `old` used and stores its successor, atomically; false when `old` was used (or
    /// revoked) in the meantime, which the caller treats as a replay.
    pub async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        family_id: &str,
        user_id: &str,
        expires_at: i64,
    ) -> Result<bool> {
        let mut tx = self.db.begin_write().await?;
        let now = now_ms();
        let marked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(old_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(new_hash)
        .bind(family_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes a session's refresh tokens and records the session in the revocation feed so
    /// its access tokens die everywhere too.
    pub async fn revoke_family(&self, family_id: &str, access_expiry_secs: i64) -> Result<()> {
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
            .bind(family_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        insert_revocation(&mut tx, &kit::auth::session_key(family_id), access_expiry_secs, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes every session of a user (password change, deletion, role change).
    /// Revokes every open session of a user but `keep`; returns the revoked ones.
    pub async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        access_expiry_secs: i64,
    ) -> Result<Vec<String>> {
        let families: Vec<String> = sqlx::query(
            "SELECT DISTINCT family_id FROM refresh_tokens
             WHERE user_id = $1 AND revoked_at IS NULL AND family_id <> $2",
        )
        .bind(user_id)
        .bind(keep.unwrap_or(""))
        .fetch_all(self.db.write())
        .await?
        .into_iter()
        .map(|r| r.try_get("family_id"))
        .collect::<Result<_, _>>()?;
        for family in &families {
            self.revoke_family(family, access_expiry_secs).await?;
        }
        Ok(families)
    }

    pub async fn revoke_token(&self, jti: &str, expires_at_secs: i64) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        insert_revocation(&mut tx, jti, expires_at_secs, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn revocations_since(&self, since_ms: i64) -> Result<Vec<Revocation>> {
        let rows = sqlx::query(
            "SELECT id, expires_at, revoked_at FROM revocations
             WHERE revoked_at > $1 AND expires_at >= $2 ORDER BY revoked_at LIMIT 10000",
        )
        .bind(since_ms)
        .bind(kit::auth::unix_now())
        .fetch_all(self.db.read())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Revocation {
                    jti: r.try_get("id")?,
                    exp: r.try_get("expires_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Drops what can no longer matter: expired refresh tokens and revocations of tokens that
    /// have expired anyway.
    pub async fn purge_expired(&self) -> Result<u64> {
        let now_s = kit::auth::unix_now();
        let a = sqlx::query("DELETE FROM revocations WHERE expires_at < $1")
            .bind(now_s)
            .execute(self.db.write())
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(now_ms())
            .execute(self.db.write())
            .await?
            .rows_affected();
        Ok(a + b)
    }
}

async fn insert_revocation(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    expires_at_secs: i64,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO revocations (id, expires_at, revoked_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
        .bind(id)
        .bind(expires_at_secs)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use kit::testing::TestData;

    use super::*;

    async fn store() -> (TestData, Store) {
        let (data, settings) = TestData::new("users");
        let config = kit::db::DbConfig::from_settings(&settings.global(), "users", &data.dir).unwrap();
        let db = Db::connect(&config).await.unwrap();
        db.migrate(&MIGRATOR).await.unwrap();
        (data, Store::new(db))
    }

    fn role_change(role: Role) -> UserChanges {
        UserChanges { role: Some(role), ..UserChanges::default() }
    }

    /// Issue 16: on PostgreSQL, two administrators demoting each other at the same instant both
    /// counted two administrators and left the platform with none. Run on PostgreSQL by
    /// `.ci/run` (ORDERMESH_TEST_POSTGRES), on SQLite by `cargo test`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_administrators_demoting_each_other_at_once_leave_one() {
        let (data, store) = store().await;
        let admin = |username| NewUser { username, email: None, name: username, password_hash: "-", role: Role::Admin };
        let ann = store.insert_user(&admin("ann")).await.unwrap().id;
        let ben = store.insert_user(&admin("ben")).await.unwrap().id;
        for round in 0..30 {
            let demote = |id: String| {
                let store = store.clone();
                tokio::spawn(async move { store.update_user(&id, role_change(Role::User)).await })
            };
            let (a, b) = tokio::join!(demote(ann.clone()), demote(ben.clone()));
            let (a, b) = (a.unwrap(), b.unwrap());
            let mut admins = Vec::new();
            for id in [&ann, &ben] {
                if store.find_by_id(id).await.unwrap().unwrap().role() == Role::Admin {
                    admins.push(id.clone());
                }
            }
            assert_eq!(admins.len(), 1, "round {round}: {} administrators left", admins.len());
            let refused =
                [&a, &b].into_iter().filter(|r| matches!(r, Err(UsersError::Domain(UserFailure::LastAdmin)))).count();
            assert_eq!(refused, 1, "round {round}: one demotion is refused as the last administrator's");
            let demoted = if admins[0] == ann { &ben } else { &ann };
            store.update_user(demoted, role_change(Role::Admin)).await.unwrap();
        }
        data.cleanup().await;
    }
}
