//! An order as the orders service shows it, and the life an order leads: the shapes the
//! service answers with and the storefront, the RPC shop and the load generator read.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::money::Money;

/// pending → confirmed → shipped → delivered; pending or confirmed → cancelled.
///
/// An order is created `pending` once its stock is reserved in the catalog: the goods are set
/// aside for it. The reservation is committed right after the answer (or, failing that, when
/// the catalog applies the order's event), so the order never waits on that second call.
/// `confirmed` is the shop accepting it (payment, checks), then it ships and is delivered.
/// Cancelling returns its stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Confirmed)
                | (Pending, Cancelled)
                | (Confirmed, Shipped)
                | (Confirmed, Cancelled)
                | (Shipped, Delivered)
        )
    }

    /// The step forward from here, if any (cancelling aside).
    pub fn next(self) -> Option<OrderStatus> {
        match self {
            OrderStatus::Pending => Some(OrderStatus::Confirmed),
            OrderStatus::Confirmed => Some(OrderStatus::Shipped),
            OrderStatus::Shipped => Some(OrderStatus::Delivered),
            OrderStatus::Delivered | OrderStatus::Cancelled => None,
        }
    }

    /// Whether the order may still be cancelled.
    pub fn cancellable(self) -> bool {
        self.can_become(OrderStatus::Cancelled)
    }
}

/// A stored status this build does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown order status {0:?} in the database")]
pub struct UnknownStatus(String);

impl TryFrom<String> for OrderStatus {
    type Error = UnknownStatus;

    fn try_from(s: String) -> Result<Self, UnknownStatus> {
        OrderStatus::parse(&s).ok_or(UnknownStatus(s))
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_forward_are_transitions_the_service_allows() {
        for status in OrderStatus::ALL {
            if let Some(next) = status.next() {
                assert!(status.can_become(next), "{status} → {next}");
            }
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert!(OrderStatus::Pending.cancellable() && OrderStatus::Confirmed.cancellable());
        assert!(!OrderStatus::Shipped.cancellable());
    }
}
