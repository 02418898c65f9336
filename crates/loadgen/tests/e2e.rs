//! End to end: the real platform (users, catalog, orders and the gateway, each on 127.0.0.1
//! port 0, SQLite, or PostgreSQL when `ORDERMESH_TEST_POSTGRES` is set) under a short, bounded
//! load from the load generator, which must reconcile with no difference; and a second run,
//! reusing the shoppers, during which someone else moves the dedicated stock, which the
//! reconciliation must catch.

use std::time::{Duration, Instant};

use kit::config::Settings;
use kit::testing::TestServer;
use serde_json::{Value, json};

/// Cheap password hashing: the test signs in often and need not resist guessing.
fn cheap_hashing(s: Settings) -> Settings {
    s.with("ARGON2_MEMORY_KIB", "1024").with("ARGON2_ITERATIONS", "1")
}

struct Platform {
    gateway: TestServer,
    services: testkit::Services,
}

impl Platform {
    async fn start() -> Platform {
        let services = testkit::Services::start(&cheap_hashing).await;
        let s = services
            .settings()
            .with("RATE_LIMIT", "10000000")
            .with("RATE_LIMIT_BURST", "1000000")
            .with("USER_RATE_LIMIT", "10000000")
            .with("USER_RATE_LIMIT_BURST", "1000000")
            .with("AUTH_RATE_LIMIT", "100000")
            .with("AUTH_RATE_LIMIT_BURST", "10000");
        let config = gateway::Config::from_settings(&s, testkit::localhost(), 0).unwrap();
        let gateway =
            TestServer::start(gateway::router(gateway::AppState::start(config).await.expect("gateway starts"))).await;
        Platform { gateway, services }
    }

    async fn finish(self) {
        self.services.finish().await;
    }
}

fn args(base: &str, dir: &std::path::Path, extra: &[&str]) -> loadgen::Args {
    let json = dir.join("report.json").display().to_string();
    let html = dir.join("report.html").display().to_string();
    let mut argv =
        vec!["load", "--url", base, "--shoppers", "4", "--products", "3", "--quiet", "--json", &json, "--html", &html];
    argv.extend_from_slice(extra);
    loadgen::Args::try_parse_from(argv).expect("arguments")
}

/// Someone else (not the load generator) adds one unit to every dedicated product of the run
/// while it runs.
async fn meddle_with_stock(base: String, stop_after: Duration) -> usize {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let tokens: Value = http
        .post(format!("{base}/api/users/login"))
        .json(&json!({"username": "alice", "password": "alice123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_string();
    let deadline = Instant::now() + stop_after;
    while Instant::now() < deadline {
        let listing: Value =
            http.get(format!("{base}/api/products?category=Loadgen")).send().await.unwrap().json().await.unwrap();
        let ids: Vec<i64> = listing["items"].as_array().unwrap().iter().filter_map(|p| p["id"].as_i64()).collect();
        if !ids.is_empty() {
            for id in &ids {
                let res = http
                    .post(format!("{base}/api/products/{id}/stock"))
                    .bearer_auth(&token)
                    .json(&json!({"delta": 1}))
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success(), "{}", res.status());
            }
            return ids.len();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_load_reconciles_and_a_disturbed_one_does_not() {
    let platform = Platform::start().await;
    let base = platform.gateway.base();
    let dir = std::env::temp_dir().join(format!("loadgen-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    // 1. Every journey, a few seconds, bounded in count too.
    let first = args(
        &base,
        &dir,
        &[
            "--duration",
            "3s",
            "--count",
            "1500",
            "--warmup",
            "1s",
            "--concurrency",
            "8",
            "--replay-ratio",
            "0.2",
            "--cancel-ratio",
            "0.5",
            "--mix",
            "browse=3,search=2,view=2,signin=1,order=8,purchases=2,admin=3",
            "--seed",
            "11",
            "--settle-timeout",
            "30s",
        ],
    );
    let report = loadgen::execute(first.clone()).await.expect("the load runs");
    let rc = &report.reconciliation;
    assert!(rc.ok, "reconciliation differences: {:#?}", rc.checks);
    assert!(rc.orders > 0 && rc.cancelled > 0, "{rc:?}");
    assert!(report.totals.orders_created > 0 && report.totals.replays_checked > 0, "{:?}", report.totals);
    assert_eq!(report.totals.requests.rate_limited, 0, "{:?}", report.endpoints);
    assert_eq!(report.totals.requests.errors, 0, "{:#?}", report.endpoints);
    assert_eq!(report.setup.shoppers_registered, 4);
    let endpoints: Vec<&str> = report.endpoints.iter().map(|r| r.name.as_str()).collect();
    for e in [
        "GET /api/categories",
        "GET /api/products",
        "GET /api/products/{id}",
        "POST /api/users/login",
        "POST /api/orders",
        "POST /api/orders (replay)",
        "GET /api/orders",
        "PUT /api/orders/{id}/status",
        "POST /api/orders/{id}/cancel",
    ] {
        assert!(endpoints.contains(&e), "{e} missing from {endpoints:?}");
    }
    assert!(report.journeys.len() == 7, "{:?}", report.journeys);
    assert!(!report.timeline.is_empty());
    loadgen::write_reports(&first, &report).unwrap();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&first.json).unwrap()).unwrap();
    assert_eq!(json["reconciliation"]["ok"], true);
    let html = std::fs::read_to_string(&first.html).unwrap();
    assert!(html.contains("<svg") && html.contains("reconciled: no differences") && !html.contains("<script"));

    // 2. The same shoppers again, orders only, while the stock is moved behind the tool's back.
    let second = args(
        &base,
        &dir,
        &["--duration", "2s", "--warmup", "0s", "-c", "4", "--mix", "order=1", "--settle-timeout", "5s"],
    );
    let meddler = tokio::spawn(meddle_with_stock(base.clone(), Duration::from_secs(20)));
    let report = loadgen::execute(second).await.expect("the load runs");
    assert_eq!(meddler.await.unwrap(), 3, "the meddler found the run's products");
    assert_eq!(report.setup.shoppers_reused, 4);
    let rc = &report.reconciliation;
    assert!(!rc.ok, "the moved stock must be a difference");
    let failed: Vec<&str> = rc.checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    assert_eq!(failed, vec!["stock moved by exactly the orders"], "{:#?}", rc.checks);
    let stock = rc.checks.iter().find(|c| !c.ok).unwrap();
    assert_eq!(stock.difference_count, 3, "{stock:?}");

    let _ = std::fs::remove_dir_all(&dir);
    platform.finish().await;
}
