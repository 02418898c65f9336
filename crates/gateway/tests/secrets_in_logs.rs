//! No secret reaches the logs: a short session through the gateway with `LOG_LEVEL=debug` and
//! `LOG_FORMAT=json`, written by the platform's own logging set-up into memory, then searched
//! for every password, token, hash and key the session used, and so are the traces the process
//! kept in memory. A test binary of its own, since it
//! installs the process's log subscriber.

use std::time::Duration;

use axum::http::StatusCode;
use kit::config::Settings;
use serde_json::{Value, json};

mod common;

use common::{SECRET, Services, gateway};

#[tokio::test]
async fn debug_logs_hold_no_passwords_tokens_hashes_or_keys() {
    let logs = kit::testing::capture_logs(&Settings::from_pairs([("LOG_LEVEL", "debug"), ("LOG_FORMAT", "json")]));
    let services = Services::start(&|s| s.with("REVOCATION_POLL_INTERVAL", "200ms")).await;
    let gw = gateway(services.settings().with("REVOCATION_POLL_INTERVAL", "200ms")).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let api = |path: &str| gw.url(path);
    let first_password = "first-Secret-passw0rd-7f3a";
    let second_password = "second-Secret-passw0rd-9c1e";
    let mut secrets: Vec<(String, String)> = vec![
        ("a password".into(), first_password.into()),
        ("a changed password".into(), second_password.into()),
        ("a wrong password".into(), "wrong-Secret-guess-5d2b".into()),
        ("the service client secret".into(), SECRET.into()),
    ];
    let send = |method: &str, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = http.request(method.parse().unwrap(), api(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let register = json!({"name": "Logan", "email": "logan@example.com", "password": first_password});
    assert_eq!(send("POST", "/api/users/register", None, Some(register)).await.0, StatusCode::CREATED);
    let wrong = json!({"email": "logan@example.com", "password": "wrong-Secret-guess-5d2b"});
    assert_eq!(send("POST", "/api/users/login", None, Some(wrong)).await.0, StatusCode::UNAUTHORIZED);
    let (status, tokens) =
        send("POST", "/api/users/login", None, Some(json!({"email": "logan@example.com", "password": first_password})))
            .await;
    assert_eq!(status, StatusCode::OK);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    secrets.push(("an access token".into(), access.clone()));
    secrets.push(("a refresh token".into(), refresh.clone()));
    assert_eq!(send("GET", "/api/users/me", Some(&access), None).await.0, StatusCode::OK);
    let order = json!({"items": [{"sku": "MUG-CERAMIC", "quantity": 1}], "customer_name": "Logan"});
    assert_eq!(send("POST", "/api/orders", Some(&access), Some(order)).await.0, StatusCode::CREATED);
    let (status, rotated) = send("POST", "/api/users/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(status, StatusCode::OK);
    let access = rotated["access_token"].as_str().unwrap().to_string();
    secrets.push(("a rotated access token".into(), access.clone()));
    secrets.push(("a rotated refresh token".into(), rotated["refresh_token"].as_str().unwrap().to_string()));
    // The replayed refresh token is logged as a reuse, by session, not by value.
    assert_eq!(
        send("POST", "/api/users/refresh", None, Some(json!({"refresh_token": refresh}))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, tokens) =
        send("POST", "/api/users/login", None, Some(json!({"email": "logan@example.com", "password": first_password})))
            .await;
    assert_eq!(status, StatusCode::OK);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    secrets.push(("another access token".into(), access.clone()));
    let change = json!({"password": second_password, "current_password": first_password});
    assert_eq!(send("PUT", "/api/users/me", Some(&access), Some(change)).await.0, StatusCode::OK);
    // Service tokens are minted on the users service's own port (the gateway refuses to).
    let credentials = json!({"service_name": "orders", "client_secret": SECRET});
    let (status, service) = kit::testing::send_json(
        &http,
        reqwest::Method::POST,
        &services.users.url("/get-token"),
        None,
        Some(&credentials),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{service}");
    secrets.push(("a service token".into(), service["access_token"].as_str().unwrap().to_string()));

    // The storefront: a form sign-in, whose cookie holds the tokens (encrypted).
    let page = http.get(api("/login")).header("accept", "text/html").send().await.unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let html = page.text().await.unwrap();
    let at = html.find("name=\"_csrf\" value=\"").unwrap() + "name=\"_csrf\" value=\"".len();
    let csrf = html[at..].split('"').next().unwrap().to_string();
    let res = http
        .post(api("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .body(format!("login=logan%40example.com&password={second_password}&_csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    for set in res.headers().get_all("set-cookie") {
        let value = set.to_str().unwrap().split(';').next().unwrap().split_once('=').unwrap().1.to_string();
        if value.len() > 20 {
            secrets.push(("a session cookie".into(), value));
        }
    }
    secrets.push(("a CSRF token".into(), csrf));
    assert_eq!(send("POST", "/api/users/logout", Some(&access), None).await.0, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The signing key: its PEM and the base64 of its PKCS#8 body.
    let pem =
        std::fs::read_to_string(services.data_of(testkit::ServiceName::Users).dir.join("jwt-ed25519.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    secrets.push(("the signing key".into(), body));

    // The traces kept for the admin's Traces page are searched with the logs: span names and
    // attributes are operations and ids, never values.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let kept = kit::traces::recent().expect("traces are kept by default").list();
    assert!(kept.len() > 10, "the session left {} traces", kept.len());
    let spans: String =
        kept.iter().flat_map(|t| &t.spans).map(|s| format!("{} {:?}\n", s.name, s.attributes)).collect();
    let logged = logs.text();
    let lines: Vec<&str> = logged.lines().collect();
    assert!(lines.len() > 50, "the session logged only {} lines", lines.len());
    assert!(lines.iter().all(|l| serde_json::from_str::<Value>(l).is_ok()), "every line is JSON");
    assert!(logged.contains("\"level\":\"DEBUG\""), "LOG_LEVEL=debug was not in force");
    let text = logged.clone() + &spans;
    assert!(text.contains("\"message\":\"access\""), "requests were not logged");
    for (what, secret) in &secrets {
        assert!(!text.contains(secret.as_str()), "{what} is in the logs or the kept traces");
        // Tokens are three parts; none of their signatures or payloads may appear either.
        for part in secret.split('.').filter(|p| p.len() >= 16) {
            assert!(!text.contains(part), "part of {what} is in the logs or the kept traces");
        }
    }
    for marker in ["$argon2", "PRIVATE KEY", "password_hash", "Bearer ey", "om_session="] {
        assert!(!text.contains(marker), "{marker} is in the logs or the kept traces");
    }
    println!(
        "secrets in logs: {} JSON lines at LOG_LEVEL=debug and {} kept spans, none with any of {} secrets \
         (passwords, tokens, cookies, the client secret, the signing key) or an Argon2 hash",
        lines.len(),
        spans.lines().count(),
        secrets.len()
    );
    services.finish().await;
}
