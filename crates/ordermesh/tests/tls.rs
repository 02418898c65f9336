//! The edge over TLS as an operator runs it: `ordermesh up` with a certificate and key
//! (`TLS_CERT_FILE`, `TLS_KEY_FILE`) serves the storefront and the API over HTTPS, HTTP/2 by
//! ALPN, sends plain HTTP on `HTTP_REDIRECT_PORT` to HTTPS, picks up a renewed certificate
//! without a restart, and refuses to start with a certificate it cannot serve.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use kit::test_certs::TestCa;
use reqwest::{StatusCode, Version};
use serde_json::{Value, json};
use support::*;

fn client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The certificate a fresh connection is shown.
async fn presented(ca: &TestCa, url: &str) -> Vec<u8> {
    let answer = client(ca).get(url).send().await.expect("an answer over TLS");
    let info = answer.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS information");
    info.peer_certificate().expect("a peer certificate").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_and_the_api_answer_over_https_with_http2() {
    let dir = scratch_dir("tls-up");
    let ca = TestCa::new();
    let cert = ca.server_cert(&dir, "edge");
    let redirect_port = free_port();
    let up = Up::start(&[
        ("TLS_CERT_FILE", cert.cert_file.display().to_string()),
        ("TLS_KEY_FILE", cert.key_file.display().to_string()),
        ("TLS_RELOAD_INTERVAL", "1s".to_string()),
        ("HTTP_REDIRECT_PORT", redirect_port.to_string()),
    ]);
    let gateway = up.gateway.clone();
    assert!(gateway.starts_with("https://localhost:"), "{gateway}");
    let http = client(&ca);

    // The API: sign in and read the catalog, over HTTP/2.
    let login = http
        .post(format!("{gateway}/api/users/login"))
        .json(&json!({"username": "bob", "password": "bob123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.version(), Version::HTTP_2, "HTTP/2 negotiated by ALPN");
    assert_eq!(login.status(), StatusCode::OK);
    assert!(login.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    let token = login.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let products = http.get(format!("{gateway}/api/products")).bearer_auth(&token).send().await.unwrap();
    assert_eq!((products.version(), products.status()), (Version::HTTP_2, StatusCode::OK));
    assert!(!products.json::<Value>().await.unwrap().to_string().is_empty());

    // Its expiry is on the gateway's metrics, for an alert to compare with time().
    let metrics = http.get(format!("{gateway}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("tls_certificate_expiry_timestamp_seconds{")),
        "the certificate's expiry on /metrics"
    );

    // The storefront: its pages, and cookies a browser sends back only over HTTPS.
    let page = http.get(format!("{gateway}/login")).header("accept", "text/html").send().await.unwrap();
    assert_eq!((page.version(), page.status()), (Version::HTTP_2, StatusCode::OK));
    let cookies: Vec<String> =
        page.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_ascii_lowercase()).collect();
    assert!(!cookies.is_empty(), "the sign-in page sets its form cookie");
    assert!(cookies.iter().all(|c| c.contains("; secure")), "cookies are Secure over TLS: {cookies:?}");

    // Plain HTTP on the redirect port goes to HTTPS, path and query kept.
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let moved = plain.get(format!("http://localhost:{redirect_port}/products?page=2")).send().await.unwrap();
    assert_eq!(moved.status(), StatusCode::PERMANENT_REDIRECT);
    let port = gateway.rsplit(':').next().unwrap();
    assert_eq!(moved.headers()["location"], format!("https://localhost:{port}/products?page=2").as_str());

    // A renewed certificate written over the files is presented to new connections.
    assert_eq!(presented(&ca, &format!("{gateway}/health")).await, cert.der);
    let renewed = ca.server_cert(&dir, "renewed");
    std::fs::copy(&renewed.key_file, &cert.key_file).unwrap();
    std::fs::copy(&renewed.cert_file, &cert.cert_file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while presented(&ca, &format!("{gateway}/health")).await != renewed.der {
        assert!(Instant::now() < deadline, "the renewed certificate was not picked up within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(up);
    let _ = std::fs::remove_dir_all(dir);
}

/// `ordermesh serve gateway` with the pair; it must exit by itself, and its error is returned.
fn start_error(cert: &std::path::Path, key: &std::path::Path) -> String {
    let data = scratch_dir("tls-refused");
    let started = Instant::now();
    let out = Command::new(ordermesh_bin())
        .args(["serve", "gateway"])
        .env("PORT", free_port().to_string())
        .env("HOST", "127.0.0.1")
        .env("DATA_DIR", &data)
        .env("TLS_CERT_FILE", cert)
        .env("TLS_KEY_FILE", key)
        .output()
        .expect("run ordermesh serve gateway");
    let _ = std::fs::remove_dir_all(data);
    assert!(!out.status.success(), "a certificate that cannot be served stops the start");
    assert!(started.elapsed() < Duration::from_secs(30), "it stops at once, not after a wait");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_certificate_that_cannot_be_served_stops_the_start_with_the_reason() {
    let dir = scratch_dir("tls-bad");
    let ca = TestCa::new();
    let good = ca.server_cert(&dir, "good");
    let other = ca.server_cert(&dir, "other");
    let expired = ca.server_cert_valid(&dir, "expired", -60, -1);

    let error = start_error(&expired.cert_file, &expired.key_file);
    assert!(error.contains("cannot serve TLS") && error.contains("expired on"), "{error}");
    let error = start_error(&good.cert_file, &other.key_file);
    assert!(error.contains("is not the key of the certificate"), "{error}");
    let error = start_error(&good.cert_file, &dir.join("absent.key"));
    assert!(error.contains("cannot read") && error.contains("absent.key"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}
