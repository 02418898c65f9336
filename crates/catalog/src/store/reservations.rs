//! Reservations: every line or none, then committed, released or expired, each exactly once.

use kit::db::{AnyQuery, Backend, Statements, now_ms, placeholders};
use sqlx::{AnyConnection, Row};

use super::*;
use crate::domain::{ProductRef, ReservationState};
use crate::error::{CatalogError, CatalogFailure, Result};

impl Store {
    /// Reserves every line or none. Replaying the same id with the same request returns the
    /// existing reservation (`false`: not new); with a different request it is a conflict.
    pub async fn reserve(
        &self,
        id: &str,
        request_hash: &str,
        lines: &[(ProductRef, i64)],
        expires_at: i64,
    ) -> Result<(ReservationRow, bool)> {
        // Resolve references, merging lines that name the same product: read before the
        // write lock is taken, so it is held for the writes only. Stock is checked where it is
        // taken, under the lock (a product withdrawn since has none to give); a product sold
        // without counting stock is sold as it was read a moment before.
        let mut read = self.db.read().acquire().await?;
        let named = by_id_or_sku(&mut read, lines).await?;
        let mut wanted: Vec<(ProductRow, i64)> = Vec::new();
        for (index, (reference, quantity)) in lines.iter().enumerate() {
            let product = match reference {
                ProductRef::Id(id) => named.iter().find(|p| p.id == *id).cloned(),
                ProductRef::Sku(sku) => named.iter().find(|p| p.sku == sku.to_ascii_uppercase()).cloned(),
                ProductRef::Name(name) => by_name(&mut read, name, reference).await?,
            }
            .ok_or(CatalogError::Domain(CatalogFailure::UnknownProduct {
                line: index + 1,
                reference: reference.to_string(),
            }))?;
            match wanted.iter_mut().find(|(p, _)| p.id == product.id) {
                Some((_, q)) => *q += quantity,
                None => wanted.push((product, *quantity)),
            }
        }
        drop(read);
        // Row locks are always taken in product id order (here and where reservations are
        // committed or released), so two orders naming the same products cannot deadlock.
        wanted.sort_by_key(|(p, _)| p.id);
        let now = now_ms();
        // Every write at once (one round trip on SQLite), checked afterwards: the transaction
        // is rolled back unless each did what it had to.
        let mut writes = Statements::new();
        // The id is claimed first, in the statement that would find it taken: a replay (or
        // another instance's same reservation, which on PostgreSQL this waits for) answers with
        // what exists, and a new one costs no look-up.
        let claim = writes.push(
            sqlx::query(
                "INSERT INTO reservations (id, state, request_hash, expires_at, created_at, updated_at)
                 VALUES ($1, 'held', $2, $3, $4, $4)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(request_hash)
            .bind(expires_at)
            .bind(now),
        );
        // A product sold without counting stock is always there; its lines hold nothing.
        let takes: Vec<(usize, &ProductRow, i64)> = wanted
            .iter()
            .filter(|(p, _)| p.tracks_stock())
            .map(|(product, quantity)| {
                let at = writes.push(
                    sqlx::query(
                        "UPDATE products SET stock_reserved = stock_reserved + $2, updated_at = $3
                         WHERE id = $1 AND active = 1 AND stock_on_hand - stock_reserved >= $2",
                    )
                    .bind(product.id)
                    .bind(*quantity)
                    .bind(now),
                );
                (at, product, *quantity)
            })
            .collect();
        for (product, quantity) in &wanted {
            // A replay's lines exist already; it is rolled back below, not refused here.
            writes.push(
                sqlx::query(
                    "INSERT INTO reservation_lines (reservation_id, product_id, quantity, unit_price_cents, holds_stock)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (reservation_id, product_id) DO NOTHING",
                )
                .bind(id)
                .bind(product.id)
                .bind(*quantity)
                .bind(product.price_cents)
                .bind(i64::from(product.tracks_stock())),
            );
        }
        let at: Vec<usize> = takes.iter().map(|(at, _, _)| *at).collect();
        let (changed, kept) = self
            .db
            .write_all(writes, move |changed| changed[claim] == 1 && at.iter().all(|i| changed[*i] == 1))
            .await?;
        if !kept && changed[claim] != 1 {
            return self.reserved_before(id, request_hash).await;
        }
        if let Some(&(_, product, quantity)) = takes.iter().find(|(at, _, _)| changed[*at] != 1) {
            let mut conn = self.db.write().acquire().await?;
            let fresh = self.get_for_write(&mut conn, product.id).await?;
            return Err(CatalogError::Domain(CatalogFailure::InsufficientStock {
                product_id: product.id,
                sku: product.sku.clone(),
                requested: quantity,
                available: fresh.map(|p| p.available()).unwrap_or(0),
            }));
        }
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

    /// The reservation a replay of `id` finds: the same one when the request matches.
    async fn reserved_before(&self, id: &str, request_hash: &str) -> Result<(ReservationRow, bool)> {
        let mut conn = self.db.write().acquire().await?;
        let (_, hash) = reservation_header(&mut conn, id)
            .await?
            .ok_or_else(|| CatalogError::Conflict(format!("Reservation {id} is being settled; retry.")))?;
        if hash != request_hash {
            return Err(CatalogError::Conflict(format!("Reservation {id} already exists with different lines.")));
        }
        let row = load_reservation(&mut conn, id).await?;
        Ok((row.ok_or_else(|| CatalogError::NotFound(format!("No reservation {id}.")))?, false))
    }

    pub async fn reservation(&self, id: &str) -> Result<Option<ReservationRow>> {
        let mut conn = self.db.read().acquire().await?;
        load_reservation(&mut conn, id).await
    }

    /// held → committed. Idempotent. A reservation that expired is taken again if the stock
    /// is still there, so a late commit of a live order does not lose its goods.
    pub async fn commit(&self, id: &str) -> Result<ReservationRow> {
        let mut tx = self.db.begin_write().await?;
        lock_for_settling(&mut tx, &[id]).await?;
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
}

/// The active products the lines name by id or SKU, in one query (a name may match several
/// products, so names are looked up one by one by [`by_name`]).
async fn by_id_or_sku(conn: &mut AnyConnection, lines: &[(ProductRef, i64)]) -> Result<Vec<ProductRow>> {
    let mut ids = Vec::new();
    let mut skus = Vec::new();
    for (reference, _) in lines {
        match reference {
            ProductRef::Id(id) => ids.push(*id),
            ProductRef::Sku(sku) => skus.push(sku.to_ascii_uppercase()),
            ProductRef::Name(_) => {}
        }
    }
    if ids.is_empty() && skus.is_empty() {
        return Ok(Vec::new());
    }
    let mut wanted = Vec::new();
    if !ids.is_empty() {
        wanted.push(format!("id IN ({})", placeholders(1, ids.len())));
    }
    if !skus.is_empty() {
        wanted.push(format!("sku IN ({})", placeholders(ids.len() + 1, skus.len())));
    }
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE active = 1 AND ({})", wanted.join(" OR "));
    let mut query = sqlx::query_as::<_, ProductRow>(&sql);
    for id in ids {
        query = query.bind(id);
    }
    for sku in skus {
        query = query.bind(sku);
    }
    Ok(query.fetch_all(conn).await?)
}

/// The active product a line names by its name (`reference`), if exactly one has it.
async fn by_name(conn: &mut AnyConnection, name: &str, reference: &ProductRef) -> Result<Option<ProductRow>> {
    let sql =
        format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE LOWER(name) = $1 AND active = 1 ORDER BY id LIMIT 2");
    let mut rows = sqlx::query_as::<_, ProductRow>(&sql).bind(name.trim().to_lowercase()).fetch_all(conn).await?;
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

/// The lines whose stock the reservation holds (a product sold without counting stock holds
/// none), in product id order, the order row locks are taken in.
async fn line_quantities(conn: &mut AnyConnection, id: &str) -> Result<Vec<(i64, i64)>> {
    sqlx::query(
        "SELECT product_id, quantity FROM reservation_lines
         WHERE reservation_id = $1 AND holds_stock = 1 ORDER BY product_id",
    )
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
pub(super) async fn commit_in(conn: &mut AnyConnection, id: &str) -> Result<()> {
    for _ in 0..TRANSITION_ATTEMPTS {
        let (state, _) = reservation_header(conn, id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("No reservation {id}.")))?;
        let now = now_ms();
        match state {
            ReservationState::Committed => return Ok(()),
            ReservationState::Held => {
                let changed = commit_if_held(id, now).into_iter().collect::<Statements>().run(conn).await?;
                if changed.last() == Some(&1) {
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
                            return Err(CatalogError::Domain(CatalogFailure::InsufficientStock {
                                product_id: product,
                                sku: String::new(),
                                requested: quantity,
                                available: 0,
                            }));
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

/// On PostgreSQL, locks the reservations and then the products they hold, each in id order:
/// every other writer takes a reservation before its products (a commit, a release, the
/// expiry sweeper) or holds no reservation another can want (a new one), and takes products
/// in id order, so no two transactions wait on each other in a circle. SQLite has one writer
/// at a time and needs none of it.
pub(super) async fn lock_for_settling(conn: &mut AnyConnection, reservations: &[&str]) -> Result<()> {
    if Backend::of(conn) == Backend::Sqlite || reservations.is_empty() {
        return Ok(());
    }
    let list = placeholders(1, reservations.len());
    for sql in [
        format!("SELECT id FROM reservations WHERE id IN ({list}) ORDER BY id FOR UPDATE"),
        format!(
            "SELECT id FROM products WHERE id IN
               (SELECT product_id FROM reservation_lines WHERE reservation_id IN ({list}))
             ORDER BY id FOR UPDATE"
        ),
    ] {
        let mut lock = sqlx::query(&sql);
        for id in reservations {
            lock = lock.bind(*id);
        }
        lock.fetch_all(&mut *conn).await?;
    }
    Ok(())
}

/// held → committed, as two writes to run with others (one round trip on SQLite): the
/// reserved stock leaves the shelf, then the reservation is marked committed, each only while
/// it is held, so the second's count says whether it was (and nothing changed if not). The
/// common case of a commit, tried first by an order's event without reading the reservation
/// or opening a savepoint: nothing in it can fail half way. On PostgreSQL the caller holds
/// the locks of [`lock_for_settling`] first: the products' update takes its row locks in no
/// set order, and the reservation's state must not move between the two writes.
pub(super) fn commit_if_held(id: &str, now: i64) -> [AnyQuery<'_>; 2] {
    [
        sqlx::query(
            "UPDATE products SET stock_on_hand = stock_on_hand - l.quantity,
                                 stock_reserved = stock_reserved - l.quantity, updated_at = $2
             FROM reservation_lines l JOIN reservations r ON r.id = l.reservation_id
             WHERE l.product_id = products.id AND l.reservation_id = $1 AND l.holds_stock = 1
               AND r.state = 'held'",
        )
        .bind(id)
        .bind(now),
        sqlx::query("UPDATE reservations SET state = 'committed', updated_at = $2 WHERE id = $1 AND state = 'held'")
            .bind(id)
            .bind(now),
    ]
}

/// held → released: the stock is available again; committed → returned: the goods go back
/// on the shelf. Anything else was already settled. Races are handled as in `commit_in`.
pub(super) async fn release_in(conn: &mut AnyConnection, id: &str) -> Result<()> {
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
