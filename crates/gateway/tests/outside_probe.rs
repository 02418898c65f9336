//! What the second outside probe got through the gateway (issue 16), each reproduced as the
//! probe did it and now refused: internal routes reached from outside, and a registration path
//! that escaped the sign-in/registration quota.

use axum::http::StatusCode;
use serde_json::{Value, json};

mod common;

use common::{Jar, SECRET, Services, csrf_in, gateway, login};

async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    kit::testing::send_json(http, method.parse().unwrap(), url, token, Some(body)).await
}

/// Finding 2: with a service token minted through the public gateway, a forged
/// `order.cancelled` event was delivered through it to the catalog and applied. Now the
/// gateway neither hands out service tokens nor forwards event deliveries, whatever the token.
#[tokio::test]
async fn service_credentials_and_event_delivery_are_not_reachable_through_the_gateway() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let http = reqwest::Client::new();
    let credentials = json!({"grant_type": "client_credentials", "client_id": "orders", "client_secret": SECRET});
    let (status, body) = send(&http, "POST", &gw.url("/api/auth/token"), None, &credentials).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a service token through the gateway: {body}");
    assert!(body.get("access_token").is_none());
    let seed_002 = json!({"service_name": "orders", "client_secret": SECRET});
    let (status, body) = send(&http, "POST", &gw.url("/get-token"), None, &seed_002).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "seed 002's get-token through the gateway: {body}");

    // A real service token (from the users service's own port) does not open the way either.
    let (status, token) = send(&http, "POST", &services.users.url("/auth/token"), None, &credentials).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let service = token["access_token"].as_str().unwrap();
    let (_, before) = send(&http, "GET", &services.catalog.url("/events/stats"), Some(service), &Value::Null).await;
    let forged = json!({"events": [{
        "id": uuid::Uuid::now_v7().to_string(),
        "type": "order.cancelled",
        "occurred_at": "2026-01-01T00:00:00Z",
        "order_id": uuid::Uuid::new_v4().to_string(),
        "version": 9,
        "data": {"items": [{"product_id": 1, "quantity": 1}]},
    }]});
    let (status, body) = send(&http, "POST", &gw.url("/api/events"), Some(service), &forged).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an event delivered through the gateway: {body}");
    assert_eq!(body["type"].as_str().map(|t| t.ends_with("not-found")), Some(true), "problem+json: {body}");
    let (_, after) = send(&http, "GET", &services.catalog.url("/events/stats"), Some(service), &Value::Null).await;
    assert_eq!(before, after, "nothing was applied");
    services.finish().await;
}

/// Finding 3: `POST /api/users` (seed 004's registration) skipped the sign-in/registration
/// quota: a signed-in user created accounts while `/register` already answered 429.
#[tokio::test]
async fn every_registration_path_shares_the_registration_quota() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings().with("AUTH_RATE_LIMIT", "6").with("AUTH_RATE_LIMIT_BURST", "3")).await;
    let http = reqwest::Client::new();
    // Signed in before the quota is spent (a sign-in counts too).
    let bob = login(&http, &gw, "bob", "bob123").await["access_token"].as_str().unwrap().to_string();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let path = if i % 2 == 0 { "/api/users/register" } else { "/api/users" };
        let account = json!({"username": format!("probe{i}x"), "password": "correct-horse-42"});
        statuses.push(send(&http, "POST", &gw.url(path), Some(&bob), &account).await.0.as_u16());
    }
    assert_eq!(statuses, [201, 201, 429, 429, 429, 429], "register, alias, register, alias, …");
    services.finish().await;
}

/// Finding 1: a storefront cookie copied before its session's refresh token was exchanged
/// signed its thief in as the victim long after (the gateway handed the exchanged tokens to
/// any later copy of the old cookie), and the victim never noticed. Now, past the refresh
/// grace, the old cookie's spent refresh token reaches the users service, which ends the whole
/// session: the thief gets the sign-in page, and so does the victim's current cookie.
#[tokio::test]
async fn a_storefront_cookie_replayed_after_its_refresh_ends_the_session() {
    // Access tokens of 10 s are inside the storefront's refresh-ahead window: every page
    // exchanges the session's refresh token.
    let services = Services::start(&|s| s.with("JWT_EXPIRATION_MINUTES", "10s")).await;
    let gw =
        gateway(services.settings().with("JWT_EXPIRATION_MINUTES", "10s").with("SESSION_REFRESH_GRACE", "1s")).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut victim = Jar::default();
    let page = http.get(gw.url("/login")).header("accept", "text/html").send().await.unwrap();
    victim.take(&page);
    let csrf = csrf_in(&page.text().await.unwrap());
    let res = http
        .post(gw.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .header("cookie", victim.header())
        .header("sec-fetch-site", "same-origin")
        .body(format!("login=bob&password=bob123&_csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    victim.take(&res);
    let stolen = victim.clone();

    let profile = |jar: &Jar| http.get(gw.url("/profile")).header("accept", "text/html").header("cookie", jar.header());
    let res = profile(&victim).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the victim is signed in");
    victim.take(&res);
    assert_ne!(victim.header(), stolen.header(), "the visit refreshed the session's tokens");

    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let res = profile(&stolen).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the replayed cookie must not sign its holder in");
    assert!(res.headers()["location"].to_str().unwrap().starts_with("/login"));
    let res = profile(&victim).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the replay ended the session family, the victim's copy too");
    services.finish().await;
}
