//! The orders service's SQL: orders, their items and history, idempotency keys, the outbox.

use kit::db::{AnyQuery, Db, Statements, now_ms, placeholders};
use kit::pagination::PageRequest;
use sqlx::{AnyConnection, Row};

use crate::domain::OrderStatus;
use crate::error::{OrderFailure, OrdersError, Result};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub username: Option<String>,
    pub customer_name: Option<String>,
    /// A status this build does not know (a corrupt row, or one written by a newer version)
    /// fails the read rather than passing for some other status.
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub total_cents: i64,
    pub currency: String,
    pub reservation_id: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ItemRow {
    pub order_id: String,
    pub line_no: i64,
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub unit_price_cents: i64,
    pub quantity: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub seq: i64,
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub changed_by: String,
    pub changed_at: i64,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub id: String,
    pub order_id: String,
    pub kind: &'static str,
    pub version: i64,
    pub payload: String,
    pub occurred_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub order_id: String,
    pub event_type: String,
    pub version: i64,
    pub payload: String,
    pub occurred_at: i64,
    /// The request that wrote it, as a W3C `traceparent`, with its `tracestate` if it had one.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// What an earlier request with the same Idempotency-Key left behind.
pub enum IdempotencyRecord {
    /// Answered before: send this again.
    Replay { status: u16, body: String },
    /// The key was used with another request.
    Mismatch,
}

/// The answer to record for a request's Idempotency-Key, in the order's own transaction.
pub struct IdempotentAnswer<'a> {
    pub user_id: &'a str,
    pub key: &'a str,
    pub request_hash: &'a str,
    pub status: u16,
    pub body: &'a str,
}

/// Whether [`Store::insert_order`] wrote the order.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    Yes,
    /// Another request with the same Idempotency-Key committed first; nothing was written.
    KeyTaken,
}

pub struct NewOrder<'a> {
    pub order: &'a OrderRow,
    pub items: &'a [ItemRow],
    pub changed_by: &'a str,
    pub event: &'a OutboxEvent,
    /// Record this answer for the request's Idempotency-Key, in the same transaction.
    pub idempotency: Option<IdempotentAnswer<'a>>,
}

#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub status: Option<OrderStatus>,
}

const ORDER_COLUMNS: &str = "id, user_id, username, customer_name, status, total_cents, currency, reservation_id, version, created_at, updated_at";

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// What an earlier request with this Idempotency-Key left, if it finished.
    ///
    /// A key is only ever written together with its order, so there is no "in progress" state
    /// to get stuck in when a process dies mid-request: a retry simply runs again, and of two
    /// racing attempts the second to commit finds the key taken and replays the first.
    pub async fn idempotency_lookup(&self, user_id: &str, key: &str, hash: &str) -> Result<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT request_hash, status_code, response FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(self.db.read())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored_hash: String = row.try_get("request_hash")?;
        if stored_hash != hash {
            return Ok(Some(IdempotencyRecord::Mismatch));
        }
        Ok(Some(IdempotencyRecord::Replay {
            status: row.try_get::<Option<i64>, _>("status_code")?.unwrap_or(200) as u16,
            body: row.try_get::<Option<String>, _>("response")?.unwrap_or_default(),
        }))
    }

    /// Writes the order, its items, its first status, its event and (when given) the
    /// idempotent answer, all in one transaction.
    pub async fn insert_order(&self, new: NewOrder<'_>) -> Result<Inserted> {
        let o = new.order;
        // Every write at once (one round trip on SQLite), built before the write lock is taken.
        let mut writes = Statements::new();
        // The key first, so a duplicate changes nothing else before it is rolled back;
        // ON CONFLICT waits for a racing transaction on PostgreSQL instead of aborting this one.
        let claim = new.idempotency.as_ref().map(|answer| {
            writes.push(
                sqlx::query(
                    "INSERT INTO idempotency_keys (user_id, idem_key, request_hash, state, status_code, response, order_id, created_at)
                     VALUES ($1, $2, $3, 'done', $4, $5, $6, $7)
                     ON CONFLICT (user_id, idem_key) DO NOTHING",
                )
                .bind(answer.user_id)
                .bind(answer.key)
                .bind(answer.request_hash)
                .bind(answer.status as i64)
                .bind(answer.body)
                .bind(&o.id)
                .bind(o.created_at),
            )
        });
        writes.push(
            sqlx::query(
                "INSERT INTO orders (id, user_id, username, customer_name, status, total_cents, currency, reservation_id, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&o.id)
            .bind(&o.user_id)
            .bind(o.username.as_deref())
            .bind(o.customer_name.as_deref())
            .bind(o.status.as_str())
            .bind(o.total_cents)
            .bind(&o.currency)
            .bind(&o.reservation_id)
            .bind(o.version)
            .bind(o.created_at)
            .bind(o.updated_at),
        );
        for item in new.items {
            writes.push(
                sqlx::query(
                    "INSERT INTO order_items (order_id, line_no, product_id, sku, name, unit_price_cents, quantity)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&item.order_id)
                .bind(item.line_no)
                .bind(item.product_id)
                .bind(&item.sku)
                .bind(&item.name)
                .bind(item.unit_price_cents)
                .bind(item.quantity),
            );
        }
        writes.push(history_insert(&o.id, 1, o.status.as_str(), new.changed_by, o.created_at, None));
        writes.push(outbox_insert(new.event));
        let (_, kept) = self.db.write_all(writes, move |changed| claim.is_none_or(|at| changed[at] == 1)).await?;
        Ok(if kept { Inserted::Yes } else { Inserted::KeyTaken })
    }

    pub async fn get(&self, id: &str) -> Result<Option<(OrderRow, Vec<ItemRow>, Vec<HistoryRow>)>> {
        let mut conn = self.db.read().acquire().await?;
        let Some(order) = sqlx::query_as::<_, OrderRow>(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let items = items_of(&mut conn, std::slice::from_ref(&order.id)).await?;
        let history = sqlx::query_as::<_, HistoryRow>(
            "SELECT seq, status, changed_by, changed_at, note FROM order_status_history WHERE order_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some((order, items, history)))
    }

    /// A page of orders, newest first, with their items.
    pub async fn list(&self, filter: &ListFilter, page: PageRequest) -> Result<(Vec<(OrderRow, Vec<ItemRow>)>, u64)> {
        let mut conn = self.db.read().acquire().await?;
        let status = filter.status.map(OrderStatus::as_str);
        let conditions =
            "($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2) AND ($5 IS NULL OR username = $5)";
        let orders = sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE {conditions} ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(filter.user_id.as_deref())
        .bind(status)
        .bind(page.limit())
        .bind(page.offset())
        .bind(filter.username.as_deref())
        .fetch_all(&mut *conn)
        .await?;
        let counting = conditions.replace("$5", "$3");
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM orders WHERE {counting}"))
            .bind(filter.user_id.as_deref())
            .bind(status)
            .bind(filter.username.as_deref())
            .fetch_one(&mut *conn)
            .await?
            .try_get("n")?;
        let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
        let mut items = items_of(&mut conn, &ids).await?;
        let out = orders
            .into_iter()
            .map(|o| {
                let mine: Vec<ItemRow> = items.extract_if(.., |i| i.order_id == o.id).collect();
                (o, mine)
            })
            .collect();
        Ok((out, total as u64))
    }

    /// Moves an order to `to` if it is still at `expected_version`, recording the history
    /// entry and the event in the same transaction. `Concurrent` when someone else moved it.
    pub async fn change_status(
        &self,
        order: &OrderRow,
        to: OrderStatus,
        changed_by: &str,
        note: Option<&str>,
        event: &OutboxEvent,
    ) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        let now = now_ms();
        let changed = sqlx::query(
            "UPDATE orders SET status = $2, version = version + 1, updated_at = $3 WHERE id = $1 AND version = $4",
        )
        .bind(&order.id)
        .bind(to.as_str())
        .bind(now)
        .bind(order.version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(OrdersError::Domain(OrderFailure::Concurrent));
        }
        let seq: i64 =
            sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM order_status_history WHERE order_id = $1")
                .bind(&order.id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("next")?;
        history_insert(&order.id, seq, to.as_str(), changed_by, now, note).execute(&mut *tx).await?;
        outbox_insert(event).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Leases up to `limit` unpublished events (oldest first) to this relay for `lease_ms`.
    /// Several relays may run; a lease keeps them from publishing the same event at the same
    /// time, and an expired lease (a relay that died) lets another take over.
    pub async fn claim_outbox(&self, limit: usize, lease_ms: i64) -> Result<Vec<OutboxRow>> {
        let now = now_ms();
        // One statement, atomic on its own: no transaction round trips around it.
        let rows = sqlx::query_as::<_, OutboxRow>(
            "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox
                          WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < $2)
                          ORDER BY occurred_at, id LIMIT $3)
               AND published_at IS NULL AND (claimed_until IS NULL OR claimed_until < $2)
             RETURNING id, order_id, event_type, version, payload, occurred_at, traceparent, tracestate",
        )
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(self.db.write())
        .await?;
        let mut rows = rows;
        rows.sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
        Ok(rows)
    }

    pub async fn mark_published(&self, ids: &[String]) -> Result<()> {
        self.update_listed("UPDATE outbox SET published_at = $1, claimed_until = NULL WHERE id IN", Some(now_ms()), ids)
            .await
    }

    /// Gives claimed events back after a failed delivery, so the next attempt need not wait
    /// for the lease to run out.
    pub async fn unclaim(&self, ids: &[String]) -> Result<()> {
        self.update_listed("UPDATE outbox SET claimed_until = NULL WHERE published_at IS NULL AND id IN", None, ids)
            .await
    }

    /// Runs `prefix (…ids…)`, with `first` bound as `$1` when given.
    async fn update_listed(&self, prefix: &str, first: Option<i64>, ids: &[String]) -> Result<()> {
        let offset = usize::from(first.is_some()) + 1;
        for chunk in ids.chunks(200) {
            let sql = format!("{prefix} ({})", placeholders(offset, chunk.len()));
            let mut q = sqlx::query(&sql);
            if let Some(v) = first {
                q = q.bind(v);
            }
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(self.db.write()).await?;
        }
        Ok(())
    }

    pub async fn outbox_backlog(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")
            .fetch_one(self.db.read())
            .await?
            .try_get("n")?)
    }

    /// Drops what no longer matters: idempotency answers older than their lifetime and
    /// published events older than `keep_events_ms`.
    pub async fn purge(&self, idempotency_ttl_ms: i64, keep_events_ms: i64) -> Result<u64> {
        let now = now_ms();
        let a = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(now - idempotency_ttl_ms)
            .execute(self.db.write())
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1")
            .bind(now - keep_events_ms)
            .execute(self.db.write())
            .await?
            .rows_affected();
        Ok(a + b)
    }
}

async fn items_of(conn: &mut AnyConnection, order_ids: &[String]) -> Result<Vec<ItemRow>> {
    let mut out = Vec::new();
    for chunk in order_ids.chunks(200) {
        let sql = format!(
            "SELECT order_id, line_no, product_id, sku, name, unit_price_cents, quantity FROM order_items
             WHERE order_id IN ({}) ORDER BY order_id, line_no",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_as::<_, ItemRow>(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

fn history_insert<'q>(
    order_id: &'q str,
    seq: i64,
    status: &'q str,
    changed_by: &'q str,
    at: i64,
    note: Option<&'q str>,
) -> AnyQuery<'q> {
    sqlx::query(
        "INSERT INTO order_status_history (order_id, seq, status, changed_by, changed_at, note) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(order_id)
    .bind(seq)
    .bind(status)
    .bind(changed_by)
    .bind(at)
    .bind(note)
}

/// Written with the trace context of the request it belongs to, so the event's consumers
/// can join that request's trace.
fn outbox_insert(e: &OutboxEvent) -> AnyQuery<'_> {
    let trace = kit::context::RequestContext::current();
    sqlx::query(
        "INSERT INTO outbox (id, order_id, event_type, version, payload, occurred_at, traceparent, tracestate)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&e.id)
    .bind(&e.order_id)
    .bind(e.kind)
    .bind(e.version)
    .bind(&e.payload)
    .bind(e.occurred_at)
    .bind(trace.as_ref().map(|c| c.traceparent()))
    .bind(trace.and_then(|c| c.tracestate.as_deref().map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use kit::testing::TestData;

    use super::*;

    /// Issue 17, defect 1: a row whose status this build does not know was read as `pending`,
    /// so a corrupt row, or one a newer version wrote, became cancellable. Reading it is an
    /// error now, as in the catalog.
    #[tokio::test]
    async fn a_stored_status_this_build_does_not_know_is_an_error_not_pending() {
        let (data, settings) = TestData::new("orders");
        let config = kit::db::DbConfig::from_settings(&settings.global(), "orders", &data.dir).unwrap();
        let db = Db::connect(&config).await.unwrap();
        db.migrate(&MIGRATOR).await.unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(&format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES ($1, 'u1', NULL, NULL, 'refunded', 100, 'USD', 'r1', 1, 0, 0)"
        ))
        .bind(&id)
        .execute(db.write())
        .await
        .unwrap();
        let store = Store::new(db);
        let read = store.get(&id).await;
        assert!(read.is_err(), "an unknown status was read as {:?}", read.map(|r| r.map(|(o, ..)| o.status)));
        data.cleanup().await;
    }
}
