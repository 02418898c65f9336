//! What the orders service does, independent of HTTP: placing orders safely, reading them,
//! moving them through their statuses.

use std::sync::Arc;
use std::time::Duration;

use api::events::{ORDER_CANCELLED, ORDER_CREATED, ORDER_STATUS_CHANGED};
use api::{Grants, Permission};
use axum::http::{Method, StatusCode};
use kit::auth::{Principal, ServiceTokenSource, TokenVerifier};
use kit::client::JsonCalls;
use kit::client::{ServiceClient, UpstreamError};
use kit::db::now_ms;
use kit::metrics::Metrics;
use kit::pagination::{PageRequest, Paged};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::config::Config;
use crate::domain::{IdempotencyKey, OrderStatus, parse_customer_name};
use crate::error::{OrderFailure, OrdersError, Result};
use crate::request::{CreateOrderRequest, Line};
use crate::store::{
    HistoryRow, IdempotencyRecord, IdempotentAnswer, Inserted, ItemRow, ListFilter, NewOrder, OrderRow, OutboxEvent,
    Store,
};
use crate::view::{self, Order};
use api::catalog::{Reservation, ReservationLine, ReserveRequest};

/// The answer to a create request: fresh, or the first answer replayed for its key.
pub struct Created {
    pub status: StatusCode,
    pub body: String,
    pub order_id: Option<String>,
    pub replayed: bool,
}

pub struct Orders {
    pub(crate) store: Store,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    pub(crate) verifier: TokenVerifier,
    pub(crate) catalog: ServiceClient,
    pub(crate) tokens: Arc<ServiceTokenSource>,
    pub(crate) relay_wake: Arc<Notify>,
    /// Whether a placed order's reservation is also committed with a call
    /// (`!config.events_commit_reservations()`).
    pub(crate) commit_by_call: bool,
}

impl Orders {
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn create(
        &self,
        caller: &Principal,
        request: &CreateOrderRequest,
        key: Option<IdempotencyKey>,
    ) -> Result<Created> {
        caller.require(Permission::OrderCreate)?;
        let user_id =
            caller.user_id.ok_or_else(|| OrdersError::Forbidden("Orders are placed by users.".into()))?.to_string();
        let lines = request.lines(self.config.max_items)?;
        let customer_name = request.customer_name.as_deref().map(parse_customer_name).transpose()?;
        let Some(key) = key else {
            return self.place(caller, &user_id, &lines, customer_name, None).await;
        };
        let hash = hex::encode(Sha256::digest(
            serde_json::to_vec(&(&lines, &customer_name)).map_err(|e| OrdersError::Internal(e.to_string()))?,
        ));
        let lookup = self.store.idempotency_lookup(&user_id, key.as_str(), &hash);
        if let Some(earlier) = lookup.instrument(self.store.db().span("SELECT", "idempotency_keys")).await? {
            return self.answer_again(earlier);
        }
        let idempotency = (&key, hash.as_str());
        self.place(caller, &user_id, &lines, customer_name, Some(idempotency)).await
    }

    fn answer_again(&self, earlier: IdempotencyRecord) -> Result<Created> {
        match earlier {
            IdempotencyRecord::Replay { status, body } => {
                self.metrics.record(|| metrics::counter!("idempotent_replays_total").increment(1));
                Ok(Created {
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    body,
                    order_id: None,
                    replayed: true,
                })
            }
            IdempotencyRecord::Mismatch => Err(OrdersError::Domain(OrderFailure::IdempotencyMismatch)),
        }
    }

    /// Reserve → check prices → write order + event (one transaction), whose event commits
    /// the reservation. Whatever fails on the way releases what was reserved.
    async fn place(
        &self,
        caller: &Principal,
        user_id: &str,
        lines: &[Line],
        customer_name: Option<String>,
        idempotency: Option<(&IdempotencyKey, &str)>,
    ) -> Result<Created> {
        let started = std::time::Instant::now();
        let order_id = uuid::Uuid::now_v7().to_string();
        let reservation_id = format!("order:{order_id}");
        let request =
            ReserveRequest { id: reservation_id.clone(), lines: lines.iter().map(Line::catalog_line).collect() };
        let reply: Reservation = match self.call_catalog(Method::POST, "/reservations", &request).await {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, OrdersError::Upstream(UpstreamError::Timeout { .. } | UpstreamError::Unreachable { .. }))
                {
                    // We cannot know whether it was made: make sure it is not left holding stock.
                    self.release_later(&reservation_id);
                }
                self.count_create("refused");
                return Err(e);
            }
        };
        if let Err(e) = check_prices(lines, &reply.lines) {
            self.release_later(&reservation_id);
            self.count_create("price_changed");
            return Err(e);
        }
        let now = now_ms();
        let order_row = OrderRow {
            id: order_id.clone(),
            user_id: user_id.to_string(),
            username: caller.username.clone(),
            customer_name,
            status: OrderStatus::Pending,
            total_cents: reply.total.cents(),
            currency: reply.currency.clone(),
            reservation_id: reservation_id.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let items: Vec<ItemRow> = reply
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| ItemRow {
                order_id: order_id.clone(),
                line_no: i as i64 + 1,
                product_id: l.product_id,
                sku: l.sku.clone(),
                name: l.name.clone(),
                unit_price_cents: l.unit_price.cents(),
                quantity: l.quantity,
            })
            .collect();
        let history = [HistoryRow {
            seq: 1,
            status: order_row.status,
            changed_by: caller.subject.clone(),
            changed_at: now,
            note: None,
        }];
        let view = view::from_rows(&order_row, &items, &history);
        let body = serde_json::to_string(&view).map_err(|e| OrdersError::Internal(e.to_string()))?;
        let event = self.event(ORDER_CREATED, &view, &reservation_id, 1, now)?;
        let answer = idempotency.map(|(key, request_hash)| IdempotentAnswer {
            user_id,
            key: key.as_str(),
            request_hash,
            status: StatusCode::CREATED.as_u16(),
            body: body.as_str(),
        });
        let inserted = self
            .store
            .insert_order(NewOrder {
                order: &order_row,
                items: &items,
                changed_by: &caller.subject,
                event: &event,
                idempotency: answer,
            })
            .instrument(self.store.db().span("INSERT", "orders"))
            .await;
        match inserted {
            Ok(Inserted::Yes) => {}
            Ok(Inserted::KeyTaken) => {
                // A duplicate of this request committed while this one ran: give its stock
                // back and answer as that one did.
                self.release_later(&reservation_id);
                let earlier = match idempotency {
                    Some((key, request_hash)) => {
                        self.store.idempotency_lookup(user_id, key.as_str(), request_hash).await?
                    }
                    None => None,
                };
                return match earlier {
                    Some(earlier) => self.answer_again(earlier),
                    None => Err(OrdersError::Internal("an Idempotency-Key was taken and then vanished".into())),
                };
            }
            Err(e) => {
                self.release_later(&reservation_id);
                self.count_create("error");
                return Err(e);
            }
        }
        // The order exists now; its order.created event commits its stock. Without a broker
        // that is all (the relay is woken now); through one, a call does it at once too, and
        // if that call fails the event finishes the job.
        if self.commit_by_call {
            self.commit_later(&reservation_id);
        }
        self.relay_wake.notify_one();
        let elapsed = started.elapsed().as_secs_f64();
        self.metrics.record(|| {
            metrics::counter!("orders_created_total").increment(1);
            metrics::histogram!("order_create_duration_seconds").record(elapsed);
        });
        tracing::info!(order_id, total = %view.total, items = view.item_count, "order created");
        Ok(Created { status: StatusCode::CREATED, body, order_id: Some(order_id), replayed: false })
    }

    fn count_create(&self, outcome: &'static str) {
        self.metrics.record(|| metrics::counter!("order_create_failures_total", "reason" => outcome).increment(1));
    }

    fn event(
        &self,
        kind: &'static str,
        order: &Order,
        reservation_id: &str,
        version: i64,
        at: i64,
    ) -> Result<OutboxEvent> {
        Ok(OutboxEvent {
            id: uuid::Uuid::now_v7().to_string(),
            order_id: order.id.clone(),
            kind,
            version,
            payload: serde_json::to_string(&view::snapshot(order, reservation_id))
                .map_err(|e| OrdersError::Internal(e.to_string()))?,
            occurred_at: at,
        })
    }

    /// Calls the catalog with our service token; a 401 (token expired, keys rotated) gets one
    /// retry with a fresh token, a broken connection one retry on the next instance.
    async fn call_catalog<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T> {
        let body = Some(bytes::Bytes::from(serde_json::to_vec(body).unwrap_or_default()));
        for attempt in 0..2 {
            let token = self.tokens.token_for("catalog").await?;
            match self.catalog.json::<T>(method.clone(), path, Some(&token), body.clone()).await {
                Err(UpstreamError::Status { status: StatusCode::UNAUTHORIZED, .. }) if attempt == 0 => {
                    self.tokens.invalidate().await;
                }
                // The connection broke mid-request (an instance died): every catalog call of
                // ours is idempotent (reservations are named), so the next instance may redo it.
                Err(UpstreamError::Unreachable { .. }) if attempt == 0 => {}
                Err(e @ UpstreamError::Status { .. }) if e.status().is_some_and(|s| s.is_client_error()) => {
                    // The catalog's own answer (no stock, unknown product) is the client's answer.
                    return Err(OrdersError::Request(e.to_problem()));
                }
                other => return other.map_err(OrdersError::from),
            }
        }
        Err(OrdersError::Internal("unreachable retry loop".into()))
    }

    fn release_later(&self, reservation_id: &str) {
        self.reservation_followup(reservation_id, "release");
    }

    fn commit_later(&self, reservation_id: &str) {
        self.reservation_followup(reservation_id, "commit");
    }

    /// A best-effort call to commit or release a reservation, retried briefly in the
    /// background. If it never gets through, the reservation's expiry (release) or the order's
    /// event (commit) settles it.
    fn reservation_followup(&self, reservation_id: &str, action: &'static str) {
        let catalog = self.catalog.clone();
        let tokens = self.tokens.clone();
        let path = format!("/reservations/{reservation_id}/{action}");
        tokio::spawn(kit::traces::continuing(async move {
            for attempt in 0..3u32 {
                let outcome = match tokens.token_for("catalog").await {
                    Ok(token) => catalog.json::<serde_json::Value>(Method::POST, &path, Some(&token), None).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(_) => return,
                    Err(UpstreamError::Status { status, .. })
                        if status.is_client_error() && status != StatusCode::UNAUTHORIZED =>
                    {
                        tracing::debug!(path, %status, "reservation follow-up refused; nothing to do");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(path, error = %e, attempt, "reservation follow-up failed; retrying");
                        if status_is_unauthorized(&e) {
                            tokens.invalidate().await;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
                    }
                }
            }
            tracing::warn!(path, "reservation follow-up gave up; expiry or the order's event will settle it");
        }));
    }

    pub async fn get(&self, caller: &Principal, id: &str) -> Result<Order> {
        let (order, items, history) = self.load_visible(caller, id).await?;
        Ok(view::from_rows(&order, &items, &history))
    }

    /// The order, if the caller may see it: its owner, or an administrator. For anyone else
    /// it does not exist (404), so order ids cannot be probed.
    async fn load_visible(&self, caller: &Principal, id: &str) -> Result<(OrderRow, Vec<ItemRow>, Vec<HistoryRow>)> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(OrderFailure::no_such_order());
        }
        let found = self.store.get(id).instrument(self.store.db().span("SELECT", "orders")).await?;
        let (order, items, history) = found.ok_or_else(OrderFailure::no_such_order)?;
        let own = caller.user_id.map(|u| u.to_string()).as_deref() == Some(order.user_id.as_str());
        let may_see = caller.is_admin() || (own && caller.has(Permission::OrderView));
        if !may_see {
            return Err(OrderFailure::no_such_order());
        }
        Ok((order, items, history))
    }

    pub async fn list(
        &self,
        caller: &Principal,
        page: PageRequest,
        status: Option<OrderStatus>,
        user_id: Option<String>,
        username: Option<String>,
    ) -> Result<Paged<Order>> {
        let filter = if caller.is_admin() {
            ListFilter { user_id, username, status }
        } else {
            caller.require(Permission::OrderView)?;
            let me =
                caller.user_id.ok_or_else(|| OrdersError::Forbidden("Orders belong to users.".into()))?.to_string();
            let someone_else = user_id.as_deref().is_some_and(|u| u != me)
                || username
                    .as_deref()
                    .is_some_and(|u| !caller.username.as_deref().is_some_and(|mine| mine.eq_ignore_ascii_case(u)));
            if someone_else {
                return Err(OrdersError::Forbidden("Only administrators list other users' orders.".into()));
            }
            ListFilter { user_id: Some(me), username: None, status }
        };
        let (rows, total) = self.store.list(&filter, page).instrument(self.store.db().span("SELECT", "orders")).await?;
        Ok(Paged::new(rows.iter().map(|(o, items)| view::from_rows(o, items, &[])).collect(), page, total))
    }

    /// Moves an order along pending → confirmed → shipped → delivered (administrators).
    /// Asking for the status it already has changes nothing; `cancelled` cancels.
    pub async fn set_status(
        &self,
        caller: &Principal,
        id: &str,
        to: OrderStatus,
        note: Option<String>,
    ) -> Result<Order> {
        if to == OrderStatus::Cancelled {
            return self.cancel(caller, id, note).await;
        }
        caller
            .require(Permission::OrderManage)
            .map_err(|_| OrdersError::Forbidden("Changing an order's status needs the admin role.".into()))?;
        self.transition(caller, id, to, note).await
    }

    /// Cancels a pending or confirmed order (needs `order.cancel`); its stock returns to the
    /// catalog when the catalog consumes the order.cancelled event.
    pub async fn cancel(&self, caller: &Principal, id: &str, note: Option<String>) -> Result<Order> {
        caller.require(Permission::OrderCancel)?;
        self.transition(caller, id, OrderStatus::Cancelled, note).await
    }

    async fn transition(&self, caller: &Principal, id: &str, to: OrderStatus, note: Option<String>) -> Result<Order> {
        if let Some(n) = &note
            && n.chars().count() > 500
        {
            return Err(OrdersError::invalid("note", "must be at most 500 characters"));
        }
        for _ in 0..3 {
            let (order, items, history) = self.load_visible(caller, id).await?;
            let from = order.status;
            if from == to {
                return Ok(view::from_rows(&order, &items, &history));
            }
            if !from.can_become(to) {
                return Err(OrdersError::Domain(OrderFailure::IllegalTransition { from, to }));
            }
            let now = now_ms();
            let mut next = order.clone();
            next.status = to;
            next.version += 1;
            next.updated_at = now;
            let view = view::from_rows(&next, &items, &history);
            let kind = if to == OrderStatus::Cancelled { ORDER_CANCELLED } else { ORDER_STATUS_CHANGED };
            let event = self.event(kind, &view, &order.reservation_id, next.version, now)?;
            let change = self.store.change_status(&order, to, &caller.subject, note.as_deref(), &event);
            match change.instrument(self.store.db().span("UPDATE", "orders")).await {
                Ok(()) => {
                    self.relay_wake.notify_one();
                    self.metrics
                        .record(|| metrics::counter!("order_status_changes_total", "to" => to.as_str()).increment(1));
                    tracing::info!(order_id = id, from = %from, to = %to, by = caller.subject, "order status changed");
                    return self.get(caller, id).await;
                }
                Err(OrdersError::Domain(OrderFailure::Concurrent)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(OrdersError::Domain(OrderFailure::Concurrent))
    }
}

fn status_is_unauthorized(e: &UpstreamError) -> bool {
    e.status() == Some(StatusCode::UNAUTHORIZED)
}

/// Every line that states an expected price must match the catalog's current price.
fn check_prices(lines: &[Line], reserved: &[ReservationLine]) -> Result<()> {
    for (i, line) in lines.iter().enumerate() {
        let Some(expected) = line.expected_price else { continue };
        let Some(actual) = reserved.iter().find(|r| line.describes(r)) else {
            return Err(OrdersError::Internal(format!("reservation lacks the product of item {i}")));
        };
        if actual.unit_price != expected {
            return Err(OrdersError::Domain(OrderFailure::PriceChanged {
                item: i,
                name: actual.name.clone(),
                expected,
                current: actual.unit_price,
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(json: serde_json::Value) -> CreateOrderRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn price_mismatch_names_the_item() {
        let lines = req(json!({"items": [{"name": "laptop", "price": "899.99"}]})).lines(10).unwrap();
        let reserved = vec![ReservationLine {
            product_id: 1,
            sku: "LAPTOP-15".into(),
            name: "Laptop".into(),
            quantity: 1,
            unit_price: "999.99".parse().unwrap(),
            line_total: "999.99".parse().unwrap(),
        }];
        match check_prices(&lines, &reserved) {
            Err(OrdersError::Domain(OrderFailure::PriceChanged { item: 0, current, .. })) => {
                assert_eq!(current.to_string(), "999.99")
            }
            other => panic!("{other:?}"),
        }
    }
}
