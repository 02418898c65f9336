//! Order values that are valid by construction.

use crate::error::{OrdersError, Result};

pub use api::orders::{OrderStatus, UnknownStatus};

/// A client's `Idempotency-Key`: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(OrdersError::invalid("Idempotency-Key", "must be 1 to 255 visible ASCII characters"));
        }
        Ok(IdempotencyKey(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A customer name given with an order (seed 002 sends one): 1–100 characters, one line.
pub fn parse_customer_name(raw: &str) -> Result<String> {
    let s = raw.trim();
    let n = s.chars().count();
    if n == 0 || n > 100 || s.chars().any(char::is_control) {
        return Err(OrdersError::invalid("customer_name", "must be 1 to 100 characters on one line"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_machine() {
        use OrderStatus::*;
        assert!(Pending.can_become(Confirmed));
        assert!(Confirmed.can_become(Shipped));
        assert!(Shipped.can_become(Delivered));
        assert!(Pending.can_become(Cancelled));
        assert!(Confirmed.can_become(Cancelled));
        for (from, to) in [
            (Shipped, Cancelled),
            (Delivered, Cancelled),
            (Cancelled, Pending),
            (Pending, Shipped),
            (Delivered, Shipped),
        ] {
            assert!(!from.can_become(to), "{from} → {to}");
        }
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert!(!s.can_become(s));
        }
    }

    #[test]
    fn idempotency_keys() {
        assert!(IdempotencyKey::parse("abc-123_XYZ").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }
}
