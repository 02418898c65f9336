//! Browsing and searching products, administrators' writes, bad input, ETags, products sold without counting stock.

use super::*;

#[tokio::test]
async fn public_browsing_filters_search_and_pages() {
    let h = Harness::start().await;
    let (status, page) = h.get("/products", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 12);
    assert_eq!(page["page"], 1);
    let (_, electronics) = h.get("/products?category=electronics&per_page=100", None).await;
    assert!(electronics["items"].as_array().unwrap().iter().all(|p| p["category"] == "Electronics"));
    assert_eq!(electronics["total"], 6);
    let (_, found) = h.get("/products?q=programming", None).await;
    assert_eq!(found["items"][0]["name"], "Go Programming Book");
    assert_eq!(found["items"][0]["price"], "29.99");
    let (_, cheap) = h.get("/products?max_price=30&sort=-price", None).await;
    let prices: Vec<&str> = cheap["items"].as_array().unwrap().iter().map(|p| p["price"].as_str().unwrap()).collect();
    assert_eq!(prices, ["29.99", "29.99", "12.50"]);
    let (_, paged) = h.get("/products?per_page=5&page=3&sort=name", None).await;
    assert_eq!(paged["items"].as_array().unwrap().len(), 2);
    assert_eq!(paged["total_pages"], 3);
    let (status, laptop) = h.get("/products/laptop-15", None).await;
    assert_eq!(status, StatusCode::OK, "lookup by SKU, case-insensitive");
    assert_eq!(laptop["price"], "999.99");
    let (status, cats) = h.get("/categories", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cats["items"].as_array().unwrap().iter().any(|c| c["name"] == "Books" && c["count"] == 3));
    h.finish().await;
}

#[tokio::test]
async fn bad_queries_name_the_parameter() {
    let h = Harness::start().await;
    for (query, parameter) in [
        ("per_page=1000", "per_page"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("sort=cheapest", "sort"),
        ("min_price=-5", "min_price"),
        ("min_price=50&max_price=10", "min_price"),
        ("in_stock=maybe", "in_stock"),
        ("colour=red", "colour"),
    ] {
        let (status, problem) = h.get(&format!("/products?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert_eq!(problem["parameter"], parameter, "{query}: {problem}");
    }
    let long = "x".repeat(101);
    let (status, problem) = h.get(&format!("/products?q={long}"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["parameter"], "q");
    // Injection strings are just text.
    for evil in ["' OR 1=1 --", "%", "_", "\\", "'; DROP TABLE products; --", "%' UNION SELECT * FROM users --"] {
        let encoded: String = url_encode(evil);
        let (status, page) = h.get(&format!("/products?q={encoded}&category={encoded}"), None).await;
        assert_eq!(status, StatusCode::OK, "{evil}");
        assert_eq!(page["total"], 0, "{evil} matched something");
    }
    let (_, all) = h.get("/products", None).await;
    assert_eq!(all["total"], 12, "the table survived");
    h.finish().await;
}

fn url_encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test]
async fn admin_writes_need_the_admin_role() {
    let h = Harness::start().await;
    let alice = h.user_token("alice", "alice123").await;
    let bob = h.user_token("bob", "bob123").await;
    let body = json!({"name": "iPhone", "price": "50000", "category": "Electronics"});
    let (status, _) = h.post("/products", None, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h.post("/products", Some(&bob), body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, created) = h.post("/products", Some(&alice), body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["price"], "50000.00");
    let id = created["id"].as_i64().unwrap();

    let (status, _) =
        h.send(reqwest::Method::PATCH, &format!("/products/{id}"), Some(&bob), Some(json!({"price": 1}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, changed) = h
        .send(reqwest::Method::PUT, &format!("/products/{id}/price"), Some(&alice), Some(json!({"price": 45000.5})))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["price"], "45000.50");
    let (status, stocked) = h.post(&format!("/products/{id}/stock"), Some(&alice), json!({"delta": 7})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stocked["stock"], 7);
    let (status, _) = h.post(&format!("/products/{id}/stock"), Some(&alice), json!({"delta": -8})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, gone) = h.send(reqwest::Method::DELETE, &format!("/products/{id}"), Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gone["active"], false);
    let (status, _) = h.get(&format!("/products/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "inactive products are hidden from the public");
    let (status, _) = h.get(&format!("/products/{id}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.get("/products?include_inactive=true", Some(&bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    h.finish().await;
}

#[tokio::test]
async fn bad_product_writes_are_refused() {
    let h = Harness::start().await;
    let alice = h.user_token("alice", "alice123").await;
    for (body, field) in [
        (json!({"name": "X", "category": "T", "price": -1}), "price"),
        (json!({"name": "X", "category": "T", "price": "1.234"}), "price"),
        (json!({"name": "X", "category": "T", "price": "10000000000"}), "price"),
        (json!({"name": "X", "category": "T", "price": "abc"}), "price"),
        (json!({"name": "", "category": "T", "price": 1}), "name"),
        (json!({"name": "X", "category": "T", "price": 1, "stock": -5}), "stock"),
        (json!({"name": "X", "category": "T", "price": 1, "currency": "EUR"}), "currency"),
        (json!({"name": "X", "category": "T", "price": 1, "id": 99}), "id"),
        (json!({"name": "X", "category": "T", "price": 1, "stock_reserved": 3}), "stock_reserved"),
        (json!({"name": 5, "category": "T", "price": 1}), "name"),
        (json!({"category": "T", "price": 1}), "name"),
    ] {
        let (status, problem) = h.post("/products", Some(&alice), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {problem}");
        assert_eq!(problem["field"], field, "{body} → {problem}");
    }
    let (status, _) = h
        .post("/products", Some(&alice), json!({"name": "Dup", "sku": "LAPTOP-15", "category": "T", "price": 1}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = h.get("/products/999999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        h.send(reqwest::Method::PATCH, "/products/999999", Some(&alice), Some(json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.finish().await;
}

#[tokio::test]
async fn etags_stop_lost_updates() {
    let h = Harness::start().await;
    let alice = h.user_token("alice", "alice123").await;
    let res = h.http.get(h.catalog.url("/products/1")).send().await.unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let patch = |tag: &str, name: &str| {
        h.http
            .patch(h.catalog.url("/products/1"))
            .bearer_auth(&alice)
            .header("if-match", tag)
            .json(&json!({"name": name}))
            .send()
    };
    let first = patch(&etag, "Laptop Pro").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = patch(&etag, "Laptop Max").await.unwrap();
    assert_eq!(second.status(), StatusCode::PRECONDITION_FAILED, "the second admin worked on a stale copy");
    let fresh = second.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(patch(&fresh, "Laptop Max").await.unwrap().status(), StatusCode::OK);
    assert_eq!(h.product(1).await["name"], "Laptop Max");
    h.finish().await;
}

/// Issue 21: a product sold without counting stock (seed 002's `create-product` sends no
/// stock, then orders the product) is always orderable and its reservations hold nothing;
/// counting it again starts from a figure the administrator gives.
#[tokio::test]
async fn a_product_sold_without_counting_stock_is_always_orderable() {
    let h = Harness::start().await;
    let admin = h.user_token("alice", "alice123").await;
    let service = h.service_token().await;
    let (status, p) = h
        .post(
            "/products",
            Some(&admin),
            json!({"name": "Engraving", "category": "Services", "price": "15.00", "track_stock": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!(p["track_stock"], false);
    assert_eq!(p["in_stock"], true);
    let id = p["id"].as_i64().unwrap();
    let (status, problem) = h
        .post(
            "/products",
            Some(&admin),
            json!({"name": "Odd", "category": "Services", "price": "1.00", "track_stock": false, "stock": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "stock for an uncounted product: {problem}");

    // Any quantity, any number of times, and nothing is held or taken.
    for (n, quantity) in [(1, 5000), (2, 10_000)] {
        let body = json!({"id": format!("order:u{n}"), "lines": [{"product_id": id, "quantity": quantity}]});
        let (status, r) = h.post("/reservations", Some(&service), body).await;
        assert_eq!(status, StatusCode::CREATED, "{r}");
    }
    let (status, _) = h.post("/reservations/order:u1/commit", Some(&service), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.post("/reservations/order:u2/release", Some(&service), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.post("/reservations/order:u1/release", Some(&service), json!({})).await;
    assert_eq!(status, StatusCode::OK, "an order of it returned");
    let after = h.product(id).await;
    assert_eq!((after["stock_on_hand"].as_i64(), after["stock_reserved"].as_i64()), (Some(0), Some(0)), "{after}");
    let (_, listed) = h.get("/products?in_stock=true&category=Services", None).await;
    assert!(listed["items"].as_array().unwrap().iter().any(|p| p["id"] == id), "listed as in stock: {listed}");

    // Counting it again needs the count to start from.
    let path = format!("/products/{id}");
    let (status, problem) =
        h.send(reqwest::Method::PATCH, &path, Some(&admin), Some(json!({"track_stock": true}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "stock", "{problem}");
    let (status, problem) = h.send(reqwest::Method::PATCH, &path, Some(&admin), Some(json!({"stock": 4}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "stock moves through /stock otherwise: {problem}");
    let (status, counted) =
        h.send(reqwest::Method::PATCH, &path, Some(&admin), Some(json!({"track_stock": true, "stock": 4}))).await;
    assert_eq!(status, StatusCode::OK, "{counted}");
    assert_eq!((counted["track_stock"].as_bool(), counted["stock"].as_i64()), (Some(true), Some(4)));
    let body = json!({"id": "order:u3", "lines": [{"product_id": id, "quantity": 5}]});
    let (status, problem) = h.post("/reservations", Some(&service), body).await;
    assert_eq!(status, StatusCode::CONFLICT, "counted now: {problem}");
    h.finish().await;
}
