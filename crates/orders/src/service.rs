//! What the orders service does, independent of HTTP: placing orders safely, reading them,
//! moving them through their statuses.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use kit::auth::{Permission, Principal, ServiceTokenSource, TokenVerifier};
use kit::client::{ServiceClient, UpstreamError};
use kit::db::{now_ms, rfc3339};
use kit::events::{ORDER_CANCELLED, ORDER_CREATED, ORDER_STATUS_CHANGED};
use kit::metrics::Metrics;
use kit::money::{Money, Quantity};
use kit::pagination::{PageRequest, Paged};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use utoipa::ToSchema;

use crate::config::Config;
use crate::domain::{IdempotencyKey, OrderStatus, parse_customer_name};
use crate::error::{OrdersError, Result};
use crate::store::{
    HistoryRow, IdempotencyRecord, IdempotentAnswer, Inserted, ItemRow, ListFilter, NewOrder, OrderRow, OutboxEvent,
    Store,
};

/// One line of a new order: a product named by `product_id`, `sku` or `name` (`product` is
/// seed 001's word for the name), how many (default 1), and optionally the unit price the
/// client expects to pay. The price charged is always the catalog's; a different expected
/// price refuses the order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemRequest {
    pub product_id: Option<i64>,
    #[schema(max_length = 64)]
    pub sku: Option<String>,
    #[schema(max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 200)]
    pub product: Option<String>,
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: Option<i64>,
    pub price: Option<Money>,
}

/// A new order: `items`, or a single item given at the top level (seed 001 sends
/// `{"product", "quantity", "price"}`, seed 002 `{"product_id", "quantity", "customer_name"}`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    #[schema(min_items = 1, max_items = 100)]
    pub items: Option<Vec<OrderItemRequest>>,
    pub product_id: Option<i64>,
    #[schema(max_length = 64)]
    pub sku: Option<String>,
    #[schema(max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 200)]
    pub product: Option<String>,
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: Option<i64>,
    pub price: Option<Money>,
    #[schema(max_length = 100)]
    pub customer_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
enum ItemRef {
    Id(i64),
    Sku(String),
    Name(String),
}

#[derive(Debug, Clone, Serialize)]
struct Line {
    product: ItemRef,
    quantity: Quantity,
    expected_price: Option<Money>,
}

impl Line {
    fn from_request(item: &OrderItemRequest, field: &str) -> Result<Line> {
        let name = match (&item.name, &item.product) {
            (Some(_), Some(_)) => return Err(OrdersError::invalid(field, "gives both name and product")),
            (n, p) => n.as_ref().or(p.as_ref()),
        };
        let product = match (item.product_id, &item.sku, name) {
            (Some(id), None, None) if id > 0 => ItemRef::Id(id),
            (Some(_), None, None) => {
                return Err(OrdersError::invalid(format!("{field}.product_id"), "must be positive"));
            }
            (None, Some(sku), None) => {
                let sku = sku.trim();
                if sku.is_empty() || sku.len() > 64 {
                    return Err(OrdersError::invalid(format!("{field}.sku"), "must be 1 to 64 characters"));
                }
                ItemRef::Sku(sku.to_string())
            }
            (None, None, Some(name)) => {
                let name = name.trim();
                if name.is_empty() || name.chars().count() > 200 {
                    return Err(OrdersError::invalid(format!("{field}.name"), "must be 1 to 200 characters"));
                }
                ItemRef::Name(name.to_string())
            }
            _ => {
                return Err(OrdersError::invalid(
                    field,
                    "must name the product by exactly one of product_id, sku or name",
                ));
            }
        };
        let quantity = Quantity::new(item.quantity.unwrap_or(1))
            .map_err(|e| OrdersError::invalid(format!("{field}.quantity"), e.to_string()))?;
        Ok(Line { product, quantity, expected_price: item.price })
    }

    fn catalog_line(&self) -> serde_json::Value {
        match &self.product {
            ItemRef::Id(id) => json!({"product_id": id, "quantity": self.quantity.get()}),
            ItemRef::Sku(sku) => json!({"sku": sku, "quantity": self.quantity.get()}),
            ItemRef::Name(name) => json!({"name": name, "quantity": self.quantity.get()}),
        }
    }

    fn describes(&self, line: &ReservedLine) -> bool {
        match &self.product {
            ItemRef::Id(id) => *id == line.product_id,
            ItemRef::Sku(sku) => sku.eq_ignore_ascii_case(&line.sku),
            ItemRef::Name(name) => name.to_lowercase() == line.name.to_lowercase(),
        }
    }
}

impl CreateOrderRequest {
    /// The order lines this request asks for, as the catalog will be asked to reserve them
    /// (`{product_id | sku | name, quantity}` each), or the problem with the request. The same
    /// checks [`Orders::create`] makes first; public for the fuzz targets.
    pub fn catalog_lines(&self, max_items: usize) -> Result<Vec<serde_json::Value>> {
        Ok(self.lines(max_items)?.iter().map(Line::catalog_line).collect())
    }

    fn lines(&self, max_items: usize) -> Result<Vec<Line>> {
        let top_level = self.product_id.is_some()
            || self.sku.is_some()
            || self.name.is_some()
            || self.product.is_some()
            || self.quantity.is_some()
            || self.price.is_some();
        match (&self.items, top_level) {
            (Some(_), true) => {
                Err(OrdersError::invalid("items", "give either items or one top-level product, not both"))
            }
            (None, false) => Err(OrdersError::invalid("items", "is required: at least one item")),
            (None, true) => {
                let item = OrderItemRequest {
                    product_id: self.product_id,
                    sku: self.sku.clone(),
                    name: self.name.clone(),
                    product: self.product.clone(),
                    quantity: self.quantity,
                    price: self.price,
                };
                Ok(vec![Line::from_request(&item, "body")?])
            }
            (Some(items), false) => {
                if items.is_empty() {
                    return Err(OrdersError::invalid("items", "must have at least one item"));
                }
                if items.len() > max_items {
                    return Err(OrdersError::invalid("items", format!("must have at most {max_items} items")));
                }
                items.iter().enumerate().map(|(i, item)| Line::from_request(item, &format!("items[{i}]"))).collect()
            }
        }
    }
}

/// The catalog's reservation answer (the fields the orders service reads).
#[derive(Debug, Deserialize)]
struct ReservationReply {
    lines: Vec<ReservedLine>,
    total: Money,
    currency: String,
}

#[derive(Debug, Deserialize)]
struct ReservedLine {
    product_id: i64,
    sku: String,
    name: String,
    quantity: i64,
    unit_price: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusChange {
    pub status: OrderStatus,
    /// The user (or service) that made the change.
    pub changed_by: String,
    #[schema(format = "date-time")]
    pub changed_at: String,
    pub note: Option<String>,
}

/// An order as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Order {
    #[schema(format = "uuid")]
    pub id: String,
    pub user_id: String,
    pub username: Option<String>,
    pub customer_name: Option<String>,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    /// Number of lines.
    pub item_count: usize,
    pub total: Money,
    pub currency: String,
    #[schema(format = "date-time")]
    pub created_at: String,
    #[schema(format = "date-time")]
    pub updated_at: String,
    /// Every status the order has had, oldest first (single-order reads only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_history: Vec<StatusChange>,
}

impl Order {
    fn from_rows(order: &OrderRow, items: &[ItemRow], history: &[HistoryRow]) -> Order {
        let items: Vec<OrderItem> = items
            .iter()
            .map(|i| {
                let unit = Money::from_cents(i.unit_price_cents).unwrap_or_default();
                let line_total = Quantity::new(i.quantity).ok().and_then(|q| unit.times(q).ok()).unwrap_or_default();
                OrderItem {
                    product_id: i.product_id,
                    sku: i.sku.clone(),
                    name: i.name.clone(),
                    quantity: i.quantity,
                    unit_price: unit,
                    line_total,
                }
            })
            .collect();
        Order {
            id: order.id.clone(),
            user_id: order.user_id.clone(),
            username: order.username.clone(),
            customer_name: order.customer_name.clone(),
            status: order.status,
            item_count: items.len(),
            items,
            total: Money::from_cents(order.total_cents).unwrap_or_default(),
            currency: order.currency.clone(),
            created_at: rfc3339(order.created_at),
            updated_at: rfc3339(order.updated_at),
            status_history: history
                .iter()
                .map(|h| StatusChange {
                    status: h.status,
                    changed_by: h.changed_by.clone(),
                    changed_at: rfc3339(h.changed_at),
                    note: h.note.clone(),
                })
                .collect(),
        }
    }

    /// The event payload: what consumers need to act on the change.
    fn snapshot(&self, reservation_id: &str) -> serde_json::Value {
        json!({
            "id": self.id,
            "user_id": self.user_id,
            "status": self.status,
            "total": self.total,
            "currency": self.currency,
            "reservation_id": reservation_id,
            "items": self.items.iter().map(|i| json!({
                "product_id": i.product_id, "quantity": i.quantity, "unit_price": i.unit_price,
            })).collect::<Vec<_>>(),
        })
    }
}

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
        if let Some(earlier) = self.store.idempotency_lookup(&user_id, key.as_str(), &hash).await? {
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
            IdempotencyRecord::Mismatch => Err(OrdersError::IdempotencyMismatch),
        }
    }

    /// Reserve → check prices → write order + event (one transaction) → commit the
    /// reservation. Whatever fails on the way releases what was reserved.
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
        let request = json!({
            "id": reservation_id,
            "lines": lines.iter().map(Line::catalog_line).collect::<Vec<_>>(),
        });
        let reply: ReservationReply = match self.call_catalog(Method::POST, "/reservations", Some(&request)).await {
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
        let view = Order::from_rows(&order_row, &items, &history);
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
        // The order exists now. Committing its stock is also what its order.created event
        // does, so if this call fails the event finishes the job.
        self.commit_later(&reservation_id);
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
        view: &Order,
        reservation_id: &str,
        version: i64,
        at: i64,
    ) -> Result<OutboxEvent> {
        Ok(OutboxEvent {
            id: uuid::Uuid::now_v7().to_string(),
            order_id: view.id.clone(),
            kind,
            version,
            payload: serde_json::to_string(&view.snapshot(reservation_id))
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
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let body = body.map(|b| bytes::Bytes::from(serde_json::to_vec(b).unwrap_or_default()));
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
        tokio::spawn(async move {
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
        });
    }

    pub async fn get(&self, caller: &Principal, id: &str) -> Result<Order> {
        let (order, items, history) = self.load_visible(caller, id).await?;
        Ok(Order::from_rows(&order, &items, &history))
    }

    /// The order, if the caller may see it: its owner, or an administrator. For anyone else
    /// it does not exist (404), so order ids cannot be probed.
    async fn load_visible(&self, caller: &Principal, id: &str) -> Result<(OrderRow, Vec<ItemRow>, Vec<HistoryRow>)> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(OrdersError::NotFound);
        }
        let (order, items, history) = self.store.get(id).await?.ok_or(OrdersError::NotFound)?;
        let own = caller.user_id.map(|u| u.to_string()).as_deref() == Some(order.user_id.as_str());
        let may_see = caller.is_admin() || (own && caller.has(Permission::OrderView));
        if !may_see {
            return Err(OrdersError::NotFound);
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
        let (rows, total) = self.store.list(&filter, page).await?;
        Ok(Paged::new(rows.iter().map(|(o, items)| Order::from_rows(o, items, &[])).collect(), page, total))
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
                return Ok(Order::from_rows(&order, &items, &history));
            }
            if !from.can_become(to) {
                return Err(OrdersError::IllegalTransition { from, to });
            }
            let now = now_ms();
            let mut next = order.clone();
            next.status = to;
            next.version += 1;
            next.updated_at = now;
            let view = Order::from_rows(&next, &items, &history);
            let kind = if to == OrderStatus::Cancelled { ORDER_CANCELLED } else { ORDER_STATUS_CHANGED };
            let event = self.event(kind, &view, &order.reservation_id, next.version, now)?;
            match self.store.change_status(&order, to, &caller.subject, note.as_deref(), &event).await {
                Ok(()) => {
                    self.relay_wake.notify_one();
                    self.metrics
                        .record(|| metrics::counter!("order_status_changes_total", "to" => to.as_str()).increment(1));
                    tracing::info!(order_id = id, from = %from, to = %to, by = caller.subject, "order status changed");
                    return self.get(caller, id).await;
                }
                Err(OrdersError::Concurrent) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(OrdersError::Concurrent)
    }
}

fn status_is_unauthorized(e: &UpstreamError) -> bool {
    e.status() == Some(StatusCode::UNAUTHORIZED)
}

/// Every line that states an expected price must match the catalog's current price.
fn check_prices(lines: &[Line], reserved: &[ReservedLine]) -> Result<()> {
    for (i, line) in lines.iter().enumerate() {
        let Some(expected) = line.expected_price else { continue };
        let Some(actual) = reserved.iter().find(|r| line.describes(r)) else {
            return Err(OrdersError::Internal(format!("reservation lacks the product of item {i}")));
        };
        if actual.unit_price != expected {
            return Err(OrdersError::PriceChanged {
                item: i,
                name: actual.name.clone(),
                expected,
                current: actual.unit_price,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> CreateOrderRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_seed_shapes_all_become_lines() {
        let seed001 = req(json!({"product": "Go Programming Book", "quantity": 2, "price": 29.99})).lines(10).unwrap();
        assert_eq!(seed001[0].product, ItemRef::Name("Go Programming Book".into()));
        assert_eq!(seed001[0].expected_price.unwrap().cents(), 2999);
        let seed002 = req(json!({"product_id": 1, "quantity": 2, "customer_name": "John Doe"})).lines(10).unwrap();
        assert_eq!(seed002[0].product, ItemRef::Id(1));
        let seed000 = req(json!({"items": [{"name": "Laptop", "price": 999.99, "quantity": 1}, {"name": "Mouse", "price": 29.99, "quantity": 2}]}))
            .lines(10)
            .unwrap();
        assert_eq!(seed000.len(), 2);
        assert_eq!(seed000[1].quantity.get(), 2);
    }

    #[test]
    fn bad_lines_name_their_field() {
        let err = |v: serde_json::Value| match req(v).lines(3) {
            Err(OrdersError::Invalid { field, .. }) => field,
            other => panic!("{:?}", other.map(|l| l.len())),
        };
        assert_eq!(err(json!({})), "items");
        assert_eq!(err(json!({"items": []})), "items");
        assert_eq!(err(json!({"items": [{"product_id": 1, "quantity": 0}]})), "items[0].quantity");
        assert_eq!(err(json!({"items": [{"product_id": 1, "quantity": 10001}]})), "items[0].quantity");
        assert_eq!(err(json!({"items": [{"quantity": 1}]})), "items[0]");
        assert_eq!(err(json!({"items": [{"product_id": 1, "sku": "A"}]})), "items[0]");
        assert_eq!(err(json!({"items": [{"product_id": -4}]})), "items[0].product_id");
        assert_eq!(
            err(json!({"items": [{"product_id": 1}, {"product_id": 2}, {"product_id": 3}, {"product_id": 4}]})),
            "items"
        );
        assert_eq!(err(json!({"items": [{"product_id": 1}], "product_id": 2})), "items");
    }

    #[test]
    fn price_mismatch_names_the_item() {
        let lines = req(json!({"items": [{"name": "laptop", "price": "899.99"}]})).lines(10).unwrap();
        let reserved = vec![ReservedLine {
            product_id: 1,
            sku: "LAPTOP-15".into(),
            name: "Laptop".into(),
            quantity: 1,
            unit_price: "999.99".parse().unwrap(),
        }];
        match check_prices(&lines, &reserved) {
            Err(OrdersError::PriceChanged { item: 0, current, .. }) => assert_eq!(current.to_string(), "999.99"),
            other => panic!("{other:?}"),
        }
    }
}
