//! Which services run where: `up` (all in one process), `serve` (one), `migrate`, `openapi`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use kit::config::{Origin, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use ordermesh::services::{self, SERVICES, ServiceName};

pub fn openapi(service: ServiceName) -> String {
    let doc = (service.spec().openapi)();
    serde_json::to_string_pretty(&kit::docs::to_json(&doc)).unwrap_or_default()
}

fn port_for(settings: &Settings, key: &str, default: u16) -> anyhow::Result<u16> {
    Ok(settings.global().parse_or(&[key], default)?)
}

async fn bind(host: IpAddr, port: u16, service: ServiceName) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "the {} service cannot listen on {addr} (is another ordermesh, or something else, using the port?)",
            service.as_str()
        )
    })
}

/// The address other services use to reach a listener bound to `host`.
fn reachable_url(host: IpAddr, listener: &TcpListener) -> anyhow::Result<String> {
    let port = listener.local_addr()?.port();
    let host = if host.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { host };
    Ok(match host {
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("http://{v4}:{port}"),
    })
}

/// Every service in one process, each on its own port. They call each other in-process
/// (kit::local), or over loopback HTTP with `IN_PROCESS_CALLS=off`.
pub async fn up(mut settings: Settings) -> anyhow::Result<()> {
    let started_at = Instant::now();
    let host: IpAddr = settings.global().parse_or(&["HOST"], IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    kit::local::set_enabled(settings.global().bool_or(&["IN_PROCESS_CALLS"], kit::local::enabled())?);
    share_a_fresh_service_secret(&mut settings);
    development_clients_unless_configured(&mut settings)?;
    services_believe_the_local_gateway(&mut settings);
    // Bind everything first: with port 0 (tests) the real ports are known only after binding,
    // and each service must be told where the others are before it starts.
    let mut listeners = Vec::new();
    for service in SERVICES {
        let port_key =
            if service.edge { "PORT".to_string() } else { format!("{}_PORT", service.as_str.to_uppercase()) };
        let port = port_for(&settings, &port_key, service.default_port)?;
        let listener = bind(host, port, service.name).await?;
        // In `up` the services find each other here, whatever *_SERVICE_URL says.
        let mut url = reachable_url(host, &listener)?;
        if service.edge && kit::tls::TlsSettings::from_settings(&settings.scoped(service.as_str))?.is_some() {
            url = url.replacen("http://", "https://", 1);
        }
        settings.insert(service.url_key, url, Origin::CommandLine);
        listeners.push((service, listener));
    }
    let mut running = Vec::new();
    let mut closers = Vec::new();
    for (service, listener) in listeners {
        let port = listener.local_addr()?.port();
        let started = (service.start)(&settings, host, port).await?;
        closers.push(started.close);
        let stop = CancellationToken::new();
        let task = tokio::spawn(started.server.run(listener, stop.clone()));
        running.push((service.name, stop, task));
    }
    let front_url = settings.global().string(&[ServiceName::Gateway.spec().url_key]).unwrap_or_default();
    tracing::info!(
        ready_ms = started_at.elapsed().as_millis() as u64,
        url = %front_url,
        "ordermesh is up: gateway on {front_url}"
    );
    kit::server::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    // Front to back, the reverse of the start order: the gateway stops taking requests and
    // finishes the ones it has while the services they reach still serve, then the orders
    // service, then what it calls. Stopping all at once cut in-flight orders off from the
    // catalog half way.
    for (service, stop, task) in running.into_iter().rev() {
        stop.cancel();
        match task.await {
            Ok(Ok(())) => tracing::debug!(service = service.as_str(), "stopped"),
            Ok(Err(e)) => tracing::warn!(service = service.as_str(), error = %e, "server stopped with an error"),
            Err(e) => tracing::warn!(service = service.as_str(), error = %e, "server task failed"),
        }
    }
    for close in closers {
        close.await;
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// In `up` the users service and the services that ask it for service tokens live in one
/// process, so unless the operator chose credentials, they agree on a random secret for this
/// run rather than on the well-known development defaults.
fn share_a_fresh_service_secret(settings: &mut Settings) {
    let chosen = |s: &Settings| {
        s.global().string(&["SERVICE_CLIENTS", "CLIENT_SECRET"]).is_some()
            || services::token_clients().iter().any(|c| s.scoped(c).string(&["CLIENT_SECRET"]).is_some())
    };
    if chosen(settings) {
        return;
    }
    let secret = uuid::Uuid::new_v4().simple().to_string();
    settings.insert("SERVICE_CLIENTS", services::clients_sharing(&secret), Origin::CommandLine);
    settings.insert("CLIENT_SECRET", secret, Origin::CommandLine);
}

/// Outside production, a users service run on its own accepts each service of this binary with
/// the development secret that service uses by default, unless the operator named the clients.
fn development_clients_unless_configured(settings: &mut Settings) -> anyhow::Result<()> {
    let configured = settings.scoped(ServiceName::Users.as_str()).lookup(&["SERVICE_CLIENTS"]).is_some();
    if !configured && !kit::config::production(settings)? {
        settings.insert("SERVICE_CLIENTS", services::development_clients(), Origin::Default);
    }
    Ok(())
}

/// In `up` the gateway reaches the services over loopback, so they believe the client address
/// it forwards (`X-Forwarded-For`) from loopback, and from whoever the operator named; the
/// gateway itself believes only the operator's `TRUSTED_PROXIES`.
fn services_believe_the_local_gateway(settings: &mut Settings) {
    for service in SERVICES.iter().filter(|s| !s.edge) {
        let named = settings.scoped(service.as_str).string(&["TRUSTED_PROXIES"]);
        let key = format!("{}_TRUSTED_PROXIES", service.as_str.to_uppercase());
        settings.insert(&key, kit::client_ip::with_loopback(named.as_deref()), Origin::CommandLine);
    }
}

/// One service in this process.
pub async fn serve(service: ServiceName, mut settings: Settings) -> anyhow::Result<()> {
    development_clients_unless_configured(&mut settings)?;
    let host: IpAddr = settings.scoped(service.as_str()).parse_or(&["HOST"], IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
    let port: u16 = settings.scoped(service.as_str()).parse_or(&["PORT"], service.spec().default_port)?;
    let listener = bind(host, port, service).await?;
    let started = (service.spec().start)(&settings, host, listener.local_addr()?.port()).await?;
    tracing::info!(service = service.as_str(), addr = %listener.local_addr()?, "serving");
    let stop = CancellationToken::new();
    let server = tokio::spawn(started.server.run(listener, stop.clone()));
    kit::server::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    stop.cancel();
    server.await??;
    started.close.await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Applies migrations and exits; safe to run while instances start (PostgreSQL migrations take
/// an advisory lock).
pub async fn migrate(service: Option<ServiceName>, settings: Settings) -> anyhow::Result<()> {
    let services: Vec<&'static ordermesh::services::Service> = match service {
        Some(s) => vec![s.spec()],
        None => SERVICES.iter().collect(),
    };
    for service in services {
        // Only the database settings matter here: a migration job needs no signing key or
        // service secret.
        let Some(migrator) = service.migrator else {
            tracing::info!("the {} has no database", service.as_str);
            continue;
        };
        let scoped = settings.scoped(service.as_str);
        let data_dir: std::path::PathBuf = scoped.parse_or(&["DATA_DIR"], std::path::PathBuf::from("data"))?;
        let db_config = kit::db::DbConfig::from_settings(&scoped, service.as_str, &data_dir)?;
        let db = kit::db::Db::connect(&db_config).await?;
        db.migrate(migrator).await?;
        db.close().await;
        tracing::info!(service = service.as_str, "migrations applied");
    }
    Ok(())
}

/// A one-shot GET with a short timeout, on a small runtime of its own.
pub fn healthcheck(url: &str) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(_) => return std::process::ExitCode::FAILURE,
    };
    let ok = runtime.block_on(async {
        let Ok(client) = reqwest::Client::builder().timeout(Duration::from_secs(3)).no_proxy().build() else {
            return false;
        };
        matches!(client.get(url).send().await, Ok(res) if res.status().is_success())
    });
    if ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}

/// `ordermesh keys rotate`, with the users service's own configuration, so it finds the same
/// key file the service reads.
pub fn rotate_signing_key(settings: &Settings) -> anyhow::Result<()> {
    let port = ServiceName::Users.spec().default_port;
    let config = users::Config::from_settings(settings, IpAddr::V4(Ipv4Addr::LOCALHOST), port)?;
    let life = config.longest_token_life();
    let (path, rotation) = users::keys::rotate(&config.jwt, &config.keys, life).map_err(anyhow::Error::msg)?;
    println!("rotated the token signing keys in {}", path.display());
    println!("  signs from now on: {}", rotation.new_kid);
    for kid in &rotation.kept {
        println!(
            "  still verifies:    {kid} (published until its tokens have expired, {}s after it retired)",
            life.as_secs()
        );
    }
    for kid in &rotation.dropped {
        println!("  dropped:           {kid} (every token it signed has expired)");
    }
    println!(
        "a running users service switches within {}s; the other services fetch the new public key when they first see it",
        config.key_reload.as_secs()
    );
    Ok(())
}
