//! The platform as processes: `ordermesh up`, `ordermesh serve`, `ordermesh cluster`.

use serde_json::Value;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

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
        // With a certificate the gateway is reached by the name it is issued to.
        let tls = extra.iter().any(|(k, _)| *k == "TLS_CERT_FILE");
        let mut up = Up {
            gateway: if tls { format!("https://localhost:{}", ports[0]) } else { url(ports[0]) },
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
            if let Some(https) = url.strip_prefix("https://") {
                // The services behind it are ready; the TLS port has only to listen.
                let deadline = Instant::now() + Duration::from_secs(30);
                while std::net::TcpStream::connect(https).is_err() {
                    if let Some(why) = self.exited() {
                        panic!("{why}");
                    }
                    assert!(Instant::now() < deadline, "{url} did not listen within 30 s");
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
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
        let deadline = Instant::now() + within;
        sigterm_and_wait(child.id(), within);
        // /proc shows the main thread a zombie while the process's other threads are still
        // being torn down, and waitpid reports the process only once all of them are gone: a
        // single try_wait in that window saw a clean exit as none (a CI run failed on it).
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => break None,
            }
        };
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
