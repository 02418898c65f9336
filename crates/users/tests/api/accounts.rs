//! Registering, signing in and out, bad input, and guessing throttled per account and address.

use super::*;

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let h = Harness::start().await;
    let (status, user) = h
        .post(
            "/users/register",
            None,
            json!({"name": "John Doe", "username": "john", "email": "John@Example.com", "password": "correct-horse-42"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["email"], "john@example.com");
    assert_eq!(user["role"], "user");
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());

    // Sign in by e-mail, then by username.
    let (status, tokens) =
        h.post("/users/login", None, json!({"email": "john@example.com", "password": "correct-horse-42"})).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 900);
    let tokens = h.login("john", "correct-horse-42").await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let (status, me) = h.get("/users/me", Some(access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "john");

    let (status, rotated) = h.post("/users/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let access2 = rotated["access_token"].as_str().unwrap().to_string();
    assert_ne!(rotated["refresh_token"], tokens["refresh_token"], "refresh token was not rotated");

    let (status, _) = h.post("/users/logout", Some(&access2), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Both access tokens of the session and its refresh token are dead now.
    for t in [access, access2.as_str()] {
        let (status, body) = h.get("/users/me", Some(t)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_problem(&body, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = h.post("/users/refresh", None, json!({"refresh_token": rotated["refresh_token"]})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.finish().await;
}

#[tokio::test]
async fn registration_derives_username_from_email_and_refuses_duplicates() {
    let h = Harness::start().await;
    let body = json!({"name": "Jane", "email": "jane@example.com", "password": "a-fine-password"});
    let (status, user) = h.post("/users/register", None, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["username"], "jane");
    let (status, problem) = h.post("/users/register", None, body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["field"], "email");
    let (status, problem) =
        h.post("/users/register", None, json!({"username": "JANE", "password": "a-fine-password"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["field"], "username");
    h.finish().await;
}

#[tokio::test]
async fn bad_registrations_are_refused_with_the_field_named() {
    let h = Harness::start().await;
    let cases = [
        (json!({"username": "ok_name", "email": "not-an-email", "password": "a-fine-password"}), "email"),
        (json!({"username": "x", "password": "a-fine-password"}), "username"),
        (json!({"username": "has space", "password": "a-fine-password"}), "username"),
        (json!({"username": "shorty", "password": "short"}), "password"),
        (json!({"username": "weakling", "password": "password123"}), "password"),
        (json!({"username": "samesame", "password": "samesame"}), "password"),
        (json!({"password": "a-fine-password"}), "username"),
        (json!({"username": "nopass"}), "password"),
        (json!({"username": 42, "password": "a-fine-password"}), "username"),
        (json!({"username": "named", "name": "", "password": "a-fine-password"}), "name"),
    ];
    for (body, field) in cases {
        let (status, problem) = h.post("/users/register", None, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {problem}");
        assert_problem(&problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["field"], field, "{body} → {problem}");
    }
    // Nobody registers themselves as an administrator.
    let (status, _) = h
        .post("/users/register", None, json!({"username": "sneaky", "password": "a-fine-password", "role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    h.finish().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let h = Harness::start().await;
    let res = h
        .http
        .post(h.server.url("/users/login"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    let res = h
        .http
        .post(h.server.url("/users/login"))
        .header("content-type", "text/plain")
        .body("username=bob")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = json!({"username": "bob", "password": "x".repeat(2 * 1024 * 1024)});
    let (status, problem) = h.post("/users/login", None, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert_problem(&problem, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, _) = h.get("/users/nope/deeper", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = h.send(reqwest::Method::PATCH, "/users/me", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{problem}");
    h.finish().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let h = Harness::start().await;
    let (s1, wrong) = h.post("/users/login", None, json!({"username": "bob", "password": "nope-nope"})).await;
    let (s2, unknown) = h.post("/users/login", None, json!({"username": "nobody-here", "password": "nope-nope"})).await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong["detail"], unknown["detail"]);
    assert_eq!(wrong["type"], unknown["type"]);
    h.finish().await;
}

/// Issue 16, finding 5: five wrong passwords locked the real owner out for 15 minutes, right
/// password or not, and each spelling of the account (`victor`, `victor@example.com`) had
/// five guesses of its own. Now the account's failures, however it was named, slow further
/// attempts on it without refusing the right password.
#[tokio::test]
async fn guessing_slows_the_account_but_never_locks_its_owner_out() {
    let h = Harness::with(|s| {
        s.with("LOGIN_MAX_FAILURES_PER_ACCOUNT", "3")
            .with("LOGIN_SLOWDOWN_BASE", "200ms")
            .with("LOGIN_SLOWDOWN_MAX", "400ms")
    })
    .await;
    // Guesses under both of the account's names count together.
    for login in ["charlie", "charlie@example.com", "CHARLIE"] {
        let (status, _) = h.post("/users/login", None, json!({"login": login, "password": "wrong-one"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let started = std::time::Instant::now();
    let (status, _) =
        h.post("/users/login", None, json!({"login": "charlie@example.com", "password": "wrong-two"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= Duration::from_millis(200), "the fourth guess was not slowed");
    let started = std::time::Instant::now();
    let (status, body) = h.post("/users/login", None, json!({"username": "charlie", "password": "charlie123"})).await;
    assert_eq!(status, StatusCode::OK, "the owner's right password is never refused: {body}");
    assert!(started.elapsed() >= Duration::from_millis(400), "it waited the doubled delay");
    // The success cleared the account's count: no more waiting.
    let started = std::time::Instant::now();
    h.login("charlie", "charlie123").await;
    assert!(started.elapsed() < Duration::from_millis(200));
    h.finish().await;
}

/// The guesser's address, not the account, is what gets refused.
#[tokio::test]
async fn an_address_that_keeps_failing_is_refused_with_retry_after() {
    let h = Harness::with(|s| s.with("LOGIN_MAX_FAILURES_PER_ADDRESS", "3")).await;
    for user in ["ghost1", "ghost2", "bob"] {
        let (status, _) = h.post("/users/login", None, json!({"username": user, "password": "wrong-one"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let res = h
        .http
        .post(h.server.url("/users/login"))
        .json(&json!({"username": "alice", "password": "alice123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    h.finish().await;
}

/// Issue 16, finding 6: a password of spaces only was accepted at registration.
#[tokio::test]
async fn a_password_of_spaces_is_refused() {
    let h = Harness::start().await;
    let (status, problem) = h
        .send(
            reqwest::Method::POST,
            "/users/register",
            None,
            Some(json!({"username": "spacey", "password": "            "})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "password");
    h.finish().await;
}

#[tokio::test]
async fn request_ids_are_echoed_and_metrics_count() {
    let h = Harness::start().await;
    let res = h.http.get(h.server.url("/health")).header("x-request-id", "test-123").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "test-123");
    let res = h.http.get(h.server.url("/health")).send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"].len(), 32);
    let (status, ready) = h.get("/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["database"], "ok");
    let metrics = h.http.get(h.server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total{"), "{metrics}");
    assert!(metrics.contains("route=\"/health\""), "{metrics}");
    let (status, spec) = h.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["paths"]["/users/login"].is_object());
    h.finish().await;
}

#[tokio::test]
async fn login_flood_is_bounded_not_stalled() {
    // One hashing slot, short queue: a burst of sign-ins must get answers (some 503), never hang.
    let h = Harness::with(|s| {
        s.with("PASSWORD_HASH_CONCURRENCY", "1")
            .with("PASSWORD_HASH_QUEUE_TIMEOUT", "50ms")
            .with("LOGIN_MAX_FAILURES_PER_ADDRESS", "1000")
            .with("LOGIN_MAX_FAILURES_PER_ACCOUNT", "1000")
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let http = h.http.clone();
        let url = h.server.url("/users/login");
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({"username": format!("ghost{i}"), "password": "whatever-x"}))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    let mut busy = 0;
    for t in tasks {
        let status = t.await.unwrap().expect("every request is answered");
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            busy += 1;
        }
    }
    assert!(busy > 0, "with one slot and a 50 ms queue some of 20 concurrent sign-ins must be turned away");
    // The service still answers promptly afterwards.
    let (status, _) = h.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
    h.finish().await;
}
