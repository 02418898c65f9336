//! End-to-end tests of the orders service with the real users and catalog services, each on
//! 127.0.0.1 port 0, talking over HTTP; on SQLite, or PostgreSQL when `ORDERMESH_TEST_POSTGRES`
//! is set; events through the embedded relay, or a private NATS server where a test says so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kit::config::Settings;
use kit::testing::{NatsServer, TestData};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The platform, and a client to call it with.
struct Platform {
    services: testkit::Services,
    http: reqwest::Client,
}

impl std::ops::Deref for Platform {
    type Target = testkit::Services;

    fn deref(&self) -> &testkit::Services {
        &self.services
    }
}

impl Platform {
    async fn start() -> Self {
        Self::with(|s| s).await
    }

    async fn with(extra: impl Fn(Settings) -> Settings) -> Self {
        Self::on(TestData::new, extra).await
    }

    /// On SQLite whatever `ORDERMESH_TEST_POSTGRES` says, for what only SQLite does.
    async fn on_sqlite(extra: impl Fn(Settings) -> Settings) -> Self {
        Self::on(TestData::sqlite, extra).await
    }

    async fn on(data: fn(&str) -> (TestData, Settings), extra: impl Fn(Settings) -> Settings) -> Self {
        let s = testkit::Services::start_on(data, &extra).await;
        Platform { services: s, http: reqwest::Client::new() }
    }

    async fn finish(self) {
        self.services.finish().await;
    }

    async fn token(&self, username: &str, password: &str) -> String {
        testkit::token(&self.users, username, password).await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        kit::testing::send_json(&self.http, method, &self.orders.url(path), token, body.as_ref()).await
    }

    async fn create(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, "/orders", Some(token), Some(body)).await
    }

    async fn set_status(&self, token: &str, id: &str, status: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, &format!("/orders/{id}/status"), Some(token), Some(json!({"status": status})))
            .await
    }

    async fn product(&self, id: i64) -> Value {
        self.http.get(self.catalog.url(&format!("/products/{id}"))).send().await.unwrap().json().await.unwrap()
    }

    /// Waits until `check` holds for the product, or fails after a few seconds.
    async fn eventually_product(&self, id: i64, what: &str, check: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = self.product(id).await;
            if check(&p) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: product {id} is {p}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn admin_create_product(&self, name: &str, price: &str, stock: i64) -> i64 {
        let alice = self.token("alice", "alice123").await;
        let res: Value = self
            .http
            .post(self.catalog.url("/products"))
            .bearer_auth(&alice)
            .json(&json!({"name": name, "category": "Test", "price": price, "stock": stock}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        res["id"].as_i64().expect("product created")
    }
}

#[tokio::test]
async fn the_bob_and_alice_walkthrough() {
    let p = Platform::start().await;
    let bob = p.token("bob", "bob123").await;
    let alice = p.token("alice", "alice123").await;
    let laptop_before = p.product(1).await["stock_on_hand"].as_i64().unwrap();

    let (status, order) = p
        .create(&bob, json!({"items": [{"name": "Laptop", "price": 999.99, "quantity": 1}, {"name": "Mouse", "price": 29.99, "quantity": 2}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["total"], "1059.97");
    assert_eq!(order["item_count"], 2);
    assert_eq!(order["username"], "bob");
    let bobs = order["id"].as_str().unwrap().to_string();
    p.eventually_product(1, "laptop committed", |l| {
        l["stock_on_hand"].as_i64() == Some(laptop_before - 1) && l["stock_reserved"] == 0
    })
    .await;

    let (status, mine) = p.call(reqwest::Method::GET, "/orders", Some(&bob), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["id"], bobs.as_str());

    let (_, alices) = p.create(&alice, json!({"items": [{"sku": "BOOK-GO", "quantity": 3}]})).await;
    let alices = alices["id"].as_str().unwrap().to_string();
    let (status, _) = p.call(reqwest::Method::GET, &format!("/orders/{alices}"), Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "bob cannot see alice's order");
    let (_, mine) = p.call(reqwest::Method::GET, "/orders", Some(&bob), None).await;
    assert_eq!(mine["total"], 1, "bob's list does not show alice's order");
    let (status, _) = p.call(reqwest::Method::POST, &format!("/orders/{bobs}/cancel"), Some(&bob), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "users cannot cancel");
    let (status, _) = p.set_status(&bob, &bobs, "shipped").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "users cannot change statuses");

    let (_, all) = p.call(reqwest::Method::GET, "/orders", Some(&alice), None).await;
    assert_eq!(all["total"], 2);
    let (_, only_bobs) = p
        .call(
            reqwest::Method::GET,
            &format!("/orders?user_id={}", order["user_id"].as_str().unwrap()),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(only_bobs["total"], 1);
    for next in ["confirmed", "shipped", "delivered"] {
        let (status, o) = p.set_status(&alice, &bobs, next).await;
        assert_eq!(status, StatusCode::OK, "{o}");
        assert_eq!(o["status"], next);
    }
    let (status, problem) = p.set_status(&alice, &bobs, "cancelled").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["current_status"], "delivered");
    let (_, seen) = p.call(reqwest::Method::GET, &format!("/orders/{bobs}"), Some(&bob), None).await;
    let history: Vec<&str> =
        seen["status_history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["pending", "confirmed", "shipped", "delivered"]);

    // Alice cancels her own order and the catalog gets its three books back.
    p.eventually_product(3, "books committed", |b| b["stock_on_hand"] == 297).await;
    let (status, cancelled) =
        p.call(reqwest::Method::POST, &format!("/orders/{alices}/cancel"), Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    p.eventually_product(3, "books returned", |b| b["stock_on_hand"] == 300 && b["stock_reserved"] == 0).await;
    p.finish().await;
}

#[tokio::test]
async fn prices_are_the_catalogs() {
    let p = Platform::start().await;
    let bob = p.token("bob", "bob123").await;
    let before = p.product(1).await;
    let (status, problem) =
        p.create(&bob, json!({"items": [{"name": "Laptop", "price": "1.00", "quantity": 1}]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["current_price"], "999.99");
    assert_eq!(problem["item"], 0);
    p.eventually_product(1, "nothing reserved", |l| l["stock"] == before["stock"]).await;
    // Without an expected price the catalog's price is charged; a client-sent total is refused.
    let (status, order) = p.create(&bob, json!({"product_id": 1, "quantity": 1})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(order["total"], "999.99");
    let (status, problem) = p.create(&bob, json!({"product_id": 1, "quantity": 1, "total": "0.01"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "total");
    p.finish().await;
}

#[tokio::test]
async fn bad_orders_are_refused_and_leave_nothing() {
    let p = Platform::start().await;
    let bob = p.token("bob", "bob123").await;
    for (body, status, field) in [
        (json!({"items": []}), StatusCode::UNPROCESSABLE_ENTITY, "items"),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "items"),
        (json!({"items": [{"product_id": 1, "quantity": 0}]}), StatusCode::UNPROCESSABLE_ENTITY, "items[0].quantity"),
        (json!({"items": [{"product_id": 1, "quantity": -2}]}), StatusCode::UNPROCESSABLE_ENTITY, "items[0].quantity"),
        (
            json!({"items": [{"product_id": 1, "quantity": 1000000}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "items[0].quantity",
        ),
        (
            serde_json::from_str(r#"{"items": [{"product_id": 1, "quantity": 99999999999999999999}]}"#).unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "items[0].quantity",
        ),
        (
            json!({"items": [{"product_id": 1, "quantity": "two"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "items[0].quantity",
        ),
        (json!({"items": [{"name": "Unicorn", "quantity": 1}]}), StatusCode::UNPROCESSABLE_ENTITY, "items"),
        (json!({"items": [{"product_id": 4242, "quantity": 1}]}), StatusCode::UNPROCESSABLE_ENTITY, "items"),
        (
            json!({"items": [{"product_id": 1, "quantity": 1}], "status": "delivered"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "status",
        ),
        (
            json!({"items": [{"product_id": 1, "quantity": 1}], "user_id": "someone"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "user_id",
        ),
    ] {
        let (got, problem) = p.create(&bob, body.clone()).await;
        assert_eq!(got, status, "{body} → {problem}");
        if field != "items" || problem.get("field").is_some() {
            assert_eq!(problem["field"], field, "{body} → {problem}");
        }
    }
    let res = p
        .http
        .post(p.orders.url("/orders"))
        .bearer_auth(&bob)
        .header("content-type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let (status, _) = p.create("not-a-token", json!({"product_id": 1})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = p.call(reqwest::Method::GET, "/orders/not-a-uuid", Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        p.call(reqwest::Method::GET, &format!("/orders/{}", uuid::Uuid::now_v7()), Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, mine) = p.call(reqwest::Method::GET, "/orders", Some(&bob), None).await;
    assert_eq!(mine["total"], 0, "no failed attempt left an order behind");
    let laptop = p.product(1).await;
    assert_eq!(laptop["stock_reserved"], 0, "no failed attempt left stock reserved");
    p.finish().await;
}

#[tokio::test]
async fn idempotent_retries_make_one_order() {
    let p = Platform::start().await;
    let bob = p.token("bob", "bob123").await;
    let body = json!({"items": [{"sku": "MUG-CERAMIC", "quantity": 2}]});
    let send = |key: &'static str, body: Value| {
        p.http.post(p.orders.url("/orders")).bearer_auth(&bob).header("idempotency-key", key).json(&body).send()
    };
    let first = send("retry-1", body.clone()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    for _ in 0..5 {
        let again = send("retry-1", body.clone()).await.unwrap();
        assert_eq!(again.status(), StatusCode::CREATED, "the replay has the first status code");
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["id"], first["id"]);
    }
    let other = send("retry-1", json!({"items": [{"sku": "MUG-CERAMIC", "quantity": 3}]})).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY, "same key, different body");

    // Concurrent duplicates: exactly one order, and every one of them gets its answer.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let req = p
            .http
            .post(p.orders.url("/orders"))
            .bearer_auth(&bob)
            .header("idempotency-key", "burst-1")
            .json(&json!({"items": [{"sku": "MUG-CERAMIC", "quantity": 1}]}));
        tasks.push(tokio::spawn(async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap();
            (status, body)
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => {
                ids.insert(body["id"].as_str().unwrap().to_string());
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "concurrent duplicates made {ids:?}");
    let (_, mine) = p.call(reqwest::Method::GET, "/orders", Some(&bob), None).await;
    assert_eq!(mine["total"], 2);
    p.eventually_product(12, "three mugs sold", |m| m["stock_on_hand"] == 397 && m["stock_reserved"] == 0).await;
    // The same key from another user is that user's own key.
    let charlie = p.token("charlie", "charlie123").await;
    let res = p
        .http
        .post(p.orders.url("/orders"))
        .bearer_auth(&charlie)
        .header("idempotency-key", "retry-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().get("idempotent-replayed").is_none());
    p.finish().await;
}

#[tokio::test]
async fn concurrent_orders_against_scarce_stock_never_oversell() {
    let p = Platform::start().await;
    let product = p.admin_create_product("Limited Edition", "19.99", 40).await;
    let tokens = Arc::new([p.token("bob", "bob123").await, p.token("charlie", "charlie123").await]);
    let mut tasks = Vec::new();
    for i in 0..60usize {
        let http = p.http.clone();
        let url = p.orders.url("/orders");
        let tokens = tokens.clone();
        tasks.push(tokio::spawn(async move {
            let quantity = 1 + (i % 2) as i64;
            let res = http
                .post(url)
                .bearer_auth(&tokens[i % 2])
                .json(&json!({"items": [{"product_id": product, "quantity": quantity}]}))
                .send()
                .await
                .unwrap();
            (res.status(), quantity)
        }));
    }
    let mut sold = 0;
    for t in tasks {
        let (status, quantity) = t.await.unwrap();
        match status {
            StatusCode::CREATED => sold += quantity,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!((39..=40).contains(&sold), "sold {sold} of 40");
    // After the dust settles every order's stock is committed and nothing is left reserved.
    p.eventually_product(product, "settled", |x| {
        x["stock_reserved"] == 0 && x["stock_on_hand"].as_i64() == Some(40 - sold)
    })
    .await;
    let alice = p.token("alice", "alice123").await;
    let (_, all) = p.call(reqwest::Method::GET, "/orders?per_page=100", Some(&alice), None).await;
    let ordered: i64 = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["items"].as_array().unwrap().iter())
        .filter(|i| i["product_id"] == product)
        .map(|i| i["quantity"].as_i64().unwrap())
        .sum();
    assert_eq!(ordered, sold, "orders and stock agree");
    p.finish().await;
}

#[tokio::test]
async fn a_failed_order_write_releases_its_reservation() {
    // SQLite's write lock is what this test takes; on PostgreSQL it would be another test.
    let p = Platform::on_sqlite(|s| s.with("SQLITE_BUSY_TIMEOUT", "100ms")).await;
    let bob = p.token("bob", "bob123").await;
    // Another process holds the orders database's write lock, as a crashed or stuck writer
    // would: the order transaction cannot happen after the stock was reserved.
    let db_path = p.data_of(testkit::ServiceName::Orders).dir.join("orders.db");
    let mut blocker = {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&format!("sqlite://{}", db_path.display())).await.unwrap()
    };
    sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();
    let (status, problem) = p.create(&bob, json!({"items": [{"product_id": 5, "quantity": 3}]})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    p.eventually_product(5, "reservation released", |x| x["stock"] == 120 && x["stock_reserved"] == 0).await;
    let (_, mine) = p.call(reqwest::Method::GET, "/orders", Some(&bob), None).await;
    assert_eq!(mine["total"], 0);
    // And the service works again once the lock is gone.
    let (status, _) = p.create(&bob, json!({"items": [{"product_id": 5, "quantity": 3}]})).await;
    assert_eq!(status, StatusCode::CREATED);
    p.finish().await;
}

#[tokio::test]
async fn events_wait_in_the_outbox_while_the_consumer_is_down() {
    // The embedded relay delivers to EVENT_SUBSCRIBERS; point it at a port where nothing
    // listens yet, place orders, then bring the consumer up there.
    let port = kit::testing::free_port();
    let p = Platform::with(|s| s.with("EVENT_SUBSCRIBERS", format!("http://127.0.0.1:{port}/events"))).await;
    let bob = p.token("bob", "bob123").await;
    let alice = p.token("alice", "alice123").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (status, o) = p.create(&bob, json!({"items": [{"product_id": 7, "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "ordering works while events cannot be delivered");
        ids.push(o["id"].as_str().unwrap().to_string());
    }
    for id in &ids[..2] {
        let (status, _) = p.call(reqwest::Method::POST, &format!("/orders/{id}/cancel"), Some(&alice), None).await;
        assert_eq!(status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = |token: String| {
        let http = p.http.clone();
        let url = p.catalog.url("/events/stats");
        async move { http.get(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert!(stats(alice.clone()).await["processed"].as_object().unwrap().is_empty(), "nothing delivered yet");
    // The consumer comes up: a forwarder to the catalog on the subscriber port.
    let catalog_events = p.catalog.url("/events");
    let forward = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let url = catalog_events.clone();
            async move {
                let res = reqwest::Client::new()
                    .post(url)
                    .header("authorization", headers["authorization"].clone())
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (res.status(), res.bytes().await.unwrap())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, forward).await.unwrap() });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = stats(alice.clone()).await;
        if s["processed"]["order.created"] == 5 && s["processed"]["order.cancelled"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "events not delivered after the outage: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two cancelled of five: three of 75 sold, two back on the shelf.
    p.eventually_product(7, "stock after outage", |x| x["stock_on_hand"] == 72 && x["stock_reserved"] == 0).await;
    p.finish().await;
}

#[tokio::test]
#[ignore = "needs nats-server"]
async fn events_survive_a_nats_outage_and_apply_once() {
    let mut nats = NatsServer::start();
    let stream = format!("T{}", uuid::Uuid::new_v4().simple());
    let url = nats.url();
    let p = Platform::with(|s| {
        s.with("NATS_URL", url.clone())
            .with("NATS_STREAM", stream.clone())
            .with("NATS_SUBJECT_PREFIX", format!("t.{}", stream.to_lowercase()))
    })
    .await;
    let bob = p.token("bob", "bob123").await;
    let alice = p.token("alice", "alice123").await;
    let stats = || {
        let http = p.http.clone();
        let url = p.catalog.url("/events/stats");
        let token = alice.clone();
        async move { http.get(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let (status, _) = p.create(&bob, json!({"items": [{"product_id": 9, "quantity": 1}]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(15);
    while stats().await["processed"]["order.created"] != 1 {
        assert!(Instant::now() < deadline, "first event never arrived through NATS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    nats.stop();
    let mut during = Vec::new();
    for _ in 0..4 {
        let (status, o) = p.create(&bob, json!({"items": [{"product_id": 9, "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "ordering continues while the broker is down");
        during.push(o["id"].as_str().unwrap().to_string());
    }
    let (status, _) = p.call(reqwest::Method::POST, &format!("/orders/{}/cancel", during[0]), Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.resume();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = stats().await;
        if s["processed"]["order.created"] == 5 && s["processed"]["order.cancelled"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "events lost in the outage: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Five sold, one returned, each applied once.
    p.eventually_product(9, "stock after NATS outage", |x| x["stock_on_hand"] == 86 && x["stock_reserved"] == 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = stats().await;
    assert_eq!(s["processed"]["order.created"], 5, "no duplicate applied: {s}");
    p.finish().await;
}

#[tokio::test]
async fn a_reservation_whose_order_never_came_expires() {
    // An orders process that dies right after reserving leaves a held reservation and no
    // order; the catalog gives the stock back when the reservation expires.
    let p = Platform::with(|s| s.with("RESERVATION_TTL", "1s").with("RESERVATION_SWEEP_INTERVAL", "200ms")).await;
    let token = testkit::service_token(&p.users, "orders").await;
    let res = p
        .http
        .post(p.catalog.url("/reservations"))
        .bearer_auth(&token)
        .json(&json!({"id": "order:crashed-before-write", "lines": [{"product_id": 10, "quantity": 5}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(p.product(10).await["stock"], 55);
    p.eventually_product(10, "expired reservation released", |x| x["stock"] == 60).await;
    p.finish().await;
}
