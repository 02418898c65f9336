//! What the catalog does, independent of HTTP.

use std::sync::Arc;
use std::time::Duration;

use api::events::{DeliveryReport, Event, ORDER_CANCELLED, ORDER_CREATED};
use api::money::{Money, Quantity};
use api::{Grants, Permission};
use kit::auth::{Principal, Role, TokenVerifier};
use kit::db::{now_ms, rfc3339};
use kit::metrics::Metrics;
use kit::pagination::{PageRequest, Paged};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::config::Config;
use crate::domain::{Category, Description, ProductName, ProductRef, ReservationId, Sku};
use crate::error::{CatalogError, CatalogFailure, Result};
use crate::store::{
    EventEffect, ListFilter, NewProduct, ProductChanges, ProductRow, ReservationRow, StockChange, Store,
};

pub use api::catalog::{CategoryCount, LineRequest, Product, Reservation, ReservationLine, ReserveRequest};

impl From<&ProductRow> for Product {
    fn from(r: &ProductRow) -> Self {
        Product {
            id: r.id,
            sku: r.sku.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            category: r.category.clone(),
            price: Money::from_cents(r.price_cents).unwrap_or_default(),
            currency: r.currency.clone(),
            stock: r.available(),
            in_stock: r.in_stock(),
            track_stock: r.tracks_stock(),
            stock_on_hand: r.stock_on_hand,
            stock_reserved: r.stock_reserved,
            active: r.is_active(),
            images: Vec::new(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// The product a reservation line names, checked.
pub fn product_ref(line: &LineRequest, index: usize) -> Result<ProductRef> {
    match (line.product_id, &line.sku, &line.name) {
        (Some(id), None, None) => Ok(ProductRef::Id(id)),
        (None, Some(sku), None) => Ok(ProductRef::Sku(Sku::parse(sku)?.as_str().to_string())),
        (None, None, Some(name)) => Ok(ProductRef::Name(ProductName::parse(name)?.as_str().to_string())),
        _ => Err(CatalogError::invalid(
            format!("lines[{index}]"),
            "must name the product by exactly one of product_id, sku or name",
        )),
    }
}

pub struct Catalog {
    pub(crate) store: Store,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    pub(crate) verifier: TokenVerifier,
}

/// Which fields a product write sets.
#[derive(Debug, Default)]
pub struct ProductInput {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Option<Money>,
    pub currency: Option<String>,
    pub active: Option<bool>,
    pub track_stock: Option<bool>,
    pub stock: Option<i64>,
}

impl Catalog {
    pub async fn start(config: Config, metrics: Metrics) -> Result<Arc<Self>> {
        let db = kit::db::Db::connect(&config.db).await?;
        db.migrate(&crate::store::MIGRATOR).await.map_err(|e| CatalogError::Internal(format!("migrations: {e}")))?;
        let users = kit::client::ServiceClient::new("users", config.users.clone(), Default::default());
        let revoked = kit::auth::RevocationSet::default();
        let tokens = Arc::new(kit::auth::ServiceTokenSource::new(users.clone(), config.identity.clone()));
        revoked.spawn_poller(kit::auth::HttpRevocations { users: users.clone(), tokens }, config.revocation_poll);
        let verifier = TokenVerifier::for_service(&config.jwt, users, revoked);
        let catalog = Arc::new(Catalog { store: Store::new(db), config, metrics, verifier });
        if catalog.config.demo_data {
            catalog.seed_demo().await?;
        }
        catalog.spawn_expiry_sweeper();
        Ok(catalog)
    }

    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn seed_demo(&self) -> Result<()> {
        if self.store.count().await? > 0 {
            return Ok(());
        }
        for p in crate::demo::DEMO_PRODUCTS {
            let price: Money = p.price.parse().map_err(|e| CatalogError::Internal(format!("demo price: {e}")))?;
            let created = self
                .store
                .insert(
                    &NewProduct {
                        sku: Some(p.sku),
                        name: p.name,
                        description: p.description,
                        category: p.category,
                        price,
                        currency: &self.config.currency,
                        stock: p.stock,
                        track_stock: true,
                        active: true,
                    },
                    |id| format!("P-{id}"),
                )
                .await;
            match created {
                Ok(row) => self.add_demo_picture(&row, p).await?,
                // Another instance starting at the same moment seeded this one first.
                Err(CatalogError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!(products = crate::demo::DEMO_PRODUCTS.len(), "demo catalogue created");
        Ok(())
    }

    async fn add_demo_picture(&self, row: &ProductRow, p: &crate::demo::DemoProduct) -> Result<()> {
        let renditions =
            p.renditions().map_err(|e| CatalogError::Internal(format!("demo picture of {}: {e}", p.sku)))?;
        let alt = format!("Drawing of the {}", p.name);
        let per_product = self.config.images.per_product;
        match self.store.add_image(row.id, &renditions, &alt, crate::store::Placement::Main, per_product).await {
            Ok(_) | Err(CatalogError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn spawn_expiry_sweeper(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        let every = self.config.sweep_interval;
        tokio::spawn(async move {
            // The first sweep comes one interval after start, not at once: a catalog that
            // starts beside running orders gives their late commits that interval too, and
            // a test that drives expiry by hand (interval "1h") is never raced by a sweep.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = this.upgrade() else { break };
                if let Err(e) = this.release_expired().await {
                    tracing::warn!(error = %e, "releasing expired reservations failed; will retry");
                }
            }
        });
    }

    /// Releases reservations not committed in time. Safe to run on every instance at once:
    /// each reservation changes state once.
    pub async fn release_expired(&self) -> Result<usize> {
        let ids = self.store.expired_held(now_ms(), 500).await?;
        let mut expired = 0;
        for id in &ids {
            if self.store.expire(id).await? {
                expired += 1;
            }
        }
        if expired > 0 {
            tracing::info!(count = expired, "expired reservations released");
            self.metrics.record(|| metrics::counter!("reservations_expired_total").increment(expired as u64));
        }
        Ok(expired)
    }

    pub async fn list(
        &self,
        filter: ListFilter,
        page: PageRequest,
        caller: Option<&Principal>,
        link_prefix: &str,
    ) -> Result<Paged<Product>> {
        if filter.include_inactive && !caller.is_some_and(|p| p.has(Permission::ProductManage)) {
            return Err(CatalogError::Forbidden("Only administrators see inactive products.".into()));
        }
        let (rows, total) = self.store.list(&filter, page).await?;
        Ok(Paged::new(self.products(&rows, link_prefix).await?, page, total))
    }

    /// One product by numeric id or by SKU. Inactive products are visible to administrators
    /// only.
    pub async fn get(&self, id_or_sku: &str, caller: Option<&Principal>) -> Result<ProductRow> {
        let row = match id_or_sku.parse::<i64>() {
            Ok(id) => self.store.get(id).await?,
            Err(_) => match Sku::parse(id_or_sku) {
                Ok(sku) => self.store.get_by_sku(sku.as_str()).await?,
                Err(_) => None,
            },
        };
        match row {
            Some(r) if r.is_active() || caller.is_some_and(|p| p.has(Permission::ProductManage)) => Ok(r),
            _ => Err(CatalogError::NotFound(format!("No product {id_or_sku}."))),
        }
    }

    pub async fn categories(&self) -> Result<Vec<CategoryCount>> {
        Ok(self.store.categories().await?.into_iter().map(|(name, count)| CategoryCount { name, count }).collect())
    }

    pub(crate) fn require_admin(caller: &Principal) -> Result<()> {
        if caller.has(Permission::ProductManage) {
            Ok(())
        } else {
            Err(CatalogError::Forbidden("Managing products needs the admin role.".into()))
        }
    }

    pub async fn create(&self, caller: &Principal, input: ProductInput) -> Result<ProductRow> {
        Self::require_admin(caller)?;
        let name =
            ProductName::parse(input.name.as_deref().ok_or_else(|| CatalogError::invalid("name", "is required"))?)?;
        let category = Category::parse(
            input.category.as_deref().ok_or_else(|| CatalogError::invalid("category", "is required"))?,
        )?;
        let price = input.price.ok_or_else(|| CatalogError::invalid("price", "is required"))?;
        let description = Description::parse(input.description.as_deref().unwrap_or_default())?;
        let sku = input.sku.as_deref().map(Sku::parse).transpose()?;
        let currency = self.currency(input.currency.as_deref())?;
        let track_stock = input.track_stock.unwrap_or(true);
        let stock = input.stock.unwrap_or(0);
        if !track_stock && input.stock.is_some() {
            return Err(CatalogError::invalid("stock", "is not counted for a product with track_stock false"));
        }
        if !(0..=1_000_000_000).contains(&stock) {
            return Err(CatalogError::invalid("stock", "must be between 0 and 1000000000"));
        }
        let row = self
            .store
            .insert(
                &NewProduct {
                    sku: sku.as_ref().map(Sku::as_str),
                    name: name.as_str(),
                    description: description.as_str(),
                    category: category.as_str(),
                    price,
                    currency: &currency,
                    stock,
                    track_stock,
                    active: input.active.unwrap_or(true),
                },
                |id| Sku::derive(&name, id).as_str().to_string(),
            )
            .await?;
        tracing::info!(product_id = row.id, sku = row.sku, by = caller.subject, "product created");
        Ok(row)
    }

    /// The platform sells in one currency; a product may only restate it.
    fn currency(&self, given: Option<&str>) -> Result<String> {
        match given {
            None => Ok(self.config.currency.clone()),
            Some(c) => {
                let c = crate::domain::parse_currency(c)?;
                if c != self.config.currency {
                    return Err(CatalogError::invalid(
                        "currency",
                        format!("must be {} (this shop's currency)", self.config.currency),
                    ));
                }
                Ok(c)
            }
        }
    }

    /// Full (`require_all`) or partial update of the editable fields.
    pub async fn update(
        &self,
        caller: &Principal,
        id: i64,
        input: ProductInput,
        require_all: bool,
        if_match: Option<&str>,
    ) -> Result<ProductRow> {
        Self::require_admin(caller)?;
        if require_all {
            for (field, missing) in [
                ("name", input.name.is_none()),
                ("category", input.category.is_none()),
                ("price", input.price.is_none()),
            ] {
                if missing {
                    return Err(CatalogError::invalid(
                        field,
                        "is required in a full update (use PATCH to change some fields)",
                    ));
                }
            }
        }
        let changes = ProductChanges {
            sku: input.sku.as_deref().map(Sku::parse).transpose()?.map(|s| s.as_str().to_string()),
            name: input.name.as_deref().map(ProductName::parse).transpose()?.map(|n| n.as_str().to_string()),
            description: match (&input.description, require_all) {
                (Some(d), _) => Some(Description::parse(d)?.as_str().to_string()),
                (None, true) => Some(String::new()),
                (None, false) => None,
            },
            category: input.category.as_deref().map(Category::parse).transpose()?.map(|c| c.as_str().to_string()),
            price: input.price,
            currency: input.currency.as_deref().map(|c| self.currency(Some(c))).transpose()?,
            active: input.active.or(if require_all { Some(true) } else { None }),
            track_stock: input.track_stock,
            stock_on_hand: match input.stock {
                Some(n) if !(0..=1_000_000_000).contains(&n) => {
                    return Err(CatalogError::invalid("stock", "must be between 0 and 1000000000"));
                }
                other => other,
            },
        };
        if changes.is_empty() {
            return Err(CatalogError::invalid("body", "names no field to change"));
        }
        let version = self.expected_version(id, if_match)?;
        let row = self.store.update(id, &changes, version).await?;
        tracing::info!(product_id = id, by = caller.subject, "product updated");
        Ok(row)
    }

    pub async fn change_stock(
        &self,
        caller: &Principal,
        id: i64,
        change: StockChange,
        if_match: Option<&str>,
    ) -> Result<ProductRow> {
        Self::require_admin(caller)?;
        let version = self.expected_version(id, if_match)?;
        self.store.change_stock(id, change, version).await
    }

    /// `If-Match: "<id>-<version>"` → the version the caller last saw; `*` or absent → any.
    fn expected_version(&self, id: i64, if_match: Option<&str>) -> Result<Option<i64>> {
        let Some(raw) = if_match.map(str::trim) else { return Ok(None) };
        if raw == "*" {
            return Ok(None);
        }
        let tag = raw.trim_start_matches("W/").trim_matches('"');
        let parsed = tag.split_once('-').and_then(|(pid, v)| Some((pid.parse::<i64>().ok()?, v.parse::<i64>().ok()?)));
        match parsed {
            Some((pid, version)) if pid == id => Ok(Some(version)),
            // A tag of another product, or garbage, can never match.
            _ => Ok(Some(-1)),
        }
    }

    fn require_service(caller: &Principal) -> Result<()> {
        if caller.role == Role::Service && caller.has(Permission::StockReserve) {
            Ok(())
        } else {
            Err(CatalogError::Forbidden("Reservations are made by the orders service only.".into()))
        }
    }

    pub async fn reserve(&self, caller: &Principal, request: &ReserveRequest) -> Result<(Reservation, bool)> {
        Self::require_service(caller)?;
        let id = ReservationId::parse(&request.id)?;
        if request.lines.is_empty() || request.lines.len() > 100 {
            return Err(CatalogError::invalid("lines", "must have 1 to 100 lines"));
        }
        let lines = request
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| Ok((product_ref(l, i)?, l.quantity.get() as i64)))
            .collect::<Result<Vec<_>>>()?;
        let hash = hex::encode(Sha256::digest(
            serde_json::to_vec(&request.lines).map_err(|e| CatalogError::Internal(e.to_string()))?,
        ));
        let expires_at = now_ms() + self.config.reservation_ttl.as_millis() as i64;
        let started = std::time::Instant::now();
        let reserve = self.store.reserve(id.as_str(), &hash, &lines, expires_at);
        let outcome = reserve.instrument(self.store.db().span("UPDATE", "stock")).await;
        let result = match &outcome {
            Ok((_, true)) => "reserved",
            Ok((_, false)) => "replayed",
            Err(CatalogError::Domain(CatalogFailure::InsufficientStock { .. })) => "insufficient_stock",
            Err(_) => "error",
        };
        let elapsed = started.elapsed().as_secs_f64();
        self.metrics.record(|| {
            metrics::counter!("reservations_total", "result" => result).increment(1);
            metrics::histogram!("reservation_duration_seconds").record(elapsed);
        });
        let (row, created) = outcome?;
        Ok((self.reservation_view(&row), created))
    }

    pub async fn commit(&self, caller: &Principal, id: &str) -> Result<Reservation> {
        Self::require_service(caller)?;
        let id = ReservationId::parse(id)?;
        Ok(self.reservation_view(&self.store.commit(id.as_str()).await?))
    }

    pub async fn release(&self, caller: &Principal, id: &str) -> Result<Reservation> {
        Self::require_service(caller)?;
        let id = ReservationId::parse(id)?;
        Ok(self.reservation_view(&self.store.release(id.as_str()).await?))
    }

    pub async fn reservation(&self, caller: &Principal, id: &str) -> Result<Reservation> {
        if !(caller.role == Role::Service || caller.has(Permission::ProductManage)) {
            return Err(CatalogError::Forbidden("Reservations are visible to services and administrators.".into()));
        }
        let id = ReservationId::parse(id)?;
        let row = self
            .store
            .reservation(id.as_str())
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("No reservation {}.", id.as_str())))?;
        Ok(self.reservation_view(&row))
    }

    fn reservation_view(&self, row: &ReservationRow) -> Reservation {
        let lines: Vec<ReservationLine> = row
            .lines
            .iter()
            .map(|l| {
                let unit = Money::from_cents(l.unit_price_cents).unwrap_or_default();
                let line_total = Quantity::new(l.quantity).ok().and_then(|q| unit.times(q).ok()).unwrap_or_default();
                ReservationLine {
                    product_id: l.product_id,
                    sku: l.sku.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: unit,
                    line_total,
                }
            })
            .collect();
        let total = lines.iter().try_fold(Money::ZERO, |acc, l| acc.plus(l.line_total)).unwrap_or_default();
        Reservation {
            id: row.id.clone(),
            state: row.state,
            lines,
            total,
            currency: self.config.currency.clone(),
            expires_at: rfc3339(row.expires_at),
            created_at: rfc3339(row.created_at),
        }
    }

    /// Applies order events: a created order commits its reservation (in case the orders
    /// service could not), a cancelled one returns its stock. Each event id takes effect once.
    pub async fn apply_events(&self, events: &[Event]) -> Result<DeliveryReport> {
        let mut report = DeliveryReport { applied: 0, duplicates: 0, ignored: 0 };
        // Each event's work joins the trace of the request that made it (while recorded).
        let traced: Vec<tracing::Span> = match kit::traces::recording() {
            true => events
                .iter()
                .map(|e| {
                    kit::traces::follow(
                        "catalog",
                        &format!("catalog apply {}", e.kind),
                        "consumer",
                        e.traceparent.as_deref(),
                        e.tracestate.as_deref(),
                    )
                })
                .collect(),
            false => Vec::new(),
        };
        // The whole delivery in one transaction: one commit per batch, not per event.
        let reservations: Vec<&str> = events.iter().filter_map(|e| effect_of(e).reservation()).collect();
        let mut batch = self.store.begin_events(&reservations).await?;
        for (i, event) in events.iter().enumerate() {
            let effect = effect_of(event);
            let acts = !matches!(effect, EventEffect::None);
            let apply = batch.apply(&event.id, &event.kind, &event.order_id, effect);
            let in_db = || self.store.db().span("INSERT", "processed_events");
            // The consumer's span is entered for the whole of its event's work, so that it
            // lasts as long as the work (its end is its last exit).
            let fresh = match traced.get(i) {
                Some(consumer) => apply.instrument(consumer.in_scope(in_db)).instrument(consumer.clone()).await?,
                None => apply.instrument(in_db()).await?,
            };
            match (fresh, acts) {
                (false, _) => report.duplicates += 1,
                (true, true) => report.applied += 1,
                (true, false) => report.ignored += 1,
            }
        }
        batch.commit().instrument(self.store.db().span("COMMIT", "processed_events")).await?;
        let (applied, duplicates) = (report.applied, report.duplicates);
        self.metrics.record(|| {
            metrics::counter!("events_consumed_total", "result" => "applied").increment(applied);
            metrics::counter!("events_consumed_total", "result" => "duplicate").increment(duplicates);
        });
        Ok(report)
    }

    pub fn reservation_ttl(&self) -> Duration {
        self.config.reservation_ttl
    }
}

/// What an order event does to stock: a created order commits its reservation, a cancelled
/// one returns its goods.
fn effect_of(event: &Event) -> EventEffect<'_> {
    match (event.kind.as_str(), event.reservation_id()) {
        (ORDER_CREATED, Some(r)) => EventEffect::Commit(r),
        (ORDER_CANCELLED, Some(r)) => EventEffect::Return(r),
        _ => EventEffect::None,
    }
}
