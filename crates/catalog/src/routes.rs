//! HTTP handlers: parse, call the catalog, shape the answer.

use api::events::{DeliveryReport, EventBatch};
use api::money::Money;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use kit::auth::{Auth, MaybeAuth};
use kit::extract::{ForwardedPrefix, Json, Path, Query};
use kit::pagination::{PageRequest, Paged};
use kit::problem::ProblemResponses;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::domain::SortOrder;
use crate::error::{CatalogError, Result};
use crate::service::{Product, ProductInput, Reservation, ReserveRequest};
use crate::store::{ListFilter, ProductRow, StockChange};
pub use api::catalog::Categories;

pub fn api() -> Router<AppState> {
    Router::new()
        .route("/products", get(list_products).post(create_product))
        .route("/products/{id}", get(get_product).put(replace_product).patch(patch_product).delete(deactivate_product))
        .route("/products/{id}/price", put(set_price))
        .route("/products/{id}/stock", post(adjust_stock))
        .route("/categories", get(categories))
        .route("/reservations", post(reserve))
        .route("/reservations/{id}", get(get_reservation))
        .route("/reservations/{id}/commit", post(commit))
        .route("/reservations/{id}/release", post(release))
        .route("/events", post(receive_events))
        .route("/events/stats", get(event_stats))
        .route("/events/processed", get(processed_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(minimum = 1, maximum = 100000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
    /// Only this category (case-insensitive).
    #[param(max_length = 64)]
    pub category: Option<String>,
    /// Text to look for in names and descriptions.
    #[param(max_length = 100)]
    pub q: Option<String>,
    #[param(value_type = Option<String>, pattern = r"^[0-9]{1,10}(\.[0-9]{1,2})?$")]
    pub min_price: Option<Money>,
    #[param(value_type = Option<String>, pattern = r"^[0-9]{1,10}(\.[0-9]{1,2})?$")]
    pub max_price: Option<Money>,
    /// true: only what can be ordered now; false: only what is sold out.
    pub in_stock: Option<bool>,
    pub sort: Option<SortOrder>,
    /// Administrators only: include deactivated products.
    pub include_inactive: Option<bool>,
}

fn query_too_long(parameter: &str, max: usize) -> CatalogError {
    kit::Problem::bad_request(format!("{parameter} must be at most {max} characters"))
        .with("parameter", parameter)
        .into()
}

impl ListQuery {
    pub fn into_filter(self) -> Result<(ListFilter, PageRequest)> {
        let page = PageRequest::new(self.page, self.per_page)?;
        if self.q.as_deref().is_some_and(|q| q.chars().count() > 100) {
            return Err(query_too_long("q", 100));
        }
        if self.category.as_deref().is_some_and(|c| c.chars().count() > 64) {
            return Err(query_too_long("category", 64));
        }
        if let (Some(min), Some(max)) = (self.min_price, self.max_price)
            && min > max
        {
            return Err(kit::Problem::bad_request("min_price is above max_price")
                .with("parameter", "min_price")
                .into());
        }
        let filter = ListFilter {
            category: self.category.map(|c| c.trim().to_string()).filter(|c| !c.is_empty()),
            q: self.q.map(|q| q.trim().to_string()).filter(|q| !q.is_empty()),
            min_price: self.min_price,
            max_price: self.max_price,
            in_stock: self.in_stock,
            include_inactive: self.include_inactive.unwrap_or(false),
            sort: self.sort.unwrap_or_default(),
        };
        Ok((filter, page))
    }
}

/// A new product. `sku` is derived from the name when absent; `currency` defaults to the
/// shop's. Prices are decimal strings or numbers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    #[schema(max_length = 64)]
    pub sku: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(min_length = 1, max_length = 64)]
    pub category: String,
    pub price: Money,
    #[schema(min_length = 3, max_length = 3)]
    pub currency: Option<String>,
    /// Units on hand to start with (not with `track_stock` false).
    #[schema(minimum = 0, maximum = 1000000000)]
    pub stock: Option<i64>,
    pub active: Option<bool>,
    /// Count stock (default); false sells the product without counting it: always
    /// orderable, reservations hold nothing ("made to order").
    pub track_stock: Option<bool>,
}

/// The editable fields of a product. PUT needs name, category and price; PATCH any subset.
/// Stock moves through `/products/{id}/stock`; `stock` here only goes with `track_stock: true`
/// on a product whose stock was not counted, and is then required (the count to start from).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    #[schema(max_length = 64)]
    pub sku: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(min_length = 1, max_length = 64)]
    pub category: Option<String>,
    pub price: Option<Money>,
    #[schema(min_length = 3, max_length = 3)]
    pub currency: Option<String>,
    pub active: Option<bool>,
    pub track_stock: Option<bool>,
    #[schema(minimum = 0, maximum = 1000000000)]
    pub stock: Option<i64>,
}

impl From<UpdateProduct> for ProductInput {
    fn from(u: UpdateProduct) -> Self {
        ProductInput {
            sku: u.sku,
            name: u.name,
            description: u.description,
            category: u.category,
            price: u.price,
            currency: u.currency,
            active: u.active,
            track_stock: u.track_stock,
            stock: u.stock,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceChange {
    pub price: Money,
}

/// Exactly one of `delta` (add or, negative, remove units) or `on_hand` (set the count).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustment {
    #[schema(minimum = -1000000000, maximum = 1000000000)]
    pub delta: Option<i64>,
    #[schema(minimum = 0, maximum = 1000000000)]
    pub on_hand: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProcessedQuery {
    /// Order ids (repeat the parameter, up to 500).
    #[serde(default)]
    pub order_id: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProcessedEvent {
    pub order_id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProcessedEvents {
    pub items: Vec<ProcessedEvent>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventStats {
    /// Events applied or recorded, by type.
    pub processed: std::collections::BTreeMap<String, i64>,
}

/// A product id from a path: a positive number, or no such product.
pub(crate) fn product_id(raw: &str) -> Result<i64> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| CatalogError::NotFound(format!("No product {raw}.")))
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// A product with its pictures and its ETag.
async fn with_etag(
    state: &AppState,
    status: StatusCode,
    row: &ProductRow,
    prefix: &ForwardedPrefix,
) -> Result<Response> {
    let product = state.catalog.product(row, &prefix.0).await?;
    let mut res = (status, Json(product)).into_response();
    if let Ok(tag) = HeaderValue::from_str(&row.etag()) {
        res.headers_mut().insert(header::ETAG, tag);
    }
    Ok(res)
}

#[utoipa::path(get, path = "/products", tag = "products", params(ListQuery),
    responses((status = 200, description = "One page of products; public", body = Paged<Product>), ProblemResponses))]
pub async fn list_products(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    prefix: ForwardedPrefix,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let (filter, page) = q.into_filter()?;
    let listing = state.catalog.list(filter, page, caller.as_deref(), &prefix.0).await?;
    let total = listing.total;
    let mut res = Json(listing).into_response();
    res.headers_mut().insert("x-total-count", HeaderValue::from(total));
    Ok(res)
}

#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(("id" = String, Path, description = "Numeric id or SKU")),
    responses((status = 200, description = "The product, with its ETag", body = Product,
        headers(("etag" = String, description = "Send back in If-Match when changing the product"))), ProblemResponses))]
pub async fn get_product(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    prefix: ForwardedPrefix,
    Path(id): Path<String>,
) -> Result<Response> {
    let row = state.catalog.get(&id, caller.as_deref()).await?;
    with_etag(&state, StatusCode::OK, &row, &prefix).await
}

#[utoipa::path(post, path = "/products", tag = "products", security(("bearer" = [])), request_body = CreateProduct,
    responses((status = 201, description = "Created (administrators)", body = Product), ProblemResponses))]
pub async fn create_product(
    State(state): State<AppState>,
    Auth(caller): Auth,
    prefix: ForwardedPrefix,
    Json(body): Json<CreateProduct>,
) -> Result<Response> {
    let input = ProductInput {
        sku: body.sku,
        name: Some(body.name),
        description: body.description,
        category: Some(body.category),
        price: Some(body.price),
        currency: body.currency,
        active: body.active,
        track_stock: body.track_stock,
        stock: body.stock,
    };
    let row = state.catalog.create(&caller, input).await?;
    let mut res = with_etag(&state, StatusCode::CREATED, &row, &prefix).await?;
    if let Ok(location) = HeaderValue::from_str(&format!("/products/{}", row.id)) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    Ok(res)
}

#[utoipa::path(put, path = "/products/{id}", tag = "products", security(("bearer" = [])), request_body = UpdateProduct,
    params(("id" = i64, Path), ("if-match" = Option<String>, Header, description = "The ETag you last saw")),
    responses((status = 200, description = "Replaced (administrators)", body = Product), ProblemResponses))]
pub async fn replace_product(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    prefix: ForwardedPrefix,
    headers: HeaderMap,
    Json(body): Json<UpdateProduct>,
) -> Result<Response> {
    let id = product_id(&id)?;
    let row = state.catalog.update(&caller, id, body.into(), true, if_match(&headers).as_deref()).await?;
    with_etag(&state, StatusCode::OK, &row, &prefix).await
}

#[utoipa::path(patch, path = "/products/{id}", tag = "products", security(("bearer" = [])), request_body = UpdateProduct,
    params(("id" = i64, Path), ("if-match" = Option<String>, Header, description = "The ETag you last saw")),
    responses((status = 200, description = "Updated (administrators)", body = Product), ProblemResponses))]
pub async fn patch_product(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    prefix: ForwardedPrefix,
    headers: HeaderMap,
    Json(body): Json<UpdateProduct>,
) -> Result<Response> {
    let id = product_id(&id)?;
    let row = state.catalog.update(&caller, id, body.into(), false, if_match(&headers).as_deref()).await?;
    with_etag(&state, StatusCode::OK, &row, &prefix).await
}

#[utoipa::path(delete, path = "/products/{id}", tag = "products", security(("bearer" = [])),
    params(("id" = i64, Path), ("if-match" = Option<String>, Header, description = "The ETag you last saw")),
    responses((status = 200, description = "Deactivated: no longer listed or orderable; past orders keep it (administrators)", body = Product), ProblemResponses))]
pub async fn deactivate_product(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    prefix: ForwardedPrefix,
    headers: HeaderMap,
) -> Result<Response> {
    let id = product_id(&id)?;
    let input = ProductInput { active: Some(false), ..ProductInput::default() };
    let row = state.catalog.update(&caller, id, input, false, if_match(&headers).as_deref()).await?;
    with_etag(&state, StatusCode::OK, &row, &prefix).await
}

#[utoipa::path(put, path = "/products/{id}/price", tag = "products", security(("bearer" = [])), request_body = PriceChange,
    params(("id" = i64, Path), ("if-match" = Option<String>, Header, description = "The ETag you last saw")),
    responses((status = 200, description = "New price (administrators)", body = Product), ProblemResponses))]
pub async fn set_price(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    prefix: ForwardedPrefix,
    headers: HeaderMap,
    Json(body): Json<PriceChange>,
) -> Result<Response> {
    let id = product_id(&id)?;
    let input = ProductInput { price: Some(body.price), ..ProductInput::default() };
    let row = state.catalog.update(&caller, id, input, false, if_match(&headers).as_deref()).await?;
    with_etag(&state, StatusCode::OK, &row, &prefix).await
}

#[utoipa::path(post, path = "/products/{id}/stock", tag = "products", security(("bearer" = [])), request_body = StockAdjustment,
    params(("id" = i64, Path), ("if-match" = Option<String>, Header, description = "The ETag you last saw")),
    responses((status = 200, description = "Stock changed (administrators)", body = Product), ProblemResponses))]
pub async fn adjust_stock(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    prefix: ForwardedPrefix,
    headers: HeaderMap,
    Json(body): Json<StockAdjustment>,
) -> Result<Response> {
    let id = product_id(&id)?;
    let change = match (body.delta, body.on_hand) {
        (Some(d), None) if d.abs() <= 1_000_000_000 => StockChange::Delta(d),
        (None, Some(n)) if (0..=1_000_000_000).contains(&n) => StockChange::Set(n),
        (Some(_), None) => return Err(CatalogError::invalid("delta", "must be between -1000000000 and 1000000000")),
        (None, Some(_)) => return Err(CatalogError::invalid("on_hand", "must be between 0 and 1000000000")),
        _ => return Err(CatalogError::invalid("body", "needs exactly one of delta or on_hand")),
    };
    let row = state.catalog.change_stock(&caller, id, change, if_match(&headers).as_deref()).await?;
    with_etag(&state, StatusCode::OK, &row, &prefix).await
}

#[utoipa::path(get, path = "/categories", tag = "products",
    responses((status = 200, description = "Categories of products on sale, with counts", body = Categories), ProblemResponses))]
pub async fn categories(State(state): State<AppState>) -> Result<Json<Categories>> {
    Ok(Json(Categories { items: state.catalog.categories().await? }))
}

#[utoipa::path(post, path = "/reservations", tag = "reservations", security(("service_token" = [])), request_body = ReserveRequest,
    responses(
        (status = 201, description = "Every line reserved", body = Reservation),
        (status = 200, description = "This id was reserved before with the same lines: the same reservation", body = Reservation),
        ProblemResponses))]
pub async fn reserve(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Json(body): Json<ReserveRequest>,
) -> Result<Response> {
    let (reservation, created) = state.catalog.reserve(&caller, &body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(reservation)).into_response())
}

#[utoipa::path(get, path = "/reservations/{id}", tag = "reservations", security(("service_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The reservation", body = Reservation), ProblemResponses))]
pub async fn get_reservation(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Reservation>> {
    Ok(Json(state.catalog.reservation(&caller, &id).await?))
}

#[utoipa::path(post, path = "/reservations/{id}/commit", tag = "reservations", security(("service_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "Committed (idempotent)", body = Reservation), ProblemResponses))]
pub async fn commit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Reservation>> {
    Ok(Json(state.catalog.commit(&caller, &id).await?))
}

#[utoipa::path(post, path = "/reservations/{id}/release", tag = "reservations", security(("service_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "Released, or returned if it was committed (idempotent)", body = Reservation), ProblemResponses))]
pub async fn release(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Reservation>> {
    Ok(Json(state.catalog.release(&caller, &id).await?))
}

#[utoipa::path(post, path = "/events", tag = "events", security(("service_token" = [])), request_body = EventBatch,
    responses((status = 200, description = "Order events applied (each id at most once)", body = DeliveryReport), ProblemResponses))]
pub async fn receive_events(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Json(batch): Json<EventBatch>,
) -> Result<Json<DeliveryReport>> {
    if caller.role != kit::auth::Role::Service {
        return Err(CatalogError::Forbidden("Events are delivered by services only.".into()));
    }
    if batch.events.len() > 1000 {
        return Err(CatalogError::invalid("events", "at most 1000 per batch"));
    }
    for (i, event) in batch.events.iter().enumerate() {
        if let Err((field, message)) = event.validate() {
            return Err(CatalogError::invalid(format!("events[{i}].{field}"), message));
        }
    }
    Ok(Json(state.catalog.apply_events(&batch.events).await?))
}

#[utoipa::path(get, path = "/events/stats", tag = "events", security(("bearer" = [])),
    responses((status = 200, description = "Order events processed so far, by type (services and administrators)", body = EventStats), ProblemResponses))]
pub async fn event_stats(State(state): State<AppState>, Auth(caller): Auth) -> Result<Json<EventStats>> {
    if !(caller.role == kit::auth::Role::Service || caller.is_admin()) {
        return Err(CatalogError::Forbidden("Event statistics are for services and administrators.".into()));
    }
    Ok(Json(EventStats { processed: state.catalog.store().processed_event_counts().await?.into_iter().collect() }))
}

#[utoipa::path(get, path = "/events/processed", tag = "events", security(("bearer" = [])), params(ProcessedQuery),
    responses((status = 200, description = "The order events processed for these orders (services and administrators)", body = ProcessedEvents), ProblemResponses))]
pub async fn processed_events(
    State(state): State<AppState>,
    Auth(caller): Auth,
    RepeatedQuery(ids): RepeatedQuery,
) -> Result<Json<ProcessedEvents>> {
    if !(caller.role == kit::auth::Role::Service || caller.is_admin()) {
        return Err(CatalogError::Forbidden("Event records are for services and administrators.".into()));
    }
    if ids.len() > 500 {
        return Err(kit::Problem::bad_request("at most 500 order_id values").with("parameter", "order_id").into());
    }
    let items = state
        .catalog
        .store()
        .processed_events_for(&ids)
        .await?
        .into_iter()
        .map(|(order_id, kind)| ProcessedEvent { order_id, kind })
        .collect();
    Ok(Json(ProcessedEvents { items }))
}

/// `order_id` repeated in the query string (serde_urlencoded cannot collect repeats).
pub struct RepeatedQuery(pub Vec<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RepeatedQuery {
    type Rejection = kit::Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        let mut ids = Vec::new();
        for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
            if key != "order_id" {
                return Err(
                    kit::Problem::bad_request(format!("unknown parameter `{key}`")).with("parameter", key.to_string())
                );
            }
            if value.is_empty() || value.len() > 64 || value.contains('\0') {
                return Err(
                    kit::Problem::bad_request("order_id must be 1 to 64 characters").with("parameter", "order_id")
                );
            }
            ids.push(value.into_owned());
        }
        Ok(RepeatedQuery(ids))
    }
}
