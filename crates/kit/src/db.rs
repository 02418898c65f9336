//! Database pools: SQLite by default, PostgreSQL when the URL says so, through sqlx's `Any`
//! driver so each service writes its SQL once. Queries use `$1, $2, …` placeholders (both
//! backends accept them) and portable types: TEXT, BIGINT, BOOLEAN. Money is stored in minor
//! units (BIGINT) and times as Unix milliseconds (BIGINT), so ordering and arithmetic work the
//! same on both.
//!
//! SQLite allows one writer at a time; a second writer that starts a deferred transaction and
//! later needs the write lock can fail instantly with "database is locked". So on SQLite all
//! writes go through a one-connection pool and reads through a pool of several; on PostgreSQL
//! both are the same pool.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::config::{ConfigError, Scoped};

mod statements;
pub use statements::{AnyQuery, Statements};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend behind one connection of the `Any` driver.
    pub fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name() == "SQLite" { Backend::Sqlite } else { Backend::Postgres }
    }
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    /// PostgreSQL schema this service keeps its tables in, so services sharing one database
    /// still never see each other's tables.
    pub schema: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub busy_timeout: Duration,
}

impl DbConfig {
    /// `<SERVICE>_DATABASE_URL`, then `DATABASE_URL`, else `sqlite://<data_dir>/<service>.db`.
    pub fn from_settings(s: &Scoped<'_>, service: &str, data_dir: &Path) -> Result<Self, ConfigError> {
        let url = match s.lookup(&["DATABASE_URL"]) {
            Some((key, value, origin)) => {
                let value = value.trim().to_string();
                if !(value.starts_with("sqlite:")
                    || value.starts_with("postgres://")
                    || value.starts_with("postgresql://"))
                {
                    return Err(ConfigError::invalid(&key, &value, origin, "expected a sqlite:// or postgres:// URL"));
                }
                value
            }
            None => format!("sqlite://{}?mode=rwc", data_dir.join(format!("{service}.db")).display()),
        };
        let schema = s.string(&["DATABASE_SCHEMA"]).unwrap_or_else(|| service.to_string());
        if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(s.invalid(&["DATABASE_SCHEMA"], "letters, digits and _ only"));
        }
        Ok(DbConfig {
            url,
            schema,
            max_connections: s.parse_checked(&["DATABASE_MAX_CONNECTIONS"], 8u32, |n| {
                if (1..=512).contains(n) { Ok(()) } else { Err("must be between 1 and 512".into()) }
            })?,
            acquire_timeout: s.duration_or(
                &["DATABASE_ACQUIRE_TIMEOUT"],
                Duration::from_secs(1),
                Duration::from_secs(3),
            )?,
            busy_timeout: s.duration_or(&["SQLITE_BUSY_TIMEOUT"], Duration::from_millis(1), Duration::from_secs(5))?,
        })
    }

    pub fn backend(&self) -> Backend {
        if self.url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres }
    }
}

#[derive(Clone, Debug)]
pub struct Db {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
}

impl Db {
    pub async fn connect(config: &DbConfig) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = config.backend();
        match backend {
            Backend::Sqlite => {
                if let Some(path) = sqlite_path(&config.url)
                    && let Some(parent) = Path::new(&path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
                }
                let busy_ms = config.busy_timeout.as_millis();
                let pragmas =
                    format!("PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;");
                let options = AnyConnectOptions::from_str(&config.url)?.disable_statement_logging();
                let write = {
                    let pragmas = pragmas.clone();
                    AnyPoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(config.acquire_timeout)
                        // A file has no other end to hang up: sqlx's ping before every
                        // acquire (a round trip to the connection's thread) checks nothing.
                        .test_before_acquire(false)
                        .after_connect(move |conn, _| {
                            let pragmas = pragmas.clone();
                            Box::pin(async move {
                                conn.execute("PRAGMA journal_mode = WAL;").await?;
                                conn.execute(pragmas.as_str()).await?;
                                Ok(())
                            })
                        })
                        .after_release(|conn, _| {
                            Box::pin(async move {
                                // When the disk fills (or an I/O error strikes) mid-transaction,
                                // SQLite rolls back by itself; sqlx's own ROLLBACK then fails and
                                // it still counts the transaction open, refusing every later
                                // BEGIN on this connection. A connection that still counts a
                                // transaction (one dropped unfinished) gets its queued ROLLBACK
                                // run by the ping; if it counts one after that, it is closed
                                // here, before anyone else can take it, and the pool opens a
                                // fresh one. Committed work and plain queries skip the ping.
                                use sqlx::Connection;
                                if !conn.is_in_transaction() {
                                    return Ok(true);
                                }
                                conn.ping().await?;
                                let stuck = conn.is_in_transaction();
                                if stuck {
                                    tracing::warn!("closing a write connection left in a failed transaction");
                                }
                                Ok(!stuck)
                            })
                        })
                        .connect_with(options.clone())
                        .await?
                };
                let read = AnyPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .test_before_acquire(false)
                    .after_connect(move |conn, _| {
                        let pragmas = pragmas.clone();
                        Box::pin(async move {
                            conn.execute(pragmas.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?;
                Ok(Db { read, write, backend })
            }
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(&config.url)?.disable_statement_logging();
                // Make the schema first, on a plain connection, then point every pooled
                // connection at it. Several instances may race here; that is fine.
                {
                    use sqlx::Connection;
                    let mut conn = sqlx::AnyConnection::connect_with(&options).await?;
                    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", config.schema);
                    if let Err(e) = conn.execute(create.as_str()).await
                        && !is_unique_violation(&e)
                    {
                        return Err(e);
                    }
                    conn.close().await.ok();
                }
                let set_path = format!("SET search_path TO \"{}\"", config.schema);
                let pool = AnyPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .after_connect(move |conn, _| {
                        let set_path = set_path.clone();
                        Box::pin(async move {
                            conn.execute(set_path.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?;
                Ok(Db { read: pool.clone(), write: pool, backend })
            }
        }
    }

    /// Applies the service's migrations. On PostgreSQL sqlx holds an advisory lock while it
    /// migrates, so instances starting together migrate once.
    pub async fn migrate(&self, migrator: &Migrator) -> Result<(), sqlx::migrate::MigrateError> {
        migrator.run(&self.write).await
    }

    /// The pool for queries that only read.
    pub fn read(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for anything that writes (and reads that must see the latest write).
    pub fn write(&self) -> &AnyPool {
        &self.write
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A span for one unit of work on this database (`operation` on `table`, never values),
    /// to instrument the store call with; disabled unless traces are exported.
    pub fn span(&self, operation: &'static str, table: &'static str) -> tracing::Span {
        let system = match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        };
        crate::traces::database(system, operation, table)
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that upgrades later can fail with "database
    /// is locked" when another process writes to the same file, whatever the busy timeout.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write.begin().await,
        }
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        if self.backend == Backend::Sqlite {
            sqlx::query("SELECT 1").execute(&self.write).await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" { None } else { Some(path.to_string()) }
}

pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e.as_database_error() {
        Some(d) => {
            d.is_unique_violation()
                // PostgreSQL: duplicate schema/object raced by a concurrent creator.
                || matches!(d.code().as_deref(), Some("42P06") | Some("23505"))
        }
        None => false,
    }
}

/// A database error as the client sees it: 503 with a retry hint when the database is
/// unreachable, busy or full (a warning in the log), 500 for anything else (an error in the
/// log, with the cause the client is not shown).
pub fn problem(e: &sqlx::Error, database: &str) -> crate::Problem {
    if is_unavailable(e) {
        tracing::warn!(error = %e, "database unavailable");
        crate::Problem::unavailable(format!("The {database} database is not available right now."), 2)
    } else {
        tracing::error!(error = %e, "database error");
        crate::Problem::internal()
    }
}

/// Whether an error means the database cannot serve right now (down, restarting, locked,
/// full) rather than that the request was wrong: these become 503 with Retry-After.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code();
            let code = code.as_deref().unwrap_or("");
            // SQLite: BUSY(5), LOCKED(6), IOERR(10), FULL(13), CANTOPEN(14) and their
            // extended codes; PostgreSQL: class 08 (connection), 53 (resources), 57P0x (shutdown).
            // Only SQLite's codes are read as numbers: many PostgreSQL SQLSTATEs are digits too
            // (22021, an invalid byte, would otherwise read as SQLite's BUSY).
            if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                let primary = code.parse::<i64>().ok().map(|c| c & 0xff);
                matches!(primary, Some(5 | 6 | 10 | 13 | 14))
            } else {
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
            }
        }
        _ => false,
    }
}

/// `count` placeholders numbered from `$first`, separated by commas, for an `IN (…)` list:
/// `placeholders(3, 2)` is `$3, $4`.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Escapes `%`, `_` and `\` so user text inside a LIKE pattern (used with `ESCAPE '\'`)
/// matches literally.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Current time as Unix milliseconds, the representation every table uses.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 text for API responses.
pub fn rfc3339(ms: i64) -> String {
    let nanos = (ms as i128) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    #[test]
    fn placeholders_count_from_the_first() {
        assert_eq!(placeholders(1, 1), "$1");
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(placeholders(1, 0), "");
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite://data/users.db?mode=rwc").as_deref(), Some("data/users.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }

    /// A database error as another driver (PostgreSQL) reports it: a SQLSTATE code.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn only_outages_are_unavailable() {
        let pg = |code| sqlx::Error::Database(Box::new(Sqlstate(code)));
        for outage in ["08006", "53300", "57P01", "57P03"] {
            assert!(is_unavailable(&pg(outage)), "{outage}");
        }
        // Bad input and refused statements are the request's fault or a bug, not an outage,
        // whatever their digits would mean to SQLite (22021 & 0xff == 5, BUSY; 42501 too).
        for request in ["22021", "42501", "23505", "22001", "40001", "42P01"] {
            assert!(!is_unavailable(&pg(request)), "{request}");
        }
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
    }

    #[tokio::test]
    async fn a_locked_sqlite_database_is_unavailable() {
        use sqlx::Connection;
        use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
        let dir = std::env::temp_dir().join(format!("kit-db-busy-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = SqliteConnectOptions::new().filename(dir.join("t.db")).create_if_missing(true);
        let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut holder).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
        let mut other = SqliteConnection::connect_with(&options.clone().busy_timeout(Duration::ZERO)).await.unwrap();
        let busy = sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap_err();
        assert!(is_unavailable(&busy), "{busy}");
        let syntax = sqlx::query("SELEC 1").execute(&mut other).await.unwrap_err();
        assert!(!is_unavailable(&syntax), "{syntax}");
        drop((holder, other));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn writes_resume_after_the_database_was_full() {
        let dir = std::env::temp_dir().join(format!("kit-db-full-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = DbConfig {
            url: format!("sqlite://{}?mode=rwc", dir.join("t.db").display()),
            schema: "t".into(),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(1),
        };
        let db = Db::connect(&config).await.unwrap();
        sqlx::query("CREATE TABLE t (x BLOB)").execute(db.write()).await.unwrap();
        // A file that may not grow: as good as a full disk, for SQLite.
        sqlx::query("PRAGMA max_page_count = 64").execute(db.write()).await.unwrap();
        let mut full = None;
        for _ in 0..100 {
            let mut tx = db.begin_write().await.unwrap();
            let inserted = sqlx::query("INSERT INTO t VALUES (zeroblob(16384))").execute(&mut *tx).await;
            match inserted.and(Ok(())) {
                Ok(()) => {
                    if let Err(e) = tx.commit().await {
                        full = Some(e);
                        break;
                    }
                }
                Err(e) => {
                    full = Some(e);
                    break;
                }
            }
        }
        let full = full.expect("the database never filled up");
        assert!(is_unavailable(&full), "{full}");
        let next = db.write().acquire().await.unwrap();
        assert!(!next.is_in_transaction(), "the write pool handed out a connection stuck in the failed transaction");
        drop(next);
        sqlx::query("DELETE FROM t").execute(db.write()).await.unwrap();
        let mut tx = db.begin_write().await.expect("a write after space came back");
        sqlx::query("INSERT INTO t VALUES (zeroblob(16))").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
