//! Money and quantities, as text and as JSON (strings or numbers): parsing never panics, what
//! parses prints as text that parses back to the same amount, and arithmetic stays bounded.

use api::money::{MAX_AMOUNT_CENTS, Money, Quantity};

/// The target's body: libFuzzer calls it with every input it makes, and the corpus replay
/// test with every committed seed.
pub fn check(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(m) = text.parse::<Money>()
    {
        assert!((0..=MAX_AMOUNT_CENTS).contains(&m.cents()));
        assert_eq!(m.to_string().parse::<Money>(), Ok(m), "{text:?} printed as {m} does not read back");
        assert_eq!(serde_json::from_value::<Money>(serde_json::to_value(m).unwrap()).unwrap(), m);
    }
    if let Ok(m) = serde_json::from_slice::<Money>(data) {
        assert!((0..=MAX_AMOUNT_CENTS).contains(&m.cents()));
        for q in [1, 2, 9_999, Quantity::MAX as i64] {
            if let Ok(total) = m.times(Quantity::new(q).unwrap()) {
                assert!(total.cents() <= MAX_AMOUNT_CENTS);
            }
        }
        let _ = m.plus(m);
        let _ = m.to_f64();
    }
    if let Ok(q) = serde_json::from_slice::<Quantity>(data) {
        assert!((1..=Quantity::MAX).contains(&q.get()));
    }
}
