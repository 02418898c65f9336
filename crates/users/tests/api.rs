//! End-to-end tests of the users service: the real service on 127.0.0.1 port 0, over HTTP, on
//! SQLite, or on PostgreSQL when `ORDERMESH_TEST_POSTGRES` is set.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kit::config::Settings;
use kit::testing::{TestData, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Harness {
    server: TestServer,
    http: reqwest::Client,
    data: Option<TestData>,
}

impl Harness {
    async fn start() -> Self {
        Self::with(|s| s).await
    }

    async fn with(extra: impl FnOnce(Settings) -> Settings) -> Self {
        let (data, settings) = TestData::new("users");
        let settings = extra(settings.with("JWT_EXPIRATION_MINUTES", "15"));
        let config = users::Config::from_settings(&settings, IpAddr::V4(Ipv4Addr::LOCALHOST), 0).expect("config");
        let state = users::AppState::start(config).await.expect("users service starts");
        let server = TestServer::start(users::router(state)).await;
        Harness { server, http: reqwest::Client::new(), data: Some(data) }
    }

    async fn finish(mut self) {
        if let Some(d) = self.data.take() {
            d.cleanup().await;
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        kit::testing::send_json(&self.http, method, &self.server.url(path), token, body.as_ref()).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body)).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    async fn login(&self, username: &str, password: &str) -> Value {
        let (status, body) = self.post("/users/login", None, json!({"username": username, "password": password})).await;
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        body
    }

    async fn token(&self, username: &str, password: &str) -> String {
        self.login(username, password).await["access_token"].as_str().unwrap().to_string()
    }
}

fn assert_problem(body: &Value, status: StatusCode) {
    assert_eq!(body["status"], status.as_u16(), "not a problem document for {status}: {body}");
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{body}");
}

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

#[tokio::test]
async fn users_cannot_touch_each_other_and_admins_can() {
    let h = Harness::start().await;
    let bob = h.token("bob", "bob123").await;
    let alice = h.token("alice", "alice123").await;
    let (_, charlie) = h.get("/users/charlie", Some(&alice)).await;
    let charlie_id = charlie["id"].as_str().unwrap().to_string();

    let (status, _) = h.get(&format!("/users/{charlie_id}"), Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "bob must not even learn charlie exists");
    let (status, _) =
        h.send(reqwest::Method::PUT, &format!("/users/{charlie_id}"), Some(&bob), Some(json!({"name": "pwned"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.send(reqwest::Method::DELETE, &format!("/users/{charlie_id}"), Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.get("/users", Some(&bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Bob cannot make himself an admin, nor sneak in server-owned fields.
    let (status, _) = h.send(reqwest::Method::PUT, "/users/me", Some(&bob), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, problem) =
        h.send(reqwest::Method::PUT, "/users/me", Some(&bob), Some(json!({"id": charlie_id, "name": "Bob"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    // Alice lists, reads, edits and promotes.
    let (status, page) = h.get("/users?per_page=2&page=1", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["total"], 4, "the four demo users");
    let (status, problem) = h.get("/users?per_page=1000", Some(&alice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["parameter"], "per_page");
    let (status, _) = h.get("/users?bogus=1", Some(&alice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, updated) = h
        .send(
            reqwest::Method::PUT,
            &format!("/users/{charlie_id}"),
            Some(&alice),
            Some(json!({"role": "admin", "name": "Charlie C."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["role"], "admin");
    h.finish().await;
}

#[tokio::test]
async fn role_change_ends_the_users_sessions() {
    let h = Harness::start().await;
    let alice = h.token("alice", "alice123").await;
    let charlie = h.token("charlie", "charlie123").await;
    let (status, _) =
        h.send(reqwest::Method::PUT, "/users/charlie", Some(&alice), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.get("/users/me", Some(&charlie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a token minted for the old role must die");
    let again = h.login("charlie", "charlie123").await;
    assert_eq!(again["user"]["role"], "admin");
    h.finish().await;
}

/// Issue 16, finding 4: an administrator who demoted themself kept administrator rights for
/// the life of their token (the "keep the caller's session" rule of password changes also
/// applied to role changes), and that token then promoted its owner again.
#[tokio::test]
async fn an_administrator_who_demotes_themself_loses_the_rights_at_once() {
    let h = Harness::start().await;
    let alice = h.token("alice", "alice123").await;
    // A second administrator, so the last-administrator rule does not stop the demotion.
    let (status, _) =
        h.send(reqwest::Method::PUT, "/users/charlie", Some(&alice), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::OK);
    let charlie = h.token("charlie", "charlie123").await;
    let (status, body) = h.send(reqwest::Method::PUT, "/users/me", Some(&charlie), Some(json!({"role": "user"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "user");
    let (status, _) = h.get("/users", Some(&charlie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the token of the old role must die, the caller's own too");
    let (status, _) = h.send(reqwest::Method::PUT, "/users/me", Some(&charlie), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old token must not promote its owner again");
    assert_eq!(h.login("charlie", "charlie123").await["user"]["role"], "user");
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
async fn the_last_admin_stays() {
    let h = Harness::start().await;
    let alice = h.token("alice", "alice123").await;
    let (status, problem) =
        h.send(reqwest::Method::PUT, "/users/me", Some(&alice), Some(json!({"role": "user"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, _) = h.send(reqwest::Method::DELETE, "/users/alice", Some(&alice), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    h.finish().await;
}

#[tokio::test]
async fn password_change_needs_the_current_password() {
    let h = Harness::start().await;
    let bob = h.token("bob", "bob123").await;
    let (status, problem) =
        h.send(reqwest::Method::PUT, "/users/me", Some(&bob), Some(json!({"password": "brand-new-pass"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "current_password");
    let (status, _) = h
        .send(
            reqwest::Method::PUT,
            "/users/me",
            Some(&bob),
            Some(json!({"password": "brand-new-pass", "current_password": "wrong"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = h
        .send(
            reqwest::Method::PUT,
            "/users/me",
            Some(&bob),
            Some(json!({"password": "brand-new-pass", "current_password": "bob123"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.post("/users/login", None, json!({"username": "bob", "password": "bob123"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.login("bob", "brand-new-pass").await;
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
