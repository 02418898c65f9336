//! What the gateway's end-to-end suites share: the three real services on port 0, and a
//! gateway in front of them.
#![allow(dead_code, unused_imports)] // each suite uses its own part of this

use std::sync::Arc;

use axum::http::StatusCode;
use kit::config::Settings;
use kit::testing::TestServer;
use serde_json::{Value, json};

pub use testkit::{SERVICE_SECRET as SECRET, Services, localhost};
pub const HS_SECRET: &str = "a-shared-hs256-secret-for-gateway-tests";

/// A gateway as `ordermesh up` starts one: the storefront's pages, the public API's document.
pub async fn gateway(settings: Settings) -> TestServer {
    let config = gateway::Config::from_settings(&settings, localhost(), 0).expect("gateway config");
    let pages = storefront::config::Config::from_settings(&settings).expect("storefront config");
    let mut state = gateway::AppState::start(config).await.expect("gateway starts");
    state.openapi = Arc::new(public_document());
    TestServer::start(storefront::with_gateway(state, pages)).await
}

/// The public API's document, from each service's own, as the binary gives it to the gateway.
pub fn public_document() -> utoipa::openapi::OpenApi {
    use gateway::rules::Service;
    use utoipa::OpenApi;
    gateway::openapi::public_api(&[
        (Service::Users, users::ApiDoc::openapi()),
        (Service::Catalog, catalog::ApiDoc::openapi()),
        (Service::Orders, orders::ApiDoc::openapi()),
    ])
}

pub async fn login(http: &reqwest::Client, gw: &TestServer, username: &str, password: &str) -> Value {
    let res = http
        .post(gw.url("/api/users/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The storefront's cookies as a browser keeps them: each `Set-Cookie` replaces its name's value.
#[derive(Clone, Default)]
pub struct Jar(pub std::collections::BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, res: &reqwest::Response) {
        for set in res.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.0.insert(name.to_string(), value.to_string());
        }
    }

    pub fn header(&self) -> String {
        self.0.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }
}

/// Signs in to the storefront as a browser does (the sign-in form, its CSRF token, the
/// cookies it sets): the jar of the signed-in session.
pub async fn storefront_session(http: &reqwest::Client, gw: &TestServer, login: &str, password: &str) -> Jar {
    let mut jar = Jar::default();
    let page = http.get(gw.url("/login")).send().await.unwrap();
    jar.take(&page);
    let csrf = csrf_in(&page.text().await.unwrap());
    // A browser's form post: seed 001's `POST /login` (JSON) shares the path.
    let res = http
        .post(gw.url("/login"))
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", jar.header())
        .body(format!("login={login}&password={password}&_csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{login} signs in to the storefront");
    jar.take(&res);
    jar
}

/// The CSRF token of the first form on a storefront page.
pub fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"_csrf\" value=\"").expect("a form") + "name=\"_csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}
