//! The `ordermesh` binary: command line and wiring only. Every behaviour lives in the service
//! crates; this file decides which of them run, on which ports, with which settings.

mod cluster;
mod platform;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use ordermesh::services::ServiceName;

const ABOUT: &str = "ordermesh: a microservices order platform (gateway, users, catalog, orders) in one binary.";

const LONG_ABOUT: &str = "\
ordermesh: a microservices order platform (gateway, users, catalog, orders) in one binary.

With no command it runs `up`: every service in this process, each on its own port and talking
to the others over loopback HTTP, with SQLite files in ./data and demo data on first start.

Configuration comes from environment variables (PORT, LOG_LEVEL, DATABASE_URL, JWT_SECRET,
USER_SERVICE_URL, …; see the README's table), an optional TOML file (--config) and --set
KEY=VALUE flags, later sources winning. A setting can be scoped to one service by prefixing it:
USERS_DATABASE_URL, CATALOG_PORT, …";

#[derive(Parser, Debug)]
#[command(name = "ordermesh", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// A TOML file of settings (same names as the environment variables, lower case).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Set one setting, overriding the environment and the file (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,

    /// Where SQLite files and the generated signing key live (DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every service in this process (the default): gateway on PORT (8080), users on
    /// USERS_PORT (8081), orders on ORDERS_PORT (8082), catalog on CATALOG_PORT (8083).
    Up {
        /// The gateway's port, the one you open in a browser.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run one service in this process, for deployments with a process (or pod) per service.
    Serve {
        #[arg(value_enum)]
        service: ServiceName,
        /// The port to listen on (PORT; defaults to the service's usual port).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Apply database migrations for one service, or all of them, and exit.
    Migrate {
        #[arg(value_enum)]
        service: Option<ServiceName>,
    },
    /// Print a service's OpenAPI document (JSON) without starting anything.
    Openapi {
        #[arg(value_enum)]
        service: ServiceName,
    },
    /// Exit 0 when the service at URL answers its health check with 2xx, 1 otherwise. For
    /// container health checks in images without a shell or curl.
    Healthcheck {
        /// Defaults to http://127.0.0.1:$PORT/health (PORT defaults to 8080).
        #[arg(long)]
        url: Option<String>,
    },
    /// Drive a running ordermesh with realistic shopper journeys; report and reconcile.
    #[command(long_about = loadgen::LONG_ABOUT, after_long_help = loadgen::EXAMPLES)]
    Load(loadgen::Args),
    /// Run the scale-out topology on this machine, each instance its own process: gateway ×2,
    /// users, orders ×2, catalog ×2 on PostgreSQL (DATABASE_URL), with Redis (REDIS_URL) and
    /// NATS (NATS_URL) when set. Ctrl-C stops them all.
    Cluster(cluster::ClusterArgs),
    /// Manage the users service's token signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Put a fresh Ed25519 key first in the key file (JWT_PRIVATE_KEY_FILE, or the one generated
    /// in DATA_DIR): it signs from then on, while the keys before it stay published until every
    /// token they signed has expired. A running users service picks the file up by itself
    /// (JWT_KEY_RELOAD_INTERVAL); the other services fetch the new public key when they first
    /// see it. Safe to run while the platform serves.
    Rotate,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    if k.trim().is_empty() {
        return Err("the key is empty".into());
    }
    Ok((k.trim().to_string(), v.to_string()))
}

/// mimalloc rather than glibc's malloc: a third of the gateway hop's instructions and a sixth
/// of an order's went to glibc malloc/free (bench/README.md, "Profiles"); the gateway answers
/// 1.17x the requests with 0.68x the CPU each. It keeps more memory resident (66 MiB idle
/// against 42; `MIMALLOC_ARENA_EAGER_COMMIT=0` in the environment: 51). The threshold below
/// still governs what C code (SQLite) allocates through glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Password hashing (Argon2, 19 MiB a hash) makes the largest allocations of the platform.
/// Once glibc sees such a block freed it raises its mmap threshold, and from then on keeps these
/// blocks in per-thread heaps it does not give back: a load with a few hundred sign-ins left
/// `up` at ~450 MiB resident. A fixed threshold keeps large blocks mmapped, so they return to the
/// system when freed (~82 MiB after the same load).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_large_blocks_back_to_the_system() {
    // SAFETY: mallopt only tunes the allocator; it runs first thing in main, before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_large_blocks_back_to_the_system() {}

fn main() -> std::process::ExitCode {
    give_large_blocks_back_to_the_system();
    let cli = Cli::parse();
    let mut overrides = cli.set.clone();
    if let Some(dir) = &cli.data_dir {
        overrides.push(("DATA_DIR".into(), dir.display().to_string()));
    }
    match &cli.command {
        Some(Command::Up { port: Some(p) }) => overrides.push(("PORT".into(), p.to_string())),
        Some(Command::Serve { port: Some(p), .. }) => overrides.push(("PORT".into(), p.to_string())),
        _ => {}
    }
    let settings = match kit::config::Settings::load(cli.config.as_deref(), &overrides) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if let Some(Command::Openapi { service }) = &cli.command {
        println!("{}", platform::openapi(*service));
        return std::process::ExitCode::SUCCESS;
    }
    if let Some(Command::Healthcheck { url }) = &cli.command {
        let port = settings.global().string(&["PORT"]).unwrap_or_else(|| "8080".into());
        let url = url.clone().unwrap_or_else(|| format!("http://127.0.0.1:{port}/health"));
        return platform::healthcheck(&url);
    }
    if let Some(Command::Keys { action: KeysCommand::Rotate }) = &cli.command {
        return match platform::rotate_signing_key(&settings) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(&*e),
        };
    }
    let mut log = match kit::telemetry::LogConfig::from_settings(&settings) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    // Only the processes that serve requests keep traces for the Traces page.
    if !matches!(cli.command, None | Some(Command::Up { .. } | Command::Serve { .. })) {
        log.keep_traces = 0;
    }
    log.traces = match kit::traces::TraceExport::from_env(&trace_service_name(cli.command.as_ref())) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if let Err(e) = runtime.block_on(async { kit::telemetry::init(&log) }) {
        return fail(&e);
    }
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Up { port: None }) {
            Command::Up { .. } => platform::up(settings).await,
            Command::Serve { service, .. } => platform::serve(service, settings).await,
            Command::Migrate { service } => platform::migrate(service, settings).await,
            Command::Load(args) => loadgen::run(args).await,
            Command::Cluster(args) => cluster::run(args, settings).await,
            Command::Openapi { .. } | Command::Healthcheck { .. } | Command::Keys { .. } => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    // What is still queued leaves before the runtime (which the gRPC exporter uses) stops.
    runtime.block_on(async { tokio::task::spawn_blocking(kit::traces::shutdown).await.ok() });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&*e),
    }
}

/// The `service.name` spans are exported under unless `OTEL_SERVICE_NAME` names one: the
/// platform for `up` (every service in one process; each span says which), else the service.
fn trace_service_name(command: Option<&Command>) -> String {
    match command {
        Some(Command::Serve { service, .. }) => format!("ordermesh-{}", service.as_str()),
        _ => "ordermesh".to_string(),
    }
}

fn fail(e: &dyn std::fmt::Display) -> std::process::ExitCode {
    eprintln!("ordermesh: {e}");
    std::process::ExitCode::FAILURE
}
