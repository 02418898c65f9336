//! Access, refresh and service tokens: forged, expired, reused and rotated, and the keys and revocation feed other services verify them with.

use super::*;

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn forged_tampered_and_expired_tokens_are_refused() {
    let h = Harness::start().await;
    let good = h.token("bob", "bob123").await;
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = claims_of(&good);

    // alg: none, with and without a signature.
    let none_header = json!({"alg": "none", "typ": "JWT"});
    let forged_none = format!("{}.{}.", b64(&none_header), parts[1]);
    // Role upgraded in the payload, original signature kept.
    claims["role"] = json!("admin");
    claims["perms"] = json!(["system.admin", "order.cancel"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    // Signed with a key that is not the service's (HS256 with a guessable secret).
    let hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let wrong_key =
        jsonwebtoken::encode(&hs_header, &claims, &jsonwebtoken::EncodingKey::from_secret(b"secret")).unwrap();
    // A foreign Ed25519 key with the right kid.
    let rng = ring::rand::SystemRandom::new();
    let foreign = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let mut ed_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    ed_header.kid = jsonwebtoken::decode_header(&good).unwrap().kid;
    let foreign_signed =
        jsonwebtoken::encode(&ed_header, &claims_of(&good), &jsonwebtoken::EncodingKey::from_ed_der(foreign.as_ref()))
            .unwrap();

    for (name, token) in [
        ("alg none", forged_none.as_str()),
        ("tampered role", tampered.as_str()),
        ("hs256 guessed secret", wrong_key.as_str()),
        ("foreign key", foreign_signed.as_str()),
        ("garbage", "not.a.token"),
    ] {
        let (status, body) = h.get("/users/me", Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert_problem(&body, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = h.get("/users/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.finish().await;
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    // HS256 so the test can sign tokens with chosen times.
    let secret = "an-hs256-secret-that-is-long-enough!!";
    let h = Harness::with(|s| s.with("JWT_SECRET", secret)).await;
    let good = h.token("bob", "bob123").await;
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let now = kit::auth::unix_now();
    let mut expired = claims_of(&good);
    expired["exp"] = json!(now - 3600);
    expired["iat"] = json!(now - 7200);
    let mut future = claims_of(&good);
    future["nbf"] = json!(now + 3600);
    let mut wrong_aud = claims_of(&good);
    wrong_aud["aud"] = json!("another-platform");
    for (name, claims) in [("expired", expired), ("not yet valid", future), ("wrong audience", wrong_aud)] {
        let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let (status, body) = h.get("/users/me", Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
    }
    let (status, _) = h.get("/users/me", Some(&good)).await;
    assert_eq!(status, StatusCode::OK, "the untouched HS256 token works");
    h.finish().await;
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_session() {
    let h = Harness::start().await;
    let first = h.login("bob", "bob123").await;
    let (status, second) = h.post("/users/refresh", None, json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(status, StatusCode::OK);
    // The thief replays the first refresh token.
    let (status, _) = h.post("/users/refresh", None, json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The legitimate holder's newer tokens are revoked with the whole session.
    let (status, _) = h.post("/users/refresh", None, json!({"refresh_token": second["refresh_token"]})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h.get("/users/me", second["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Other sessions of the same user are untouched.
    let other = h.token("bob", "bob123").await;
    let (status, _) = h.get("/users/me", Some(&other)).await;
    assert_eq!(status, StatusCode::OK);
    h.finish().await;
}

async fn service_token(h: &Harness, audience: Option<&str>) -> (StatusCode, Value) {
    let mut body =
        json!({"grant_type": "client_credentials", "client_id": "orders", "client_secret": "a-test-secret-of-length"});
    if let Some(a) = audience {
        body["audience"] = json!(a);
    }
    h.post("/auth/token", None, body).await
}

#[tokio::test]
async fn service_tokens_jwks_verify_and_revocation_feed() {
    let h = Harness::with(|s| s.with("SERVICE_CLIENTS", "orders:a-test-secret-of-length")).await;
    let (status, _) =
        h.post("/auth/token", None, json!({"client_id": "orders", "client_secret": "wrong-secret-here"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, token) = service_token(&h, Some("users")).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let service = token["access_token"].as_str().unwrap();
    assert_eq!(claims_of(service)["aud"], "ordermesh:users");
    let (status, claims) = h.post("/auth/verify", None, json!({"token": service})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claims["role"], "service");
    assert_eq!(claims["permissions"], json!(["stock.reserve"]));
    // A service has no profile and no admin rights.
    let (status, _) = h.get("/users/me", Some(service)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h.get("/users", Some(service)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, jwks) = h.get("/.well-known/jwks.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert!(jwks["keys"][0].get("d").is_none(), "private key material in the JWKS");

    let bob = h.token("bob", "bob123").await;
    let (status, _) = h.post("/auth/verify", Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    h.post("/users/logout", Some(&bob), json!({})).await;
    let (status, _) = h.post("/auth/verify", None, json!({"token": bob})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, feed) = h.get("/auth/revocations?since=0", Some(service)).await;
    assert_eq!(status, StatusCode::OK);
    let jti = claims_of(&bob)["jti"].as_str().unwrap().to_string();
    let ids: Vec<&str> = feed["revocations"].as_array().unwrap().iter().map(|r| r["jti"].as_str().unwrap()).collect();
    assert!(ids.contains(&jti.as_str()), "{feed}");
    h.finish().await;
}

/// Finding 6 of the second security round: the feed of revoked token and session ids answered
/// anyone who asked. It is for services, with a service token meant for the users service.
#[tokio::test]
async fn the_revocation_feed_answers_only_a_service_token_for_users() {
    let h = Harness::with(|s| s.with("SERVICE_CLIENTS", "orders:a-test-secret-of-length")).await;
    let bob = h.token("bob", "bob123").await;
    h.post("/users/logout", Some(&bob), json!({})).await;
    let (status, body) = h.get("/auth/revocations?since=0", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.get("revocations").is_none(), "{body}");
    let alice = h.token("alice", "alice123").await;
    let (status, body) = h.get("/auth/revocations?since=0", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an administrator is not a service: {body}");
    let (_, for_catalog) = service_token(&h, Some("catalog")).await;
    let (status, body) = h.get("/auth/revocations?since=0", for_catalog["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a token for the catalog: {body}");
    let (_, for_users) = service_token(&h, Some("users")).await;
    let (status, body) = h.get("/auth/revocations?since=0", for_users["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.finish().await;
}

/// Finding 6 again: every service accepted the same audience, so a token meant for one service
/// worked at all of them. A service token now names its one service.
#[tokio::test]
async fn a_service_token_names_one_service_and_works_only_there() {
    let h = Harness::with(|s| s.with("SERVICE_CLIENTS", "orders:a-test-secret-of-length")).await;
    // Without an audience, the catalog: what the orders service and seed 002 use it for.
    let (status, token) = service_token(&h, None).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let for_catalog = token["access_token"].as_str().unwrap();
    assert_eq!(claims_of(for_catalog)["aud"], "ordermesh:catalog");
    let (status, body) = h.get("/users/me", Some(for_catalog)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a catalog token at the users service: {body}");
    for audience in ["gateway", "ordermesh", "everyone", ""] {
        let (status, body) = service_token(&h, Some(audience)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "audience {audience:?}: {body}");
        assert_problem(&body, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // User tokens stay for the whole platform.
    let bob = h.token("bob", "bob123").await;
    assert_eq!(claims_of(&bob)["aud"], "ordermesh");
    h.finish().await;
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Another service's verifier (keys from this service's JWKS) accepts a token from a key that
/// was rotated in a moment after it last fetched the key set: it waits for its next allowed
/// fetch instead of refusing the token as signed by an unknown key.
#[tokio::test]
async fn a_verifier_elsewhere_accepts_a_key_rotated_moments_after_its_last_fetch() {
    let (data, settings) = TestData::new("users");
    let settings = settings.with("JWT_KEY_RELOAD_INTERVAL", "1s");
    let config = users::Config::from_settings(&settings, IpAddr::V4(Ipv4Addr::LOCALHOST), 0).expect("config");
    let (jwt, keys, life) = (config.jwt.clone(), config.keys.clone(), config.longest_token_life());
    let state = users::AppState::start(config).await.expect("users service starts");
    let h = Harness {
        server: TestServer::start(users::router(state)).await,
        http: reqwest::Client::new(),
        data: Some(data),
    };
    let users_client = kit::client::ServiceClient::new(
        "users",
        vec![h.server.base().parse().unwrap()],
        kit::client::ClientTimeouts::default(),
    );
    let verifier = kit::auth::TokenVerifier::for_service(&jwt, users_client, Default::default());
    let before = h.token("bob", "bob123").await;
    verifier.verify(&before).await.expect("a token from the first key");

    let (_, rotation) = users::keys::rotate(&jwt, &keys, life).expect("rotate");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let after = loop {
        let t = h.token("bob", "bob123").await;
        if kid_of(&t) == rotation.new_kid {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "the service never signed with the rotated key");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    verifier.verify(&after).await.expect("a token from the rotated key, seconds after the last fetch");
    verifier.verify(&before).await.expect("the first key still verifies");
    h.finish().await;
}
