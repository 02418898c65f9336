//! Order events applied exactly once: the event id is recorded in the transaction of its effect,
//! a batch of events in one transaction.

use kit::db::{Statements, now_ms, placeholders};
use sqlx::Row;

use super::reservations::{commit_if_held, commit_in, lock_for_settling, release_in};

use super::*;
use crate::error::{CatalogError, CatalogFailure, Result};

impl Store {
    /// Applies one order event exactly once (a batch of one). Returns false for an event seen
    /// before.
    pub async fn apply_event(
        &self,
        event_id: &str,
        kind: &str,
        order_id: &str,
        effect: EventEffect<'_>,
    ) -> Result<bool> {
        let reservations: Vec<&str> = effect.reservation().into_iter().collect();
        let mut batch = self.begin_events(&reservations).await?;
        let fresh = batch.apply(event_id, kind, order_id, effect).await?;
        batch.commit().await?;
        Ok(fresh)
    }

    /// One transaction for a batch of order events (one commit where there were as many as
    /// events), holding on PostgreSQL the locks of every reservation it settles and of their
    /// products ([`lock_for_settling`]).
    pub async fn begin_events(&self, reservations: &[&str]) -> Result<EventBatch> {
        let mut tx = self.db.begin_write().await?;
        lock_for_settling(&mut tx, reservations).await?;
        Ok(EventBatch { tx })
    }
}

/// Order events applied in one transaction: each takes effect once (its id is recorded with
/// its effect) and all of them, or none, are committed.
pub struct EventBatch {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl EventBatch {
    /// Applies one event of the batch. Returns false for an event seen before.
    pub async fn apply(&mut self, event_id: &str, kind: &str, order_id: &str, effect: EventEffect<'_>) -> Result<bool> {
        let tx = &mut self.tx;
        let now = now_ms();
        // The event is recorded and, for a created order, its reservation committed while held,
        // in one go (one round trip on SQLite). A held reservation has had no commit event yet
        // (states only move on from held), so a duplicate finds nothing held to commit again.
        let mut writes = Statements::new();
        let record = writes.push(
            sqlx::query(
                "INSERT INTO processed_events (event_id, event_type, order_id, processed_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event_id)
            .bind(kind)
            .bind(order_id)
            .bind(now),
        );
        let committed = match effect {
            EventEffect::Commit(id) => commit_if_held(id, now).into_iter().map(|write| writes.push(write)).last(),
            _ => None,
        };
        let changed = writes.run(tx).await?;
        if changed[record] != 1 {
            return Ok(false);
        }
        if committed.is_some_and(|at| changed[at] == 1) {
            return Ok(true);
        }
        // The effect runs inside a savepoint so that one refused part-way (a late commit that
        // finds too little stock for its second line) leaves no partial change behind while
        // the event itself is still recorded.
        sqlx::query("SAVEPOINT event_effect").execute(&mut **tx).await?;
        let outcome = match effect {
            EventEffect::Commit(id) => commit_in(tx, id).await,
            EventEffect::Return(id) => release_in(tx, id).await,
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
            Err(CatalogError::Domain(CatalogFailure::InsufficientStock { product_id, .. })) => {
                tracing::error!(event_id, order_id, product_id, "late commit found no stock for a live order");
                true
            }
            Err(e) => return Err(e),
        };
        let end = if refused { "ROLLBACK TO SAVEPOINT event_effect" } else { "RELEASE SAVEPOINT event_effect" };
        sqlx::query(end).execute(&mut **tx).await?;
        Ok(true)
    }

    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

impl Store {
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
            let sql = format!(
                "SELECT order_id, event_type FROM processed_events WHERE order_id IN ({}) ORDER BY order_id",
                placeholders(1, chunk.len())
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

pub enum EventEffect<'a> {
    Commit(&'a str),
    Return(&'a str),
    None,
}

impl<'a> EventEffect<'a> {
    /// The reservation it settles, if any.
    pub fn reservation(&self) -> Option<&'a str> {
        match self {
            EventEffect::Commit(id) | EventEffect::Return(id) => Some(id),
            EventEffect::None => None,
        }
    }
}
