//! `ordermesh cluster`: the scale-out topology on one machine, without containers — each
//! service instance its own `ordermesh serve` process, all on PostgreSQL (one schema per
//! service), with Redis and NATS when configured. For development, and for the tests that show
//! the platform survives losing an instance. Like an orchestrator it restarts an instance that
//! dies (with a growing back-off), unless `--no-restart` says to leave it down.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kit::config::Settings;
use serde::Serialize;
use tokio::process::{Child, Command};

use ordermesh::services::{SERVICES, ServiceName};

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Gateway instances.
    #[arg(long, default_value_t = 2)]
    pub gateways: usize,
    /// Orders service instances.
    #[arg(long, default_value_t = 2)]
    pub orders: usize,
    /// Catalog service instances.
    #[arg(long, default_value_t = 2)]
    pub catalogs: usize,
    /// The first port: gateways from it, then users, catalog and orders instances after them.
    /// 0 picks free ports.
    #[arg(long, default_value_t = 9080)]
    pub base_port: u16,
    /// Prefix of the PostgreSQL schemas (`<prefix>users`, `<prefix>catalog`, `<prefix>orders`),
    /// so several clusters can share one database.
    #[arg(long, default_value = "")]
    pub schema_prefix: String,
    /// Write the instances (name, URL, pid, log, restarts) as JSON here, for scripts and
    /// tests; rewritten whenever an instance is restarted.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Leave an instance that exits down instead of restarting it.
    #[arg(long)]
    pub no_restart: bool,
}

impl ClusterArgs {
    /// How many instances of `service` to run.
    fn instances(&self, service: ServiceName) -> usize {
        match service {
            ServiceName::Gateway => self.gateways,
            ServiceName::Orders => self.orders,
            ServiceName::Catalog => self.catalogs,
            // One instance: the login throttle counts per process.
            ServiceName::Users => 1,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Instance {
    pub name: String,
    pub service: &'static str,
    pub url: String,
    pub pid: u32,
    pub log: PathBuf,
    pub restarts: u32,
}

#[derive(Debug, Serialize)]
struct State<'a> {
    gateways: Vec<&'a str>,
    instances: Vec<&'a Instance>,
}

#[derive(Clone)]
struct Planned {
    name: String,
    service: &'static str,
    port: u16,
}

/// An instance of the cluster and what it takes to start it again.
struct Member {
    instance: Instance,
    plan: Planned,
    child: Option<Child>,
    started_at: Instant,
    /// When a dead instance is due to start again, and the wait after its next death.
    restart_at: Option<Instant>,
    backoff: Duration,
}

/// Starts instances: the binary, the settings they share and where their files go.
struct Launcher {
    exe: PathBuf,
    common: Vec<(String, String)>,
    data: PathBuf,
}

impl Launcher {
    fn spawn(&self, p: &Planned) -> anyhow::Result<(Child, PathBuf)> {
        let log = self.data.join("logs").join(format!("{}.log", p.name));
        // Appended to: a restarted instance's log follows the one that died.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| log.display().to_string())?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["serve", p.service])
            .envs(self.common.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PORT", p.port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DATA_DIR", self.data.join(&p.name))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("cannot start {}", p.name))?;
        Ok((child, log))
    }
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const LONGEST_BACKOFF: Duration = Duration::from_secs(30);
/// An instance that stayed up this long starts its back-off afresh when it next dies.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Below the kernel's ephemeral range, so an instance's port is still free when it binds it
/// (a port from `bind(0)` was taken by another process's outgoing connection in CI).
fn free_port() -> anyhow::Result<u16> {
    match kit::server::free_local_port() {
        0 => anyhow::bail!("no free port on 127.0.0.1"),
        port => Ok(port),
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

fn urls(plan: &[Planned], service: &str) -> String {
    plan.iter()
        .filter(|p| p.service == service)
        .map(|p| format!("http://127.0.0.1:{}", p.port))
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn run(args: ClusterArgs, settings: Settings) -> anyhow::Result<()> {
    let s = settings.global();
    let database = s.string(&["DATABASE_URL"]).unwrap_or_default();
    if !(database.starts_with("postgres://") || database.starts_with("postgresql://")) {
        bail!("the cluster needs DATABASE_URL=postgres://…: its instances share each service's database");
    }
    if s.string(&["REDIS_URL"]).is_none() {
        tracing::warn!("REDIS_URL is not set: each gateway keeps its own rate limits");
    }
    if s.string(&["NATS_URL"]).is_none() {
        tracing::warn!("NATS_URL is not set: events go through the embedded HTTP relay");
    }
    let data: PathBuf = s.parse_or(&["DATA_DIR"], PathBuf::from("data"))?.join("cluster");
    std::fs::create_dir_all(data.join("logs"))?;

    let mut plan = Vec::new();
    let mut next = args.base_port;
    let mut port = || -> anyhow::Result<u16> {
        if args.base_port == 0 {
            return free_port();
        }
        let p = next;
        next = next.checked_add(1).context("ran out of ports")?;
        Ok(p)
    };
    // The gateways take the first ports, the one people open; the others follow in start order.
    for service in SERVICES.iter().filter(|s| s.edge).chain(SERVICES.iter().filter(|s| !s.edge)) {
        for i in 1..=args.instances(service.name) {
            plan.push(Planned { name: format!("{}-{i}", service.as_str), service: service.as_str, port: port()? });
        }
    }
    // Credentials every instance of the run shares: the services' client secret and the
    // gateways' session key (so a browser session is good on either gateway).
    let secret = random_hex(24);
    let session_key = random_hex(64);
    let mut common: Vec<(String, String)> = vec![
        ("SERVICE_CLIENTS".into(), ordermesh::services::clients_sharing(&secret)),
        ("CLIENT_SECRET".into(), secret),
        ("SESSION_KEY".into(), session_key),
    ];
    for service in SERVICES {
        let name = service.as_str.to_uppercase();
        if !service.edge {
            common.push((service.url_key.into(), urls(&plan, service.as_str)));
            // The gateways reach the services over loopback: the services believe the client
            // address they forward, and whoever the operator named (the gateways only the latter).
            let key = format!("{name}_TRUSTED_PROXIES");
            let named = std::env::var(&key).or_else(|_| std::env::var("TRUSTED_PROXIES")).ok();
            common.push((key, kit::client_ip::with_loopback(named.as_deref())));
        }
        if service.migrator.is_some() {
            common.push((format!("{name}_DATABASE_SCHEMA"), format!("{}{}", args.schema_prefix, service.as_str)));
        }
    }
    let exe = std::env::current_exe().context("cannot find the ordermesh executable")?;
    let launcher = Launcher { exe, common, data };
    let mut members: Vec<Member> = Vec::new();
    // Dependencies first; instances of one service start together (migrations take a lock).
    for service in SERVICES.iter().map(|s| s.as_str) {
        let mut started = Vec::new();
        for p in plan.iter().filter(|p| p.service == service) {
            let (child, log) = launcher.spawn(p)?;
            let pid = child.id().unwrap_or(0);
            let url = format!("http://127.0.0.1:{}", p.port);
            started.push(url.clone());
            members.push(Member {
                instance: Instance { name: p.name.clone(), service, url, pid, log, restarts: 0 },
                plan: p.clone(),
                child: Some(child),
                started_at: Instant::now(),
                restart_at: None,
                backoff: FIRST_BACKOFF,
            });
        }
        for url in started {
            wait_ready(&url, &mut members).await?;
        }
    }
    for m in &members {
        let i = &m.instance;
        println!("{:<10} {:<26} pid {:<7} log {}", i.name, i.url, i.pid, i.log.display());
    }
    let state_file = args.state_file.as_deref();
    if let Some(path) = state_file {
        write_state(path, &members)?;
    }
    tracing::info!(instances = members.len(), "cluster is up");
    tokio::select! {
        _ = kit::server::shutdown_signal() => {}
        result = supervise(&mut members, &launcher, state_file, !args.no_restart) => {
            if let Err(e) = result {
                tracing::error!(error = %e, "supervising the cluster failed; stopping it");
            }
        }
    }
    stop(members).await;
    Ok(())
}

fn write_state(path: &Path, members: &[Member]) -> anyhow::Result<()> {
    let instances: Vec<&Instance> = members.iter().map(|m| &m.instance).collect();
    let gateways = instances.iter().filter(|i| i.service == "gateway").map(|i| i.url.as_str()).collect();
    let text = serde_json::to_string_pretty(&State { gateways, instances })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

async fn wait_ready(url: &str, members: &mut [Member]) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if matches!(client.get(format!("{url}/ready")).send().await, Ok(r) if r.status().is_success()) {
            return Ok(());
        }
        for m in members.iter_mut() {
            if let Some(child) = m.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("{} exited ({status}) while starting; see {}", m.instance.name, m.instance.log.display());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} was not ready within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Watches the instances until every one is gone for good: one that exits is started again
/// on its port after a back-off (1 s, doubling to 30 s while it keeps dying young), so the
/// others and the gateways find it where it was.
async fn supervise(
    members: &mut [Member],
    launcher: &Launcher,
    state_file: Option<&Path>,
    restart: bool,
) -> anyhow::Result<()> {
    loop {
        let mut changed = false;
        for m in members.iter_mut() {
            if let Some(child) = m.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                m.child = None;
                if !restart {
                    tracing::warn!(instance = m.instance.name, %status, "instance exited; the others carry on");
                    continue;
                }
                if m.started_at.elapsed() >= STABLE_AFTER {
                    m.backoff = FIRST_BACKOFF;
                }
                m.restart_at = Some(Instant::now() + m.backoff);
                tracing::warn!(
                    instance = m.instance.name,
                    %status,
                    restart_in_ms = m.backoff.as_millis() as u64,
                    "instance exited; restarting it"
                );
                m.backoff = (m.backoff * 2).min(LONGEST_BACKOFF);
            }
            if m.child.is_none()
                && let Some(at) = m.restart_at
                && Instant::now() >= at
            {
                m.restart_at = None;
                match launcher.spawn(&m.plan) {
                    Ok((child, _)) => {
                        m.instance.pid = child.id().unwrap_or(0);
                        m.instance.restarts += 1;
                        m.started_at = Instant::now();
                        m.child = Some(child);
                        changed = true;
                        tracing::info!(instance = m.instance.name, pid = m.instance.pid, "instance restarted");
                    }
                    Err(e) => {
                        tracing::error!(instance = m.instance.name, error = %e, "could not restart the instance");
                        m.restart_at = Some(Instant::now() + m.backoff);
                    }
                }
            }
        }
        if changed && let Some(path) = state_file {
            write_state(path, members)?;
        }
        if members.iter().all(|m| m.child.is_none() && m.restart_at.is_none()) {
            tracing::warn!("every instance has exited");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM to every instance (they drain in-flight requests), SIGKILL after a grace period.
async fn stop(members: Vec<Member>) {
    for m in &members {
        if m.child.is_some() && m.instance.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(m.instance.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for (instance, mut child) in members.into_iter().filter_map(|m| Some((m.instance, m.child?))) {
        match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(instance = instance.name, "did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
    tracing::info!("cluster stopped");
}
