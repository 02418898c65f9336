//! Catalog values that are valid by construction.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{CatalogError, Result};

/// A stock-keeping unit: 1–64 characters of `A-Z 0-9 - _ .`, stored upper-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str) -> Result<Self> {
        let s = raw.trim().to_ascii_uppercase();
        if s.is_empty() || s.len() > 64 {
            return Err(CatalogError::invalid("sku", "must be 1 to 64 characters long"));
        }
        if !s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')) {
            return Err(CatalogError::invalid("sku", "may contain only letters, digits, '-', '_' and '.'"));
        }
        Ok(Sku(s))
    }

    /// A readable SKU for a product created without one: initials of the name and the id.
    pub fn derive(name: &ProductName, id: i64) -> Sku {
        let mut stem: String = name
            .as_str()
            .split_whitespace()
            .filter_map(|w| w.chars().find(|c| c.is_ascii_alphanumeric()))
            .map(|c| c.to_ascii_uppercase())
            .take(8)
            .collect();
        if stem.is_empty() {
            stem.push('P');
        }
        Sku(format!("{stem}-{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn bounded_text(field: &'static str, raw: &str, max: usize, allow_empty: bool) -> Result<String> {
    let s = raw.trim();
    let n = s.chars().count();
    if (!allow_empty && n == 0) || n > max {
        let min = if allow_empty { 0 } else { 1 };
        return Err(CatalogError::invalid(field, format!("must be {min} to {max} characters long")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(CatalogError::invalid(field, "must not contain control characters"));
    }
    Ok(s.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self> {
        let s = bounded_text("name", raw, 200, false)?;
        if s.contains(['\n', '\t']) {
            return Err(CatalogError::invalid("name", "must be a single line"));
        }
        Ok(ProductName(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A category name: 1–64 characters on one line. Compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category(String);

impl Category {
    pub fn parse(raw: &str) -> Result<Self> {
        let s = bounded_text("category", raw, 64, false)?;
        if s.contains(['\n', '\t']) {
            return Err(CatalogError::invalid("category", "must be a single line"));
        }
        Ok(Category(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self> {
        Ok(Description(bounded_text("description", raw, 2000, true)?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 4217-style currency code; the platform sells in one currency (`CURRENCY`).
pub fn parse_currency(raw: &str) -> Result<String> {
    let s = raw.trim().to_ascii_uppercase();
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s)
    } else {
        Err(CatalogError::invalid("currency", "must be a three-letter code such as USD"))
    }
}

/// How a listing is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema, Default)]
pub enum SortOrder {
    #[serde(rename = "price")]
    PriceAscending,
    #[serde(rename = "-price")]
    PriceDescending,
    #[serde(rename = "name")]
    Name,
    #[serde(rename = "-name")]
    NameDescending,
    #[serde(rename = "newest")]
    Newest,
    #[default]
    #[serde(rename = "id")]
    Id,
}

impl SortOrder {
    /// A fixed SQL fragment (never built from input), with the id as a tie-breaker so paging
    /// is stable.
    pub fn sql(self) -> &'static str {
        match self {
            SortOrder::PriceAscending => "price_cents ASC, id ASC",
            SortOrder::PriceDescending => "price_cents DESC, id ASC",
            SortOrder::Name => "LOWER(name) ASC, id ASC",
            SortOrder::NameDescending => "LOWER(name) DESC, id ASC",
            SortOrder::Newest => "created_at DESC, id DESC",
            SortOrder::Id => "id ASC",
        }
    }
}

/// How an order line names its product: by id, by SKU, or by exact name (seeds 000 and 001
/// send names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductRef {
    Id(i64),
    Sku(String),
    Name(String),
}

impl std::fmt::Display for ProductRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProductRef::Id(id) => write!(f, "product_id {id}"),
            ProductRef::Sku(s) => write!(f, "sku {s:?}"),
            ProductRef::Name(n) => write!(f, "name {n:?}"),
        }
    }
}

/// A reservation id chosen by the caller (the orders service derives it from the order id):
/// 1–100 characters of `A-Z a-z 0-9 - _ : .`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationId(String);

impl ReservationId {
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.is_empty() || raw.len() > 100 {
            return Err(CatalogError::invalid("id", "must be 1 to 100 characters long"));
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.')) {
            return Err(CatalogError::invalid("id", "may contain only letters, digits, '-', '_', ':' and '.'"));
        }
        Ok(ReservationId(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub use api::catalog::ReservationState;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus() {
        assert_eq!(Sku::parse(" lap-15 ").unwrap().as_str(), "LAP-15");
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("a b").is_err());
        assert!(Sku::parse("x'; DROP TABLE products;--").is_err());
        let name = ProductName::parse("Go Programming Book").unwrap();
        assert_eq!(Sku::derive(&name, 7).as_str(), "GPB-7");
        assert!(Sku::parse(Sku::derive(&ProductName::parse("€€€").unwrap(), 1).as_str()).is_ok());
    }

    #[test]
    fn names_and_categories() {
        assert!(ProductName::parse("").is_err());
        assert!(ProductName::parse("two\nlines").is_err());
        assert!(ProductName::parse(&"x".repeat(201)).is_err());
        assert!(Category::parse("Electronics").is_ok());
        assert!(Description::parse("").is_ok());
        assert!(Description::parse("a\u{7}").is_err());
    }

    #[test]
    fn reservation_ids() {
        assert!(ReservationId::parse("order:0190-abc").is_ok());
        assert!(ReservationId::parse("").is_err());
        assert!(ReservationId::parse("has space").is_err());
        assert!(ReservationId::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn currencies() {
        assert_eq!(parse_currency("usd").unwrap(), "USD");
        assert!(parse_currency("dollars").is_err());
    }
}
