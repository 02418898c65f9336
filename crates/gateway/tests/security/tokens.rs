//! Tokens: forged, expired, not yet valid, for someone else, tampered, revoked, replayed.

use super::*;

/// Where a token is tried: through the gateway to each service, and each service directly.
/// Every one of them needs a valid token if a token is sent (the catalogue is public, but a
/// token that is present must be valid).
fn token_targets(p: &Platform) -> Vec<(String, String)> {
    vec![
        ("gateway → users".into(), p.gw.url("/api/users/me")),
        ("gateway → orders".into(), p.gw.url("/api/orders")),
        ("gateway → catalog".into(), p.gw.url("/api/products/1")),
        ("gateway → catalog (admin)".into(), p.gw.url("/api/events/stats")),
        ("users".into(), p.services.users.url("/users/me")),
        ("orders".into(), p.services.orders.url("/orders")),
        ("catalog".into(), p.services.catalog.url("/products/1")),
        ("catalog (admin)".into(), p.services.catalog.url("/events/stats")),
    ]
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused_by_the_gateway_and_every_service() {
    let p = Platform::start(&[], &[]).await;
    let good = p.token("bob", "bob123").await;
    let jwk = p.jwk().await;
    let kid = jwk["kid"].as_str().unwrap().to_string();
    let x = jwk["x"].as_str().unwrap().to_string();
    let real = p.signing_key();
    let now = kit::auth::unix_now();
    let bob = claims_of(&good);
    let admin = {
        let mut c = bob.clone();
        c["role"] = json!("admin");
        c["perms"] = json!(api::Permission::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>());
        c
    };
    let with = |changes: &[(&str, Value)]| {
        let mut c = bob.clone();
        for (k, v) in changes {
            match v {
                Value::Null => {
                    c.as_object_mut().unwrap().remove(*k);
                }
                v => c[*k] = v.clone(),
            }
        }
        c
    };
    let ed = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let hs = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let raw_x = URL_SAFE_NO_PAD.decode(&x).unwrap();
    let mut spki = hex_bytes("302a300506032b6570032100");
    spki.extend(&raw_x);
    let public_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let parts: Vec<&str> = good.split('.').collect();
    let unsigned = |header: Value, claims: &Value| {
        format!("{}.{}.", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
    };

    let forged: Vec<(&str, String)> = vec![
        ("alg none", unsigned(json!({"alg": "none", "typ": "JWT"}), &admin)),
        ("alg None", unsigned(json!({"alg": "None", "typ": "JWT", "kid": kid}), &admin)),
        (
            "alg NONE, original signature",
            format!("{}.{}.{}", b64(br#"{"alg":"NONE"}"#), b64(admin.to_string().as_bytes()), parts[2]),
        ),
        (
            "HS256 keyed with the JWKS x (text)",
            forge(&hs, &admin, &EncodingKey::from_secret(x.as_bytes()), Algorithm::HS256),
        ),
        (
            "HS256 keyed with the public key bytes",
            forge(&hs, &admin, &EncodingKey::from_secret(&raw_x), Algorithm::HS256),
        ),
        (
            "HS256 keyed with the public key PEM",
            forge(&hs, &admin, &EncodingKey::from_secret(public_pem.as_bytes()), Algorithm::HS256),
        ),
        (
            "HS384 keyed with the JWKS x",
            forge(
                &json!({"alg": "HS384", "kid": kid}),
                &admin,
                &EncodingKey::from_secret(x.as_bytes()),
                Algorithm::HS384,
            ),
        ),
        ("foreign key, the platform's kid", forge(&ed, &admin, &foreign_key(), Algorithm::EdDSA)),
        (
            "foreign key, unknown kid",
            forge(&json!({"alg": "EdDSA", "kid": "attacker"}), &admin, &foreign_key(), Algorithm::EdDSA),
        ),
        (
            "foreign key, kid path traversal",
            forge(&json!({"alg": "EdDSA", "kid": "../../../../dev/null"}), &admin, &foreign_key(), Algorithm::EdDSA),
        ),
        (
            "foreign key, embedded jwk",
            forge(
                &json!({"alg": "EdDSA", "kid": kid, "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64(&[7u8; 32])}}),
                &admin,
                &foreign_key(),
                Algorithm::EdDSA,
            ),
        ),
        (
            "foreign key, jku",
            forge(
                &json!({"alg": "EdDSA", "kid": "x", "jku": "http://127.0.0.1:9/jwks.json"}),
                &admin,
                &foreign_key(),
                Algorithm::EdDSA,
            ),
        ),
        ("real key, unknown kid", forge(&json!({"alg": "EdDSA", "kid": "another-kid"}), &bob, &real, Algorithm::EdDSA)),
        ("real key, no kid", forge(&json!({"alg": "EdDSA"}), &bob, &real, Algorithm::EdDSA)),
        (
            "expired",
            forge(
                &ed,
                &with(&[("exp", json!(now - 600)), ("iat", json!(now - 1500)), ("nbf", json!(now - 1500))]),
                &real,
                Algorithm::EdDSA,
            ),
        ),
        ("not yet valid", forge(&ed, &with(&[("nbf", json!(now + 600))]), &real, Algorithm::EdDSA)),
        ("wrong issuer", forge(&ed, &with(&[("iss", json!("https://evil.example"))]), &real, Algorithm::EdDSA)),
        ("wrong audience", forge(&ed, &with(&[("aud", json!("another-platform"))]), &real, Algorithm::EdDSA)),
        ("no audience", forge(&ed, &with(&[("aud", Value::Null)]), &real, Algorithm::EdDSA)),
        ("no expiry", forge(&ed, &with(&[("exp", Value::Null)]), &real, Algorithm::EdDSA)),
        ("unknown role", forge(&ed, &with(&[("role", json!("root"))]), &real, Algorithm::EdDSA)),
        ("subject not an id", forge(&ed, &with(&[("sub", json!("alice"))]), &real, Algorithm::EdDSA)),
        ("tampered: role upgraded", format!("{}.{}.{}", parts[0], b64(admin.to_string().as_bytes()), parts[2])),
        (
            "tampered: another subject",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(with(&[("sub", json!(uuid::Uuid::new_v4().to_string()))]).to_string().as_bytes()),
                parts[2]
            ),
        ),
        ("signature stripped", format!("{}.{}.", parts[0], parts[1])),
        (
            "signature of another token",
            format!("{}.{}.{}", parts[0], parts[1], p.token("charlie", "charlie123").await.split('.').nth(2).unwrap()),
        ),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("garbage", "not.a.token".into()),
        ("oversized", format!("{}.{}.{}", parts[0], "A".repeat(5000), parts[2])),
    ];

    // The genuine token works everywhere it is tried, so every refusal below is the token's.
    for (target, url) in token_targets(&p) {
        let (status, _, body) = p.send("GET", &url, Some(&good), None).await;
        let expected = if target.contains("admin") { StatusCode::FORBIDDEN } else { StatusCode::OK };
        assert_eq!(status, expected, "the genuine token at {target}: {body}");
    }
    let mut cases = 0;
    for (name, token) in &forged {
        for (target, url) in token_targets(&p) {
            let (status, headers, body) = p.send("GET", &url, Some(token), None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} at {target}: {body}");
            assert_eq!(headers["content-type"], "application/problem+json", "{name} at {target}");
            cases += 1;
        }
    }
    // A token can narrow its role's permissions, never widen them, even when properly signed.
    let widened = forge(&ed, &with(&[("perms", admin["perms"].clone())]), &real, Algorithm::EdDSA);
    for url in [p.gw.url("/api/users"), p.services.users.url("/users"), p.services.catalog.url("/events/stats")] {
        let (status, _, body) = p.send("GET", &url, Some(&widened), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "widened permissions at {url}: {body}");
        cases += 1;
    }
    println!(
        "tokens: {} forged or invalid tokens × {} targets + 3 widened = {cases} cases, all refused",
        forged.len(),
        8
    );
    p.finish().await;
}

#[tokio::test]
async fn revoked_tokens_and_replayed_refresh_tokens_are_refused_everywhere() {
    let p = Platform::start(&[], &[]).await;
    // Signed out through the gateway: refused there at once, and by every service once their
    // revocation poll has run.
    let (status, tokens) = p
        .json("POST", &p.gw.url("/api/users/login"), None, Some(&json!({"username": "bob", "password": "bob123"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    for (target, url) in token_targets(&p) {
        let (status, _, _) = p.send("GET", &url, Some(&access), None).await;
        assert!(status.is_success() || status == StatusCode::FORBIDDEN, "before logout at {target}: {status}");
    }
    let (status, _, _) = p.send("POST", &p.gw.url("/api/users/logout"), Some(&access), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = p.send("GET", &p.gw.url("/api/orders"), Some(&access), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the gateway honours a logout it saw at once");
    for (target, url) in token_targets(&p) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, _, _) = p.send("GET", &url, Some(&access), None).await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(Instant::now() < deadline, "a revoked token still works at {target}: {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A refresh token replayed after rotation, through the gateway: refused, and the whole
    // session with it (the thief and the victim both have to sign in again).
    let (_, first) = p
        .json(
            "POST",
            &p.gw.url("/api/users/login"),
            None,
            Some(&json!({"username": "charlie", "password": "charlie123"})),
        )
        .await;
    let refresh = |t: &Value| json!({"refresh_token": t["refresh_token"]});
    let (status, second) = p.json("POST", &p.gw.url("/api/users/refresh"), None, Some(&refresh(&first))).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let (status, body) = p.json("POST", &p.gw.url("/api/users/refresh"), None, Some(&refresh(&first))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a spent refresh token: {body}");
    let (status, _) = p.json("POST", &p.gw.url("/api/users/refresh"), None, Some(&refresh(&second))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session of a replayed refresh token ends");
    let access = second["access_token"].as_str().unwrap();
    for (target, url) in token_targets(&p) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, _, _) = p.send("GET", &url, Some(access), None).await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(Instant::now() < deadline, "an access token of a revoked session works at {target}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // And at the users service directly, the same.
    let first = p.login("victor", "1234").await;
    let users = p.services.users.url("/users/refresh");
    assert_eq!(p.json("POST", &users, None, Some(&refresh(&first))).await.0, StatusCode::OK);
    assert_eq!(p.json("POST", &users, None, Some(&refresh(&first))).await.0, StatusCode::UNAUTHORIZED);
    p.finish().await;
}
