//! What the fault and cluster tests share: private PostgreSQL and Redis servers they can stop
//! and start (NATS comes from `kit::testing`), the platform as real processes (`ordermesh up`,
//! `ordermesh serve`, `ordermesh cluster`), a TCP proxy that can make an upstream hang or
//! crawl, a closed-loop order load that records every answer, and the reconciliation that
//! proves nothing was lost or applied twice.
#![allow(dead_code)] // each test file uses its own part of this

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[allow(unused_imports)] // the fault suite starts NATS, the cluster test uses the machine's
pub use kit::testing::{NatsServer, free_port};

/// The binary the tests start: `ORDERMESH_BIN` when set (a release build, say), else this
/// test build's (what `.ci/run` uses).
pub fn ordermesh_bin() -> PathBuf {
    std::env::var_os("ORDERMESH_BIN").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_BIN_EXE_ordermesh").into())
}

fn scratch_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ordermesh-{kind}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for_port(port: u16, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

// ---------------------------------------------------------------------------------------------
// Private backing services

/// A PostgreSQL server of the test's own, in a scratch directory, on a free port, that can be
/// stopped (as a crash would: `-m immediate`) and started again with its data.
pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl Postgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("PostgreSQL's server binaries (initdb, pg_ctl) under /usr/lib/postgresql");
        let dir = scratch_dir("pg");
        if is_root() {
            // PostgreSQL refuses to run as root: its files belong to the postgres user.
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().unwrap();
            assert!(status.success(), "chown {dir:?}");
        }
        let pg = Postgres { port: free_port(), dir, bin };
        let data = pg.dir.join("data");
        pg.run("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        pg.resume();
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let data = self.dir.join("data");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "-t", "60", "start"],
        );
        wait_for_port(self.port, "PostgreSQL", Duration::from_secs(30));
    }

    /// Stops it the way a crash or a pulled plug would: no checkpoint, clients cut off.
    pub fn crash(&self) {
        let data = self.dir.join("data");
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd.args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server of the test's own, keeping nothing on disk, that can be stopped and started.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let mut redis = Redis { port: free_port(), child: None };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server)");
        self.child = Some(child);
        wait_for_port(self.port, "Redis", Duration::from_secs(10));
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The platform as processes

/// Settings every fault test wants: limits out of the way of the load (the rate-limit tests set
/// their own), quick health checks, reservations that expire within the test.
pub fn test_settings() -> Vec<(String, String)> {
    [
        ("RATE_LIMIT", "10000000"),
        ("RATE_LIMIT_BURST", "1000000"),
        ("USER_RATE_LIMIT", "10000000"),
        ("USER_RATE_LIMIT_BURST", "1000000"),
        ("AUTH_RATE_LIMIT", "100000"),
        ("AUTH_RATE_LIMIT_BURST", "10000"),
        ("HEALTH_CHECK_INTERVAL", "1s"),
        ("RESERVATION_TTL", "3s"),
        ("RESERVATION_SWEEP_INTERVAL", "1s"),
        ("LOG_LEVEL", "info"),
        ("LOG_FORMAT", "json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `ordermesh up`: every service in one process, on ports of its own, its log in its data
/// directory. It can be killed and started again on the same ports and data.
pub struct Up {
    pub gateway: String,
    pub users: String,
    pub catalog: String,
    pub orders: String,
    pub data_dir: PathBuf,
    /// Beside the data, not in it: a test may fill the data's disk.
    pub log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    owns_data_dir: bool,
}

impl Up {
    pub fn start(extra: &[(&str, String)]) -> Self {
        Self::start_in(scratch_dir("up"), true, extra)
    }

    /// With its data (SQLite files, signing key, log) in `data_dir`, which the caller keeps.
    pub fn start_in(data_dir: PathBuf, owns_data_dir: bool, extra: &[(&str, String)]) -> Self {
        let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
        let mut env = test_settings();
        env.extend([
            ("PORT".to_string(), ports[0].to_string()),
            ("USERS_PORT".to_string(), ports[1].to_string()),
            ("CATALOG_PORT".to_string(), ports[2].to_string()),
            ("ORDERS_PORT".to_string(), ports[3].to_string()),
            ("DATA_DIR".to_string(), data_dir.display().to_string()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let mut up = Up {
            gateway: url(ports[0]),
            users: url(ports[1]),
            catalog: url(ports[2]),
            orders: url(ports[3]),
            data_dir,
            log: scratch_dir("up-log").join("ordermesh.log"),
            env,
            child: None,
            owns_data_dir,
        };
        up.resume();
        up
    }

    /// Starts the process (again) and waits until every service is ready.
    pub fn resume(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(ordermesh_bin())
            .arg("up")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ordermesh up");
        self.child = Some(child);
        let urls = [self.users.clone(), self.catalog.clone(), self.orders.clone(), self.gateway.clone()];
        for url in urls {
            wait_ready(&url, Duration::from_secs(60), || self.exited());
        }
    }

    fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(format!("ordermesh up exited ({status}); its log: {}", tail(&self.log, 30)))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Runs another `ordermesh` command with this platform's settings (same data directory).
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(ordermesh_bin())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("run ordermesh")
    }

    /// SIGTERM, as an orchestrator stops it, and its exit status once it has exited by itself
    /// (`None`, and then SIGKILL, if it had not within `within`).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        sigterm_and_wait(child.id(), within);
        let status = child.try_wait().ok().flatten();
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// SIGKILL: no shutdown, no flushing, exactly a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            sigterm_and_wait(child.id(), Duration::from_secs(15));
        }
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "ordermesh up's data is kept in {} and its log in {}",
                self.data_dir.display(),
                self.log.display()
            );
            return;
        }
        if self.owns_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `ordermesh serve <service>` on a free port, with the given settings.
pub struct Serve {
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl Serve {
    pub fn start(service: &str, extra: &[(&str, String)]) -> Self {
        let port = free_port();
        let dir = scratch_dir(&format!("serve-{service}"));
        let log = std::fs::File::create(dir.join("ordermesh.log")).unwrap();
        let child = Command::new(ordermesh_bin())
            .args(["serve", service])
            .envs(test_settings())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DATA_DIR", &dir)
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ordermesh serve");
        let mut serve = Serve { url: format!("http://127.0.0.1:{port}"), child, dir };
        let url = serve.url.clone();
        let log = serve.dir.join("ordermesh.log");
        wait_ready(&url, Duration::from_secs(60), || {
            let status = serve.child.try_wait().ok()??;
            Some(format!("ordermesh serve {service} exited ({status}): {}", tail(&log, 30)))
        });
        serve
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        sigterm_and_wait(self.child.id(), Duration::from_secs(15));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ordermesh cluster`: gateway ×2, users, orders ×2, catalog ×2 as separate processes on
/// PostgreSQL, restarted by the cluster when they die.
pub struct Cluster {
    child: Child,
    state_file: PathBuf,
    pub data_dir: PathBuf,
    cleanup: Vec<Box<dyn FnOnce() + Send>>,
}

pub struct ClusterOptions<'a> {
    pub postgres: &'a str,
    pub redis: Option<&'a str>,
    pub nats: Option<&'a str>,
    /// Schemas, Redis keys and the NATS stream get this prefix, so a run can share servers.
    pub isolate: bool,
    pub restart: bool,
    pub extra: Vec<(&'a str, String)>,
}

impl Cluster {
    pub fn start(o: ClusterOptions<'_>) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let data_dir = scratch_dir("cluster");
        let state_file = data_dir.join("state.json");
        let mut cmd = Command::new(ordermesh_bin());
        cmd.args(["cluster", "--base-port", "0", "--state-file"]).arg(&state_file);
        if !o.restart {
            cmd.arg("--no-restart");
        }
        cmd.envs(test_settings()).env("DATA_DIR", &data_dir).env("DATABASE_URL", o.postgres);
        let mut cleanup: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
        if o.isolate {
            let prefix = format!("c{}_", &id[..10]);
            cmd.args(["--schema-prefix", &prefix]);
            let postgres = o.postgres.to_string();
            cleanup.push(Box::new(move || {
                for service in ["users", "catalog", "orders"] {
                    let _ = Command::new("psql")
                        .args([&postgres, "-qc", &format!("DROP SCHEMA IF EXISTS \"{prefix}{service}\" CASCADE")])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }));
        }
        if let Some(redis) = o.redis {
            cmd.env("REDIS_URL", redis).env("REDIS_KEY_PREFIX", format!("cluster-{id}"));
        }
        if let Some(nats) = o.nats {
            let stream = format!("CLUSTER{}", &id[..10].to_uppercase());
            cmd.env("NATS_URL", nats)
                .env("NATS_STREAM", &stream)
                .env("NATS_SUBJECT_PREFIX", format!("cluster{}", &id[..10]));
            if o.isolate {
                let nats = nats.to_string();
                cleanup.push(Box::new(move || {
                    let _ = std::thread::spawn(move || {
                        tokio::runtime::Runtime::new().unwrap().block_on(async move {
                            if let Ok(client) = async_nats::connect(nats).await {
                                let _ = async_nats::jetstream::new(client).delete_stream(stream).await;
                            }
                        })
                    })
                    .join();
                }));
            }
        }
        cmd.envs(o.extra.iter().map(|(k, v)| (*k, v.as_str())));
        let log = std::fs::File::create(data_dir.join("cluster.log")).unwrap();
        let mut child = cmd.stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("start ordermesh cluster");
        let deadline = Instant::now() + Duration::from_secs(180);
        while !state_file.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the cluster exited ({status}): {}", tail(&data_dir.join("cluster.log"), 40));
            }
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        Cluster { child, state_file, data_dir, cleanup }
    }

    pub fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.state_file).unwrap()).unwrap()
    }

    pub fn gateways(&self) -> Vec<String> {
        self.state()["gateways"].as_array().unwrap().iter().map(|g| g.as_str().unwrap().to_string()).collect()
    }

    pub fn instances(&self, service: &str) -> Vec<Value> {
        self.state()["instances"].as_array().unwrap().iter().filter(|i| i["service"] == service).cloned().collect()
    }

    pub fn instance(&self, name: &str) -> Value {
        self.state()["instances"].as_array().unwrap().iter().find(|i| i["name"] == name).cloned().unwrap()
    }

    /// SIGKILL to one instance, by name (`orders-1`, `catalog-2`, …).
    pub fn kill(&self, name: &str) {
        let pid = self.instance(name)["pid"].as_i64().unwrap() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        sigterm_and_wait(self.child.id(), Duration::from_secs(25));
        let _ = self.child.kill();
        let _ = self.child.wait();
        for f in self.cleanup.drain(..) {
            f();
        }
        if std::thread::panicking() {
            eprintln!("the cluster's logs are kept in {}", self.data_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn sigterm_and_wait(pid: u32, within: Duration) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        // Signal 0: is it still there? (It stays a zombie until waited for, which the caller does.)
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) if !stat.contains(") Z ") => std::thread::sleep(Duration::from_millis(50)),
            _ => return,
        }
    }
}

fn wait_ready(url: &str, within: Duration, mut exited: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(url.trim_start_matches("http://")) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let host = url.trim_start_matches("http://");
            let _ = write!(s, "GET /ready HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let mut head = [0u8; 12];
            if std::io::Read::read_exact(&mut s, &mut head).is_ok() && head.ends_with(b"200") {
                return;
            }
        }
        if let Some(why) = exited() {
            panic!("{why}");
        }
        assert!(Instant::now() < deadline, "{url} was not ready within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// A proxy that can make an upstream hang or crawl

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Bytes flow both ways.
    Pass,
    /// Requests are swallowed: connections are accepted and read, never answered.
    Hang,
    /// Each request reaches the upstream only after this delay.
    Slow(Duration),
}

/// A TCP proxy in front of one upstream whose behaviour the test switches at will, for
/// connections already open as well as new ones.
pub struct FaultProxy {
    pub url: String,
    fault: Arc<RwLock<Fault>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let target = upstream.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fault = Arc::new(RwLock::new(Fault::Pass));
        let shared = fault.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (fault, target) = (shared.clone(), target.clone());
                tokio::spawn(async move {
                    let _ = relay(client, &target, fault).await;
                });
            }
        });
        FaultProxy { url, fault, task }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.write().unwrap() = fault;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: tokio::net::TcpStream, target: &str, fault: Arc<RwLock<Fault>>) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = tokio::net::TcpStream::connect(target).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let requests = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return upstream_write.shutdown().await;
            }
            let now = *fault.read().unwrap();
            match now {
                Fault::Pass => {}
                Fault::Hang => continue,
                Fault::Slow(d) => tokio::time::sleep(d).await,
            }
            upstream_write.write_all(&buf[..n]).await?;
        }
    };
    let answers = tokio::io::copy(&mut upstream_read, &mut client_write);
    tokio::select! {
        r = requests => r,
        r = answers => r.map(|_| ()),
    }
}

// ---------------------------------------------------------------------------------------------
// A shopper's account and product, and a load of orders

/// A fresh customer with a product of their own, so every count in a test is exact.
pub struct Shop {
    pub http: reqwest::Client,
    pub gateway: String,
    pub admin: String,
    pub customer: String,
    pub customer_name: String,
    pub customer_id: String,
    pub product_id: i64,
    pub initial_stock: i64,
}

impl Shop {
    pub const PASSWORD: &str = "a-long-password-1";

    pub async fn open(gateway: &str, initial_stock: i64) -> Self {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
        let admin = login(&http, gateway, "alice", "alice123").await;
        let name = format!("shopper{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let res = http
            .post(format!("{gateway}/api/users/register"))
            .json(&json!({"username": name, "password": Self::PASSWORD, "email": format!("{name}@example.com")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "register {name}: {}", res.text().await.unwrap_or_default());
        let customer = login(&http, gateway, &name, Self::PASSWORD).await;
        let me: Value = http
            .get(format!("{gateway}/api/users/me"))
            .bearer_auth(&customer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let customer_id = me["id"].as_str().map(str::to_string).unwrap_or_else(|| me["id"].to_string());
        let res = http
            .post(format!("{gateway}/api/products"))
            .bearer_auth(&admin)
            .json(&json!({"name": format!("Fault Widget {name}"), "category": "Test", "price": "2.50", "stock": initial_stock}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "create the test product");
        let product: Value = res.json().await.unwrap();
        Shop {
            http,
            gateway: gateway.to_string(),
            admin,
            customer,
            customer_name: name,
            customer_id,
            product_id: product["id"].as_i64().unwrap(),
            initial_stock,
        }
    }

    /// Orders of `quantity` each, from `workers` closed loops spread over `gateways`, until
    /// stopped. Every request carries an Idempotency-Key, as a careful client's would.
    pub fn order_load(&self, gateways: &[String], workers: usize, quantity: i64) -> Load {
        let (token, product_id) = (self.customer.clone(), self.product_id);
        let gateways = gateways.to_vec();
        Load::start(&self.http, workers, None, 201, move |http, worker, key| {
            http.post(format!("{}/api/orders", gateways[worker % gateways.len()]))
                .bearer_auth(&token)
                .header("idempotency-key", key)
                .json(&json!({"items": [{"product_id": product_id, "quantity": quantity}]}))
        })
    }

    /// Waits until the platform agrees with the answers it gave: every acknowledged order
    /// exists once and whole, the stock moved by exactly what the existing orders hold with
    /// nothing left reserved, and the catalog applied each order's creation exactly once.
    pub async fn reconcile(&self, answers: &Answers, within: Duration) -> Reconciliation {
        let deadline = Instant::now() + within;
        loop {
            let r = self.check_once(answers).await;
            if r.is_clean() || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn check_once(&self, answers: &Answers) -> Reconciliation {
        let mut orders: Vec<Value> = Vec::new();
        for page in 1.. {
            let listed: Value = self
                .http
                .get(format!("{}/api/orders?per_page=100&page={page}&user_id={}", self.gateway, self.customer_id))
                .bearer_auth(&self.admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = listed["items"].as_array().cloned().unwrap_or_default();
            let done = items.len() < 100;
            orders.extend(items);
            if done {
                break;
            }
        }
        let mut count_by_id: HashMap<String, usize> = HashMap::new();
        let mut half_written = 0;
        let mut held: i64 = 0;
        for o in &orders {
            let id = o["id"].as_str().unwrap_or_default().to_string();
            *count_by_id.entry(id.clone()).or_default() += 1;
            let items = o["items"].as_array().cloned().unwrap_or_default();
            let quantity: i64 = items.iter().map(|i| i["quantity"].as_i64().unwrap_or(0)).sum();
            if items.is_empty() || quantity == 0 {
                half_written += 1;
            }
            if o["status"] != "cancelled" {
                held += quantity;
            }
        }
        let acknowledged: HashSet<&String> = answers.acknowledged.iter().map(|(_, id)| id).collect();
        let missing = acknowledged.iter().filter(|id| !count_by_id.contains_key(id.as_str())).count();
        let duplicated = count_by_id.values().filter(|n| **n > 1).count();
        let product: Value = self
            .http
            .get(format!("{}/api/products/{}", self.gateway, self.product_id))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let moved = self.initial_stock - product["stock_on_hand"].as_i64().unwrap_or(0);
        let reserved = product["stock_reserved"].as_i64().unwrap_or(-1);
        let ids: Vec<&String> = count_by_id.keys().collect();
        let mut applied: HashMap<&str, usize> = HashMap::new();
        for chunk in ids.chunks(400) {
            let query: String = chunk.iter().map(|id| format!("order_id={id}&")).collect();
            let processed: Value = self
                .http
                .get(format!("{}/api/events/processed?{query}", self.gateway))
                .bearer_auth(&self.admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for item in processed["items"].as_array().cloned().unwrap_or_default() {
                if item["type"] == "order.created"
                    && let Some(id) = chunk.iter().find(|id| item["order_id"] == ***id)
                {
                    *applied.entry(id.as_str()).or_default() += 1;
                }
            }
        }
        let events_lost = ids.iter().filter(|id| !applied.contains_key(id.as_str())).count();
        let events_applied_twice = applied.values().filter(|n| **n > 1).count();
        Reconciliation {
            orders_in_platform: orders.len(),
            acknowledged: acknowledged.len(),
            missing,
            duplicated,
            half_written,
            stock_moved: moved,
            stock_held_by_orders: held,
            stock_reserved: reserved,
            events_lost,
            events_applied_twice,
        }
    }
}

pub async fn login(http: &reqwest::Client, gateway: &str, username: &str, password: &str) -> String {
    let res = http
        .post(format!("{gateway}/api/users/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login {username}");
    res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, from the start of the load.
    pub at: Duration,
    pub latency: Duration,
    /// 0: no HTTP answer at all.
    pub status: u16,
    pub key: String,
    pub order_id: Option<String>,
    pub problem: Option<String>,
}

pub struct Load {
    pub started: Instant,
    ok: u16,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How an outcome's `problem` starts when the request found no server to connect to.
pub const REFUSED: &str = "not connected";

type MakeRequest = dyn Fn(&reqwest::Client, usize, &str) -> reqwest::RequestBuilder + Send + Sync;

impl Load {
    /// `workers` loops sending `request(http, worker, key)` (the key is unique per request)
    /// until finished, each waiting `pace` between requests when given; `ok` is the status a
    /// success has. A failed request is followed by a short back-off, as a real client's is.
    pub fn start(
        http: &reqwest::Client,
        workers: usize,
        pace: Option<Duration>,
        ok: u16,
        request: impl Fn(&reqwest::Client, usize, &str) -> reqwest::RequestBuilder + Send + Sync + 'static,
    ) -> Load {
        let request: Arc<MakeRequest> = Arc::new(request);
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let seq = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|worker| {
                let (http, request) = (http.clone(), request.clone());
                let (stop, outcomes, seq) = (stop.clone(), outcomes.clone(), seq.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("fault-{}", seq.fetch_add(1, Ordering::Relaxed));
                        let sent = Instant::now();
                        let (status, order_id, problem) = match request(&http, worker, &key).send().await {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let body: Value = r.json().await.unwrap_or(Value::Null);
                                let id = body["id"].as_str().map(str::to_string).filter(|_| status == 201);
                                let problem = (status != ok).then(|| body["detail"].as_str().unwrap_or("").to_string());
                                (status, id, problem)
                            }
                            // Refused before it started (no connection) is told apart from
                            // cut off on the way: a SIGTERM must cause only the former.
                            Err(e) if e.is_connect() => (0, None, Some(format!("{REFUSED}: {e}"))),
                            Err(e) => (0, None, Some(e.to_string())),
                        };
                        let latency = sent.elapsed();
                        outcomes.lock().unwrap().push(Outcome {
                            at: sent.duration_since(started),
                            latency,
                            status,
                            key,
                            order_id,
                            problem,
                        });
                        if status != ok {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        } else if let Some(pace) = pace {
                            tokio::time::sleep(pace.saturating_sub(latency)).await;
                        }
                    }
                })
            })
            .collect();
        Load { started, ok, stop, outcomes, tasks }
    }

    /// Answers so far.
    pub fn sent(&self) -> usize {
        self.outcomes.lock().unwrap().len()
    }

    /// Now, as an offset into the load (to mark when a fault began or ended).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until `n` more answers came in (or `within` passed).
    pub async fn wait_for(&self, n: usize, within: Duration) {
        let target = self.sent() + n;
        let deadline = Instant::now() + within;
        while self.sent() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The answers so far, without stopping.
    pub fn snapshot(&self) -> Answers {
        Answers::new(self.outcomes.lock().unwrap().clone(), self.ok)
    }

    pub async fn finish(self) -> Answers {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let outcomes = std::mem::take(&mut *self.outcomes.lock().unwrap());
        Answers::new(outcomes, self.ok)
    }
}

pub struct Answers {
    pub outcomes: Vec<Outcome>,
    /// (Idempotency-Key, order id) of every order answered 201.
    pub acknowledged: Vec<(String, String)>,
    ok: u16,
}

impl Answers {
    fn new(mut outcomes: Vec<Outcome>, ok: u16) -> Self {
        outcomes.sort_by_key(|o| o.at);
        let acknowledged =
            outcomes.iter().filter_map(|o| Some((o.key.clone(), o.order_id.clone()?))).collect::<Vec<_>>();
        Answers { outcomes, acknowledged, ok }
    }

    /// Only the answers to requests sent within `from..to` (offsets into the load).
    pub fn between(&self, from: Duration, to: Duration) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.at >= from && o.at < to).collect()
    }

    pub fn sent(&self) -> usize {
        self.outcomes.len()
    }

    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.status != self.ok).collect()
    }

    pub fn failed(&self) -> usize {
        self.failures().len()
    }

    /// Failures by status ("0" for no answer), e.g. `{"503": 12}`.
    pub fn failures_by_status(&self) -> std::collections::BTreeMap<String, usize> {
        by_status(self.failures())
    }

    /// From `fault` (an offset into the load) until the first success after which nothing
    /// failed: how long the platform took to serve again. Zero if nothing failed after it.
    pub fn recovery_after(&self, fault: Duration) -> Duration {
        self.recovery_within(fault, Duration::MAX)
    }

    /// Like `recovery_after`, counting only requests answered before `end` (one phase of a
    /// run: a request still in flight when the next phase's fault begins belongs to that one).
    pub fn recovery_within(&self, fault: Duration, end: Duration) -> Duration {
        let sent_in = |o: &&Outcome| o.at >= fault && o.at + o.latency < end;
        let last_failure = self.outcomes.iter().filter(sent_in).filter(|o| o.status != self.ok).map(|o| o.at).max();
        let Some(last_failure) = last_failure else { return Duration::ZERO };
        self.outcomes
            .iter()
            .filter(sent_in)
            .filter(|o| o.status == self.ok && o.at > last_failure)
            .map(|o| o.at + o.latency)
            .min()
            .map(|ok| ok.saturating_sub(fault))
            .unwrap_or(Duration::MAX)
    }
}

/// Latency percentile (0–100) of these answers.
pub fn percentile<'a>(p: f64, outcomes: impl IntoIterator<Item = &'a Outcome>) -> Option<Duration> {
    let mut l: Vec<Duration> = outcomes.into_iter().map(|o| o.latency).collect();
    if l.is_empty() {
        return None;
    }
    l.sort();
    let i = ((p / 100.0) * (l.len() - 1) as f64).round() as usize;
    Some(l[i])
}

/// Counts by status ("0" for no answer).
pub fn by_status<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    for o in outcomes {
        *by.entry(o.status.to_string()).or_default() += 1;
    }
    by
}

#[derive(Debug)]
pub struct Reconciliation {
    pub orders_in_platform: usize,
    pub acknowledged: usize,
    /// Acknowledged orders the platform does not hold.
    pub missing: usize,
    pub duplicated: usize,
    /// Orders without items: a write that stopped half way.
    pub half_written: usize,
    pub stock_moved: i64,
    pub stock_held_by_orders: i64,
    pub stock_reserved: i64,
    pub events_lost: usize,
    pub events_applied_twice: usize,
}

impl Reconciliation {
    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.half_written == 0
            && self.stock_moved == self.stock_held_by_orders
            && self.stock_reserved == 0
            && self.events_lost == 0
            && self.events_applied_twice == 0
    }

    pub fn assert_clean(&self, scenario: &str) {
        assert!(self.is_clean(), "{scenario}: the platform disagrees with its answers: {self:#?}");
    }
}

/// Prints a scenario's figures on one line (`.ci/run` shows them) and, when
/// ORDERMESH_FAULT_REPORT names a file, appends them there as a JSON line.
pub fn report(scenario: &str, figures: Value) {
    println!("FAULT {scenario}: {figures}");
    if let Ok(path) = std::env::var("ORDERMESH_FAULT_REPORT")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{}", json!({"scenario": scenario, "figures": figures}));
    }
}

pub fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}
