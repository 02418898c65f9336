//! The API through the gateway: routes, forwarded headers, authentication at the edge, CORS, body limits.

use super::*;

#[tokio::test]
async fn canonical_api_works_through_the_gateway() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let http = reqwest::Client::new();
    let via_gateway: Value = http.get(gw.url("/api/products/1")).send().await.unwrap().json().await.unwrap();
    // The same answer, its links (product pictures) under the gateway's `/api`.
    let direct: Value = http
        .get(services.catalog.url("/products/1"))
        .header("x-forwarded-prefix", "/api")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_gateway, direct);
    assert!(via_gateway["images"][0]["url"].as_str().unwrap().starts_with("/api/products/1/images/"));
    let (status, _) = {
        let r = http.get(gw.url("/api/products?category=Books&per_page=2")).send().await.unwrap();
        (r.status(), ())
    };
    assert_eq!(status, StatusCode::OK);

    // register → login → me → order → list → refresh → logout
    let res = http
        .post(gw.url("/api/users/register"))
        .json(&json!({"name": "Jo", "email": "jo@example.com", "password": "long-enough-pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let tokens = login(&http, &gw, "jo@example.com", "long-enough-pw").await;
    let access = tokens["access_token"].as_str().unwrap();
    let me: Value = http.get(gw.url("/api/users/me")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["email"], "jo@example.com");
    let res = http
        .post(gw.url("/api/orders"))
        .bearer_auth(access)
        .json(&json!({"items": [{"sku": "MUG-CERAMIC", "quantity": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let list: Value = http.get(gw.url("/api/orders")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["total"], 1);
    let refreshed: Value = http
        .post(gw.url("/api/users/refresh"))
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access2 = refreshed["access_token"].as_str().unwrap();
    let res = http.post(gw.url("/api/users/logout")).bearer_auth(access2).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Refused at the edge at once: the gateway saw the logout.
    let res = http.get(gw.url("/api/orders")).bearer_auth(access2).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = http.get(gw.url("/api/reservations")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "internal APIs are not exposed");
    let health: Value = http.get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    services.finish().await;
}

#[tokio::test]
async fn headers_are_forwarded_cleaned_and_traced() {
    let upstream = Scripted::start().await;
    let gw = gateway_over(&[&upstream], &[]).await;
    let res = reqwest::Client::new()
        .get(gw.url("/api/products/echo?x=1"))
        .header("x-request-id", "trace-me-123")
        .header("x-user-id", "admin")
        .header("x-user-role", "admin")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "keep-alive, x-secret-hop")
        .header("x-secret-hop", "should not pass")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .header("tracestate", "congo=t61rcWkgMzE")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-request-id"], "trace-me-123");
    let body: Value = res.json().await.unwrap();
    let h = &body["headers"];
    assert_eq!(body["path"], "/products/echo?x=1");
    assert_eq!(h["x-request-id"], "trace-me-123");
    assert!(h.get("x-user-id").is_none() && h.get("x-user-role").is_none(), "identity headers leaked: {h}");
    assert!(h.get("x-secret-hop").is_none(), "a connection-listed header was forwarded: {h}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "a client's own X-Forwarded-For is not believed at the edge: {h}");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(h["x-forwarded-host"].as_str().unwrap().starts_with("127.0.0.1:"));
    let tp = h["traceparent"].as_str().unwrap();
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "trace id not continued: {tp}");
    assert!(!tp.contains("00f067aa0ba902b7"), "the gateway must add its own span: {tp}");
    assert_eq!(h["tracestate"], "congo=t61rcWkgMzE", "the trace's state travels with it");

    // A malformed trace state, or one without a trace to join, goes no further.
    for (traceparent, tracestate) in [
        (Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), "Not A=Valid,,key"),
        (None, "congo=t61rcWkgMzE"),
    ] {
        let mut req = reqwest::Client::new().get(gw.url("/api/products/echo")).header("tracestate", tracestate);
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        let body: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(body["headers"].get("tracestate").is_none(), "{tracestate:?} was passed on: {}", body["headers"]);
    }
}

#[tokio::test]
async fn auth_at_the_edge() {
    let services = Services::start(&|s| s.with("JWT_SECRET", HS_SECRET)).await;
    let gw = gateway(services.settings().with("JWT_SECRET", HS_SECRET)).await;
    let http = reqwest::Client::new();
    let bob = login(&http, &gw, "bob", "bob123").await["access_token"].as_str().unwrap().to_string();

    let res = http.get(gw.url("/api/orders")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["www-authenticate"], "Bearer");

    let res = http.get(gw.url("/api/users")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["required_permission"], "user.manage");
    for (method, path) in [
        ("PUT", "/api/orders/x/status"),
        ("POST", "/api/orders/x/cancel"),
        ("POST", "/api/products"),
        ("DELETE", "/api/products/1"),
    ] {
        let res = http
            .request(method.parse().unwrap(), gw.url(path))
            .bearer_auth(&bob)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }

    // An expired token, signed with the right secret.
    let parts: Vec<&str> = bob.split('.').collect();
    use base64::Engine;
    let mut claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(kit::auth::unix_now() - 600);
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap();
    let res = http.get(gw.url("/api/orders")).bearer_auth(&expired).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");

    // A role upgraded in a re-signed token with a guessed secret.
    claims["exp"] = json!(kit::auth::unix_now() + 600);
    claims["role"] = json!("admin");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"guessed-secret"),
    )
    .unwrap();
    let res = http.get(gw.url("/api/users")).bearer_auth(&forged).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Revoked through the users service directly (not via this gateway): the gateway learns
    // of it from the revocation feed within a poll interval.
    let charlie = login(&http, &gw, "charlie", "charlie123").await["access_token"].as_str().unwrap().to_string();
    assert_eq!(http.get(gw.url("/api/orders")).bearer_auth(&charlie).send().await.unwrap().status(), StatusCode::OK);
    let res = http.post(services.users.url("/users/logout")).bearer_auth(&charlie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = http.get(gw.url("/api/orders")).bearer_auth(&charlie).send().await.unwrap().status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(Instant::now() < deadline, "revocation never reached the gateway");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    services.finish().await;
}

#[tokio::test]
async fn cors_preflight_and_origins() {
    let upstream = Scripted::start().await;
    let gw = gateway_over(&[&upstream], &[("CORS_ALLOWED_ORIGINS", "https://shop.example")]).await;
    let http = reqwest::Client::new();
    let res = http
        .request(reqwest::Method::OPTIONS, gw.url("/api/orders"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, idempotency-key")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()["access-control-allow-origin"], "https://shop.example");
    let allowed = res.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("idempotency-key"), "{allowed}");
    let res = http
        .request(reqwest::Method::OPTIONS, gw.url("/api/orders"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none(), "a foreign origin was allowed");
    assert_eq!(upstream.hits(), 0, "preflights are answered at the edge");
    let res = http.get(gw.url("/api/products/1")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn oversized_bodies_are_refused_at_the_edge() {
    let upstream = Scripted::start().await;
    let gw = gateway_over(&[&upstream], &[]).await;
    let http = reqwest::Client::new();
    let big = "x".repeat(2 * 1024 * 1024);
    let res = http
        .post(gw.url("/api/users/login"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Without a Content-Length (chunked), the limit still holds.
    let stream =
        futures::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024]))));
    let res = http
        .post(gw.url("/api/users/login"))
        .header("idempotency-key", "big-1")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn each_api_operation_is_counted_under_its_own_route() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let http = reqwest::Client::new();
    let tokens = login(&http, &gw, "bob", "bob123").await;
    let access = tokens["access_token"].as_str().unwrap();
    for id in [1, 2] {
        assert_eq!(http.get(gw.url(&format!("/api/products/{id}"))).send().await.unwrap().status(), StatusCode::OK);
    }
    let res = http
        .post(gw.url("/api/orders"))
        .bearer_auth(access)
        .json(&json!({"items": [{"sku": "MUG-CERAMIC", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // A path of no operation stays under the catch-all: clients cannot mint series.
    let res = http.get(gw.url("/api/products/1/no-such-thing")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let metrics = http.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let count = |method: &str, route: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .filter(|l| l.contains(&format!("method=\"{method}\"")) && l.contains(&format!("route=\"{route}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(count("GET", "/api/products/{id}"), 2.0, "{metrics}");
    assert_eq!(count("POST", "/api/orders"), 1.0, "{metrics}");
    assert_eq!(count("POST", "/api/users/login"), 1.0, "{metrics}");
    assert_eq!(count("GET", "/api/{*rest}"), 1.0, "only the unknown path is a catch-all: {metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_request_duration_seconds") && l.contains("route=\"/api/products/{id}\"")),
        "latency by operation too: {metrics}"
    );
}

/// Issue 18: a service this process serves (as in `ordermesh up`) is proxied to in-process.
/// Nothing listens at this catalog's address, so only that path can answer; what it is handed
/// is what it would have read off the wire. With `IN_PROCESS_CALLS=off` the same request finds
/// no catalog.
#[tokio::test]
async fn a_service_served_in_this_process_is_proxied_to_without_a_socket() {
    let services = Services::start(&|s| s).await;
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let catalog = Router::new().route("/health", get(|| async { "ok" })).route(
        "/products/{id}",
        get(|headers: HeaderMap| async move {
            let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
            axum::Json(json!({"host": header("host"), "forwarded_for": header("x-forwarded-for"),
                "request_id": header("x-request-id"), "deadline": header("x-request-timeout-ms")}))
        }),
    );
    let _served = kit::local::register(nowhere, catalog);
    let gw = gateway(services.settings().with("CATALOG_SERVICE_URL", format!("http://{nowhere}"))).await;
    let res = reqwest::get(gw.url("/api/products/7")).await.unwrap();
    if !kit::local::enabled() {
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "IN_PROCESS_CALLS=off, yet the catalog answered");
        return;
    }
    assert_eq!(res.status(), StatusCode::OK);
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["host"], nowhere.to_string());
    assert_eq!(seen["forwarded_for"], "127.0.0.1");
    assert!(seen["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{seen}");
    assert!(seen["deadline"].as_str().is_some_and(|ms| ms.parse::<u64>().is_ok()), "{seen}");
}
