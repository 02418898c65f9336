//! Rate limits per client, per user and for sign-in attempts, in memory and shared through Redis.

use super::*;

#[tokio::test]
async fn rate_limits_in_memory() {
    let upstream = Scripted::start().await;
    let gw = gateway_over(&[&upstream], &[("RATE_LIMIT", "60"), ("RATE_LIMIT_BURST", "5")]).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..8 {
        let res = http.get(gw.url("/api/products")).send().await.unwrap();
        statuses.push(res.status().as_u16());
        last = Some(res);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let res = last.unwrap();
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(upstream.hits(), 5, "refused requests never reach the service");
}

#[tokio::test]
async fn sign_in_attempts_have_their_own_strict_limit() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings().with("AUTH_RATE_LIMIT", "6").with("AUTH_RATE_LIMIT_BURST", "3")).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let res = http
            .post(gw.url("/api/users/login"))
            .json(&json!({"username": "bob", "password": "nope-nope"}))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    // Browsing is not affected.
    assert_eq!(http.get(gw.url("/api/products")).send().await.unwrap().status(), StatusCode::OK);
    services.finish().await;
}

#[tokio::test]
#[ignore = "needs Redis: ORDERMESH_TEST_REDIS"]
async fn rate_limits_shared_through_redis() {
    let redis_url = required_env("ORDERMESH_TEST_REDIS");
    let upstream = Scripted::start().await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let extra = [
        ("RATE_LIMIT", "60"),
        ("RATE_LIMIT_BURST", "6"),
        ("REDIS_URL", redis_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let a = gateway_over(&[&upstream], &extra).await;
    let b = gateway_over(&[&upstream], &extra).await;
    let http = reqwest::Client::new();
    // Wait until both gateways are connected to Redis.
    let deadline = Instant::now() + Duration::from_secs(10);
    for gw in [&a, &b] {
        loop {
            let h: Value = http.get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
            if h["rate_limits_shared"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "gateway never connected to Redis: {h}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut allowed = 0;
    for i in 0..12 {
        let gw = if i % 2 == 0 { &a } else { &b };
        if http.get(gw.url("/api/products")).send().await.unwrap().status() == StatusCode::OK {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 6, "the two gateways share one burst of 6");
}

#[tokio::test]
#[ignore = "needs Redis: ORDERMESH_TEST_REDIS"]
async fn a_logout_on_one_gateway_is_honoured_by_another_through_redis() {
    let redis_url = required_env("ORDERMESH_TEST_REDIS");
    // A slow revocation poll, so only the Redis broadcast can explain a prompt refusal.
    let services = Services::start(&|s| s).await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let settings = || {
        services
            .settings()
            .with("REDIS_URL", redis_url.clone())
            .with("REDIS_KEY_PREFIX", prefix.clone())
            .with("REVOCATION_POLL_INTERVAL", "60s")
    };
    let a = gateway(settings()).await;
    let b = gateway(settings()).await;
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bob = login(&http, &a, "bob", "bob123").await["access_token"].as_str().unwrap().to_string();
    assert_eq!(http.get(b.url("/api/orders")).bearer_auth(&bob).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        http.post(a.url("/api/users/logout")).bearer_auth(&bob).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if http.get(b.url("/api/orders")).bearer_auth(&bob).send().await.unwrap().status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(Instant::now() < deadline, "gateway b still accepts a token logged out on gateway a");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    services.finish().await;
}
