//! The admin's Traces page with every service in this process, as `ordermesh up` runs them:
//! an order placed through the gateway shows as one trace, drawn as a waterfall across the
//! gateway, the orders service, the catalog, their database work and the catalog's work on the
//! order's event; a Cap'n Web call the same way; and the gateway's latency buckets carry
//! exemplars (a trace id each) in the OpenMetrics exposition. A test binary of its own, since it installs the process's subscriber (and
//! with it the traces kept in memory).

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use kit::config::Settings;
use serde_json::{Value, json};

mod common;

use common::{Services, gateway, login, storefront_session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_waterfall_on_the_admins_traces_page() {
    let _logs = kit::testing::capture_logs(&Settings::from_pairs([("LOG_LEVEL", "warn"), ("TRACES_KEPT", "50")]));
    // The services poll for revoked tokens ten times a second: upkeep the kept traces must
    // not fill with.
    let poll = |s: Settings| s.with("REVOCATION_POLL_INTERVAL", "100ms");
    let services = Services::start(&poll).await;
    let gw = gateway(poll(services.settings())).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let bob: Value = login(&http, &gw, "bob", "bob123").await;
    let order = json!({"items": [{"sku": "MUG-CERAMIC", "quantity": 1}]});
    let placed = http
        .post(gw.url("/api/orders"))
        .bearer_auth(bob["access_token"].as_str().unwrap())
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);

    // Nobody signed in is sent to the sign-in page.
    let anonymous = http.get(gw.url("/admin/traces")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);

    let jar = storefront_session(&http, &gw, "alice", "alice123").await;
    let get = |path: String| {
        let req = http.get(gw.url(&path)).header("cookie", jar.header());
        async move {
            let res = req.send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };

    // Spans leave for the page half a second after they end; the event's work later still.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (id, waterfall) = loop {
        let (status, list) = get("/admin/traces?operation=post+%2Fapi%2Forders".into()).await;
        assert_eq!(status, StatusCode::OK);
        let id = list
            .split("href=\"/admin/traces/")
            .nth(1)
            .map(|rest| rest.split('"').next().unwrap().to_string())
            .filter(|id| id.len() == 32);
        if let Some(id) = id {
            let (status, html) = get(format!("/admin/traces/{id}")).await;
            assert_eq!(status, StatusCode::OK);
            if html.contains("catalog apply order.created") {
                break (id, html);
            }
        }
        assert!(Instant::now() < deadline, "no trace of the order with its event's work on the Traces page:\n{list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(waterfall.contains("<svg") && waterfall.contains("role=\"img\""), "a described picture");
    for span in [
        "gateway POST /api/orders",
        "orders POST /orders",
        "catalog POST /reservations",
        "INSERT orders",
        "UPDATE stock",
        // The reservation's commit is the event's work, after the answer (issue 18: no
        // separate call any more), and is in the trace too.
        "catalog apply order.created",
    ] {
        assert!(waterfall.contains(span), "the waterfall of {id} has {span}");
    }
    // The order request is drawn before its children, each service in its own colour.
    let at = |text: &str| waterfall.find(text).unwrap();
    assert!(at("gateway POST /api/orders") < at("orders POST /orders"));
    assert!(at("orders POST /orders") < at("catalog POST /reservations"));
    assert!(waterfall.contains("lane-0") && waterfall.contains("lane-2"), "at least three services' colours");
    assert!(
        waterfall.contains("catalog apply order.created</th><td>catalog</td>"),
        "the event's work is the catalog's"
    );
    for upkeep in ["/health", "/assets/style.css", "/metrics"] {
        http.get(gw.url(upkeep)).send().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, everything) = get("/admin/traces".into()).await;
    for upkeep in ["GET /auth/revocations", "GET /health", "GET /assets/", "GET /metrics"] {
        assert!(!everything.contains(upkeep), "{upkeep} is traced:\n{everything}");
    }

    // Filters: nothing failed; a slowness that is not a number says so.
    let (_, failed) = get("/admin/traces?status=5xx&operation=orders".into()).await;
    assert!(failed.contains("No trace matches."));
    let (status, bad) = get("/admin/traces?slower_than_ms=soon".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bad.contains("is not a whole number of milliseconds"));
    let (_, slow) = get("/admin/traces?slower_than_ms=600000".into()).await;
    assert!(slow.contains("No trace matches."));

    // A Cap'n Web call is a span of its own, with the services it calls under it.
    let rpc = http
        .post(gw.url("/rpc/batch"))
        .body("[\"push\",[\"pipeline\",0,[\"login\"],[\"bob\",\"bob123\"]]]\n[\"pull\",1]")
        .send()
        .await
        .unwrap();
    let answer = rpc.text().await.unwrap();
    assert!(answer.starts_with("[\"resolve\",1") && answer.contains("token"), "signed in over Cap'n Web: {answer}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let rpc_trace = loop {
        let (_, list) = get("/admin/traces?operation=rpc%2Fbatch".into()).await;
        if let Some(id) =
            list.split("href=\"/admin/traces/").nth(1).map(|rest| rest.split('"').next().unwrap().to_string())
        {
            break get(format!("/admin/traces/{id}")).await.1;
        }
        assert!(Instant::now() < deadline, "no trace of the Cap'n Web batch:\n{list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at = |text: &str| rpc_trace.find(text).unwrap_or_else(|| panic!("{text} in the Cap'n Web trace"));
    assert!(at("gateway POST /rpc/batch") < at("capnweb Shop.login"));
    assert!(at("capnweb Shop.login") < at("users POST /users/login"));
    assert!(at("users POST /users/login") < at("users argon2"));

    // The gateway's latency buckets carry the trace of a request that fell in them, for a
    // scraper that asks for OpenMetrics; the Prometheus text format stays as it was.
    let traced = "5b8efff798038103d269b633813fc60c";
    let product = http
        .get(gw.url("/api/products/1"))
        .header("traceparent", format!("00-{traced}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(product.status(), StatusCode::OK);
    let scrape = http.get(gw.url("/metrics")).header("accept", "application/openmetrics-text; version=1.0.0").send();
    let scrape = scrape.await.unwrap();
    assert!(scrape.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let exposition = scrape.text().await.unwrap();
    assert!(exposition.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF");
    let exemplar = exposition.lines().find(|l| {
        l.starts_with("http_request_duration_seconds_bucket{")
            && l.contains("route=\"/api/products/{id}\"")
            && l.contains(&format!("# {{trace_id=\"{traced}\"}}"))
    });
    assert!(exemplar.is_some(), "no exemplar with the product request's trace:\n{exposition}");
    assert!(exposition.contains("# TYPE http_requests counter\n"), "a counter's family has no _total");
    let plain = http.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!plain.contains("# {trace_id") && !plain.contains("# EOF"), "the text format has no exemplars");

    // Under load, new traces are a sample (20 a second by default): a burst of 150 reads
    // leaves at most 20 traces per second it took (and one window more), each one whole.
    let started = Instant::now();
    for _ in 0..150 {
        http.get(gw.url("/api/products/2")).send().await.unwrap();
    }
    let seconds = started.elapsed().as_secs() + 2;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, sampled) = get("/admin/traces?operation=GET+%2Fapi%2Fproducts%2F%7Bid%7D".into()).await;
    let traced = sampled.matches(">gateway GET /api/products/{id}<").count();
    assert!(traced >= 1 && traced as u64 <= 20 * seconds, "{traced} traces of 150 reads in {seconds} s");

    // Unknown and malformed trace ids are 404s, not errors.
    for path in ["/admin/traces/00000000000000000000000000000000", "/admin/traces/not-a-trace"] {
        assert_eq!(get(path.into()).await.0, StatusCode::NOT_FOUND, "{path}");
    }
}
