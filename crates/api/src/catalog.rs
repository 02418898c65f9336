//! Products, their pictures and stock reservations as the catalog service shows them: the
//! shapes it answers with, and the reservation the orders service asks it for.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::money::{Money, Quantity};

/// A product as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub currency: String,
    /// Units that can be ordered now (on hand minus reserved); not used when `track_stock` is
    /// false.
    pub stock: i64,
    pub in_stock: bool,
    /// False for products sold without counting stock (made to order, services, digital
    /// goods): always orderable, and the stock figures mean nothing.
    pub track_stock: bool,
    pub stock_on_hand: i64,
    pub stock_reserved: i64,
    pub active: bool,
    /// Pictures, the main one first.
    #[serde(default)]
    pub images: Vec<ProductImage>,
    #[schema(format = "date-time")]
    pub created_at: String,
    #[schema(format = "date-time")]
    pub updated_at: String,
}

impl Product {
    /// Whether a shopper can put it in the cart now.
    pub fn orderable(&self) -> bool {
        self.active && (!self.track_stock || self.stock > 0)
    }
}

/// A product's picture as clients see it. URLs are paths under the API the caller used
/// (`/api/...` through the gateway); they name fixed content and may be cached for good.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductImage {
    pub id: String,
    pub alt: String,
    /// The first picture is the product's main one.
    pub main: bool,
    pub url: String,
    pub width: i64,
    pub height: i64,
    pub thumbnail_url: String,
    pub thumbnail_width: i64,
    pub thumbnail_height: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CategoryCount {
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Categories {
    pub items: Vec<CategoryCount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReservationState {
    /// Stock is set aside, awaiting commit or release.
    Held,
    /// The stock left the warehouse's books (the order exists).
    Committed,
    /// Released before commit; the stock is available again.
    Released,
    /// Not committed in time; released automatically.
    Expired,
    /// Committed, then returned because the order was cancelled.
    Returned,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Held => "held",
            ReservationState::Committed => "committed",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
            ReservationState::Returned => "returned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "held" => ReservationState::Held,
            "committed" => ReservationState::Committed,
            "released" => ReservationState::Released,
            "expired" => ReservationState::Expired,
            "returned" => ReservationState::Returned,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReservationLine {
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub id: String,
    pub state: ReservationState,
    pub lines: Vec<ReservationLine>,
    pub total: Money,
    pub currency: String,
    #[schema(format = "date-time")]
    pub expires_at: String,
    #[schema(format = "date-time")]
    pub created_at: String,
}

/// One line of a reservation request: a product named by `product_id`, `sku` or `name`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub product_id: Option<i64>,
    #[schema(max_length = 64)]
    pub sku: Option<String>,
    #[schema(max_length = 200)]
    pub name: Option<String>,
    pub quantity: Quantity,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// Chosen by the caller; retrying with the same id and lines has no second effect.
    #[schema(min_length = 1, max_length = 100, pattern = "^[A-Za-z0-9_:.-]+$")]
    pub id: String,
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<LineRequest>,
}
