//! An order as clients see it, built from its stored rows.

use api::money::{Money, Quantity};
use kit::db::rfc3339;
use serde_json::json;

use crate::store::{HistoryRow, ItemRow, OrderRow};

pub use api::orders::{Order, OrderItem, StatusChange};

/// An order as clients see it, from its stored rows.
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
pub(crate) fn snapshot(order: &Order, reservation_id: &str) -> serde_json::Value {
    json!({
        "id": order.id,
        "user_id": order.user_id,
        "status": order.status,
        "total": order.total,
        "currency": order.currency,
        "reservation_id": reservation_id,
        "items": order.items.iter().map(|i| json!({
            "product_id": i.product_id, "quantity": i.quantity, "unit_price": i.unit_price,
        })).collect::<Vec<_>>(),
    })
}
