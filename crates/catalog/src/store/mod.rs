//! The catalog's SQL: products, stock and reservations. Stock only ever moves through
//! conditional updates (`… WHERE available >= wanted`), inside transactions, so concurrent
//! reservers — even several catalog instances on one PostgreSQL — can never oversell.

use api::money::Money;
use kit::db::{Db, escape_like, is_unique_violation, now_ms};
use kit::pagination::PageRequest;
use sqlx::{AnyConnection, Row};

use crate::domain::{ReservationState, SortOrder};
use crate::error::{CatalogError, CatalogFailure, Result};

mod events;
mod images;
mod reservations;

pub use events::{EventBatch, EventEffect};
pub use images::{ImageRow, Placement};

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
    /// 0: sold without counting stock; the stock figures are then not used.
    pub track_stock: i64,
    pub active: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ProductRow {
    pub fn available(&self) -> i64 {
        (self.stock_on_hand - self.stock_reserved).max(0)
    }

    pub fn tracks_stock(&self) -> bool {
        self.track_stock != 0
    }

    /// Whether it can be ordered now: always when its stock is not counted.
    pub fn in_stock(&self) -> bool {
        !self.tracks_stock() || self.available() > 0
    }

    pub fn is_active(&self) -> bool {
        self.active != 0
    }

    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.id, self.version)
    }
}

const PRODUCT_COLUMNS: &str = "id, sku, name, description, category, price_cents, currency, stock_on_hand, \
                               stock_reserved, track_stock, active, version, created_at, updated_at";

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
    pub track_stock: bool,
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
    pub track_stock: Option<bool>,
    /// Units on hand, only when stock tracking is switched on (else stock moves through
    /// `change_stock`).
    pub stock_on_hand: Option<i64>,
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
            && self.track_stock.is_none()
            && self.stock_on_hand.is_none()
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
            AND ($5 IS NULL
                 OR ($5 = 1 AND (track_stock = 0 OR stock_on_hand > stock_reserved))
                 OR ($5 = 0 AND track_stock = 1 AND stock_on_hand <= stock_reserved))
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
                                       stock_reserved, track_stock, active, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $11, $9, 1, $10, $10)",
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
            .bind(i64::from(new.track_stock))
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
        check_tracking_switch(&current, changes)?;
        let result = sqlx::query(
            "UPDATE products SET
                sku = COALESCE($2, sku),
                name = COALESCE($3, name),
                description = COALESCE($4, description),
                category = COALESCE($5, category),
                price_cents = COALESCE($6, price_cents),
                currency = COALESCE($7, currency),
                active = COALESCE($8, active),
                track_stock = COALESCE($11, track_stock),
                stock_on_hand = COALESCE($12, stock_on_hand),
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
        .bind(changes.track_stock.map(i64::from))
        .bind(changes.stock_on_hand)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(r) if r.rows_affected() == 1 => {}
            Ok(_) => {
                return Err(CatalogError::Domain(CatalogFailure::PreconditionFailed { current_etag: current.etag() }));
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
            Some(t) if (0..=api::money::Quantity::MAX as i64 * 100_000).contains(&t) => t,
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
}

/// Switching stock tracking on starts from a count the administrator gives (at least what
/// tracked orders still hold); a count is given only with that switch.
fn check_tracking_switch(current: &ProductRow, changes: &ProductChanges) -> Result<()> {
    let switching_on = changes.track_stock == Some(true) && !current.tracks_stock();
    match (switching_on, changes.stock_on_hand) {
        (true, None) => Err(CatalogError::invalid(
            "stock",
            "is required when stock tracking is switched on: how many units are on hand",
        )),
        (true, Some(n)) if n < current.stock_reserved => Err(CatalogError::invalid(
            "stock",
            format!("must be at least the {} units open orders still hold", current.stock_reserved),
        )),
        (false, Some(_)) => Err(CatalogError::invalid(
            "stock",
            "is set here only when switching stock tracking on; otherwise use /products/{id}/stock",
        )),
        _ => Ok(()),
    }
}

/// Optimistic concurrency: a caller that names the version it last saw may only change that
/// version.
fn ensure_version(current: &ProductRow, expected: Option<i64>) -> Result<()> {
    match expected {
        Some(v) if v != current.version => {
            Err(CatalogError::Domain(CatalogFailure::PreconditionFailed { current_etag: current.etag() }))
        }
        _ => Ok(()),
    }
}
