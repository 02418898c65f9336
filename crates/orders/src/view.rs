//! An order as clients see it, built from its stored rows.

use api::money::{Money, Quantity};
use kit::db::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::domain::OrderStatus;
use crate::store::{HistoryRow, ItemRow, OrderRow};

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
    pub(crate) fn from_rows(order: &OrderRow, items: &[ItemRow], history: &[HistoryRow]) -> Order {
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
    pub(crate) fn snapshot(&self, reservation_id: &str) -> serde_json::Value {
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
