//! Query strings through kit's `Query` extractor (the one every service uses) into each
//! service's listing parameters, then the same checks the handlers make (page bounds, lengths,
//! price ranges); and the catalog's repeated `order_id` parser. Nothing may panic, and a page
//! that is accepted is within bounds.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::extract::FromRequestParts;
use kit::extract::Query;
use kit::pagination::{MAX_PAGE, MAX_PER_PAGE, PageRequest};

/// The extractors finish without waiting on anything: one poll completes them.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a query extractor waited"),
    }
}

fn parts(uri: &http::Uri) -> http::request::Parts {
    http::Request::builder().uri(uri.clone()).body(()).unwrap().into_parts().0
}

fn page(page: Option<u32>, per_page: Option<u32>) {
    if let Ok(p) = PageRequest::new(page, per_page) {
        assert!((1..=MAX_PAGE).contains(&p.page) && (1..=MAX_PER_PAGE).contains(&p.per_page));
        assert!(p.offset() >= 0 && p.limit() > 0);
    }
}

/// The target's body: libFuzzer calls it with every input it makes, and the corpus replay
/// test with every committed seed.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(uri) = format!("/list?{text}").parse::<http::Uri>() else { return };
    if let Ok(Query(q)) = now(Query::<catalog::routes::ListQuery>::from_request_parts(&mut parts(&uri), &()))
        && let Ok((filter, p)) = q.into_filter()
    {
        assert!((1..=MAX_PER_PAGE).contains(&p.per_page));
        assert!(filter.q.as_deref().is_none_or(|q| q.chars().count() <= 100));
        if let (Some(min), Some(max)) = (filter.min_price, filter.max_price) {
            assert!(min <= max);
        }
    }
    if let Ok(Query(q)) = now(Query::<users::routes::ListQuery>::from_request_parts(&mut parts(&uri), &())) {
        page(q.page, q.per_page);
    }
    if let Ok(Query(q)) = now(Query::<orders::routes::ListQuery>::from_request_parts(&mut parts(&uri), &())) {
        page(q.page, q.per_page);
    }
    let _ = now(Query::<users::routes::RevocationsQuery>::from_request_parts(&mut parts(&uri), &()));
    if let Ok(catalog::routes::RepeatedQuery(ids)) =
        now(catalog::routes::RepeatedQuery::from_request_parts(&mut parts(&uri), &()))
    {
        assert!(ids.iter().all(|id| !id.is_empty() && id.len() <= 64));
    }
}
