//! Support for end-to-end tests: settings for a throw-away database (a temporary SQLite file,
//! or a fresh schema in the PostgreSQL named by `ORDERMESH_TEST_POSTGRES`), and serving a
//! router on 127.0.0.1 port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

/// Where a test's data lives; removed (directory) or dropped (schema) by [`TestData::cleanup`].
pub struct TestData {
    pub dir: PathBuf,
    pub postgres: Option<(String, String)>,
}

impl TestData {
    /// A fresh data directory, and a fresh PostgreSQL schema when `ORDERMESH_TEST_POSTGRES` is
    /// set. The settings name them; add the test's own on top.
    pub fn new(service: &str) -> (Self, Settings) {
        let (mut data, mut settings) = Self::sqlite(service);
        if let Ok(url) = std::env::var("ORDERMESH_TEST_POSTGRES")
            && !url.trim().is_empty()
        {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let schema = format!("t_{service}_{}", &id[..12]);
            settings = settings.with("DATABASE_URL", url.clone()).with("DATABASE_SCHEMA", schema.clone());
            data.postgres = Some((url, schema));
        }
        (data, settings)
    }

    /// A fresh data directory on SQLite whatever `ORDERMESH_TEST_POSTGRES` says, for a test of
    /// SQLite's own behaviour (its write lock, its files).
    pub fn sqlite(service: &str) -> (Self, Settings) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("ordermesh-test-{service}-{id}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let settings = Settings::from_pairs([("DATA_DIR", dir.display().to_string())]);
        (TestData { dir, postgres: None }, settings)
    }

    pub fn backend_name(&self) -> &'static str {
        if self.postgres.is_some() { "postgres" } else { "sqlite" }
    }

    pub async fn cleanup(self) {
        if let Some((url, schema)) = &self.postgres {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            if let Ok(mut conn) = sqlx::AnyConnection::connect(url).await {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&mut conn).await;
                let _ = conn.close().await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A router served on 127.0.0.1 with an OS-chosen port, stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl TestServer {
    pub async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        tokio::spawn(crate::server::serve(listener, router, stop.clone(), Duration::from_secs(1)));
        TestServer { addr, stop }
    }

    /// As [`TestServer::start`], but only over the wire: no service of this process calls it
    /// in-process ([`crate::local`]), so it sees what crossed the socket (framing headers
    /// included), as a test of what goes on the wire needs.
    pub async fn start_on_the_wire(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let stopped = stop.clone();
        tokio::spawn(
            async move { axum::serve(listener, service).with_graceful_shutdown(stopped.cancelled_owned()).await },
        );
        TestServer { addr, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The value of a variable naming a backing service (`ORDERMESH_TEST_REDIS`, …) for a test
/// that cannot run without it. Such a test is `#[ignore = "needs …"]`, so `cargo test` lists
/// it as ignored with its reason; asked for (`--include-ignored`, as `.ci/run` does), a missing
/// variable fails it: it never passes without having run.
pub fn required_env(var: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!("this test needs {var}: set it to run the test (it is ignored by default)"),
    }
}

/// A private NATS server with JetStream for a test, on a free loopback port, with its own
/// store directory; it can be stopped and started again on the same port and store (an
/// outage). A test that uses one is `#[ignore = "needs nats-server"]`; run without the
/// nats-server binary, it fails.
pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    child: Option<std::process::Child>,
}

impl NatsServer {
    pub fn start() -> Self {
        assert!(nats_binary().is_some(), "this test needs the nats-server binary (Debian package nats-server)");
        let port = free_port();
        let store = std::env::temp_dir().join(format!("ordermesh-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&store).expect("nats store dir");
        let mut server = NatsServer { port, store, child: None };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server abruptly (SIGKILL), as a crash or an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store and waits until it accepts connections.
    pub fn resume(&mut self) {
        let binary = nats_binary().expect("nats-server binary");
        let child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

fn nats_binary() -> Option<PathBuf> {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Sends one request, with a bearer token and a JSON body when given, and returns the status
/// with the body read as JSON (a body that is not JSON comes back as a JSON string), the way
/// the end-to-end tests read every answer.
pub async fn send_json(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// A port nobody listens on right now, for a server a test starts in another process
/// (below the kernel's ephemeral range; see [`crate::server::free_local_port`]).
pub fn free_port() -> u16 {
    crate::server::free_local_port()
}

/// Everything logged in this process from now on, as the platform's own logging writes it
/// (`LOG_LEVEL`, `LOG_FORMAT` from `settings`), for tests that read the logs. Installs the
/// global subscriber: use it in a test binary of its own.
pub fn capture_logs(settings: &Settings) -> LogCapture {
    let capture = LogCapture::default();
    let config = crate::telemetry::LogConfig::from_settings(settings).expect("log settings");
    crate::telemetry::init_with_writer(&config, capture.clone()).expect("no trace export in tests");
    capture
}

#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log capture")).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log capture").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}
