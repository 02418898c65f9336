//! Money and quantities, shared by the catalog (prices, stock) and orders (totals).
//!
//! Amounts are decimals with at most two places, never floats. They travel in JSON as decimal
//! strings (`"999.99"`), and are accepted as strings or numbers (seed 002 sends `"50000"`,
//! seed 001 sends `29.99`). They are stored as integer minor units (cents).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest price or total the platform handles: one billion, a bound that keeps every
/// sum of line totals far inside an i64 of cents.
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money {
    cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must not be negative")]
    Negative,
    #[error("has more than two decimal places")]
    TooPrecise,
    #[error("is larger than 1000000000")]
    TooLarge,
    #[error("is not a decimal number")]
    NotANumber,
}

impl Money {
    pub const ZERO: Money = Money { cents: 0 };

    pub fn from_cents(cents: i64) -> Result<Self, MoneyError> {
        if cents < 0 {
            Err(MoneyError::Negative)
        } else if cents > MAX_AMOUNT_CENTS {
            Err(MoneyError::TooLarge)
        } else {
            Ok(Money { cents })
        }
    }

    pub fn from_decimal(d: Decimal) -> Result<Self, MoneyError> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(MoneyError::Negative);
        }
        let normalised = d.normalize();
        if normalised.scale() > 2 {
            return Err(MoneyError::TooPrecise);
        }
        // Checked: a client can send a number near Decimal's limit, and `*` panics on overflow
        // (found by fuzzing catalog request bodies).
        let hundredfold = normalised.checked_mul(Decimal::ONE_HUNDRED).ok_or(MoneyError::TooLarge)?;
        let cents = hundredfold.trunc().to_string().parse::<i64>().map_err(|_| MoneyError::TooLarge)?;
        Money::from_cents(cents)
    }

    pub fn cents(self) -> i64 {
        self.cents
    }

    /// As a JSON number, for clients (seed 000's RPC) that expect totals as numbers. Only for
    /// display: two decimal places survive the trip through f64 for every amount we allow.
    pub fn to_f64(self) -> f64 {
        self.cents as f64 / 100.0
    }

    /// `self × quantity`, bounded.
    pub fn times(self, quantity: Quantity) -> Result<Money, MoneyError> {
        let cents = self.cents.checked_mul(quantity.get() as i64).ok_or(MoneyError::TooLarge)?;
        Money::from_cents(cents)
    }

    pub fn plus(self, other: Money) -> Result<Money, MoneyError> {
        Money::from_cents(self.cents.checked_add(other.cents).ok_or(MoneyError::TooLarge)?)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.cents / 100, self.cents % 100)
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // Plain decimal notation only: no exponents, no signs other than a leading minus (which
        // is then refused as negative), no thousands separators.
        if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') {
            return Err(MoneyError::NotANumber);
        }
        let d = Decimal::from_str(s).map_err(|_| MoneyError::NotANumber)?;
        Money::from_decimal(d)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MoneyVisitor;
        impl Visitor<'_> for MoneyVisitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount such as \"29.99\" or 29.99")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
                v.parse().map_err(|e: MoneyError| E::custom(format!("amount {e}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
                let cents = i64::try_from(v)
                    .ok()
                    .and_then(|v| v.checked_mul(100))
                    .ok_or_else(|| E::custom("amount is larger than 1000000000"))?;
                Money::from_cents(cents).map_err(|e| E::custom(format!("amount {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
                if v < 0 {
                    return Err(E::custom("amount must not be negative"));
                }
                self.visit_u64(v as u64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
                if !v.is_finite() {
                    return Err(E::custom("amount is not a decimal number"));
                }
                // Rust prints the shortest text that reads back as the same f64, which for
                // any amount a person writes (29.99) is exactly what they wrote.
                self.visit_str(&format!("{v}"))
            }
        }
        deserializer.deserialize_any(MoneyVisitor)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        // Answers always carry a string; requests may send either form.
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[0-9]{1,10}(\.[0-9]{1,2})?$")))
            .item(ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0)).maximum(Some(1_000_000_000)))
            .description(Some(
                "A decimal amount of at most 1000000000 with at most two places. Answers give it as a string \
                 (\"29.99\"); requests may also send a JSON number (29.99).",
            ))
            .examples([serde_json::json!("29.99")])
            .into()
    }
}

impl utoipa::ToSchema for Money {}

/// How many of an item: 1 to 10 000 per order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Quantity(u32);

/// Why a number is not a quantity; reads as the rule, for any field name before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("must be at least 1")]
    BelowOne,
    #[error("must be at most {}", Quantity::MAX)]
    AboveMax,
}

impl Quantity {
    pub const MAX: u32 = 10_000;

    pub fn new(n: i64) -> Result<Self, QuantityError> {
        if n < 1 {
            Err(QuantityError::BelowOne)
        } else if n > Self::MAX as i64 {
            Err(QuantityError::AboveMax)
        } else {
            Ok(Quantity(n as u32))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(deserializer)?;
        Quantity::new(n).map_err(|e| de::Error::custom(format!("quantity {e}")))
    }
}

impl utoipa::PartialSchema for Quantity {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(Quantity::MAX)).into()
    }
}

impl utoipa::ToSchema for Quantity {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Money, String> {
        serde_json::from_str::<Money>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_strings_and_numbers_exactly() {
        assert_eq!(parse("\"50000\"").unwrap().to_string(), "50000.00");
        assert_eq!(parse("29.99").unwrap().cents(), 2999);
        assert_eq!(parse("999.99").unwrap().cents(), 99_999);
        assert_eq!(parse("0.1").unwrap().cents(), 10);
        assert_eq!(parse("7").unwrap().cents(), 700);
        assert_eq!(serde_json::to_string(&parse("1059.97").unwrap()).unwrap(), "\"1059.97\"");
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["-1", "\"-0.01\"", "1.234", "\"1e3\"", "\"abc\"", "\"\"", "1e300", "\"1,000\"", "null", "true"] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(parse("1000000001").is_err());
        assert!(parse("\"99999999999999999999999999\"").is_err());
        // Near Decimal's own limit, where turning it into cents overflowed (found by fuzzing).
        assert!(parse("72222222222722222222222222222").is_err());
        assert!(parse("\"79228162514264337593543950335\"").is_err());
    }

    #[test]
    fn arithmetic_is_bounded() {
        let p = Money::from_cents(99_999).unwrap();
        assert_eq!(p.times(Quantity::new(2).unwrap()).unwrap().to_string(), "1999.98");
        let big = Money::from_cents(MAX_AMOUNT_CENTS).unwrap();
        assert!(big.times(Quantity::new(2).unwrap()).is_err());
        assert!(big.plus(Money::from_cents(1).unwrap()).is_err());
        assert_eq!(Money::from_cents(105_997).unwrap().to_f64(), 1059.97);
    }

    #[test]
    fn quantities() {
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Quantity>("-3").is_err());
        assert!(serde_json::from_str::<Quantity>("10001").is_err());
        assert!(serde_json::from_str::<Quantity>("1.5").is_err());
        assert_eq!(serde_json::from_str::<Quantity>("3").unwrap().get(), 3);
    }
}
