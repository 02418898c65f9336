//! The services' JSON, as far as pages read it. (The services own these shapes; the pages
//! read only the fields they show, and tolerate the rest.)

use api::money::Money;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    #[serde(default)]
    pub refresh_expires_in: u64,
    pub user: User,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: i64,
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    pub price: Money,
    pub currency: String,
    pub stock: i64,
    #[serde(default)]
    pub stock_on_hand: i64,
    #[serde(default)]
    pub stock_reserved: i64,
    /// False: sold without counting stock (made to order), always orderable.
    #[serde(default = "counted")]
    pub track_stock: bool,
    pub active: bool,
    /// The main picture first.
    #[serde(default)]
    pub images: Vec<ProductImage>,
}

/// A product picture; its URLs are paths on this site (under `/api`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProductImage {
    pub id: String,
    pub alt: String,
    pub url: String,
    pub width: i64,
    pub height: i64,
    pub thumbnail_url: String,
    pub thumbnail_width: i64,
    pub thumbnail_height: i64,
}

fn counted() -> bool {
    true
}

impl Product {
    /// Whether a shopper can put it in the cart now.
    pub fn orderable(&self) -> bool {
        self.active && (!self.track_stock || self.stock > 0)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Category {
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Categories {
    pub items: Vec<Category>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderItem {
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusChange {
    pub status: String,
    pub changed_by: String,
    pub changed_at: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    #[serde(default)]
    pub username: Option<String>,
    pub status: String,
    pub items: Vec<OrderItem>,
    pub total: Money,
    pub currency: String,
    pub created_at: String,
    #[serde(default)]
    pub status_history: Vec<StatusChange>,
}

pub use kit::pagination::Paged;
