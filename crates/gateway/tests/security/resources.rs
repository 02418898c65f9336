//! Resource consumption: oversized bodies, huge pages, deep JSON, many small requests, slow
//! clients, login floods.

use super::*;

/// Every operation of the public document that takes a JSON body, with where to send it at
/// the gateway and at its service.
async fn body_operations(p: &Platform) -> Vec<(String, Vec<String>)> {
    let (_, doc) = p.json("GET", &p.gw.url("/openapi.json"), None, None).await;
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            // JSON bodies only; picture uploads have their own limit (below).
            if op["requestBody"]["content"].get("application/json").is_none() {
                continue;
            }
            let path = template.replace("{id}", "1").replace("{category}", "Books");
            let mut urls = vec![p.gw.url(&path)];
            if let Some((service, rest)) = rules::route(&path) {
                urls.push(p.service(service).url(rest));
            }
            out.push((method.to_uppercase(), urls));
        }
    }
    out
}

#[tokio::test]
async fn oversized_bodies_are_refused_everywhere() {
    let p = Platform::start(&[], &[]).await;
    let alice = p.token("alice", "alice123").await;
    let big = json!({"name": "x".repeat(2 * 1024 * 1024)});
    let ops = body_operations(&p).await;
    assert!(ops.len() >= 15, "{} operations take a body", ops.len());
    let mut cases = 0;
    for (method, urls) in &ops {
        for url in urls {
            let (status, headers, body) = p.send(method, url, Some(&alice), Some(&big)).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{method} {url}: {body}");
            assert_eq!(headers["content-type"], "application/problem+json", "{method} {url}");
            cases += 1;
        }
    }
    // Without a Content-Length (chunked), at the gateway and at each service. At the gateway
    // these stream through to the service (nothing to retry), and more of them than a breaker
    // needs to open: the client's oversized bodies must not count as the service failing.
    let gateway_login = p.gw.url("/api/users/login");
    let mut chunked = vec![gateway_login.clone(); 12];
    chunked.extend([
        p.services.users.url("/users/login"),
        p.services.catalog.url("/products"),
        p.services.orders.url("/orders"),
    ]);
    for url in chunked {
        let chunks =
            futures::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))));
        let res = p
            .http
            .post(&url)
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "chunked to {url}");
        cases += 1;
    }
    let (_, health) = p.json("GET", &p.gw.url("/health"), None, None).await;
    assert_eq!(health["upstreams"]["users"]["instances"][0]["breaker"], "closed", "{health}");
    let (status, _, body) =
        p.send("POST", &gateway_login, None, Some(&json!({"username": "bob", "password": "bob123"}))).await;
    assert_eq!(status, StatusCode::OK, "others still sign in: {body}");
    // The Cap'n Web batch endpoint has its own (larger) limit: 8 MiB.
    let res = p
        .http
        .post(p.gw.url("/rpc/batch"))
        .body(format!("[\"push\",[\"pipeline\",0,[\"x\"],[\"{}\"]]]", "x".repeat(9 * 1024 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "/rpc/batch");
    // Picture uploads have their own limits too: the gateway's upload limit (16 MiB), and
    // the catalog's picture limit (8 MiB), declared or chunked.
    let upload = |url: String, body: reqwest::Body| {
        p.http.post(url).bearer_auth(&alice).header("content-type", "image/png").body(body).send()
    };
    let over_gateway = vec![0x89u8; 17 * 1024 * 1024];
    let res = upload(p.gw.url("/api/products/1/images"), over_gateway.into()).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "upload over the gateway's limit");
    let over_catalog = vec![0x89u8; 9 * 1024 * 1024];
    let res = upload(p.services.catalog.url("/products/1/images"), over_catalog.into()).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "upload over the catalog's limit");
    let chunks =
        futures::stream::iter((0..150).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0x89; 64 * 1024]))));
    let res = upload(p.gw.url("/api/products/1/images"), reqwest::Body::wrap_stream(chunks)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "chunked upload over the catalog's limit");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    cases += 3;
    println!("oversized bodies: {} requests, all 413", cases + 1);
    p.finish().await;
}

#[tokio::test]
async fn huge_and_nonsensical_pages_are_refused() {
    let p = Platform::start(&[], &[]).await;
    let alice = p.token("alice", "alice123").await;
    let (_, doc) = p.json("GET", &p.gw.url("/openapi.json"), None, None).await;
    let mut listings = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        if let Some(op) = item.get("get")
            && op["parameters"].as_array().into_iter().flatten().any(|p| p["name"] == "per_page")
        {
            listings.push(template.replace("{category}", "Books"));
        }
    }
    assert!(listings.len() >= 3, "{listings:?}");
    let mut cases = 0;
    for path in &listings {
        let mut urls = vec![p.gw.url(path)];
        if let Some((service, rest)) = rules::route(path) {
            urls.push(p.service(service).url(rest));
        }
        for url in urls {
            for (query, parameter) in [
                ("per_page=100000", "per_page"),
                ("per_page=101", "per_page"),
                ("per_page=0", "per_page"),
                ("per_page=-1", "per_page"),
                ("per_page=4294967296", "per_page"),
                ("page=0", "page"),
                ("page=100001", "page"),
                ("page=99999999999999999999", "page"),
            ] {
                let (status, body) = p.json("GET", &format!("{url}?{query}"), Some(&alice), None).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{url}?{query}: {body}");
                assert_eq!(body["parameter"], parameter, "{url}?{query}: {body}");
                cases += 1;
            }
            let (status, _) = p.json("GET", &format!("{url}?per_page=100&page=100000"), Some(&alice), None).await;
            assert_eq!(status, StatusCode::OK, "the largest page allowed is an empty one, not an error");
        }
    }
    println!("huge pages: {} listings, {cases} requests, all 400 naming the parameter", listings.len());
    p.finish().await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_quickly() {
    let p = Platform::start(&[], &[]).await;
    let alice = p.token("alice", "alice123").await;
    let deep_array = "[".repeat(100_000);
    let deep_object = "{\"a\":".repeat(50_000);
    let deep_field = format!("{{\"items\": {}", "[".repeat(100_000));
    let mut targets = body_operations(&p).await;
    // Seed paths whose bodies the gateway itself reads and rewrites.
    // (`/get-token` is not among them: the gateway refuses it, see outside_probe.rs.)
    for path in ["/api/buy", "/create-order", "/api/login", "/orders/alice/buy"] {
        targets.push(("POST".into(), vec![p.gw.url(path)]));
    }
    let mut cases = 0;
    let mut slowest = Duration::ZERO;
    for (method, urls) in &targets {
        for url in urls {
            for body in [&deep_array, &deep_object, &deep_field] {
                let started = Instant::now();
                let res = p
                    .http
                    .request(method.parse().unwrap(), url)
                    .bearer_auth(&alice)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let took = started.elapsed();
                slowest = slowest.max(took);
                let status = res.status();
                // 400 when the parser gives up on the depth; 422 when the shape is wrong before
                // the depth is reached (an array where an object's field was expected).
                assert!(
                    matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY),
                    "{method} {url}: {status} {}",
                    res.text().await.unwrap()
                );
                assert!(took < Duration::from_secs(2), "{method} {url} took {took:?}");
                cases += 1;
            }
        }
    }
    // Cap'n Web batches: the protocol's answer to a message it cannot read is an abort.
    let res = p.http.post(p.gw.url("/rpc/batch")).body(deep_array.clone()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let answer = res.text().await.unwrap();
    assert!(answer.starts_with("[\"abort\""), "/rpc/batch: {answer}");
    let (status, _, _) = p.send("GET", &p.gw.url("/health"), None, None).await;
    assert_eq!(status, StatusCode::OK, "still serving");
    println!("deep JSON: {} requests of 50k-100k levels, all refused (400/422), slowest {slowest:?}", cases + 1);
    p.finish().await;
}

#[tokio::test]
async fn many_small_requests_are_limited_per_client_and_per_user() {
    let p = Platform::start(
        &[],
        &[
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("RATE_LIMIT", "60"),
            ("RATE_LIMIT_BURST", "10"),
            ("USER_RATE_LIMIT", "60"),
            ("USER_RATE_LIMIT_BURST", "15"),
        ],
    )
    .await;
    let url = p.gw.url("/api/products?per_page=1");
    let get = |client: &'static str, token: Option<String>| {
        let mut req = p.http.get(&url).header("x-forwarded-for", client);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let mut limited = 0;
    for i in 0..40 {
        let res = get("203.0.113.1", None).await.unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            assert_eq!(res.headers()["content-type"], "application/problem+json");
            assert!(res.headers().contains_key("ratelimit-remaining"));
        } else {
            assert_eq!(res.status(), StatusCode::OK, "request {i}");
        }
        // Another client is served all along.
        if i % 10 == 9 {
            assert_eq!(get("203.0.113.2", None).await.unwrap().status(), StatusCode::OK, "another client");
        }
    }
    assert!((25..=30).contains(&limited), "{limited} of 40 refused with a burst of 10");
    // One user, many addresses: the per-user quota holds.
    let bob = p.token("bob", "bob123").await;
    let mut user_limited = 0;
    for i in 0..30u8 {
        let address: &'static str = Box::leak(format!("198.51.100.{}", i + 1).into_boxed_str());
        if get(address, Some(bob.clone())).await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS {
            user_limited += 1;
        }
    }
    assert!(user_limited >= 10, "{user_limited} of 30 refused with a user burst of 15");
    println!(
        "many small requests: {limited} of 40 from one client and {user_limited} of 30 from one user refused with 429 + Retry-After; others served"
    );
    p.finish().await;
}

/// How a slow connection ended: closed by the server after this long, or still open.
async fn slow_headers(addr: SocketAddr, give_up: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.ok()?;
    if stream.write_all(b"GET /api/products HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.is_err() {
        return Some(started.elapsed());
    }
    let mut buf = [0u8; 1024];
    while started.elapsed() < give_up {
        tokio::select! {
            read = stream.read(&mut buf) => {
                // The server answered (408) or hung up: either way it let go.
                let _ = read;
                return Some(started.elapsed());
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if stream.write_all(b"a").await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_others_stay_served() {
    let p = Platform::start(&[], &[]).await;
    let slow = 300;
    let give_up = Duration::from_secs(14);
    let mut attackers = Vec::new();
    for _ in 0..slow {
        attackers.push(tokio::spawn(slow_headers(p.gw.addr, give_up)));
    }
    // Meanwhile, others browse and sign in, through the gateway.
    let started = Instant::now();
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(11) {
        let t = Instant::now();
        let res = p.http.get(p.gw.url("/api/products?per_page=5")).timeout(Duration::from_secs(5)).send().await;
        let status = res.map(|r| r.status()).unwrap_or(StatusCode::REQUEST_TIMEOUT);
        assert_eq!(status, StatusCode::OK, "a normal request while {slow} clients trickle headers");
        slowest = slowest.max(t.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = p
        .json("POST", &p.gw.url("/api/users/login"), None, Some(&json!({"username": "bob", "password": "bob123"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut closed = Vec::new();
    for a in attackers {
        closed.push(a.await.unwrap().expect("a slow client was never cut off"));
    }
    closed.sort();
    let (first, last) = (closed[0], closed[closed.len() - 1]);
    assert!(first >= kit::server::HEADER_READ_TIMEOUT - Duration::from_millis(500), "cut off early: {first:?}");
    assert!(last <= kit::server::HEADER_READ_TIMEOUT + Duration::from_secs(3), "cut off late: {last:?}");
    assert!(slowest < Duration::from_secs(1), "the slowest normal request took {slowest:?}");

    // Headers that never end are refused at the size limit instead.
    let mut request = b"GET /api/products HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_vec();
    for i in 0..2000 {
        request.extend(format!("X-Filler-{i}: {}\r\n", "a".repeat(40)).as_bytes());
    }
    request.extend(b"\r\n");
    let answer = raw(p.gw.addr, &request, Duration::from_secs(3)).await;
    assert!(
        answer.is_empty() || statuses(&answer).first().is_some_and(|s| *s == 431 || *s == 400),
        "over {} bytes of headers: {answer:.200}",
        kit::server::MAX_HEADER_BYTES
    );
    println!(
        "slowloris: {slow} connections trickling headers cut off after {first:?}..{last:?}; {served} normal requests \
         served meanwhile, slowest {slowest:?}; 100 KiB of headers refused"
    );
    p.finish().await;
}

#[tokio::test]
async fn slow_request_bodies_time_out() {
    // Timeouts nest at the gateway: one upstream attempt must fit in its request timeout.
    let gateway = [("REQUEST_TIMEOUT", "2s"), ("UPSTREAM_TIMEOUT", "1s"), ("RETRY_MAX", "0")];
    let p = Platform::start(&[("REQUEST_TIMEOUT", "2s")], &gateway).await;
    let bob = p.token("bob", "bob123").await;
    for (target, addr, path) in [
        ("gateway", p.gw.addr, "/api/users/login"),
        // Issue 16: the seed dialects read the bodies they rewrite before the request timeout
        // applied, so a trickled body there held its connection for as long as it trickled.
        ("gateway, seed 003 sign-in", p.gw.addr, "/api/login"),
        ("gateway, seed 002 order", p.gw.addr, "/create-order"),
        ("users", p.services.users.addr, "/users/login"),
        ("orders", p.services.orders.addr, "/orders"),
    ] {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bob}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while started.elapsed() < Duration::from_secs(8) && !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
            tokio::select! {
                n = stream.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_millis(300)) => { let _ = stream.write_all(b" ").await; }
            }
        }
        let took = started.elapsed();
        let answer = String::from_utf8_lossy(&answer);
        let status = statuses(&answer).first().copied();
        assert!(
            // 504: the gateway's upstream attempt timed out first, waiting on the same body.
            matches!(status, Some(503 | 408 | 504)) || (answer.is_empty() && took < Duration::from_secs(5)),
            "{target}: a body trickled for {took:?} got {answer:.200}"
        );
        assert!(took < Duration::from_secs(5), "{target}: {took:?}");
    }
    p.finish().await;
}

#[tokio::test]
async fn login_floods_are_bounded_and_others_are_still_served() {
    let p = Platform::start(
        &[
            ("PASSWORD_HASH_CONCURRENCY", "1"),
            ("PASSWORD_HASH_QUEUE_TIMEOUT", "50ms"),
            ("LOGIN_MAX_FAILURES_PER_ADDRESS", "1000000"),
            ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "1000000"),
        ],
        &[("TRUSTED_PROXIES", "127.0.0.1"), ("AUTH_RATE_LIMIT", "600"), ("AUTH_RATE_LIMIT_BURST", "25")],
    )
    .await;
    let started = Instant::now();
    let mut flood = Vec::new();
    for i in 0..80 {
        let req = p
            .http
            .post(p.gw.url("/api/users/login"))
            .header("x-forwarded-for", "203.0.113.66")
            .json(&json!({"username": format!("ghost{i}"), "password": "guess-guess"}))
            .timeout(Duration::from_secs(10));
        flood.push(tokio::spawn(async move { req.send().await.map(|r| r.status()) }));
    }
    // Browsing is unaffected while the flood is hashed or refused.
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let res =
            p.http.get(p.gw.url("/api/products?per_page=3")).header("x-forwarded-for", "203.0.113.7").send().await;
        assert_eq!(res.unwrap().status(), StatusCode::OK);
        slowest = slowest.max(t.elapsed());
    }
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for f in flood {
        let status = f.await.unwrap().expect("every sign-in attempt is answered");
        assert!(
            matches!(
                status,
                StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ),
            "{status}"
        );
        *counts.entry(status.as_u16()).or_default() += 1;
    }
    let took = started.elapsed();
    assert!(counts.get(&429).copied().unwrap_or(0) >= 50, "the edge's sign-in quota: {counts:?}");
    assert!(took < Duration::from_secs(10), "the flood took {took:?}");
    assert!(slowest < Duration::from_secs(1), "browsing during the flood: {slowest:?}");
    // Another address signs in as soon as it is over.
    let res = p
        .http
        .post(p.gw.url("/api/users/login"))
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"username": "bob", "password": "bob123"}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_eq!(status, StatusCode::OK, "{}", res.text().await.unwrap());
    println!(
        "login flood: 80 concurrent sign-ins answered in {took:?} as {counts:?}; browsing slowest {slowest:?}; others sign in"
    );
    p.finish().await;
}
