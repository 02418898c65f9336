//! Several writes of one transaction sent to the database together.
//!
//! On SQLite each statement is a round trip between the async task and the thread that owns
//! the connection: a message there, a wake-up back. Made inside a write transaction, those
//! wake-ups are paid while the database's one write lock is held, and under load they, not
//! SQLite's own work, bound how many transactions a second the lock lets through. Writes that
//! do not need each other's results are joined here into one multi-statement query (one round
//! trip), each statement's `$n` placeholders renumbered into the joined argument list.
//! PostgreSQL cannot prepare several statements as one, so there they run one after the other
//! on the same connection, as they would be written by hand.
//!
//! Either way every statement runs, in order, and its count of rows changed comes back; the
//! caller checks the counts and rolls the transaction back when one is not what it needs
//! (a write that had to change a row and found none). A statement that fails stops the batch
//! with its error, and the transaction is rolled back as after any failed statement.
//!
//! [`Db::write_all`] makes a whole transaction of such writes. On SQLite it costs two round
//! trips, `BEGIN IMMEDIATE` and the writes, then `COMMIT` or `ROLLBACK`, where a sqlx
//! transaction costs four, its `BEGIN` and `COMMIT` each waiting for an acknowledgement from
//! the async side before the connection's thread moves on.

use std::borrow::Cow;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Execute};
use sqlx_core::any::AnyValueKind;
use tracing::Instrument;

use super::{Backend, Db};

/// A query on the `Any` driver with its arguments bound, as `sqlx::query(…).bind(…)` makes it.
pub type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// Writes (INSERT, UPDATE, DELETE) to run together; see the module's documentation.
#[derive(Default)]
pub struct Statements<'q> {
    queries: Vec<AnyQuery<'q>>,
}

impl<'q> Statements<'q> {
    pub fn new() -> Self {
        Statements { queries: Vec::new() }
    }

    /// Adds a write, numbered from `$1` as if it ran alone. Returns its index in the counts
    /// [`Statements::run`] returns.
    pub fn push(&mut self, query: AnyQuery<'q>) -> usize {
        self.queries.push(query);
        self.queries.len() - 1
    }

    pub fn len(&self) -> usize {
        self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// Runs every statement in order on `conn` (inside the caller's transaction) and returns
    /// how many rows each one changed. Only writes belong here: SQLite reports a SELECT's count
    /// as that of the write before it.
    pub async fn run(self, conn: &mut AnyConnection) -> Result<Vec<u64>, sqlx::Error> {
        if self.queries.is_empty() {
            return Ok(Vec::new());
        }
        if Backend::of(conn) != Backend::Sqlite || self.queries.len() == 1 {
            let mut counts = Vec::with_capacity(self.queries.len());
            for query in self.queries {
                counts.push(query.execute(&mut *conn).await?.rows_affected());
            }
            return Ok(counts);
        }
        let expected = self.queries.len();
        let (sql, arguments) = join(self.queries, "")?;
        let mut counts = Vec::with_capacity(expected);
        run_joined(conn, &sql, arguments, &mut counts).await?;
        check_answered(expected, &counts)?;
        Ok(counts)
    }
}

impl Db {
    /// Runs `writes` as one transaction: committed when `keep` accepts the counts of rows they
    /// changed, rolled back when it does not or when one of them fails. Returns the counts and
    /// whether they were kept.
    ///
    /// On SQLite the transaction runs as a task of its own, begun in the same round trip as
    /// the writes: it ends (committed or rolled back) even when the caller stops waiting, so
    /// the connection never goes back to the pool inside a transaction sqlx does not know of.
    pub async fn write_all(
        &self,
        writes: Statements<'_>,
        keep: impl FnOnce(&[u64]) -> bool + Send + 'static,
    ) -> Result<(Vec<u64>, bool), sqlx::Error> {
        if self.backend() == Backend::Postgres {
            let mut tx = self.begin_write().await?;
            let counts = writes.run(&mut tx).await?;
            let kept = keep(&counts);
            if kept {
                tx.commit().await?
            } else {
                tx.rollback().await?
            }
            return Ok((counts, kept));
        }
        let expected = writes.len();
        let (sql, arguments) = join(writes.queries, "BEGIN IMMEDIATE;\n")?;
        let arguments = owned(arguments)?;
        let pool = self.write().clone();
        let transaction = async move {
            let mut conn = pool.acquire().await?;
            // The first count is BEGIN's: once it is in, the transaction is open.
            let mut counts = Vec::with_capacity(expected + 1);
            let wrote = run_joined(&mut conn, &sql, arguments, &mut counts).await;
            let begun = !counts.is_empty();
            let counts = counts.split_off(counts.len().min(1));
            let kept = match wrote.and_then(|()| check_answered(expected, &counts)) {
                Ok(()) => keep(&counts),
                Err(e) => {
                    if begun {
                        end(&mut conn, "ROLLBACK").await;
                    }
                    return Err(e);
                }
            };
            if kept {
                if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
                    end(&mut conn, "ROLLBACK").await;
                    return Err(e);
                }
            } else {
                end(&mut conn, "ROLLBACK").await;
            }
            Ok((counts, kept))
        };
        tokio::spawn(transaction.in_current_span())
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("write transaction task failed: {e}")))?
    }
}

/// Ends an open transaction (after a failure, or by choice). A connection where that fails
/// may still be inside it, and is closed rather than handed to the next writer.
async fn end(conn: &mut sqlx::pool::PoolConnection<Any>, statement: &'static str) {
    if let Err(e) = sqlx::query(statement).execute(&mut **conn).await {
        tracing::warn!(error = %e, "closing a write connection whose transaction would not end");
        conn.close_on_drop();
    }
}

/// Runs a joined text, pushing each statement's count of rows changed as it completes.
async fn run_joined(
    conn: &mut AnyConnection,
    sql: &str,
    arguments: AnyArguments<'_>,
    counts: &mut Vec<u64>,
) -> Result<(), sqlx::Error> {
    use futures::TryStreamExt;
    // sqlx 0.8 marks several statements in one prepared query as deprecated because only
    // SQLite can do it; SQLite is the only backend this path runs on.
    #[allow(deprecated)]
    let mut results = sqlx::query_with(sql, arguments).fetch_many(conn);
    while let Some(step) = results.try_next().await? {
        if let sqlx::Either::Left(done) = step {
            counts.push(done.rows_affected());
        }
    }
    Ok(())
}

fn check_answered(expected: usize, counts: &[u64]) -> Result<(), sqlx::Error> {
    if counts.len() == expected {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!("{expected} statements sent, {} answered", counts.len())))
    }
}

/// The arguments with their own copies of borrowed text, to hand to a task of their own.
fn owned(arguments: AnyArguments<'_>) -> Result<AnyArguments<'static>, sqlx::Error> {
    let mut out = AnyArguments::default();
    out.values.0 = arguments
        .values
        .0
        .into_iter()
        .map(|value| {
            Ok(match value {
                AnyValueKind::Text(text) => AnyValueKind::Text(Cow::Owned(text.into_owned())),
                AnyValueKind::Blob(bytes) => AnyValueKind::Blob(Cow::Owned(bytes.into_owned())),
                AnyValueKind::Null(kind) => AnyValueKind::Null(kind),
                AnyValueKind::Bool(v) => AnyValueKind::Bool(v),
                AnyValueKind::SmallInt(v) => AnyValueKind::SmallInt(v),
                AnyValueKind::Integer(v) => AnyValueKind::Integer(v),
                AnyValueKind::BigInt(v) => AnyValueKind::BigInt(v),
                AnyValueKind::Real(v) => AnyValueKind::Real(v),
                AnyValueKind::Double(v) => AnyValueKind::Double(v),
                _ => return Err(sqlx::Error::Protocol("an argument of a kind this build cannot copy".into())),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(out)
}

impl<'q> FromIterator<AnyQuery<'q>> for Statements<'q> {
    fn from_iter<I: IntoIterator<Item = AnyQuery<'q>>>(queries: I) -> Self {
        Statements { queries: queries.into_iter().collect() }
    }
}

/// The statements as one SQL text and one argument list: each statement's `$n` becomes
/// `$n + (arguments of the statements before it)`.
fn join<'q>(queries: Vec<AnyQuery<'q>>, first: &str) -> Result<(String, AnyArguments<'q>), sqlx::Error> {
    let mut sql = String::from(first);
    let mut arguments = AnyArguments::default();
    for mut query in queries {
        let offset = arguments.values.0.len();
        renumber(query.sql().trim_end().trim_end_matches(';'), offset, &mut sql);
        sql.push_str(";\n");
        if let Some(own) = query.take_arguments().map_err(sqlx::Error::Encode)? {
            arguments.values.0.extend(own.values.0);
        }
    }
    Ok((sql, arguments))
}

/// Copies `statement` to `out` with every `$n` outside quotes raised by `offset`.
fn renumber(statement: &str, offset: usize, out: &mut String) {
    let mut chars = statement.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((_, c)) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' => {
                let mut number = String::new();
                while let Some(&(_, d)) = chars.peek()
                    && d.is_ascii_digit()
                {
                    number.push(d);
                    chars.next();
                }
                out.push('$');
                match number.parse::<usize>() {
                    Ok(n) => out.push_str(&(n + offset).to_string()),
                    Err(_) => out.push_str(&number),
                }
            }
            None => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use sqlx::Connection;

    #[test]
    fn placeholders_move_past_the_arguments_before_them() {
        let mut out = String::new();
        renumber("UPDATE t SET a = $2, b = '$1', c = \"$3\" WHERE id = $1 AND n > $10", 3, &mut out);
        assert_eq!(out, "UPDATE t SET a = $5, b = '$1', c = \"$3\" WHERE id = $4 AND n > $13");
    }

    /// Statements joined for SQLite see each other's writes, report their own counts and bind
    /// their own arguments, whatever order each one names its placeholders in.
    #[tokio::test]
    async fn joined_statements_count_each_write_on_sqlite() {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, n BIGINT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        let mut batch = Statements::new();
        batch.push(sqlx::query("INSERT INTO t (id, name, n) VALUES ($1, $2, $3)").bind(1_i64).bind("a").bind(10_i64));
        batch.push(
            sqlx::query("INSERT INTO t (id, name, n) VALUES ($1, $2, 0) ON CONFLICT (id) DO NOTHING")
                .bind(1_i64)
                .bind("taken"),
        );
        batch.push(sqlx::query("INSERT INTO t (id, name, n) VALUES ($2, $1, 5)").bind("b").bind(2_i64));
        batch.push(sqlx::query("UPDATE t SET n = n + $2 WHERE n >= $1").bind(5_i64).bind(1_i64));
        batch.push(sqlx::query("UPDATE t SET n = 0 WHERE id = $1").bind(99_i64));
        assert_eq!(batch.run(&mut conn).await.unwrap(), vec![1, 0, 1, 2, 0]);
        let rows: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT id, name, n FROM t ORDER BY id").fetch_all(&mut conn).await.unwrap();
        assert_eq!(rows, vec![(1, "a".into(), 11), (2, "b".into(), 6)]);
    }

    /// A failing statement stops the batch with its error; in a transaction nothing it
    /// joined is kept.
    #[tokio::test]
    async fn a_failed_statement_fails_the_batch() {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (id BIGINT PRIMARY KEY)").execute(&mut conn).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let mut batch = Statements::new();
        batch.push(sqlx::query("INSERT INTO t (id) VALUES ($1)").bind(1_i64));
        batch.push(sqlx::query("INSERT INTO t (id) VALUES ($1)").bind(1_i64));
        batch.push(sqlx::query("INSERT INTO t (id) VALUES ($1)").bind(2_i64));
        let error = batch.run(&mut tx).await.unwrap_err();
        assert!(super::super::is_unique_violation(&error), "{error}");
        tx.rollback().await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&mut conn).await.unwrap();
        assert_eq!(n, 0);
    }

    /// A throw-away database of the kind the tests run on (SQLite, or the PostgreSQL named by
    /// `ORDERMESH_TEST_POSTGRES`) with one table.
    async fn database() -> (Db, crate::testing::TestData) {
        let (data, settings) = crate::testing::TestData::new("kit");
        let config = super::super::DbConfig::from_settings(&settings.global(), "kit", &data.dir).unwrap();
        let db = Db::connect(&config).await.unwrap();
        sqlx::query("CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT NOT NULL CHECK (n >= 0))")
            .execute(db.write())
            .await
            .unwrap();
        (db, data)
    }

    async fn rows(db: &Db) -> Vec<(i64, i64)> {
        sqlx::query_as("SELECT id, n FROM t ORDER BY id").fetch_all(db.write()).await.unwrap()
    }

    fn insert(id: i64, n: i64) -> AnyQuery<'static> {
        sqlx::query("INSERT INTO t (id, n) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING").bind(id).bind(n)
    }

    /// Kept writes are committed together; refused ones leave nothing; a failing one fails
    /// the call and leaves nothing; and the connection serves the next transaction each time.
    #[tokio::test]
    async fn a_write_transaction_is_kept_whole_or_not_at_all() {
        let (db, data) = database().await;
        let writes: Statements = [insert(1, 1), insert(2, 2)].into_iter().collect();
        assert_eq!(db.write_all(writes, |_| true).await.unwrap(), (vec![1, 1], true));
        assert_eq!(rows(&db).await, vec![(1, 1), (2, 2)]);

        let writes: Statements = [insert(3, 3), insert(1, 9)].into_iter().collect();
        let (counts, kept) = db.write_all(writes, |counts| counts.iter().all(|c| *c == 1)).await.unwrap();
        assert_eq!((counts, kept), (vec![1, 0], false));
        assert_eq!(rows(&db).await, vec![(1, 1), (2, 2)], "a refused transaction left rows behind");

        let mut writes = Statements::new();
        writes.push(insert(4, 4));
        writes.push(sqlx::query("UPDATE t SET n = n - $1 WHERE id = $2").bind(5_i64).bind(2_i64));
        writes.push(insert(5, 5));
        let error = db.write_all(writes, |_| true).await.unwrap_err();
        assert!(error.as_database_error().is_some(), "{error}");
        assert_eq!(rows(&db).await, vec![(1, 1), (2, 2)], "a failed transaction left rows behind");

        let writes: Statements = [insert(6, 6)].into_iter().collect();
        assert_eq!(db.write_all(writes, |_| true).await.unwrap(), (vec![1], true));
        assert_eq!(rows(&db).await, vec![(1, 1), (2, 2), (6, 6)]);
        db.close().await;
        data.cleanup().await;
    }

    /// A caller that stops waiting (a request cut off by its deadline) does not leave the
    /// transaction open on the write connection: it ends whole, and the next writer gets a
    /// connection outside any transaction.
    #[tokio::test]
    async fn a_write_transaction_abandoned_by_its_caller_still_ends() {
        let (db, data) = database().await;
        for round in 0..20_i64 {
            let writes: Statements = (0..50).map(|i| insert(round * 100 + i, i)).collect();
            let abandoned = db.write_all(writes, |_| true);
            // Polled far enough to start, then dropped.
            let _ = tokio::time::timeout(Duration::from_micros(50 * (round as u64 % 5)), abandoned).await;
        }
        let writes: Statements = [insert(-1, 1)].into_iter().collect();
        assert_eq!(db.write_all(writes, |_| true).await.unwrap(), (vec![1], true));
        let by_round: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id / 100 AS round, COUNT(*) AS n FROM t WHERE id >= 0 GROUP BY id / 100")
                .fetch_all(db.write())
                .await
                .unwrap();
        assert!(by_round.iter().all(|(_, n)| *n == 50), "a transaction was cut in part: {by_round:?}");
        let next = db.write().acquire().await.unwrap();
        assert!(!next.is_in_transaction());
        drop(next);
        db.close().await;
        data.cleanup().await;
    }
}
