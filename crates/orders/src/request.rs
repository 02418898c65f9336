//! What a client sends to place an order, in every shape the seeds send it, and its lines
//! checked into what the catalog is asked to reserve.

use api::catalog::{LineRequest, ReservationLine};
use api::money::{Money, Quantity};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{OrdersError, Result};

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
pub(crate) enum ItemRef {
    Id(i64),
    Sku(String),
    Name(String),
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Line {
    pub(crate) product: ItemRef,
    pub(crate) quantity: Quantity,
    pub(crate) expected_price: Option<Money>,
}

impl Line {
    pub(crate) fn from_request(item: &OrderItemRequest, field: &str) -> Result<Line> {
        let name = match (&item.name, &item.product) {
            (Some(_), Some(_)) => return Err(OrdersError::invalid(field.to_string(), "gives both name and product")),
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
                    field.to_string(),
                    "must name the product by exactly one of product_id, sku or name",
                ));
            }
        };
        let quantity = Quantity::new(item.quantity.unwrap_or(1))
            .map_err(|e| OrdersError::invalid(format!("{field}.quantity"), e.to_string()))?;
        Ok(Line { product, quantity, expected_price: item.price })
    }

    /// This line as the catalog is asked to reserve it.
    pub(crate) fn catalog_line(&self) -> LineRequest {
        let mut line = LineRequest { product_id: None, sku: None, name: None, quantity: self.quantity };
        match &self.product {
            ItemRef::Id(id) => line.product_id = Some(*id),
            ItemRef::Sku(sku) => line.sku = Some(sku.clone()),
            ItemRef::Name(name) => line.name = Some(name.clone()),
        }
        line
    }

    pub(crate) fn describes(&self, line: &ReservationLine) -> bool {
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
    pub fn catalog_lines(&self, max_items: usize) -> Result<Vec<LineRequest>> {
        Ok(self.lines(max_items)?.iter().map(Line::catalog_line).collect())
    }

    pub(crate) fn lines(&self, max_items: usize) -> Result<Vec<Line>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
