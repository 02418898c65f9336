//! The orders service's JSON request bodies: a new order (every seed's shape), seed 004's
//! one-article purchase, status changes and cancellations. Whatever lines an accepted order
//! becomes must be a reservation request the catalog accepts.

use catalog::service::LineRequest;
use orders::dialects::BuyRequest;
use orders::domain::{IdempotencyKey, parse_customer_name};
use orders::request::CreateOrderRequest;
use orders::routes::{CancelRequest, StatusRequest};

fn check_order(request: &CreateOrderRequest) {
    if let Ok(lines) = request.catalog_lines(100) {
        assert!(!lines.is_empty() && lines.len() <= 100);
        for line in lines {
            // What goes over the wire, read back as the catalog reads it.
            let wire = serde_json::to_string(&line).expect("a line serialises");
            if let Err(e) = serde_json::from_str::<LineRequest>(&wire) {
                panic!("the catalog would not read the line {wire}: {e}");
            }
        }
    }
    if let Some(name) = &request.customer_name
        && let Ok(n) = parse_customer_name(name)
    {
        assert_eq!(parse_customer_name(&n).ok().as_ref(), Some(&n));
    }
}

/// The target's body: libFuzzer calls it with every input it makes, and the corpus replay
/// test with every committed seed.
pub fn check(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<CreateOrderRequest>(data) {
        check_order(&request);
    }
    if let Ok(buy) = serde_json::from_slice::<BuyRequest>(data) {
        check_order(&CreateOrderRequest::from(buy));
    }
    let _ = serde_json::from_slice::<StatusRequest>(data);
    let _ = serde_json::from_slice::<CancelRequest>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = IdempotencyKey::parse(text);
        let _ = parse_customer_name(text);
    }
}
