//! Headers, cookies and credentials in answers.

use super::*;

/// The headers every HTML page must carry, whoever serves it.
fn assert_html_security_headers(what: &str, headers: &reqwest::header::HeaderMap) {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let csp = get("content-security-policy");
    assert!(csp.contains("default-src"), "{what}: no Content-Security-Policy ({csp:?})");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: CSP without frame-ancestors 'none' ({csp:?})");
    assert!(!csp.contains("script-src *") && !csp.contains("'unsafe-eval'"), "{what}: {csp}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert!(!get("referrer-policy").is_empty(), "{what}: no Referrer-Policy");
    assert!(get("referrer-policy") != "unsafe-url", "{what}");
    assert_eq!(get("x-frame-options"), "deny", "{what}: X-Frame-Options for older browsers");
}

#[tokio::test]
async fn html_pages_carry_security_headers() {
    let p = Platform::start(&[], &[]).await;
    let mut pages = 0;
    let mut targets: Vec<(String, String)> = [
        "/",
        "/login",
        "/register",
        "/home",
        "/products",
        "/products/1",
        "/products/999999",
        "/cart",
        "/purchases",
        "/admin",
        "/docs/",
        "/redoc",
        "/no-such-page",
    ]
    .iter()
    .map(|path| (format!("gateway {path}"), p.gw.url(path)))
    .collect();
    for (name, server) in
        [("users", &p.services.users), ("catalog", &p.services.catalog), ("orders", &p.services.orders)]
    {
        for path in ["/docs/", "/redoc"] {
            targets.push((format!("{name} {path}"), server.url(path)));
        }
    }
    for (what, url) in targets {
        let res = p.http.get(&url).header("accept", "text/html").send().await.unwrap();
        let headers = res.headers().clone();
        let html = headers.get("content-type").is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/html"));
        if html {
            assert_html_security_headers(&what, &headers);
            pages += 1;
        } else {
            // Redirects to sign in, and problem documents, are not pages; they are still inert.
            assert_eq!(headers.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{what}");
        }
    }
    assert!(pages >= 12, "only {pages} HTML pages were checked");
    // API answers are never sniffed into something else either.
    for url in [p.gw.url("/api/products"), p.gw.url("/api/nothing"), p.gw.url("/openapi.json"), p.gw.url("/health")] {
        let res = p.http.get(&url).send().await.unwrap();
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{url}");
    }
    println!(
        "security headers: {pages} HTML pages with CSP (frame-ancestors 'none'), nosniff, Referrer-Policy, X-Frame-Options"
    );
    p.finish().await;
}

/// The `Set-Cookie` lines of an answer.
fn set_cookies(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

fn csrf_token(html: &str) -> String {
    let at = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + "name=\"_csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn storefront_cookies_are_secure_httponly_and_samesite() {
    for secure in [true, false] {
        let flag = if secure { "true" } else { "false" };
        let p = Platform::start(&[], &[("SECURE_COOKIES", flag)]).await;
        let res = p.http.get(p.gw.url("/login")).header("accept", "text/html").send().await.unwrap();
        let cookies = set_cookies(res.headers());
        let session = cookies.iter().find(|c| c.contains("om_session=")).expect("a session cookie").clone();
        let html = res.text().await.unwrap();
        // Signing in by the form: the new session cookie holds the platform's tokens, encrypted.
        let pair = session.split(';').next().unwrap().to_string();
        let form = format!("login=bob&password=bob123&_csrf={}", csrf_token(&html));
        let res = p
            .http
            .post(p.gw.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .header("cookie", &pair)
            .header("sec-fetch-site", "same-origin")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "signing in by the form");
        let signed_in = set_cookies(res.headers());
        assert!(signed_in.iter().any(|c| c.contains("om_session=")), "{signed_in:?}");
        for cookie in cookies.iter().chain(&signed_in) {
            let attributes = cookie.to_ascii_lowercase();
            assert!(attributes.contains("; httponly"), "{cookie}");
            assert!(attributes.contains("samesite=lax") || attributes.contains("samesite=strict"), "{cookie}");
            assert!(attributes.contains("; path=/"), "{cookie}");
            assert_eq!(attributes.contains("; secure"), secure, "SECURE_COOKIES={flag}: {cookie}");
            if secure {
                assert!(cookie.starts_with("__Host-"), "{cookie}");
                assert!(!attributes.contains("domain="), "{cookie}");
            }
            let value = cookie.split(';').next().unwrap();
            // A JWT's header, or the name as JSON or form text, would show in a plain cookie; a
            // shorter pattern (`eyJ`, `bob`) turns up by chance in a random one now and then.
            let plain = ["eyJhbGci", "eyJ0eXAi", "\"bob\"", "%22bob%22", "=bob"];
            assert!(!plain.iter().any(|p| value.contains(p)), "the cookie shows what it holds: {value}");
        }
        p.finish().await;
    }
    println!(
        "cookies: __Host-, Secure (SECURE_COOKIES=true), HttpOnly, SameSite=Lax, encrypted, before and after sign-in"
    );
}

/// Every member name anywhere in a JSON document.
fn keys(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn no_answer_of_the_user_apis_carries_a_password_or_hash() {
    let p = Platform::start(&[], &[]).await;
    let alice = p.token("alice", "alice123").await;
    let password = "a-distinctive-password-42";
    let mut answers: Vec<(String, StatusCode, String)> = Vec::new();
    let mut record = |what: &str, status: StatusCode, body: String| answers.push((what.to_string(), status, body));
    let register = json!({"name": "Pat", "email": "pat@example.com", "password": password});
    let (s, _, b) = p.send("POST", &p.gw.url("/api/users/register"), None, Some(&register)).await;
    record("register", s, b);
    let (s, _, b) = p.send("POST", &p.gw.url("/api/users/register"), None, Some(&register)).await;
    record("register again (conflict)", s, b);
    let login = json!({"email": "pat@example.com", "password": password});
    let (s, _, b) = p.send("POST", &p.gw.url("/api/users/login"), None, Some(&login)).await;
    let tokens: Value = serde_json::from_str(&b).unwrap();
    record("login", s, b);
    let pat = tokens["access_token"].as_str().unwrap();
    let id = tokens["user"]["id"].as_str().unwrap();
    for (what, method, path, token, body) in [
        ("me", "GET", "/api/users/me".to_string(), pat, None),
        ("update me", "PUT", "/api/users/me".to_string(), pat, Some(json!({"name": "Pat P."}))),
        (
            "change password",
            "PUT",
            "/api/users/me".to_string(),
            pat,
            Some(json!({"password": "another-long-pass-43", "current_password": password})),
        ),
        (
            "wrong current password",
            "PUT",
            "/api/users/me".to_string(),
            pat,
            Some(json!({"password": "x-long-pass-44", "current_password": "nope"})),
        ),
        ("get by id", "GET", format!("/api/users/{id}"), alice.as_str(), None),
        ("list", "GET", "/api/users?per_page=100".to_string(), alice.as_str(), None),
        ("search", "GET", "/api/users?q=pat".to_string(), alice.as_str(), None),
        ("admin update", "PUT", format!("/api/users/{id}"), alice.as_str(), Some(json!({"name": "Pat Q."}))),
        ("verify", "POST", "/api/auth/verify".to_string(), pat, None),
        (
            "seed 004 credential check",
            "POST",
            "/api/users/verify".to_string(),
            "",
            Some(json!({"username": "bob", "password": "bob123"})),
        ),
        ("seed 004 profile", "GET", "/users/bob".to_string(), alice.as_str(), None),
        ("seed 003 profile", "GET", "/profile".to_string(), pat, None),
        (
            "seed 004 login",
            "POST",
            "/api/login".to_string(),
            "",
            Some(json!({"username": "bob", "password": "bob123"})),
        ),
    ] {
        let token = (!token.is_empty()).then_some(token);
        let (s, _, b) = p.send(method, &p.gw.url(&path), token, body.as_ref()).await;
        record(what, s, b);
    }
    let (s, _, b) = p
        .send("POST", &p.gw.url("/api/users/refresh"), None, Some(&json!({"refresh_token": tokens["refresh_token"]})))
        .await;
    record("refresh", s, b);
    let forbidden = ["password", "password_hash", "current_password", "hash", "salt", "passwd"];
    for (what, status, body) in &answers {
        assert!(status.as_u16() < 500, "{what}: {status}");
        assert_no_credentials(what, body);
        assert!(!body.contains(password), "{what}: the password in the answer");
        if let Ok(value) = serde_json::from_str::<Value>(body) {
            let mut names = BTreeSet::new();
            keys(&value, &mut names);
            for name in forbidden {
                assert!(!names.contains(name), "{what}: a `{name}` member in {body}");
            }
        }
    }
    println!("credentials in answers: {} user API answers, none with a password or hash", answers.len());
    p.finish().await;
}
