//! The catalog's SQL: products, stock and reservations. Stock only ever moves through
//! conditional updates (`… WHERE available >= wanted`), inside transactions, so concurrent
//! reservers — even several catalog instances on one PostgreSQL — can never oversell.

use kit::db::{Db, escape_like, is_unique_violation, now_ms};
use kit::money::Money;
use kit::pagination::PageRequest;
use sqlx::{AnyConnection, Row};

use crate::domain::{ProductRef, ReservationState, SortOrder};
use crate::error::{CatalogError, Result};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProductRow {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    pub currency: String,
    pub stock_on_hand: i64,
    pub stock_reserved: i64,
    pub active: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ProductRow {
    pub fn available(&self) -> i64 {
        (self.stock_on_hand - self.stock_reserved).max(0)
    }

    pub fn is_active(&self) -> bool {
        self.active != 0
    }

    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.id, self.version)
    }
}

const PRODUCT_COLUMNS: &str = "id, sku, name, description, category, price_cents, currency, stock_on_hand, \
                               stock_reserved, active, version, created_at, updated_at";

#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub category: Option<String>,
    pub q: Option<String>,
    pub min_price: Option<Money>,
    pub max_price: Option<Money>,
    pub in_stock: Option<bool>,
    pub include_inactive: bool,
    pub sort: SortOrder,
}

pub struct NewProduct<'a> {
    pub sku: Option<&'a str>,
    pub name: &'a str,
    pub description: &'a str,
    pub category: &'a str,
    pub price: Money,
    pub currency: &'a str,
    pub stock: i64,
    pub active: bool,
}

/// Editable fields; `None` leaves a field unchanged.
#[derive(Debug, Default)]
pub struct ProductChanges {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Option<Money>,
    pub currency: Option<String>,
    pub active: Option<bool>,
}

impl ProductChanges {
    pub fn is_empty(&self) -> bool {
        self.sku.is_none()
            && self.name.is_none()
            && self.description.is_none()
            && self.category.is_none()
            && self.price.is_none()
            && self.currency.is_none()
            && self.active.is_none()
    }
}

pub enum StockChange {
    /// Add (or, negative, remove) units on hand.
    Delta(i64),
    /// Set the units on hand.
    Set(i64),
}

#[derive(Debug, Clone)]
pub struct ReservedLine {
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone)]
pub struct ReservationRow {
    pub id: String,
    pub state: ReservationState,
    pub expires_at: i64,
    pub created_at: i64,
    pub lines: Vec<ReservedLine>,
}

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

    pub async fn list(&self, filter: &ListFilter, page: PageRequest) -> Result<(Vec<ProductRow>, u64)> {
        let pattern = filter.q.as_ref().map(|q| format!("%{}%", escape_like(&q.to_lowercase())));
        let category = filter.category.as_ref().map(|c| c.to_lowercase());
        let min = filter.min_price.map(Money::cents);
        let max = filter.max_price.map(Money::cents);
        let in_stock = filter.in_stock.map(i64::from);
        let include_inactive = i64::from(filter.include_inactive);
        // Every input is a bound parameter; only the fixed ORDER BY fragment is spliced in.
        let conditions = "($1 IS NULL OR LOWER(category) = $1)
            AND ($2 IS NULL OR LOWER(name) LIKE $2 ESCAPE '\\' OR LOWER(description) LIKE $2 ESCAPE '\\')
            AND ($3 IS NULL OR price_cents >= $3)
            AND ($4 IS NULL OR price_cents <= $4)
            AND ($5 IS NULL OR ($5 = 1 AND stock_on_hand > stock_reserved) OR ($5 = 0 AND stock_on_hand <= stock_reserved))
            AND ($6 = 1 OR active = 1)";
        let sql = format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE {conditions} ORDER BY {} LIMIT $7 OFFSET $8",
            filter.sort.sql()
        );
        let rows = sqlx::query_as::<_, ProductRow>(&sql)
            .bind(category.as_deref())
            .bind(pattern.as_deref())
            .bind(min)
            .bind(max)
            .bind(in_stock)
            .bind(include_inactive)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(self.db.read())
            .await?;
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM products WHERE {conditions}"))
            .bind(category.as_deref())
            .bind(pattern.as_deref())
            .bind(min)
            .bind(max)
            .bind(in_stock)
            .bind(include_inactive)
            .fetch_one(self.db.read())
            .await?
            .try_get("n")?;
        Ok((rows, total as u64))
    }

    pub async fn get(&self, id: i64) -> Result<Option<ProductRow>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1");
        Ok(sqlx::query_as::<_, ProductRow>(&sql).bind(id).fetch_optional(self.db.read()).await?)
    }

    pub async fn get_by_sku(&self, sku: &str) -> Result<Option<ProductRow>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = $1");
        Ok(sqlx::query_as::<_, ProductRow>(&sql).bind(sku.to_ascii_uppercase()).fetch_optional(self.db.read()).await?)
    }

    async fn get_for_write(&self, conn: &mut AnyConnection, id: i64) -> Result<Option<ProductRow>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1");
        Ok(sqlx::query_as::<_, ProductRow>(&sql).bind(id).fetch_optional(conn).await?)
    }

    pub async fn count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM products").fetch_one(self.db.read()).await?.try_get("n")?)
    }

    /// Inserts a product with the next id. Two creators racing for the same id on PostgreSQL
    /// collide on the primary key; the loser simply takes the next one.
    pub async fn insert(&self, new: &NewProduct<'_>, derive_sku: impl Fn(i64) -> String) -> Result<ProductRow> {
        for _ in 0..5 {
            let mut tx = self.db.begin_write().await?;
            let next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM products")
                .fetch_one(&mut *tx)
                .await?
                .try_get("next")?;
            let sku = new.sku.map(str::to_string).unwrap_or_else(|| derive_sku(next));
            let now = now_ms();
            let result = sqlx::query(
                "INSERT INTO products (id, sku, name, description, category, price_cents, currency, stock_on_hand,
                                       stock_reserved, active, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 1, $10, $10)",
            )
            .bind(next)
            .bind(&sku)
            .bind(new.name)
            .bind(new.description)
            .bind(new.category)
            .bind(new.price.cents())
            .bind(new.currency)
            .bind(new.stock)
            .bind(i64::from(new.active))
            .bind(now)
            .execute(&mut *tx)
            .await;
            match result {
                Ok(_) => {
                    tx.commit().await?;
                    return self
                        .get(next)
                        .await?
                        .ok_or_else(|| CatalogError::Internal("inserted product vanished".into()));
                }
                Err(e) if is_unique_violation(&e) => {
                    drop(tx);
                    if new.sku.is_some() && self.get_by_sku(&sku).await?.is_some() {
                        return Err(CatalogError::Conflict(format!("A product with SKU {sku} already exists.")));
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Conflict("Too many concurrent product creations; try again.".into()))
    }

    /// Applies `changes` when the product is at `expected_version` (if given).
    pub async fn update(&self, id: i64, changes: &ProductChanges, expected_version: Option<i64>) -> Result<ProductRow> {
        let mut tx = self.db.begin_write().await?;
        let current = self
            .get_for_write(&mut tx, id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("No product {id}.")))?;
        ensure_version(&current, expected_version)?;
        let result = sqlx::query(
            "UPDATE products SET
                sku = COALESCE($2, sku),
                name = COALESCE($3, name),
                description = COALESCE($4, description),
                category = COALESCE($5, category),
                price_cents = COALESCE($6, price_cents),
                currency = COALESCE($7, currency),
                active = COALESCE($8, active),
                version = version + 1,
                updated_at = $9
             WHERE id = $1 AND version = $10",
        )
        .bind(id)
        .bind(changes.sku.as_deref())
        .bind(changes.name.as_deref())
        .bind(changes.description.as_deref())
        .bind(changes.category.as_deref())
        .bind(changes.price.map(Money::cents))
        .bind(changes.currency.as_deref())
        .bind(changes.active.map(i64::from))
        .bind(now_ms())
        .bind(current.version)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(r) if r.rows_affected() == 1 => {}
            Ok(_) => {
                return Err(CatalogError::PreconditionFailed { current_etag: current.etag() });
            }
            Err(e) if is_unique_violation(&e) => {
                return Err(CatalogError::Conflict("Another product already has that SKU.".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let updated = self
            .get_for_write(&mut tx, id)
            .await?
            .ok_or_else(|| CatalogError::Internal("updated product vanished".into()))?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Changes the units on hand; refuses to go below zero or below what is reserved.
    pub async fn change_stock(
        &self,
        id: i64,
        change: StockChange,
        expected_version: Option<i64>,
    ) -> Result<ProductRow> {
        let mut tx = self.db.begin_write().await?;
        let current = self
            .get_for_write(&mut tx, id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("No product {id}.")))?;
        ensure_version(&current, expected_version)?;
        let target = match change {
            StockChange::Delta(d) => current.stock_on_hand.checked_add(d),
            StockChange::Set(n) => Some(n),
        };
        let target = match target {
            Some(t) if (0..=kit::money::Quantity::MAX as i64 * 100_000).contains(&t) => t,
            _ => return Err(CatalogError::invalid("stock", "would be negative or absurdly large")),
        };
        if target < current.stock_reserved {
            return Err(CatalogError::Conflict(format!(
                "{} units are reserved for open orders; stock on hand cannot go below that.",
                current.stock_reserved
            )));
        }
        sqlx::query("UPDATE products SET stock_on_hand = $2, version = version + 1, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(target)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        let updated = self
            .get_for_write(&mut tx, id)
            .await?
            .ok_or_else(|| CatalogError::Internal("updated product vanished".into()))?;
        tx.commit().await?;
        Ok(updated)
    }

    pub async fn categories(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT category, COUNT(*) AS n FROM products WHERE active = 1 GROUP BY category ORDER BY category",
        )
        .fetch_all(self.db.read())
        .await?;
        rows.into_iter().map(|r| Ok((r.try_get("category")?, r.try_get("n")?))).collect()
    }

    /// Reserves every line or none. Replaying the same id with the same request returns the
    /// existing reservation (`false`: not new); with a different request it is a conflict.
    pub async fn reserve(
        &self,
        id: &str,
        request_hash: &str,
        lines: &[(ProductRef, i64)],
        expires_at: i64,
    ) -> Result<(ReservationRow, bool)> {
        let mut tx = self.db.begin_write().await?;
        if let Some((state, hash)) = reservation_header(&mut tx, id).await? {
            let _ = state;
            if hash != request_hash {
                return Err(CatalogError::Conflict(format!("Reservation {id} already exists with different lines.")));
            }
            let row = load_reservation(&mut tx, id).await?;
            tx.commit().await?;
            return Ok((row.ok_or_else(|| CatalogError::NotFound(format!("No reservation {id}.")))?, false));
        }
        // Resolve references, merging lines that name the same product.
        let mut wanted: Vec<(ProductRow, i64)> = Vec::new();
        for (index, (reference, quantity)) in lines.iter().enumerate() {
            let product = resolve(&mut tx, reference)
                .await?
                .ok_or(CatalogError::UnknownProduct { line: index + 1, reference: reference.to_string() })?;
            match wanted.iter_mut().find(|(p, _)| p.id == product.id) {
                Some((_, q)) => *q += quantity,
                None => wanted.push((product, *quantity)),
            }
        }
        // Row locks are always taken in product id order (here and where reservations are
        // committed or released), so two orders naming the same products cannot deadlock.
        wanted.sort_by_key(|(p, _)| p.id);
        let now = now_ms();
        for (product, quantity) in &wanted {
            let taken = sqlx::query(
                "UPDATE products SET stock_reserved = stock_reserved + $2, updated_at = $3
                 WHERE id = $1 AND active = 1 AND stock_on_hand - stock_reserved >= $2",
            )
            .bind(product.id)
            .bind(quantity)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken != 1 {
                let fresh = self.get_for_write(&mut tx, product.id).await?;
                return Err(CatalogError::InsufficientStock {
                    product_id: product.id,
                    sku: product.sku.clone(),
                    requested: *quantity,
                    available: fresh.map(|p| p.available()).unwrap_or(0),
                });
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO reservations (id, state, request_hash, expires_at, created_at, updated_at)
             VALUES ($1, 'held', $2, $3, $4, $4)",
        )
        .bind(id)
        .bind(request_hash)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            if is_unique_violation(&e) {
                // Another catalog instance created the same reservation a moment ago: ours
                // rolls back (returning its stock) and the caller sees theirs on retry.
                return Err(CatalogError::Conflict(format!("Reservation {id} is being created concurrently; retry.")));
            }
            return Err(e.into());
        }
        for (product, quantity) in &wanted {
            sqlx::query(
                "INSERT INTO reservation_lines (reservation_id, product_id, quantity, unit_price_cents)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(product.id)
            .bind(quantity)
            .bind(product.price_cents)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let row = ReservationRow {
            id: id.to_string(),
            state: ReservationState::Held,
            expires_at,
            created_at: now,
            lines: wanted
                .into_iter()
                .map(|(p, q)| ReservedLine {
                    product_id: p.id,
                    sku: p.sku,
                    name: p.name,
                    quantity: q,
                    unit_price_cents: p.price_cents,
                })
                .collect(),
        };
        Ok((row, true))
    }

    pub async fn reservation(&self, id: &str) -> Result<Option<ReservationRow>> {
        let mut conn = self.db.read().acquire().await?;
        load_reservation(&mut conn, id).await
    }

    /// held → committed. Idempotent. A reservation that expired is taken again if the stock
    /// is still there, so a late commit of a live order does not lose its goods.
    pub async fn commit(&self, id: &str) -> Result<ReservationRow> {
        let mut tx = self.db.begin_write().await?;
        commit_in(&mut tx, id).await?;
        let row = load_reservation(&mut tx, id).await?;
        tx.commit().await?;
        row.ok_or_else(|| CatalogError::NotFound(format!("No reservation {id}.")))
    }

    /// held → released: the stock is available again; committed → returned: the stock goes
    /// back on hand. Idempotent.
    pub async fn release(&self, id: &str) -> Result<ReservationRow> {
        let mut tx = self.db.begin_write().await?;
        release_in(&mut tx, id).await?;
        let row = load_reservation(&mut tx, id).await?;
        tx.commit().await?;
        row.ok_or_else(|| CatalogError::NotFound(format!("No reservation {id}.")))
    }

    /// Expires one reservation listed by `expired_held` if it is still held; false if it was
    /// settled in between.
    pub async fn expire(&self, id: &str) -> Result<bool> {
        let mut tx = self.db.begin_write().await?;
        let expired = expire_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(expired)
    }

    pub async fn expired_held(&self, now: i64, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM reservations WHERE state = 'held' AND expires_at < $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.read())
        .await?;
        rows.into_iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Applies one order event exactly once: the event id is recorded in the same transaction
    /// as its effect. Returns false for an event seen before.
    pub async fn apply_event(
        &self,
        event_id: &str,
        kind: &str,
        order_id: &str,
        effect: EventEffect<'_>,
    ) -> Result<bool> {
        let mut tx = self.db.begin_write().await?;
        let fresh = sqlx::query(
            "INSERT INTO processed_events (event_id, event_type, order_id, processed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(kind)
        .bind(order_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(false);
        }
        // The effect runs inside a savepoint so that one refused part-way (a late commit that
        // finds too little stock for its second line) leaves no partial change behind while
        // the event itself is still recorded.
        sqlx::query("SAVEPOINT event_effect").execute(&mut *tx).await?;
        let outcome = match effect {
            EventEffect::Commit(id) => commit_in(&mut tx, id).await,
            EventEffect::Return(id) => release_in(&mut tx, id).await,
            EventEffect::None => Ok(()),
        };
        let refused = match outcome {
            Ok(()) => false,
            // An event about a reservation we never saw (or cannot honour) is recorded, not
            // retried forever: redelivering it cannot change the answer.
            Err(CatalogError::NotFound(why)) | Err(CatalogError::Conflict(why)) => {
                tracing::warn!(event_id, kind, order_id, why, "order event could not be applied");
                true
            }
            Err(CatalogError::InsufficientStock { product_id, .. }) => {
                tracing::error!(event_id, order_id, product_id, "late commit found no stock for a live order");
                true
            }
            Err(e) => return Err(e),
        };
        let end = if refused { "ROLLBACK TO SAVEPOINT event_effect" } else { "RELEASE SAVEPOINT event_effect" };
        sqlx::query(end).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn processed_event_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT event_type, COUNT(*) AS n FROM processed_events GROUP BY event_type ORDER BY event_type",
        )
        .fetch_all(self.db.read())
        .await?;
        rows.into_iter().map(|r| Ok((r.try_get("event_type")?, r.try_get("n")?))).collect()
    }

    pub async fn processed_events_for(&self, order_ids: &[String]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for chunk in order_ids.chunks(200) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT order_id, event_type FROM processed_events WHERE order_id IN ({}) ORDER BY order_id",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(self.db.read()).await? {
                out.push((r.try_get("order_id")?, r.try_get("event_type")?));
            }
        }
        Ok(out)
    }
}

/// Optimistic concurrency: a caller that names the version it last saw may only change that
/// version.
fn ensure_version(current: &ProductRow, expected: Option<i64>) -> Result<()> {
    match expected {
        Some(v) if v != current.version => Err(CatalogError::PreconditionFailed { current_etag: current.etag() }),
        _ => Ok(()),
    }
}

pub enum EventEffect<'a> {
    Commit(&'a str),
    Return(&'a str),
    None,
}

async fn resolve(conn: &mut AnyConnection, reference: &ProductRef) -> Result<Option<ProductRow>> {
    let (sql, bind) = match reference {
        ProductRef::Id(id) => {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1 AND active = 1");
            return Ok(sqlx::query_as::<_, ProductRow>(&sql).bind(*id).fetch_optional(conn).await?);
        }
        ProductRef::Sku(sku) => {
            (format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = $1 AND active = 1"), sku.to_ascii_uppercase())
        }
        ProductRef::Name(name) => (
            format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE LOWER(name) = $1 AND active = 1 ORDER BY id LIMIT 2"),
            name.trim().to_lowercase(),
        ),
    };
    let mut rows = sqlx::query_as::<_, ProductRow>(&sql).bind(bind).fetch_all(conn).await?;
    if rows.len() > 1 {
        return Err(CatalogError::invalid(
            "items",
            format!("{reference} matches several products; name it by product_id or sku"),
        ));
    }
    Ok(rows.pop())
}

async fn reservation_header(conn: &mut AnyConnection, id: &str) -> Result<Option<(ReservationState, String)>> {
    let row =
        sqlx::query("SELECT state, request_hash FROM reservations WHERE id = $1").bind(id).fetch_optional(conn).await?;
    row.map(|r| {
        let state: String = r.try_get("state")?;
        let state =
            ReservationState::parse(&state).ok_or_else(|| CatalogError::Internal(format!("bad state {state}")))?;
        Ok((state, r.try_get("request_hash")?))
    })
    .transpose()
}

async fn load_reservation(conn: &mut AnyConnection, id: &str) -> Result<Option<ReservationRow>> {
    let Some(head) = sqlx::query("SELECT id, state, expires_at, created_at FROM reservations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let state: String = head.try_get("state")?;
    let lines = sqlx::query(
        "SELECT l.product_id, p.sku, p.name, l.quantity, l.unit_price_cents
         FROM reservation_lines l JOIN products p ON p.id = l.product_id
         WHERE l.reservation_id = $1 ORDER BY l.product_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| {
        Ok(ReservedLine {
            product_id: r.try_get("product_id")?,
            sku: r.try_get("sku")?,
            name: r.try_get("name")?,
            quantity: r.try_get("quantity")?,
            unit_price_cents: r.try_get("unit_price_cents")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok(Some(ReservationRow {
        id: head.try_get("id")?,
        state: ReservationState::parse(&state).ok_or_else(|| CatalogError::Internal(format!("bad state {state}")))?,
        expires_at: head.try_get("expires_at")?,
        created_at: head.try_get("created_at")?,
        lines,
    }))
}

async fn line_quantities(conn: &mut AnyConnection, id: &str) -> Result<Vec<(i64, i64)>> {
    sqlx::query("SELECT product_id, quantity FROM reservation_lines WHERE reservation_id = $1 ORDER BY product_id")
        .bind(id)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get("product_id")?, r.try_get("quantity")?)))
        .collect()
}

/// Moves the reservation from `from` to `to` if it is still in `from`; false if someone else
/// moved it first (so each transition's stock effect happens once).
async fn transition(conn: &mut AnyConnection, id: &str, from: ReservationState, to: ReservationState) -> Result<bool> {
    Ok(sqlx::query("UPDATE reservations SET state = $3, updated_at = $4 WHERE id = $1 AND state = $2")
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(now_ms())
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// How often a state change may lose a race before we give up. States only move forward
/// (held → committed/expired/released, expired → committed, committed → returned), so two
/// rounds settle every race; the rest is margin.
const TRANSITION_ATTEMPTS: usize = 4;

/// held → committed: the reserved stock leaves the shelf. expired → committed: a late commit
/// of a live order takes its goods again if they are still there. On PostgreSQL another
/// writer (the expiry sweeper, a second commit) may move the reservation between our read
/// and our update; the update then changes nothing and we look again, since each statement
/// there sees what others committed.
async fn commit_in(conn: &mut AnyConnection, id: &str) -> Result<()> {
    for _ in 0..TRANSITION_ATTEMPTS {
        let (state, _) = reservation_header(conn, id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("No reservation {id}.")))?;
        let now = now_ms();
        match state {
            ReservationState::Committed => return Ok(()),
            ReservationState::Held => {
                if transition(conn, id, ReservationState::Held, ReservationState::Committed).await? {
                    for (product, quantity) in line_quantities(conn, id).await? {
                        sqlx::query(
                            "UPDATE products SET stock_on_hand = stock_on_hand - $2,
                                                 stock_reserved = stock_reserved - $2, updated_at = $3
                             WHERE id = $1",
                        )
                        .bind(product)
                        .bind(quantity)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    }
                    return Ok(());
                }
            }
            ReservationState::Expired => {
                // The state changes first so that two late commits cannot both take the goods;
                // a shortfall fails the whole transaction (the caller rolls it back).
                if transition(conn, id, ReservationState::Expired, ReservationState::Committed).await? {
                    for (product, quantity) in line_quantities(conn, id).await? {
                        let taken = sqlx::query(
                            "UPDATE products SET stock_on_hand = stock_on_hand - $2, updated_at = $3
                             WHERE id = $1 AND stock_on_hand - stock_reserved >= $2",
                        )
                        .bind(product)
                        .bind(quantity)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                        if taken != 1 {
                            return Err(CatalogError::InsufficientStock {
                                product_id: product,
                                sku: String::new(),
                                requested: quantity,
                                available: 0,
                            });
                        }
                    }
                    return Ok(());
                }
            }
            ReservationState::Released | ReservationState::Returned => {
                return Err(CatalogError::Conflict(format!(
                    "Reservation {id} was {}; it cannot be committed.",
                    state.as_str()
                )));
            }
        }
    }
    Err(CatalogError::Internal(format!("reservation {id} kept changing while being committed")))
}

/// held → released: the stock is available again; committed → returned: the goods go back
/// on the shelf. Anything else was already settled. Races are handled as in `commit_in`.
async fn release_in(conn: &mut AnyConnection, id: &str) -> Result<()> {
    for _ in 0..TRANSITION_ATTEMPTS {
        let (state, _) = reservation_header(conn, id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("No reservation {id}.")))?;
        let now = now_ms();
        match state {
            ReservationState::Held => {
                if transition(conn, id, ReservationState::Held, ReservationState::Released).await? {
                    unreserve_lines(conn, id, now).await?;
                    return Ok(());
                }
            }
            ReservationState::Committed => {
                if transition(conn, id, ReservationState::Committed, ReservationState::Returned).await? {
                    for (product, quantity) in line_quantities(conn, id).await? {
                        sqlx::query(
                            "UPDATE products SET stock_on_hand = stock_on_hand + $2, updated_at = $3 WHERE id = $1",
                        )
                        .bind(product)
                        .bind(quantity)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    }
                    return Ok(());
                }
            }
            ReservationState::Released | ReservationState::Expired | ReservationState::Returned => return Ok(()),
        }
    }
    Err(CatalogError::Internal(format!("reservation {id} kept changing while being released")))
}

/// held → expired, and nothing else: a reservation committed since the sweeper listed it
/// belongs to a live order and must keep its goods.
async fn expire_in(conn: &mut AnyConnection, id: &str) -> Result<bool> {
    if !transition(conn, id, ReservationState::Held, ReservationState::Expired).await? {
        return Ok(false);
    }
    unreserve_lines(conn, id, now_ms()).await?;
    Ok(true)
}

/// Makes a reservation's held quantities available again (released or expired).
async fn unreserve_lines(conn: &mut AnyConnection, id: &str, now: i64) -> Result<()> {
    for (product, quantity) in line_quantities(conn, id).await? {
        sqlx::query("UPDATE products SET stock_reserved = stock_reserved - $2, updated_at = $3 WHERE id = $1")
            .bind(product)
            .bind(quantity)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
