//! The Cap'n Web shop over WebTransport as a user meets it: `ordermesh up` serves it on the
//! gateway's port number over UDP, `GET /rpc/wt` says where and with which certificate hash,
//! and a WebTransport client reaches the same shop the WebSocket serves. With TLS files the
//! gateway's own certificate is presented instead; `WEBTRANSPORT_PORT=off` turns it off.

mod support;

use base64::Engine as _;
use capnweb::Value as RpcValue;
use kit::test_certs::TestCa;
use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;
use support::*;

/// Signs in as bob and reads his profile, over a session `conn` opened.
async fn bobs_profile(conn: &capnweb::client::Connection) -> RpcValue {
    let api = conn.main();
    let login = api.call("login", vec!["bob".into(), "bob123".into()]).await.expect("login over WebTransport");
    let token = login.get("token").cloned().expect("a token");
    api.call("getUserProfile", vec![token]).await.expect("getUserProfile over WebTransport")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_answers_over_webtransport_pinned_by_the_certificate_hash() {
    let up = Up::start(&[]);
    let info: Value = reqwest::get(format!("{}/rpc/wt", up.gateway)).await.unwrap().json().await.unwrap();
    let http_port = up.gateway.rsplit(':').next().unwrap().to_string();
    assert_eq!(info["url"], format!("https://127.0.0.1:{http_port}/rpc/wt"), "UDP beside TCP, same number");
    let hashes = info["serverCertificateHashes"].as_array().unwrap();
    assert_eq!(hashes.len(), 1, "{info}");
    assert_eq!(hashes[0]["algorithm"], "sha-256");
    let hash: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(hashes[0]["value"].as_str().unwrap())
        .unwrap()
        .try_into()
        .expect("32 bytes");

    let url = info["url"].as_str().unwrap();
    let conn =
        capnweb::client::connect_webtransport(url, capnweb::webtransport::pinned_client_config(&[hash])).await.unwrap();
    let profile = bobs_profile(&conn).await;
    assert_eq!(profile.get("username"), Some(&RpcValue::from("bob")), "{profile:?}");
    conn.close().await;

    // Another certificate's hash is not accepted.
    let mut other = hash;
    other[0] ^= 1;
    let refused =
        capnweb::client::connect_webtransport(url, capnweb::webtransport::pinned_client_config(&[other])).await;
    assert!(refused.is_err(), "a certificate of another hash was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_files_webtransport_presents_the_gateways_certificate() {
    let dir = scratch_dir("wt-tls");
    let ca = TestCa::new();
    let cert = ca.server_cert(&dir, "edge");
    let up = Up::start(&[
        ("TLS_CERT_FILE", cert.cert_file.display().to_string()),
        ("TLS_KEY_FILE", cert.key_file.display().to_string()),
    ]);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let info: Value = http.get(format!("{}/rpc/wt", up.gateway)).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["serverCertificateHashes"], serde_json::json!([]), "nothing to pin: the certificate is trusted");
    let port = info["url"].as_str().unwrap().rsplit(':').next().unwrap().trim_end_matches("/rpc/wt").to_string();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let config = wtransport::ClientConfig::builder().with_bind_default().with_custom_tls(tls).build();
    // The certificate names 127.0.0.1 as well as localhost.
    let conn =
        capnweb::client::connect_webtransport(&format!("https://127.0.0.1:{port}/rpc/wt"), config).await.unwrap();
    let profile = bobs_profile(&conn).await;
    assert_eq!(profile.get("username"), Some(&RpcValue::from("bob")), "{profile:?}");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webtransport_can_be_turned_off() {
    let up = Up::start(&[("WEBTRANSPORT_PORT", "off".to_string())]);
    let answer = reqwest::get(format!("{}/rpc/wt", up.gateway)).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
}
