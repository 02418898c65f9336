//! The storefront's own rules, checked through its router with no services behind it: CSRF,
//! security headers, sign-in redirects, assets.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kit::config::Settings;
use tower::ServiceExt;

async fn storefront() -> axum::Router {
    // Nothing listens on port 9: every service call fails fast, and these pages make none.
    let settings = Settings::from_pairs([
        ("USER_SERVICE_URL", "http://127.0.0.1:9"),
        ("CATALOG_SERVICE_URL", "http://127.0.0.1:9"),
        ("ORDER_SERVICE_URL", "http://127.0.0.1:9"),
    ]);
    let config = gateway::Config::from_settings(&settings, std::net::IpAddr::from([127, 0, 0, 1]), 0).unwrap();
    let pages = super::config::Config::from_settings(&settings).unwrap();
    super::router(gateway::AppState::start(config).await.unwrap(), pages)
}

async fn body_text(res: axum::response::Response) -> String {
    let bytes = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The session cookie (`name=value`) a response sets.
fn session_cookie(res: &axum::response::Response) -> String {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("om_session="))
        .expect("a session cookie")
}

fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + "name=\"_csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

fn post(path: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_are_refused() {
    let app = storefront().await;
    let res = app.clone().oneshot(Request::get("/login").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = session_cookie(&res);
    let token = csrf_in(&body_text(res).await);

    // No token, a wrong token, a token without its session, a cross-site post: 403, as a page.
    for (cookie, body) in [
        (Some(cookie.as_str()), "product_id=1".to_string()),
        (Some(cookie.as_str()), "product_id=1&_csrf=forged".to_string()),
        (None, format!("product_id=1&_csrf={token}")),
    ] {
        let res = app.clone().oneshot(post("/cart/remove", cookie, &body)).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{body}");
        assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert!(body_text(res).await.contains("Form expired"));
    }
    let mut cross = post("/cart/remove", Some(&cookie), &format!("product_id=1&_csrf={token}"));
    cross.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(app.clone().oneshot(cross).await.unwrap().status(), StatusCode::FORBIDDEN);

    // The real token with its session goes through.
    let res =
        app.clone().oneshot(post("/cart/remove", Some(&cookie), &format!("product_id=1&_csrf={token}"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/cart");

    // Sign-out is a form too.
    let res = app.clone().oneshot(post("/logout", Some(&cookie), "")).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let app = storefront().await;
    let res = app.clone().oneshot(Request::get("/register").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::REFERRER_POLICY], "same-origin");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert!(h["server-timing"].to_str().unwrap().starts_with("app;dur="));
    let set = h[header::SET_COOKIE].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"), "{set}");
    let html = body_text(res).await;
    for field in ["name", "username", "email", "password", "confirm"] {
        assert!(html.contains(&format!("<label for=\"{field}\">")), "a label for {field}");
    }
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_sign_in_and_back() {
    let app = storefront().await;
    for path in ["/admin", "/purchases", "/profile", "/buy/1"] {
        let res = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        let to = res.headers()[header::LOCATION].to_str().unwrap();
        assert_eq!(
            to,
            format!("/login?next={}", url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>())
        );
    }
}

#[tokio::test]
async fn a_service_that_is_down_is_a_503_page_not_a_crash() {
    let app = storefront().await;
    let res = app.oneshot(Request::get("/products").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(body_text(res).await.contains("catalog service is not available"));
}

#[tokio::test]
async fn assets_are_built_in_and_cacheable() {
    let app = storefront().await;
    let res = app.clone().oneshot(Request::get("/assets/style.css").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert!(res.headers()[header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
    assert!(res.headers().get(header::SET_COOKIE).is_none(), "assets set no cookies");
    let css = body_text(res).await;
    assert!(
        !css.contains("http://") && !css.contains("https://") && !css.contains("@import"),
        "nothing from elsewhere"
    );
    let res = app.oneshot(Request::get("/assets/favicon.svg").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.headers()[header::CONTENT_TYPE], "image/svg+xml");
}
