//! The OpenAPI documents: what `ordermesh openapi <service>` prints is what each running
//! service serves, and what is checked in under docs/openapi (regenerate with
//! `for s in gateway users catalog orders; do cargo run -q -- openapi $s > docs/openapi/$s.json; done`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVICES: [&str; 4] = ["gateway", "users", "catalog", "orders"];

fn ordermesh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ordermesh"))
}

fn printed(service: &str) -> serde_json::Value {
    let out = ordermesh().args(["openapi", service]).output().expect("run ordermesh openapi");
    assert!(out.status.success(), "ordermesh openapi {service} failed");
    serde_json::from_slice(&out.stdout).expect("a JSON document")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_checked_in_documents_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi");
    for service in SERVICES {
        let path = dir.join(format!("{service}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let committed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            committed == printed(service),
            "docs/openapi/{service}.json is out of date: regenerate it with `ordermesh openapi {service}`"
        );
    }
}

#[tokio::test]
async fn every_service_serves_the_document_the_cli_prints() {
    let data = std::env::temp_dir().join(format!("ordermesh-openapi-{}", std::process::id()));
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let _up = Up(ordermesh()
        .arg("up")
        .env("PORT", ports[0].to_string())
        .env("USERS_PORT", ports[1].to_string())
        .env("CATALOG_PORT", ports[2].to_string())
        .env("ORDERS_PORT", ports[3].to_string())
        .env("DATA_DIR", &data)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ordermesh up"));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("http://127.0.0.1:{}/health", ports[0])).send().await.is_err() {
        assert!(Instant::now() < deadline, "ordermesh did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (service, port) in SERVICES.iter().zip(&ports) {
        let served: serde_json::Value =
            http.get(format!("http://127.0.0.1:{port}/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert!(served == printed(service), "{service} serves a different document than `ordermesh openapi {service}`");
        for page in ["/docs/", "/redoc"] {
            let res = http.get(format!("http://127.0.0.1:{port}{page}")).send().await.unwrap();
            assert!(res.status().is_success(), "{service}{page}: {}", res.status());
        }
    }
    let _ = std::fs::remove_dir_all(&data);
}
