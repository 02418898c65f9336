//! The catalog's JSON request bodies (create, replace/patch, price, stock, reservations),
//! deserialised as the handlers do and validated as the service does. Normalised values must
//! validate again, and a SKU derived from any valid name must be a valid SKU.

use catalog::domain::{Category, Description, ProductName, ReservationId, Sku, parse_currency};
use catalog::routes::{CreateProduct, PriceChange, StockAdjustment, UpdateProduct};
use catalog::service::ReserveRequest;

fn product_name(raw: &str) {
    if let Ok(n) = ProductName::parse(raw) {
        assert_eq!(ProductName::parse(n.as_str()).ok().as_ref(), Some(&n));
        for id in [1, 42, i64::MAX] {
            let sku = Sku::derive(&n, id);
            assert!(Sku::parse(sku.as_str()).is_ok(), "derived SKU {sku:?} of {n:?} is refused");
        }
    }
}

fn fields(
    sku: Option<&str>,
    name: Option<&str>,
    description: Option<&str>,
    category: Option<&str>,
    currency: Option<&str>,
) {
    if let Some(s) = sku
        && let Ok(s) = Sku::parse(s)
    {
        assert_eq!(Sku::parse(s.as_str()).ok().as_ref(), Some(&s));
    }
    if let Some(n) = name {
        product_name(n);
    }
    if let Some(d) = description {
        let _ = Description::parse(d);
    }
    if let Some(c) = category
        && let Ok(c) = Category::parse(c)
    {
        assert_eq!(Category::parse(c.as_str()).ok().as_ref(), Some(&c));
    }
    if let Some(c) = currency {
        let _ = parse_currency(c);
    }
}

/// The target's body: libFuzzer calls it with every input it makes, and the corpus replay
/// test with every committed seed.
pub fn check(data: &[u8]) {
    if let Ok(p) = serde_json::from_slice::<CreateProduct>(data) {
        fields(p.sku.as_deref(), Some(&p.name), p.description.as_deref(), Some(&p.category), p.currency.as_deref());
    }
    if let Ok(p) = serde_json::from_slice::<UpdateProduct>(data) {
        fields(
            p.sku.as_deref(),
            p.name.as_deref(),
            p.description.as_deref(),
            p.category.as_deref(),
            p.currency.as_deref(),
        );
    }
    let _ = serde_json::from_slice::<PriceChange>(data);
    let _ = serde_json::from_slice::<StockAdjustment>(data);
    if let Ok(r) = serde_json::from_slice::<ReserveRequest>(data) {
        let _ = ReservationId::parse(&r.id);
        for (i, line) in r.lines.iter().enumerate() {
            let _ = catalog::service::product_ref(line, i);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        fields(Some(text), Some(text), Some(text), Some(text), Some(text));
        let _ = ReservationId::parse(text);
    }
}
