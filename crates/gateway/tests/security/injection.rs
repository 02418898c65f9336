//! Injection and parsing: hostile strings, invalid UTF-8 and NUL bytes, header injection,
//! traversal, smuggling.

use super::*;

/// SQL, template, markup and format-string payloads. Every one is a legal single line of text,
/// so where the platform takes free text it must store it and give it back unchanged.
const HOSTILE: &[&str] = &[
    "'; DROP TABLE products; --",
    "\" OR \"1\"=\"1",
    "1' OR '1'='1' --",
    "Robert'); DELETE FROM users WHERE ('1'='1",
    "a%' OR name LIKE '%",
    "_%_%",
    "{{7*7}}",
    "${7*7}",
    "<%= 7*7 %>",
    "#{7*7}",
    "{% debug %}",
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "%s%s%s%n%x",
    "../../../../etc/passwd",
    "\u{202e}gpj.exe",
    "💥 ünïcødé ½",
    "\\u0000 and \\x00",
];

#[tokio::test]
async fn injection_strings_are_stored_and_echoed_verbatim() {
    let p = Platform::start(&[], &[]).await;
    let alice = p.token("alice", "alice123").await;
    let bob = p.token("bob", "bob123").await;
    let gw = |path: &str| p.gw.url(path);
    let (_, before) = p.json("GET", &gw("/api/products?per_page=1"), None, None).await;
    let demo_products = before["total"].as_u64().unwrap();
    let mut ids = Vec::new();
    let mut cases = 0;
    for (i, payload) in HOSTILE.iter().enumerate() {
        let name = format!("{payload} #{i}");
        let product = json!({"name": name, "description": payload, "category": payload, "price": "1.00", "stock": 5});
        let (status, created) = p.json("POST", &gw("/api/products"), Some(&alice), Some(&product)).await;
        assert_eq!(status, StatusCode::CREATED, "{payload}: {created}");
        let id = created["id"].as_i64().unwrap();
        ids.push(id);
        let (_, read) = p.json("GET", &gw(&format!("/api/products/{id}")), None, None).await;
        assert_eq!((read["name"].as_str(), read["description"].as_str()), (Some(name.as_str()), Some(*payload)));
        assert_eq!(read["category"], *payload);
        // Searching for it finds it, and only what contains it: LIKE wildcards are literal.
        let q = encode(payload);
        let (status, found) = p.json("GET", &gw(&format!("/api/products?per_page=100&q={q}")), None, None).await;
        assert_eq!(status, StatusCode::OK, "q={payload}: {found}");
        let items = found["items"].as_array().unwrap();
        assert!(items.iter().any(|p| p["id"] == id), "q={payload} does not find it: {found}");
        let needle = payload.to_lowercase();
        for item in items {
            let text = format!("{} {}", item["name"].as_str().unwrap(), item["description"].as_str().unwrap());
            assert!(text.to_lowercase().contains(&needle), "q={payload} matched {text:?}");
        }
        let (status, by_category) =
            p.json("GET", &gw(&format!("/api/products?per_page=100&category={q}")), None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(by_category["items"].as_array().unwrap().iter().any(|p| p["id"] == id), "category={payload}");
        // Users: a display name is free text; usernames are not, and say so.
        let (status, user) = p
            .json(
                "POST",
                &gw("/api/users/register"),
                None,
                Some(&json!({"name": payload, "email": format!("hostile{i}@example.com"), "password": "correct-horse-42"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{payload}: {user}");
        assert_eq!(user["name"], *payload);
        let (status, refused) = p
            .json(
                "POST",
                &gw("/api/users/register"),
                None,
                Some(&json!({"username": payload, "password": "correct-horse-42"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "username {payload}: {refused}");
        let (status, _) = p
            .json("POST", &gw("/api/users/login"), None, Some(&json!({"username": payload, "password": payload})))
            .await;
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::UNPROCESSABLE_ENTITY, "login as {payload}");
        let (status, _) = p.json("GET", &gw(&format!("/api/users?q={q}")), Some(&alice), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = p.json("GET", &gw(&format!("/api/users/{}", encode(payload))), Some(&alice), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "/api/users/{payload}");
        // Orders: the customer's name and a status note are stored as given.
        let (status, order) = p
            .json(
                "POST",
                &gw("/api/orders"),
                Some(&bob),
                Some(&json!({"items": [{"product_id": id, "quantity": 1}], "customer_name": payload})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{payload}: {order}");
        assert_eq!(order["customer_name"], *payload);
        let order_id = order["id"].as_str().unwrap();
        let (status, confirmed) = p
            .json(
                "PUT",
                &gw(&format!("/api/orders/{order_id}/status")),
                Some(&alice),
                Some(&json!({"status": "confirmed", "note": payload})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{payload}: {confirmed}");
        assert_eq!(confirmed["status_history"][1]["note"], *payload);
        let (status, _) = p
            .json("POST", &gw("/api/orders"), Some(&bob), Some(&json!({"items": [{"name": payload, "quantity": 1}]})))
            .await;
        assert!(status.is_client_error(), "ordering a product named {payload}: {status}");
        let (status, _) = p.json("GET", &gw(&format!("/api/orders?username={q}")), Some(&alice), None).await;
        assert_eq!(status, StatusCode::OK);
        cases += 16;
    }
    // Every table is still there and holds what it should.
    let (_, after) = p.json("GET", &gw("/api/products?per_page=1"), None, None).await;
    assert_eq!(after["total"].as_u64().unwrap(), demo_products + HOSTILE.len() as u64);
    let (_, users) = p.json("GET", &gw("/api/users?per_page=1"), Some(&alice), None).await;
    assert_eq!(users["total"].as_u64().unwrap(), 4 + HOSTILE.len() as u64);
    let (_, orders) = p.json("GET", &gw("/api/orders?per_page=1"), Some(&bob), None).await;
    assert_eq!(orders["total"].as_u64().unwrap(), HOSTILE.len() as u64);

    // The storefront shows them as text: escaped in the page source, never markup.
    let html = |path: String| {
        let req = p.http.get(gw(&path)).header("accept", "text/html");
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            res.text().await.unwrap()
        }
    };
    let script = HOSTILE.iter().position(|h| h.starts_with("<script>")).unwrap();
    let img = HOSTILE.iter().position(|h| h.contains("<img")).unwrap();
    let template = HOSTILE.iter().position(|h| *h == "{{7*7}}").unwrap();
    for page in [
        format!("/products/{}", ids[script]),
        format!("/products?q={}", encode("<script>alert(1)</script>")),
        format!("/products?category={}", encode(HOSTILE[script])),
        format!("/products/{}", ids[img]),
        format!("/products/{}", ids[template]),
        "/products?per_page=100".to_string(),
    ] {
        let source = html(page.clone()).await;
        assert!(!source.contains("<script"), "{page}: a script element in the page");
        assert!(!source.contains("<img src=x"), "{page}: an injected element in the page");
        // (The page's own pictures follow their links' `">`; the payload's does not.)
        assert!(!source.contains("\"><img src=x onerror"), "{page}: an attribute broken out of");
        cases += 1;
    }
    let source = html(format!("/products/{}", ids[script])).await;
    assert!(source.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the name is shown, escaped");
    let source = html(format!("/products/{}", ids[template])).await;
    assert!(source.contains("{{7*7}} #"), "a template string stays text");
    println!(
        "injection: {} payloads × 16 fields and queries, stored and echoed verbatim; {cases} checks",
        HOSTILE.len()
    );
    p.finish().await;
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn invalid_utf8_and_nul_bytes_are_refused_cleanly() {
    let p = Platform::start(&[], &[]).await;
    let alice = p.token("alice", "alice123").await;
    let bob = p.token("bob", "bob123").await;
    let (_, charlie) = p.json("GET", &p.gw.url("/api/users/charlie"), Some(&alice), None).await;
    let (_, order) = p
        .json("POST", &p.gw.url("/api/orders"), Some(&bob), Some(&json!({"items": [{"product_id": 1, "quantity": 1}]})))
        .await;
    let order_id = order["id"].as_str().unwrap().to_string();
    let cases = AtomicUsize::new(0);
    let check = |what: String, status: StatusCode, body: &str| {
        assert!(status.is_client_error(), "{what}: {status} {body}");
        cases.fetch_add(1, Ordering::Relaxed);
    };

    // Bodies: invalid UTF-8 inside and around JSON, at the gateway and at each service.
    let bad_bodies: [&[u8]; 4] = [
        b"{\"username\": \"bob\xff\xfe\", \"password\": \"x\"}",
        b"\xff\xfe\x00\x01",
        b"{\"name\": \"\xc3\x28\"}",
        b"\x00",
    ];
    for (method, path, token) in [
        ("POST", "/api/users/login", None),
        ("POST", "/api/users/register", None),
        ("PUT", "/api/users/me", Some(&bob)),
        ("POST", "/api/products", Some(&alice)),
        ("POST", "/api/orders", Some(&bob)),
        ("POST", "/api/buy", Some(&bob)),
    ] {
        let mut urls = vec![p.gw.url(path)];
        if let Some((service, rest)) = rules::route(path) {
            urls.push(p.service(service).url(rest));
        }
        for url in urls {
            for body in bad_bodies {
                let mut req =
                    p.http.request(method.parse().unwrap(), &url).header("content-type", "application/json").body(body);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let res = req.send().await.unwrap();
                let status = res.status();
                check(format!("{method} {url} {body:?}"), status, &res.text().await.unwrap());
            }
        }
    }

    // NUL characters in JSON strings, wherever text goes in.
    let nul = "bob\u{0}";
    let with_nul: Vec<(&str, String, Option<&String>, Value)> = vec![
        ("POST", "/api/users/login".into(), None, json!({"username": nul, "password": "bob123"})),
        ("POST", "/api/users/login".into(), None, json!({"email": "bob@example.com\u{0}", "password": "bob123"})),
        ("POST", "/api/users/login".into(), None, json!({"username": "bob", "password": "bob123\u{0}"})),
        ("POST", "/api/users/register".into(), None, json!({"username": nul, "password": "correct-horse-42"})),
        (
            "POST",
            "/api/users/register".into(),
            None,
            json!({"name": "a\u{0}b", "username": "nulname", "password": "correct-horse-42"}),
        ),
        (
            "POST",
            "/api/users/register".into(),
            None,
            json!({"email": "a\u{0}@example.com", "password": "correct-horse-42"}),
        ),
        ("POST", "/api/users/refresh".into(), None, json!({"refresh_token": "\u{0}"})),
        ("POST", "/api/auth/verify".into(), None, json!({"token": "a.b.\u{0}"})),
        ("POST", "/api/auth/token".into(), None, json!({"client_id": "orders\u{0}", "client_secret": "x"})),
        ("PUT", "/api/users/me".into(), Some(&bob), json!({"name": "Bob\u{0}"})),
        ("PUT", "/api/users/me".into(), Some(&bob), json!({"email": "bob\u{0}@example.com"})),
        (
            "PUT",
            "/api/users/me".into(),
            Some(&bob),
            json!({"password": "new-pass-\u{0}-long", "current_password": "bob123\u{0}"}),
        ),
        ("POST", "/api/products".into(), Some(&alice), json!({"name": "N\u{0}UL", "category": "Books", "price": "1"})),
        ("POST", "/api/products".into(), Some(&alice), json!({"name": "NUL", "category": "Bo\u{0}oks", "price": "1"})),
        (
            "POST",
            "/api/products".into(),
            Some(&alice),
            json!({"name": "NUL", "category": "Books", "price": "1", "description": "\u{0}"}),
        ),
        (
            "POST",
            "/api/products".into(),
            Some(&alice),
            json!({"name": "NUL", "category": "Books", "price": "1", "sku": "A\u{0}"}),
        ),
        ("POST", "/api/products".into(), Some(&alice), json!({"name": "NUL", "category": "Books", "price": "1\u{0}"})),
        ("POST", "/api/orders".into(), Some(&bob), json!({"items": [{"name": "Laptop\u{0}", "quantity": 1}]})),
        ("POST", "/api/orders".into(), Some(&bob), json!({"items": [{"sku": "MUG\u{0}", "quantity": 1}]})),
        (
            "POST",
            "/api/orders".into(),
            Some(&bob),
            json!({"items": [{"product_id": 1, "quantity": 1}], "customer_name": "\u{0}"}),
        ),
        (
            "PUT",
            format!("/api/orders/{order_id}/status"),
            Some(&alice),
            json!({"status": "confirmed", "note": "paid\u{0}"}),
        ),
        ("POST", format!("/api/orders/{order_id}/cancel"), Some(&alice), json!({"note": "\u{0}"})),
    ];
    for (method, path, token, body) in &with_nul {
        let mut urls = vec![p.gw.url(path)];
        if let Some((service, rest)) = rules::route(path) {
            urls.push(p.service(service).url(rest));
        }
        for url in urls {
            let (status, _, answer) = p.send(method, &url, token.map(|t| t.as_str()), Some(body)).await;
            check(format!("{method} {url} {body}"), status, &answer);
        }
    }

    // NUL and invalid UTF-8 in paths and queries (percent-encoded; raw ones never parse).
    let charlie_id = charlie["id"].as_str().unwrap();
    for (path, token) in [
        ("/api/products/%00".to_string(), None),
        ("/api/products/1%00".to_string(), None),
        ("/api/products/%FF%FE".to_string(), None),
        ("/api/products?q=%00".to_string(), None),
        ("/api/products?q=%FF".to_string(), None),
        ("/api/products?category=%00".to_string(), None),
        ("/api/products?sort=%00".to_string(), None),
        ("/api/products/category/%00".to_string(), None),
        ("/api/users/%00".to_string(), Some(&alice)),
        ("/api/users/bob%00".to_string(), Some(&bob)),
        ("/api/users/%FF".to_string(), Some(&bob)),
        (format!("/api/users/{charlie_id}%00"), Some(&alice)),
        ("/api/users?q=%00".to_string(), Some(&alice)),
        ("/api/orders/%00".to_string(), Some(&bob)),
        (format!("/api/orders/{order_id}%00"), Some(&bob)),
        ("/api/orders?username=%00".to_string(), Some(&alice)),
        ("/api/orders?user_id=%00".to_string(), Some(&alice)),
        ("/api/orders?status=%00".to_string(), Some(&bob)),
        ("/api/orders/%00/purchases".to_string(), Some(&alice)),
        ("/api/events/processed?order_id=%00".to_string(), Some(&alice)),
        ("/users/%00".to_string(), Some(&alice)),
        ("/orders/%00/purchases".to_string(), Some(&alice)),
        ("/products/category/%00".to_string(), None),
    ] {
        let mut urls = vec![p.gw.url(&path)];
        if let Some((service, rest)) = rules::route(&path) {
            urls.push(p.service(service).url(rest));
        }
        for url in urls {
            let (status, _, body) = p.send("GET", &url, token.map(|t| t.as_str()), None).await;
            // A search for text that cannot be (invalid UTF-8 decodes to U+FFFD) may find
            // nothing; anything else must be refused.
            if url.contains("?q=%FF") {
                assert!(status == StatusCode::OK || status.is_client_error(), "{url}: {status} {body}");
                cases.fetch_add(1, Ordering::Relaxed);
            } else {
                check(format!("GET {url}"), status, &body);
            }
        }
    }

    // Headers: bytes outside ASCII where the platform reads text; NUL where nothing may be.
    for (name, value) in [
        ("authorization", &b"Bearer \xff\xfe"[..]),
        ("x-request-id", b"\xff\xfe"),
        ("traceparent", b"00-\xff"),
        ("idempotency-key", b"key-\xff"),
        ("x-forwarded-for", b"\xff, 1.2.3.4"),
        ("if-match", b"\"\xff\""),
        ("cookie", b"om_session=\xff\xfe"),
    ] {
        let request = [
            b"POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
                .as_slice(),
            name.as_bytes(),
            b": ",
            value,
            b"\r\nContent-Length: 2\r\n\r\n{}",
        ]
        .concat();
        let answer = raw(p.gw.addr, &request, Duration::from_secs(3)).await;
        let status = statuses(&answer);
        assert!(status.len() == 1 && (400..500).contains(&status[0]), "{name}: {answer:.300}");
        cases.fetch_add(1, Ordering::Relaxed);
    }
    for request in [
        &b"GET /api/products/\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"[..],
        b"GET /api/products?q=\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: a\x00b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-N\x00: 1\r\n\r\n",
    ] {
        let answer = raw(p.gw.addr, request, Duration::from_secs(3)).await;
        assert!(statuses(&answer).iter().all(|s| *s == 400), "{request:?}: {answer:.300}");
        cases.fetch_add(1, Ordering::Relaxed);
    }
    let (status, _, _) = p.send("GET", &p.gw.url("/health"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let cases = cases.into_inner();
    println!("invalid UTF-8 and NUL: {cases} requests, every one a clean 4xx (or, for searches, an empty 200)");
    p.finish().await;
}

#[tokio::test]
async fn headers_cannot_be_injected_into_answers() {
    let p = Platform::start(&[], &[]).await;
    let addr = p.gw.addr;
    let mut cases = 0;
    for request in [
        // A bare CR, an obsolete line folding, a LF-only line: refused before anything runs.
        &b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\rSet-Cookie: evil=1\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\n Set-Cookie: evil=1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\nSet-Cookie: evil=1\r\n\r\n",
        // Encoded line breaks in values the platform echoes or redirects with.
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: abc%0d%0aSet-Cookie:%20evil=1\r\n\r\n",
        b"GET /purchases?x=%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
        b"GET /login?next=%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
        b"GET /%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /api/products/%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let answer = raw(addr, request, Duration::from_secs(3)).await;
        let head = answer.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase();
        assert!(!statuses(&answer).is_empty(), "no answer to {request:?}");
        assert!(!head.contains("set-cookie: evil"), "a header was injected: {answer:.400}");
        for line in head.lines().skip(1) {
            assert!(line.contains(':'), "a broken header line {line:?} in {answer:.400}");
            if line.starts_with("x-request-id:") {
                assert!(!line.contains('%') && !line.contains("evil"), "an odd request id was echoed: {line}");
            }
            if line.starts_with("location:") {
                assert!(!line.contains('\r') && !line.contains("set-cookie: evil"), "{line}");
            }
        }
        cases += 1;
    }
    println!("header injection: {cases} attempts, none reached a response header");
    p.finish().await;
}

#[tokio::test]
async fn static_asset_paths_cannot_traverse() {
    let p = Platform::start(&[], &[]).await;
    let mut cases = 0;
    for target in [
        "/assets/../../etc/passwd",
        "/assets/../../../../../../etc/passwd",
        "/assets/..%2f..%2f..%2fetc%2fpasswd",
        "/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/assets/..%252f..%252fetc%252fpasswd",
        "/assets/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/assets/..\\..\\..\\etc\\passwd",
        "/assets/..%5c..%5cetc%5cpasswd",
        "/assets/style.css/../../../../etc/passwd",
        "/assets/style.css%00/../../etc/passwd",
        "/assets//etc/passwd",
        "/assets/%2fetc%2fpasswd",
        "//etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/docs/../../../../etc/passwd",
        "/docs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/docs/..%2f..%2f..%2fCargo.toml",
        "/redoc/../../etc/passwd",
        "/assets/../Cargo.toml",
        "/assets/../../Cargo.toml",
        "/assets/../src/lib.rs",
    ] {
        let answer = raw(
            p.gw.addr,
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        let status = statuses(&answer);
        assert!(matches!(status.as_slice(), [404] | [400]), "{target}: {answer:.300}");
        for secret in ["root:", "[package]", "[workspace]", "pub fn router"] {
            assert!(!answer.contains(secret), "{target} served a file: {answer:.300}");
        }
        cases += 1;
    }
    // The real assets are there.
    for asset in ["/assets/style.css", "/assets/favicon.svg"] {
        assert_eq!(p.send("GET", &p.gw.url(asset), None, None).await.0, StatusCode::OK);
    }
    println!("path traversal: {cases} paths, all 404/400, no file content");
    p.finish().await;
}

/// An upstream that records every request it is sent: method, path, framing headers and how
/// many body bytes arrived.
async fn recording_upstream() -> (TestServer, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = move |req: axum::extract::Request| {
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.map(|b| b.len()).unwrap_or(usize::MAX);
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
            // The gateway's own background calls (health checks, keys, its service token,
            // revocations) are not traffic; the public `/api/auth/token` never gets here.
            let path = parts.uri.path();
            let background = path == "/health"
                || path == "/auth/token"
                || path.starts_with("/.well-known")
                || path.starts_with("/auth/revocations");
            if !background {
                log.lock().unwrap().push(format!(
                    "{} {} content-length={} transfer-encoding={} body={body}",
                    parts.method,
                    parts.uri,
                    header("content-length"),
                    header("transfer-encoding")
                ));
            }
            axum::Json(json!({"ok": true}))
        }
    };
    let router = axum::Router::new().fallback(handler);
    // What the gateway put on the wire, so not called in-process.
    (TestServer::start_on_the_wire(router).await, seen)
}

#[tokio::test]
async fn request_smuggling_attempts_are_refused() {
    let (upstream, seen) = recording_upstream().await;
    let mut settings = Settings::from_pairs([
        ("USER_SERVICE_URL", upstream.base()),
        ("CATALOG_SERVICE_URL", upstream.base()),
        ("ORDER_SERVICE_URL", upstream.base()),
    ]);
    for (k, v) in GENEROUS {
        settings = settings.with(k, *v);
    }
    let gw = common::gateway(settings).await;
    let smuggled = "GET /api/users/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let head = "POST /api/users/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    let refused: Vec<(&str, String)> = vec![
        (
            "two different Content-Lengths",
            format!("{head}Content-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        ),
        ("a Content-Length list", format!("{head}Content-Length: 0, {}\r\n\r\n{smuggled}", smuggled.len())),
        ("Content-Length with a sign", format!("{head}Content-Length: +{}\r\n\r\n{smuggled}", smuggled.len())),
        ("negative Content-Length", format!("{head}Content-Length: -1\r\n\r\n{smuggled}")),
        ("Content-Length in hex", format!("{head}Content-Length: 0x10\r\n\r\n{smuggled}")),
        ("TE xchunked", format!("{head}Transfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n{smuggled}")),
        ("TE chunked, identity", format!("{head}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE identity", format!("{head}Transfer-Encoding: identity\r\n\r\n{smuggled}")),
        ("TE gzip", format!("{head}Transfer-Encoding: gzip\r\n\r\n{smuggled}")),
        ("TE with a space before the colon", format!("{head}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE with a vertical tab", format!("{head}Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n{smuggled}")),
        (
            "TE twice, chunked not last",
            format!("{head}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE folded onto the previous line",
            format!("{head}X-A: b\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE in HTTP/1.0",
            format!(
                "POST /api/users/login HTTP/1.0\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        ("chunk size overflow", format!("{head}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n{smuggled}")),
        (
            "chunk size in 0x form",
            format!("{head}Transfer-Encoding: chunked\r\n\r\n0x2\r\n{{}}\r\n0\r\n\r\n{smuggled}"),
        ),
        ("chunk size negative", format!("{head}Transfer-Encoding: chunked\r\n\r\n-2\r\n{{}}\r\n0\r\n\r\n{smuggled}")),
        ("NUL in the Content-Length", format!("{head}Content-Length: 2\x00\r\n\r\n{{}}{smuggled}")),
    ];
    let mut cases = 0;
    // Both Content-Length and Transfer-Encoding: hyper (under every ordermesh server) takes the
    // RFC 9112 §6.3 option of framing by Transfer-Encoding alone, drops the Content-Length and
    // closes the connection after answering, so nothing after the body is ever read as another
    // request. (It removes the Content-Length before the application sees the request, so a
    // 400 is not possible there; what matters is that no two parties frame it differently.)
    for (name, request, body) in [
        ("CL.TE", format!("{head}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"), 0),
        (
            "TE.CL",
            format!("{head}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{smuggled}"),
            2,
        ),
        (
            "CL.TE, CL 0",
            format!("{head}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{smuggled}"),
            2,
        ),
        (
            "CL.TE, CL covering the next request",
            format!(
                "{head}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                5 + smuggled.len()
            ),
            0,
        ),
    ] {
        let before = seen.lock().unwrap().len();
        let started = Instant::now();
        let answer = raw(gw.addr, request.as_bytes(), Duration::from_secs(3)).await;
        assert!(started.elapsed() < Duration::from_millis(2500), "{name}: the connection was left open");
        assert_eq!(
            statuses(&answer).len(),
            1,
            "{name}: the bytes after the body were read as a request: {answer:.400}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = seen.lock().unwrap().clone();
        assert_eq!(after.len(), before + 1, "{name}: {:?}", &after[before..]);
        assert_eq!(
            after[before],
            format!("POST /users/login content-length=- transfer-encoding=chunked body={body}"),
            "{name}: the upstream must get one framing only"
        );
        cases += 1;
    }
    for (name, request) in &refused {
        let before = seen.lock().unwrap().len();
        let answer = raw(gw.addr, request.as_bytes(), Duration::from_secs(3)).await;
        let status = statuses(&answer);
        assert_eq!(status, [400], "{name}: one 400 and the connection closed, got {answer:.400}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = seen.lock().unwrap().clone();
        assert_eq!(after.len(), before, "{name}: the upstream was sent {:?}", &after[before..]);
        cases += 1;
    }
    // Unusual but unambiguous framing is read one way only: what the upstream receives is one
    // request, framed by the gateway, and nothing is smuggled along.
    let accepted: Vec<(&str, String)> = vec![
        (
            "TE CHUNKED in capitals",
            format!("{head}Transfer-Encoding: CHUNKED\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "the same Content-Length twice",
            format!("{head}Content-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}{smuggled}"),
        ),
        (
            "chunk extensions",
            format!(
                "{head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2;ext=\"x\"\r\n{{}}\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "trailers",
            format!(
                "{head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\nX-Trailer: 1\r\n\r\n{smuggled}"
            ),
        ),
    ];
    for (name, request) in &accepted {
        let before = seen.lock().unwrap().len();
        let answer = raw(gw.addr, request.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(statuses(&answer).len(), 1, "{name}: {answer:.400}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = seen.lock().unwrap().clone();
        assert_eq!(after.len(), before + 1, "{name}: {:?}", &after[before..]);
        let forwarded = &after[before];
        assert!(forwarded.starts_with("POST /users/login ") && forwarded.ends_with("body=2"), "{name}: {forwarded}");
        assert!(
            !forwarded.contains("transfer-encoding=chunked") || !forwarded.contains("content-length=2"),
            "{forwarded}"
        );
        cases += 1;
    }
    let all = seen.lock().unwrap().clone();
    assert!(!all.iter().any(|r| r.contains("smuggled")), "a smuggled request reached the upstream: {all:?}");
    println!(
        "request smuggling: {cases} attempts; {} ambiguous framings refused with 400, CL+TE framed by TE alone and the \
         connection closed; nothing smuggled to the upstream",
        refused.len()
    );
}
