//! Stock reservations: all or nothing and idempotent, expiry, concurrency, order events applied once, late commits, two instances on one database.

use super::*;

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
