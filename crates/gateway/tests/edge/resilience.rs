//! Retries, breakers, killed and slow instances and deadlines, against scripted upstream instances.

use super::*;

#[tokio::test]
async fn retries_only_where_safe() {
    let bad = Scripted::start().await;
    let good = Scripted::start().await;
    bad.fail_with(503);
    // Breakers and ejection are off, and the budget allows a retry per request, so every
    // request that meets the failing instance shows what the retry policy does with it.
    let gw = gateway_over(
        &[&bad, &good],
        &[("EJECT_AFTER_FAILURES", "1000"), ("BREAKER_MIN_REQUESTS", "1000"), ("RETRY_BUDGET_RATIO", "1.0")],
    )
    .await;
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let res = http.get(gw.url("/api/products")).send().await.unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "a GET that met the failing instance moves to the good one: {body}");
    }
    assert!(bad.hits() > 0, "power of two choices never picked the bad instance?");
    let (bad_before, good_before) = (bad.hits(), good.hits());
    let mut refused = 0;
    for _ in 0..20 {
        let res = http.post(gw.url("/api/users/login")).json(&json!({})).send().await.unwrap();
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            refused += 1;
        }
    }
    let (bad_posts, good_posts) = (bad.hits() - bad_before, good.hits() - good_before);
    assert_eq!(bad_posts + good_posts, 20, "a POST without Idempotency-Key is sent exactly once");
    assert_eq!(refused, bad_posts, "and its failure is returned, not retried");
    let before = bad.hits() + good.hits();
    for i in 0..10 {
        let res = http
            .post(gw.url("/api/users/login"))
            .header("idempotency-key", format!("k{i}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "a POST with an Idempotency-Key may be retried");
    }
    assert!(bad.hits() + good.hits() >= before + 10);
}

/// A gateway over `upstream` whose breaker has just opened: five failures in a row (retries
/// off, ejection out of the way), open for `open_for`.
async fn gateway_with_an_open_breaker(upstream: &Scripted, open_for: &str) -> TestServer {
    let gw = gateway_over(
        &[upstream],
        &[
            ("BREAKER_MIN_REQUESTS", "5"),
            ("BREAKER_OPEN_FOR", open_for),
            ("RETRY_MAX", "0"),
            ("EJECT_AFTER_FAILURES", "1000"),
        ],
    )
    .await;
    upstream.fail_with(500);
    for _ in 0..5 {
        let status = reqwest::get(gw.url("/api/products")).await.unwrap().status();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    gw
}

#[tokio::test]
async fn a_breaker_opens_fails_fast_and_recovers() {
    let upstream = Scripted::start().await;
    let gw = gateway_with_an_open_breaker(&upstream, "1s").await;
    let http = reqwest::Client::new();
    let hits = upstream.hits();
    let mut fast = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let res = http.get(gw.url("/api/products")).send().await.unwrap();
        fast.push(started.elapsed());
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key("retry-after"));
    }
    assert_eq!(upstream.hits(), hits, "an open breaker sends nothing upstream");
    fast.sort();
    let p99 = fast[fast.len() * 99 / 100 - 1];
    assert!(p99 < Duration::from_millis(50), "fast failures took {p99:?} at p99");
    let health: Value = http.get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["upstreams"]["catalog"]["instances"][0]["breaker"], "open");
    assert_eq!(health["status"], "degraded");
    upstream.heal();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(http.get(gw.url("/api/products")).send().await.unwrap().status(), StatusCode::OK, "the probe closes it");
    assert_eq!(http.get(gw.url("/api/products")).send().await.unwrap().status(), StatusCode::OK);
    let metrics = http.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("upstream_breaker_state"), "breaker state not in /metrics");
}

#[tokio::test]
async fn a_killed_instance_costs_a_handful_of_requests() {
    let a = Scripted::start().await;
    let b = Scripted::start().await;
    let gw = gateway_over(&[&a, &b], &[("RATE_LIMIT", "1000000"), ("RATE_LIMIT_BURST", "100000")]).await;
    let http = reqwest::Client::new();
    let failures = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let http = http.clone();
        let url = gw.url("/api/products");
        let failures = failures.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                // Half the traffic is writes without an Idempotency-Key: those must not be
                // retried after being sent, yet a refused connection may move them.
                let res = if (worker + i) % 2 == 0 {
                    http.get(&url).send().await
                } else {
                    http.post(url.replace("/api/products", "/api/users/login")).json(&json!({})).send().await
                };
                if !res.map(|r| r.status().is_success()).unwrap_or(false) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Killed once a quarter of the traffic has gone by (not after a fixed time: on a busy
    // machine most of it could still be to come, or already done).
    while a.hits() + b.hits() < 200 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    a.kill.cancel();
    let a_at_kill = a.hits();
    for t in tasks {
        t.await.unwrap();
    }
    let failed = failures.load(Ordering::Relaxed);
    assert!(failed <= 8, "{failed} of 800 requests failed when one of two instances died");
    assert!(a.hits() <= a_at_kill + 8, "only requests already in flight reached the dead instance");
    assert!(b.hits() >= 800 - a.hits() - failed, "the rest went to the survivor: {} of 800", b.hits());
}

#[tokio::test]
async fn slow_upstreams_time_out() {
    let upstream = Scripted::start().await;
    upstream.script.slow_ms.store(3000, Ordering::Relaxed);
    let gw = gateway_over(&[&upstream], &[("UPSTREAM_TIMEOUT", "300ms"), ("RETRY_MAX", "0")]).await;
    let started = Instant::now();
    let res = reqwest::Client::new().get(gw.url("/api/products")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "/problems/upstream-timeout");
}

#[tokio::test]
async fn the_clients_deadline_reaches_the_service_and_ends_the_wait() {
    let upstream = Scripted::start().await;
    let gw = gateway_over(&[&upstream], &[("UPSTREAM_TIMEOUT", "10s"), ("RETRY_MAX", "0")]).await;
    let client = reqwest::Client::new();

    // The service is told what is left of the client's wait, never more than the client gave.
    let res = client.get(gw.url("/api/products")).header("x-request-timeout-ms", "2500").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let echoed: Value = res.json().await.unwrap();
    let told: u64 = echoed["headers"]["x-request-timeout-ms"].as_str().unwrap().parse().unwrap();
    assert!((1..=2500).contains(&told), "the service was told {told} ms");

    // A slow service is given up on when the client's deadline passes, not the proxy's 10 s.
    upstream.script.slow_ms.store(3000, Ordering::Relaxed);
    let started = Instant::now();
    let res = client.get(gw.url("/api/products")).header("x-request-timeout-ms", "250").send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "/problems/upstream-timeout");
}

#[tokio::test]
async fn the_storefront_goes_through_the_proxys_breakers() {
    let upstream = Scripted::start().await;
    let gw = gateway_with_an_open_breaker(&upstream, "30s").await;
    let http = reqwest::Client::new();
    let hits = upstream.hits();
    // The breaker the REST calls opened holds for the storefront's own calls too: the page
    // answers, and nothing is sent to the failing instance.
    let page = http.get(gw.url("/products")).header("accept", "text/html").send().await.unwrap();
    assert!(page.status().is_server_error() || page.status().is_success(), "{}", page.status());
    assert_eq!(upstream.hits(), hits, "the storefront went around the open breaker");
    let metrics = http.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("upstream_requests_total") && l.contains("outcome=\"breaker_open\"")),
        "the storefront's refused call is not counted with the proxy's"
    );
}
