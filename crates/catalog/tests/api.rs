//! End-to-end tests of the catalog: the real catalog and users services on 127.0.0.1 port 0,
//! over HTTP, on SQLite, or PostgreSQL when `ORDERMESH_TEST_POSTGRES` is set.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use kit::config::Settings;
use kit::testing::{TestData, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The platform, and a client to call it with.
struct Harness {
    services: testkit::Services,
    http: reqwest::Client,
}

impl std::ops::Deref for Harness {
    type Target = testkit::Services;

    fn deref(&self) -> &testkit::Services {
        &self.services
    }
}

impl Harness {
    async fn start() -> Self {
        Self::with(|s| s).await
    }

    async fn with(extra: impl Fn(Settings) -> Settings) -> Self {
        let s = testkit::Services::start(&extra).await;
        Harness { services: s, http: reqwest::Client::new() }
    }

    async fn finish(self) {
        self.services.finish().await;
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        kit::testing::send_json(&self.http, method, &self.catalog.url(path), token, body.as_ref()).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body)).await
    }

    async fn user_token(&self, username: &str, password: &str) -> String {
        testkit::token(&self.users, username, password).await
    }

    async fn service_token(&self) -> String {
        testkit::service_token(&self.users, "orders").await
    }

    async fn product(&self, id: i64) -> Value {
        let (status, p) = self.get(&format!("/products/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        p
    }

    async fn create(&self, admin: &str, name: &str, price: &str, stock: i64) -> Value {
        let (status, p) = self
            .post("/products", Some(admin), json!({"name": name, "category": "Test", "price": price, "stock": stock}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{p}");
        p
    }
}

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

#[tokio::test]
async fn reservations_are_all_or_nothing_and_idempotent() {
    let h = Harness::start().await;
    let service = h.service_token().await;
    let bob = h.user_token("bob", "bob123").await;
    let body =
        json!({"id": "order:r1", "lines": [{"name": "Laptop", "quantity": 2}, {"sku": "MOUSE-WL", "quantity": 3}]});
    let (status, _) = h.post("/reservations", Some(&bob), body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "users cannot reserve stock");
    let (status, r) = h.post("/reservations", Some(&service), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["state"], "held");
    assert_eq!(r["total"], "2089.95");
    assert_eq!(h.product(1).await["stock"], 48);
    let (status, again) = h.post("/reservations", Some(&service), body).await;
    assert_eq!(status, StatusCode::OK, "a replay returns the same reservation");
    assert_eq!(again["total"], r["total"]);
    assert_eq!(h.product(1).await["stock"], 48, "and reserves nothing more");
    let (status, _) = h
        .post("/reservations", Some(&service), json!({"id": "order:r1", "lines": [{"product_id": 1, "quantity": 1}]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "same id, different lines");

    // Unknown product or too much of one: nothing is reserved at all.
    let before = h.product(2).await["stock"].clone();
    let (status, problem) = h
        .post(
            "/reservations",
            Some(&service),
            json!({"id": "order:r2", "lines": [{"product_id": 2, "quantity": 1}, {"product_id": 4242, "quantity": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["line"], 2);
    let (status, problem) = h
        .post("/reservations", Some(&service), json!({"id": "order:r3", "lines": [{"product_id": 2, "quantity": 1}, {"product_id": 1, "quantity": 10000}]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["available"], 48);
    assert_eq!(h.product(2).await["stock"], before, "the first line was rolled back");

    for (body, field) in [
        (json!({"id": "order:x", "lines": []}), "lines"),
        (json!({"id": "order:x", "lines": [{"product_id": 1, "quantity": 0}]}), "lines[0].quantity"),
        (json!({"id": "order:x", "lines": [{"product_id": 1, "quantity": -1}]}), "lines[0].quantity"),
        (json!({"id": "order:x", "lines": [{"product_id": 1, "quantity": "two"}]}), "lines[0].quantity"),
        (json!({"id": "order:x", "lines": [{"quantity": 1}]}), "lines[0]"),
        (json!({"id": "order:x", "lines": [{"product_id": 1, "sku": "X", "quantity": 1}]}), "lines[0]"),
        (json!({"id": "bad id!", "lines": [{"product_id": 1, "quantity": 1}]}), "id"),
    ] {
        let (status, problem) = h.post("/reservations", Some(&service), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {problem}");
        assert_eq!(problem["field"], field, "{body} → {problem}");
    }

    // Commit moves the stock out; release of another returns it.
    let (status, committed) = h.post("/reservations/order:r1/commit", Some(&service), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(committed["state"], "committed");
    let laptop = h.product(1).await;
    assert_eq!((laptop["stock_on_hand"].as_i64(), laptop["stock_reserved"].as_i64()), (Some(48), Some(0)));
    let (_, r4) = h
        .post("/reservations", Some(&service), json!({"id": "order:r4", "lines": [{"product_id": 1, "quantity": 5}]}))
        .await;
    assert_eq!(r4["state"], "held");
    assert_eq!(h.product(1).await["stock"], 43);
    let (status, released) = h.post("/reservations/order:r4/release", Some(&service), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(released["state"], "released");
    let (status, _) = h.post("/reservations/order:r4/release", Some(&service), json!({})).await;
    assert_eq!(status, StatusCode::OK, "release is idempotent");
    assert_eq!(h.product(1).await["stock"], 48);
    let (status, _) = h.post("/reservations/order:r4/commit", Some(&service), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a released reservation cannot be committed");
    h.finish().await;
}

#[tokio::test]
async fn expired_reservations_give_their_stock_back() {
    let h = Harness::with(|s| s.with("RESERVATION_TTL", "1s").with("RESERVATION_SWEEP_INTERVAL", "200ms")).await;
    let service = h.service_token().await;
    let (status, _) = h
        .post(
            "/reservations",
            Some(&service),
            json!({"id": "order:slow", "lines": [{"product_id": 6, "quantity": 10}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(h.product(6).await["stock"], 30);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(h.product(6).await["stock"], 40);
    let (_, r) = h.get("/reservations/order:slow", Some(&service)).await;
    assert_eq!(r["state"], "expired");
    // A late commit takes the stock again when it is still there.
    let (status, r) = h.post("/reservations/order:slow/commit", Some(&service), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(h.product(6).await["stock_on_hand"], 30);
    h.finish().await;
}

#[tokio::test]
async fn concurrent_reservations_never_oversell() {
    let h = Harness::start().await;
    let alice = h.user_token("alice", "alice123").await;
    let service = Arc::new(h.service_token().await);
    let scarce = h.create(&alice, "Scarce Widget", "5.00", 25).await;
    let id = scarce["id"].as_i64().unwrap();
    let mut tasks = Vec::new();
    for i in 0..120 {
        let http = h.http.clone();
        let url = h.catalog.url("/reservations");
        let token = service.clone();
        tasks.push(tokio::spawn(async move {
            let quantity = 1 + (i % 3);
            let res = http
                .post(url)
                .bearer_auth(token.as_str())
                .json(&json!({"id": format!("order:c{i}"), "lines": [{"product_id": id, "quantity": quantity}]}))
                .send()
                .await
                .unwrap();
            (res.status(), quantity)
        }));
    }
    let mut reserved = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, quantity) = t.await.unwrap();
        match status {
            StatusCode::CREATED => reserved += quantity,
            StatusCode::CONFLICT => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let p = h.product(id).await;
    assert!(reserved <= 25, "oversold: {reserved} of 25");
    assert_eq!(p["stock_reserved"].as_i64().unwrap(), reserved as i64);
    assert!(p["stock"].as_i64().unwrap() < 3, "stock left although requests were refused: {p}");
    assert!(refused > 0);
    h.finish().await;
}

#[tokio::test]
async fn order_events_take_effect_once() {
    let h = Harness::start().await;
    let service = h.service_token().await;
    let bob = h.user_token("bob", "bob123").await;
    h.post("/reservations", Some(&service), json!({"id": "order:e1", "lines": [{"product_id": 3, "quantity": 4}]}))
        .await;
    let created = json!({"id": "0190a0a0-0000-7000-8000-000000000001", "type": "order.created", "occurred_at": "2026-01-01T00:00:00Z",
        "order_id": "e1", "version": 1, "data": {"reservation_id": "order:e1"}});
    let cancelled = json!({"id": "0190a0a0-0000-7000-8000-000000000002", "type": "order.cancelled", "occurred_at": "2026-01-01T00:00:01Z",
        "order_id": "e1", "version": 2, "data": {"reservation_id": "order:e1"}});
    let (status, _) = h.post("/events", Some(&bob), json!({"events": [created]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, report) = h.post("/events", Some(&service), json!({"events": [created, created]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((report["applied"].as_u64(), report["duplicates"].as_u64()), (Some(1), Some(1)));
    assert_eq!(h.product(3).await["stock_on_hand"], 296);
    for _ in 0..3 {
        h.post("/events", Some(&service), json!({"events": [cancelled]})).await;
    }
    let p = h.product(3).await;
    assert_eq!(p["stock_on_hand"], 300, "returned exactly once: {p}");
    let (_, stats) = h.get("/events/stats", Some(&service)).await;
    assert_eq!(stats["processed"]["order.created"], 1);
    assert_eq!(stats["processed"]["order.cancelled"], 1);
    let (status, processed) = h.get("/events/processed?order_id=e1&order_id=nope", Some(&service)).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = processed["items"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"order.created") && kinds.contains(&"order.cancelled"));
    let (status, _) = h.get("/events/processed?order_id=e1", Some(&bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h.get("/events/processed?bogus=1", Some(&service)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    h.finish().await;
}

#[tokio::test]
async fn two_catalog_instances_on_one_database_never_oversell() {
    let h = Harness::start().await;
    // A second instance on the same database: same SQLite file, or same PostgreSQL schema.
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let shared = h.data_of(testkit::ServiceName::Catalog);
    let mut settings = Settings::from_pairs([
        ("DATA_DIR", shared.dir.display().to_string()),
        ("USER_SERVICE_URL", h.users.base()),
        ("DEMO_DATA", "false".to_string()),
    ]);
    if let Some((url, schema)) = &shared.postgres {
        settings = settings.with("DATABASE_URL", url.clone()).with("DATABASE_SCHEMA", schema.clone());
    }
    let config = catalog::Config::from_settings(&settings, localhost, 0).unwrap();
    let second = TestServer::start(catalog::router(catalog::AppState::start(config).await.unwrap())).await;

    let alice = h.user_token("alice", "alice123").await;
    let service = Arc::new(h.service_token().await);
    let scarce = h.create(&alice, "Last Few", "9.99", 30).await;
    let id = scarce["id"].as_i64().unwrap();
    let urls = [h.catalog.url("/reservations"), second.url("/reservations")];
    let mut tasks = Vec::new();
    for i in 0..100 {
        let http = h.http.clone();
        let url = urls[i % 2].clone();
        let token = service.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token.as_str())
                .json(&json!({"id": format!("order:two{i}"), "lines": [{"product_id": id, "quantity": 1}]}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => granted += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(granted, 30, "exactly the stock was granted across both instances");
    let p = h.product(id).await;
    assert_eq!((p["stock_reserved"].as_i64(), p["stock"].as_i64()), (Some(30), Some(0)));
    drop(second);
    h.finish().await;
}

/// The catalog on its own, without HTTP, for interleavings that requests cannot stage: its
/// store is driven directly, the expiry sweeper is kept out of the way.
async fn catalog_without_sweeper() -> (Arc<catalog::Catalog>, TestData) {
    let (data, settings) = TestData::new("catalog");
    let settings = settings.with("RESERVATION_SWEEP_INTERVAL", "1h");
    let config = catalog::Config::from_settings(&settings, IpAddr::V4(Ipv4Addr::LOCALHOST), 0).unwrap();
    let catalog = catalog::Catalog::start(config, kit::metrics::Metrics::new("catalog")).await.unwrap();
    (catalog, data)
}

/// The sweeper lists held reservations past their time and then expires them one by one; a
/// late commit (the order's follow-up or its event) may land in between, or several at once.
/// Whatever the interleaving, a committed reservation's goods leave the shelf exactly once.
#[tokio::test]
async fn late_commits_and_the_expiry_sweeper_settle_each_reservation_once() {
    use catalog::domain::{ProductRef, ReservationState};
    let (catalog, data) = catalog_without_sweeper().await;
    let store = catalog.store();
    let before = store.get(4).await.unwrap().unwrap();
    let past = kit::db::now_ms() - 1;

    let listed_then_committed = "order:listed-then-committed";
    store.reserve(listed_then_committed, "a", &[(ProductRef::Id(4), 2)], past).await.unwrap();
    let listed = store.expired_held(kit::db::now_ms(), 500).await.unwrap();
    assert!(listed.iter().any(|id| id == listed_then_committed), "{listed:?}");
    store.commit(listed_then_committed).await.unwrap();
    assert!(!store.expire(listed_then_committed).await.unwrap(), "the sweeper expired a committed reservation");
    let row = store.reservation(listed_then_committed).await.unwrap().unwrap();
    assert_eq!(row.state, ReservationState::Committed);

    let expired_then_committed = "order:expired-then-committed";
    store.reserve(expired_then_committed, "b", &[(ProductRef::Id(4), 3)], past).await.unwrap();
    assert!(store.expire(expired_then_committed).await.unwrap());
    let commits: Vec<_> = (0..6)
        .map(|_| {
            let catalog = catalog.clone();
            tokio::spawn(async move { catalog.store().commit(expired_then_committed).await.map(|r| r.state) })
        })
        .collect();
    for commit in commits {
        assert_eq!(commit.await.unwrap().unwrap(), ReservationState::Committed);
    }

    let after = store.get(4).await.unwrap().unwrap();
    assert_eq!(after.stock_on_hand, before.stock_on_hand - 5, "goods moved other than once per order");
    assert_eq!(after.stock_reserved, before.stock_reserved);
    data.cleanup().await;
}

/// A late commit whose second line finds too little stock changes nothing, not half: the
/// event is still recorded, so it is not redelivered forever.
#[tokio::test]
async fn a_late_commit_that_cannot_be_honoured_leaves_no_partial_change() {
    use catalog::domain::ProductRef;
    use catalog::store::EventEffect;
    let (catalog, data) = catalog_without_sweeper().await;
    let store = catalog.store();
    let past = kit::db::now_ms() - 1;
    let short = "order:short";
    store.reserve(short, "a", &[(ProductRef::Id(4), 1), (ProductRef::Id(5), 2)], past).await.unwrap();
    assert!(store.expire(short).await.unwrap());
    let scarce = store.get(5).await.unwrap().unwrap();
    let rest = scarce.stock_on_hand - scarce.stock_reserved;
    store.reserve("order:took-the-rest", "b", &[(ProductRef::Id(5), rest)], kit::db::now_ms() + 60_000).await.unwrap();
    let first_line_before = store.get(4).await.unwrap().unwrap();

    let event = "0190a0a0-0000-7000-8000-00000000abcd";
    assert!(store.apply_event(event, "order.created", "an-order", EventEffect::Commit(short)).await.unwrap());
    assert_eq!(store.get(4).await.unwrap().unwrap().stock_on_hand, first_line_before.stock_on_hand);
    assert_eq!(store.reservation(short).await.unwrap().unwrap().state, catalog::domain::ReservationState::Expired);
    assert!(!store.apply_event(event, "order.created", "an-order", EventEffect::Commit(short)).await.unwrap());
    data.cleanup().await;
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
