//! The fault suite: ordermesh under load while its parts die, hang, crawl, fill up or lock,
//! each test on servers of its own (PostgreSQL, Redis, NATS started here on free ports), with
//! the real binary as separate processes. Every scenario prints its figures (`FAULT …`) and
//! ends with a reconciliation: every acknowledged order exists exactly once and whole, stock
//! moved by exactly what the orders hold with nothing left reserved, and each order's event was
//! applied exactly once.
//!
//! They are ignored unless asked for (`cargo test -p ordermesh --test faults -- --ignored
//! --test-threads=1`; `.ci/run` runs them one at a time against its test build); the figures
//! and what each promise means are in docs/reliability.md.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

fn secs_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

async fn health(http: &reqwest::Client, gateway: &str) -> Value {
    match http.get(format!("{gateway}/health")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn healthy_instances(health: &Value, service: &str) -> usize {
    health["upstreams"][service]["instances"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["healthy"] == true).count())
        .unwrap_or(0)
}

/// Orders and catalog instances SIGKILLed mid-load on the multi-instance topology; the cluster
/// restarts them. Fewer than 0.1% of orders may fail, and the platform must agree with every
/// answer it gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn instances_killed_mid_load_come_back_and_nothing_is_lost() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let nats = NatsServer::start();
    let cluster = Cluster::start(ClusterOptions {
        postgres: &pg.url(),
        redis: Some(&redis.url()),
        nats: Some(&nats.url()),
        isolate: false,
        restart: true,
        extra: vec![],
    });
    let gateways = cluster.gateways();
    let shop = Shop::open(&gateways[0], 1_000_000).await;
    let load = shop.order_load(&gateways, 8, 1);
    load.wait_for(500, Duration::from_secs(60)).await;

    let mut recoveries = serde_json::Map::new();
    for victim in ["orders-1", "catalog-1"] {
        let service = victim.split('-').next().unwrap();
        let restarts_before = cluster.instance(victim)["restarts"].as_u64().unwrap();
        cluster.kill(victim);
        let killed = Instant::now();
        // Back when the cluster restarted it and both gateways route to it again.
        let deadline = killed + Duration::from_secs(60);
        loop {
            let restarted = cluster.instance(victim)["restarts"].as_u64().unwrap() > restarts_before;
            let mut routed = restarted;
            for g in &gateways {
                routed &= healthy_instances(&health(&shop.http, g).await, service) == 2;
            }
            if routed {
                break;
            }
            assert!(Instant::now() < deadline, "{victim} was not back within a minute");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        recoveries.insert(format!("{victim}_back_in_ms"), json!(ms(killed.elapsed())));
        load.wait_for(1500, Duration::from_secs(60)).await;
    }
    let answers = load.finish().await;
    let reconciliation = shop.reconcile(&answers, Duration::from_secs(60)).await;
    let (sent, failed) = (answers.sent(), answers.failed());
    let mut figures = json!({
        "orders_sent": sent,
        "failed": failed,
        "failed_by_status": answers.failures_by_status(),
        "failed_percent": 100.0 * failed as f64 / sent as f64,
        "orders_in_platform": reconciliation.orders_in_platform,
        "acknowledged": reconciliation.acknowledged,
        "events_lost": reconciliation.events_lost,
        "events_applied_twice": reconciliation.events_applied_twice,
        "stock_reserved_after_ttl": reconciliation.stock_reserved,
    });
    figures.as_object_mut().unwrap().extend(recoveries);
    report("instance SIGKILL + restart (cluster, PostgreSQL, NATS)", figures);
    for f in answers.failures() {
        eprintln!("  failed: {} {:?} {:?}", f.status, f.at, f.problem);
    }
    reconciliation.assert_clean("instances killed");
    assert!(failed * 1000 < sent, "{failed} of {sent} orders failed: the target is under 0.1%");
}

/// `ordermesh up` itself SIGKILLed mid-write and started again on the same SQLite files: the
/// requests sent while it was down fail, nothing it acknowledged is lost, nothing half-written
/// or still reserved once the reservation timeout has passed, and the files are intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn the_whole_platform_killed_mid_write_restarts_consistent() {
    let mut up = Up::start(&[]);
    let shop = Shop::open(&up.gateway, 1_000_000).await;
    let load = shop.order_load(std::slice::from_ref(&up.gateway), 6, 1);
    load.wait_for(400, Duration::from_secs(60)).await;
    let killed = load.now();
    up.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restart = Instant::now();
    up.resume();
    let restart_ms = ms(restart.elapsed());
    load.wait_for(600, Duration::from_secs(60)).await;
    let answers = load.finish().await;
    let reconciliation = shop.reconcile(&answers, Duration::from_secs(30)).await;
    let integrity = sqlite_integrity(&up.data_dir).await;
    report(
        "ordermesh up SIGKILL + restart (SQLite)",
        json!({
            "orders_sent": answers.sent(),
            "failed_while_down": answers.failed(),
            "failed_by_status": answers.failures_by_status(),
            "restart_to_ready_ms": restart_ms,
            "recovery_ms": ms(answers.recovery_after(killed)),
            "orders_in_platform": reconciliation.orders_in_platform,
            "acknowledged": reconciliation.acknowledged,
            "half_written": reconciliation.half_written,
            "stock_reserved_after_ttl": reconciliation.stock_reserved,
            "events_lost": reconciliation.events_lost,
            "integrity_check": integrity,
        }),
    );
    reconciliation.assert_clean("platform killed");
    assert_eq!(integrity, "ok");
    // Only the requests that met a dead platform failed: no answer at all.
    for f in answers.failures() {
        // In flight when the process died, or sent while it was down.
        assert!(f.at + f.latency >= killed, "a failure before the kill: {f:?}");
        assert_eq!(f.status, 0, "a failure that was not the platform being down: {f:?}");
    }
}

/// `ordermesh up` stopped with SIGTERM (as an orchestrator stops it) while 200 orders are in
/// flight, then started again: every order it had taken is finished and answered within the
/// shutdown grace, a request that came too late is refused before it starts (no connection),
/// no order exists whose answer never left, and the reconciliation is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn a_sigterm_under_load_finishes_the_orders_in_flight_and_loses_none() {
    let mut up = Up::start(&[("SHUTDOWN_GRACE", "10s".into())]);
    let shop = Shop::open(&up.gateway, 1_000_000).await;
    let load = shop.order_load(std::slice::from_ref(&up.gateway), 200, 1);
    load.wait_for(600, Duration::from_secs(60)).await;
    let signalled = load.now();
    let stopping = Instant::now();
    let exit = tokio::task::block_in_place(|| up.terminate(Duration::from_secs(30)));
    let stopped_ms = ms(stopping.elapsed());
    let after_stop = load.snapshot();
    up.resume();
    load.wait_for(600, Duration::from_secs(60)).await;
    let answers = load.finish().await;
    let reconciliation = shop.reconcile(&answers, Duration::from_secs(30)).await;
    let in_flight: Vec<_> =
        after_stop.outcomes.iter().filter(|o| o.at < signalled && o.at + o.latency >= signalled).collect();
    let failures = answers.failures();
    // No answer at all: refused (no connection), or a kept-alive connection closed, unread, by
    // the stopping server. Whether such a request was left alone shows in the reconciliation.
    let refused = failures.iter().filter(|f| f.problem.as_deref().unwrap_or("").starts_with(support::REFUSED)).count();
    let answered_failures: Vec<_> = failures.iter().filter(|f| f.status != 0).collect();
    report(
        "ordermesh up SIGTERM under load (SQLite)",
        json!({
            "orders_sent": answers.sent(),
            "in_flight_at_sigterm": in_flight.len(),
            "in_flight_finished_201": in_flight.iter().filter(|o| o.status == 201).count(),
            "exit": exit.map(|s| s.to_string()),
            "stopped_ms": stopped_ms,
            "no_answer_refused": refused,
            "no_answer_closed_unread": failures.len() - refused - answered_failures.len(),
            "failed_with_an_answer": answered_failures.len(),
            "orders_in_platform": reconciliation.orders_in_platform,
            "acknowledged": reconciliation.acknowledged,
            "half_written": reconciliation.half_written,
            "stock_reserved_after_ttl": reconciliation.stock_reserved,
            "events_lost": reconciliation.events_lost,
        }),
    );
    assert!(exit.is_some_and(|s| s.success()), "ordermesh up did not exit by itself, cleanly: {exit:?}");
    assert!(in_flight.len() >= 100, "only {} orders were in flight at the signal", in_flight.len());
    // A request the platform started is finished: none failed half way (a 503 from a service
    // already gone, say), and none was written without its answer leaving.
    assert!(
        answered_failures.is_empty(),
        "requests started and then failed: {:?}",
        &answered_failures[..answered_failures.len().min(5)]
    );
    reconciliation.assert_clean("SIGTERM");
    assert_eq!(
        reconciliation.orders_in_platform, reconciliation.acknowledged,
        "an order was written whose answer never left"
    );
}

/// The key id a token was signed with.
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap_or_default();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap_or_default();
    serde_json::from_slice::<Value>(&header).unwrap_or(Value::Null)["kid"].as_str().unwrap_or_default().to_string()
}

/// `ordermesh keys rotate` run beside the running platform, as an operator runs it; the new
/// key's id once the users service publishes it.
async fn rotate_and_wait_for_publication(up: &Up, http: &reqwest::Client) -> String {
    let out = tokio::task::block_in_place(|| up.command(&["keys", "rotate"]));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "keys rotate: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let kid = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("signs from now on:"))
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|| panic!("no new key id in: {stdout}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let jwks: Value =
            http.get(format!("{}/.well-known/jwks.json", up.users)).send().await.unwrap().json().await.unwrap();
        if jwks["keys"].as_array().into_iter().flatten().any(|k| k["kid"] == kid.as_str()) {
            return kid;
        }
        assert!(Instant::now() < deadline, "the users service did not publish {kid}: {jwks}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The token signing key rotated twice, seconds apart, while orders flow: no order fails; the
/// customer's load switches to a token from each new key as soon as it is published, and that
/// token works at once at the gateway and on each service's own port (which fetch the new
/// public key when they first see it, the second time within their JWKS fetch limit); a token
/// the first key signed keeps working after both rotations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn the_signing_key_rotated_twice_under_load_fails_no_order() {
    use std::sync::{Arc, RwLock};
    let up = Up::start(&[]);
    let shop = Shop::open(&up.gateway, 1_000_000).await;
    let token = Arc::new(RwLock::new(shop.customer.clone()));
    let load = {
        let (token, gateway, product_id) = (token.clone(), up.gateway.clone(), shop.product_id);
        Load::start(&shop.http, 16, None, 201, move |http, _, key| {
            http.post(format!("{gateway}/api/orders"))
                .bearer_auth(token.read().unwrap().as_str())
                .header("idempotency-key", key)
                .json(&json!({"items": [{"product_id": product_id, "quantity": 1}]}))
        })
    };
    load.wait_for(100, Duration::from_secs(60)).await;
    let mut kids = vec![kid_of(&shop.customer)];
    let mut rotated_at = Vec::new();
    for _ in 0..2 {
        let kid = rotate_and_wait_for_publication(&up, &shop.http).await;
        rotated_at.push(load.now());
        let fresh = login(&shop.http, &up.gateway, &shop.customer_name, Shop::PASSWORD).await;
        assert_eq!(kid_of(&fresh), kid, "the users service signs with the rotated key once it publishes it");
        *token.write().unwrap() = fresh.clone();
        // Each service checks the token itself, with the key it has just learnt of.
        let at_orders = shop.http.get(format!("{}/orders", up.orders)).bearer_auth(&fresh).send().await.unwrap();
        assert_eq!(at_orders.status(), 200, "the orders service refused a token from the new key");
        let at_users = shop.http.get(format!("{}/users/me", up.users)).bearer_auth(&fresh).send().await.unwrap();
        assert_eq!(at_users.status(), 200, "the users service refused a token from its own new key");
        // A customer may not create products: 403 means the token was good and only the
        // permission was missing; 401 would mean the catalog did not know the key.
        let at_catalog = shop
            .http
            .post(format!("{}/products", up.catalog))
            .bearer_auth(&fresh)
            .json(&json!({"name": "x", "category": "x", "price": "1.00"}))
            .send()
            .await
            .unwrap();
        assert_eq!(at_catalog.status(), 403, "the catalog did not accept a token from the new key");
        load.wait_for(100, Duration::from_secs(60)).await;
        kids.push(kid);
    }
    let first_key_still_works =
        shop.http.get(format!("{}/api/orders", up.gateway)).bearer_auth(&shop.customer).send().await.unwrap().status();
    let answers = load.finish().await;
    let reconciliation = shop.reconcile(&answers, Duration::from_secs(30)).await;
    report(
        "signing key rotated twice under load (SQLite)",
        json!({
            "orders_sent": answers.sent(),
            "failed": answers.failed(),
            "failures_by_status": answers.failures_by_status(),
            "keys": kids,
            "rotated_at_ms": rotated_at.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "p99_ms_after_rotations": percentile(99.0, answers.between(rotated_at[0], answers.outcomes.last().map(|o| o.at).unwrap_or_default())).map(ms),
            "first_key_token_after_both": first_key_still_works.as_u16(),
        }),
    );
    assert_eq!(kids.iter().collect::<std::collections::HashSet<_>>().len(), 3, "three distinct keys: {kids:?}");
    assert!(answers.failures().is_empty(), "orders failed across the rotation: {:?}", answers.failures_by_status());
    assert_eq!(first_key_still_works, 200, "a token from the retired first key was refused");
    reconciliation.assert_clean("key rotation");
}

/// `PRAGMA integrity_check` on each service's SQLite file ("ok" when all are).
async fn sqlite_integrity(dir: &std::path::Path) -> String {
    use sqlx::ConnectOptions;
    let mut verdicts = Vec::new();
    for service in ["users", "catalog", "orders"] {
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join(format!("{service}.db"))).read_only(true);
        let mut conn = options.connect().await.unwrap();
        let verdict: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.unwrap();
        if verdict != "ok" {
            verdicts.push(format!("{service}: {verdict}"));
        }
    }
    if verdicts.is_empty() { "ok".into() } else { verdicts.join("; ") }
}

/// A catalog that answers slowly, then too slowly, then not at all, behind a gateway of its
/// own: timeouts fire, the breaker opens and fails fast, and traffic comes back when it heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn a_hanging_or_crawling_upstream_trips_the_breaker_and_traffic_returns() {
    let up = Up::start(&[]);
    let proxy = FaultProxy::start(&up.catalog).await;
    let timeout = Duration::from_millis(500);
    let gateway = Serve::start(
        "gateway",
        &[
            ("USER_SERVICE_URL", up.users.clone()),
            ("ORDER_SERVICE_URL", up.orders.clone()),
            ("CATALOG_SERVICE_URL", proxy.url.clone()),
            ("UPSTREAM_TIMEOUT", format!("{}ms", timeout.as_millis())),
            ("BREAKER_MIN_REQUESTS", "5".into()),
            ("BREAKER_OPEN_FOR", "1s".into()),
        ],
    );
    let shop = Shop::open(&up.gateway, 1_000).await;
    let (url, token) = (format!("{}/api/products/{}", gateway.url, shop.product_id), shop.customer.clone());
    // 8 clients, each a request every 10 ms at most: a steady ~800 requests/s.
    let load = Load::start(&shop.http, 8, Some(Duration::from_millis(10)), 200, move |http, _, _| {
        http.get(&url).bearer_auth(&token)
    });
    let phase = |name: &'static str, fault: Fault, length: Duration| {
        let (proxy, load) = (&proxy, &load);
        async move {
            proxy.set(fault);
            let from = load.now();
            tokio::time::sleep(length).await;
            (name, from, load.now())
        }
    };
    let phases = vec![
        phase("healthy", Fault::Pass, Duration::from_secs(2)).await,
        phase("slow_200ms", Fault::Slow(Duration::from_millis(200)), Duration::from_secs(3)).await,
        phase("slow_2s", Fault::Slow(Duration::from_secs(2)), Duration::from_secs(5)).await,
        phase("healed_1", Fault::Pass, Duration::from_secs(5)).await,
        phase("hang", Fault::Hang, Duration::from_secs(5)).await,
        phase("healed_2", Fault::Pass, Duration::from_secs(5)).await,
    ];
    let answers = load.finish().await;
    // A fast failure is a 503 from the open breaker. A request that first waited out the
    // upstream timeout and then met the breaker on its retry also ends in 503, but it is a
    // timeout, not a fast failure, and is judged with the timeouts below.
    let fast_failure = |o: &&Outcome| o.status == 503 && o.latency < timeout;
    let mut figures = serde_json::Map::new();
    for (name, from, to) in &phases {
        let during = answers.between(*from, *to);
        let fast_failures: Vec<_> = during.iter().copied().filter(fast_failure).collect();
        figures.insert(
            name.to_string(),
            json!({
                "requests": during.len(),
                "by_status": by_status(during.iter().copied()),
                "p50_ms": percentile(50.0, during.iter().copied()).map(ms),
                "p99_ms": percentile(99.0, during.iter().copied()).map(ms),
                "fast_failures_p99_ms": percentile(99.0, fast_failures.iter().copied()).map(|d| d.as_secs_f64() * 1e3),
                "waited_out_the_timeout": during.iter().filter(|o| o.latency >= timeout).count(),
                "recovery_ms": ms(answers.recovery_within(*from, *to)),
            }),
        );
    }
    report("hanging and slow upstream (gateway breaker)", Value::Object(figures.clone()));

    let phase_answers = |name: &str| {
        let (_, from, to) = phases.iter().find(|(n, _, _)| *n == name).unwrap();
        answers.between(*from, *to)
    };
    // Healthy and merely slow: everything served, the slow ones slower than the delay.
    for name in ["healthy", "slow_200ms"] {
        let during = phase_answers(name);
        assert!(during.iter().all(|o| o.status == 200), "{name}: {:?}", by_status(during.iter().copied()));
    }
    assert!(percentile(50.0, phase_answers("slow_200ms")).unwrap() >= Duration::from_millis(200));
    // Too slow, and hung: the first requests wait out the timeout (504, or 503 when their retry
    // meets the breaker that their timeouts opened), then the breaker fails the rest fast (503).
    for name in ["slow_2s", "hang"] {
        let during = phase_answers(name);
        let statuses = by_status(during.iter().copied());
        let timed_out = during.iter().filter(|o| o.status >= 503 && o.latency >= timeout).count();
        assert!(timed_out > 0, "{name}: no timeout fired: {statuses:?}");
        let fast: Vec<_> = during.iter().copied().filter(fast_failure).collect();
        assert!(fast.len() > during.len() / 2, "{name}: the breaker did not take over: {statuses:?}");
        // Failing fast means not waiting on the upstream at all: a refusal costs about what a
        // served request costs, far below the timeout. The bound is a twentieth of the timeout
        // because this suite runs a debug build beside its load on two shared cores, where one
        // descheduling is a few milliseconds (the last failing run of a 5 ms bound saw 5.19 ms
        // while healthy requests' p99 was 8 ms); a request that waited on the upstream is at
        // least the timeout, twenty times more.
        let p99 = percentile(99.0, fast.iter().copied()).unwrap();
        assert!(p99 < timeout / 20, "{name}: fast failures' p99 is {p99:?}");
        // A timed-out GET may be retried (within the retry budget): at most three attempts.
        assert!(
            during.iter().filter(|o| o.status >= 503).all(|o| o.latency < timeout * 3 + Duration::from_millis(500)),
            "{name}: a timeout took far longer than {timeout:?}"
        );
        assert!(during.iter().all(|o| [200, 503, 504].contains(&o.status)), "{name}: {statuses:?}");
    }
    // Healed: traffic returns, within the breaker's open time and a health check.
    for name in ["healed_1", "healed_2"] {
        let recovery = figures[name]["recovery_ms"].as_u64().unwrap();
        assert!(recovery < 4000, "{name}: traffic took {recovery} ms to return");
        let (_, from, to) = *phases.iter().find(|(n, _, _)| *n == name).unwrap();
        // What was still in flight when the next fault began is that fault's.
        let tail: Vec<_> = phase_answers(name)
            .into_iter()
            .filter(|o| o.at > from + Duration::from_secs(4) && o.at + o.latency < to)
            .collect();
        assert!(tail.iter().all(|o| o.status == 200), "{name}: still failing at its end");
    }
}

/// PostgreSQL crashes under load and comes back: requests meanwhile fail cleanly (503), the
/// services reconnect by themselves, and the data agrees with every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn postgres_restarted_under_load_services_reconnect_and_nothing_is_corrupted() {
    let pg = Postgres::start();
    let up = Up::start(&[("DATABASE_URL", pg.url()), ("DATABASE_ACQUIRE_TIMEOUT", "2s".into())]);
    let shop = Shop::open(&up.gateway, 1_000_000).await;
    let load = shop.order_load(std::slice::from_ref(&up.gateway), 6, 1);
    load.wait_for(400, Duration::from_secs(60)).await;
    pg.crash();
    let crashed = load.now();
    let outage = secs_from_env("FAULT_POSTGRES_OUTAGE_SECS", 5);
    tokio::time::sleep(outage).await;
    pg.resume();
    let resumed = load.now();
    load.wait_for(600, Duration::from_secs(60)).await;
    let answers = load.finish().await;
    let reconciliation = shop.reconcile(&answers, Duration::from_secs(30)).await;
    report(
        "PostgreSQL crash + restart under load (ordermesh up)",
        json!({
            "orders_sent": answers.sent(),
            "failed": answers.failed(),
            "failed_by_status": answers.failures_by_status(),
            "outage_ms": ms(resumed - crashed),
            "recovery_after_restart_ms": ms(answers.recovery_after(resumed)),
            "orders_in_platform": reconciliation.orders_in_platform,
            "acknowledged": reconciliation.acknowledged,
            "events_lost": reconciliation.events_lost,
            "stock_reserved_after_ttl": reconciliation.stock_reserved,
        }),
    );
    reconciliation.assert_clean("PostgreSQL restarted");
    for f in answers.failures() {
        assert_eq!(f.status, 503, "a failure during the outage that was not a clean 503: {f:?}");
    }
    assert!(answers.recovery_after(resumed) < Duration::from_secs(10), "the services took too long to reconnect");
}

/// NATS down for 30 s (FAULT_NATS_OUTAGE_SECS) under load: orders keep being taken, their
/// events wait in the outbox and are all delivered after, none applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn nats_stopped_under_load_orders_continue_and_every_event_arrives_once() {
    let mut nats = NatsServer::start();
    let up = Up::start(&[("NATS_URL", nats.url())]);
    let shop = Shop::open(&up.gateway, 1_000_000).await;
    // Paced: the outage lasts long, and the point is continuity, not throughput.
    let (gateway, token, product_id) = (up.gateway.clone(), shop.customer.clone(), shop.product_id);
    let load = Load::start(&shop.http, 4, Some(Duration::from_millis(20)), 201, move |http, _, key| {
        http.post(format!("{gateway}/api/orders"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&json!({"items": [{"product_id": product_id, "quantity": 1}]}))
    });
    load.wait_for(200, Duration::from_secs(60)).await;
    nats.stop();
    let outage = secs_from_env("FAULT_NATS_OUTAGE_SECS", 30);
    let stopped_at = load.now();
    tokio::time::sleep(outage).await;
    let during_outage = load.snapshot().between(stopped_at, load.now()).len();
    nats.resume();
    let resumed = Instant::now();
    load.wait_for(200, Duration::from_secs(60)).await;
    let answers = load.finish().await;
    let reconciliation = shop.reconcile(&answers, Duration::from_secs(60)).await;
    let drained_ms = ms(resumed.elapsed());
    report(
        "NATS stopped under load (ordermesh up)",
        json!({
            "outage_s": outage.as_secs(),
            "orders_sent": answers.sent(),
            "orders_during_outage": during_outage,
            "failed": answers.failed(),
            "failed_by_status": answers.failures_by_status(),
            "orders_in_platform": reconciliation.orders_in_platform,
            "events_lost": reconciliation.events_lost,
            "events_applied_twice": reconciliation.events_applied_twice,
            "all_events_applied_within_ms_of_restart": drained_ms,
        }),
    );
    reconciliation.assert_clean("NATS stopped");
    assert_eq!(answers.failed(), 0, "orders failed while NATS was down: {:?}", answers.failures_by_status());
    assert!(during_outage > 100, "only {during_outage} orders were taken during the outage");
}

/// Redis stopped: the gateway goes on limiting with its own counters and keeps serving; when
/// Redis is back the limits are shared again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn redis_stopped_the_gateway_limits_locally_and_keeps_serving() {
    let mut redis = Redis::start();
    let up = Up::start(&[
        ("REDIS_URL", redis.url()),
        // 20 at once, then one a second, per client address (the test is one client).
        ("RATE_LIMIT", "60".into()),
        ("RATE_LIMIT_BURST", "20".into()),
    ]);
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let shared = |h: &Value| h["rate_limits_shared"].as_bool();
    let burst = |http: reqwest::Client, url: String| async move {
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        let started = Instant::now();
        for _ in 0..40 {
            let s = http.get(format!("{url}/api/products?per_page=5")).send().await.map(|r| r.status().as_u16());
            *statuses.entry(s.unwrap_or(0)).or_default() += 1;
        }
        (statuses, started.elapsed())
    };
    assert_eq!(shared(&health(&http, &up.gateway).await), Some(true));
    let (with_redis, _) = burst(http.clone(), up.gateway.clone()).await;
    redis.stop();
    // The first limited request finds Redis gone and the gateway counts locally from then on,
    // without failing that request or making the next ones wait on Redis.
    let (without_redis, took) = burst(http.clone(), up.gateway.clone()).await;
    let h = health(&http, &up.gateway).await;
    assert_eq!(shared(&h), Some(false), "{h}");
    assert!(took < Duration::from_secs(2), "40 requests took {took:?} with Redis down: they waited on it");
    redis.resume();
    let resumed = Instant::now();
    loop {
        // A limited request is what tries Redis again.
        let _ = http.get(format!("{}/api/products?per_page=1", up.gateway)).send().await;
        if shared(&health(&http, &up.gateway).await) == Some(true) {
            break;
        }
        assert!(resumed.elapsed() < Duration::from_secs(30), "the gateway never went back to Redis");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shared_again_ms = ms(resumed.elapsed());
    report(
        "Redis stopped (gateway rate limits)",
        json!({
            "with_redis": with_redis,
            "redis_down": without_redis,
            "redis_down_40_requests_ms": ms(took),
            "shared_again_after_restart_ms": shared_again_ms,
        }),
    );
    for (name, statuses) in [("with Redis", &with_redis), ("Redis down", &without_redis)] {
        let ok = statuses.get(&200).copied().unwrap_or(0);
        let limited = statuses.get(&429).copied().unwrap_or(0);
        assert_eq!(ok + limited, 40, "{name}: only 200 and 429 expected: {statuses:?}");
        assert!((18..=24).contains(&ok), "{name}: the burst of 20 was not enforced: {statuses:?}");
    }
}

/// The orders database locked by another process for a while: orders fail with a clear 503
/// meanwhile, reads go on, and everything recovers with the files intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn a_locked_sqlite_file_gives_clear_errors_and_recovers() {
    let up = Up::start(&[("SQLITE_BUSY_TIMEOUT", "500ms".into())]);
    let shop = Shop::open(&up.gateway, 1_000_000).await;
    let load = shop.order_load(std::slice::from_ref(&up.gateway), 4, 1);
    load.wait_for(200, Duration::from_secs(60)).await;
    let lock_for = secs_from_env("FAULT_SQLITE_LOCK_SECS", 4);
    let locked_at = load.now();
    {
        use sqlx::{ConnectOptions, Connection};
        let mut conn =
            sqlx::sqlite::SqliteConnectOptions::new().filename(up.data_dir.join("orders.db")).connect().await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await.unwrap();
        // Reads are not blocked (WAL): a customer can still look at their orders.
        let started = Instant::now();
        let mut reads = 0;
        while started.elapsed() < lock_for {
            let res = shop.http.get(format!("{}/api/orders", up.gateway)).bearer_auth(&shop.customer).send().await;
            assert_eq!(res.unwrap().status(), 200, "reading orders while the file is locked");
            reads += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        assert!(reads > 10);
    }
    let released = load.now();
    load.wait_for(300, Duration::from_secs(60)).await;
    let answers = load.finish().await;
    let reconciliation = shop.reconcile(&answers, Duration::from_secs(30)).await;
    let integrity = sqlite_integrity(&up.data_dir).await;
    let details: std::collections::BTreeSet<String> =
        answers.failures().iter().filter_map(|f| f.problem.clone()).collect();
    // An order is written only once the lock is gone: one answered 201 well inside the lock
    // would mean the test locked something the service does not write.
    let settled = |o: &&support::Outcome| o.at + o.latency;
    let written_while_locked = answers
        .outcomes
        .iter()
        .filter(|o| o.status == 201 && settled(o) > locked_at + Duration::from_secs(1) && settled(o) < released)
        .count();
    let held_up = answers.outcomes.iter().filter(|o| o.at < released && settled(o) > locked_at).collect::<Vec<_>>();
    report(
        "SQLite file locked by another process (ordermesh up)",
        json!({
            "locked_ms": ms(released - locked_at),
            "orders_sent": answers.sent(),
            "failed": answers.failed(),
            "failed_by_status": answers.failures_by_status(),
            "failure_details": details,
            "orders_in_flight_during_lock": held_up.len(),
            "slowest_during_lock_ms": held_up.iter().map(|o| ms(o.latency)).max(),
            "written_while_locked": written_while_locked,
            "recovery_after_unlock_ms": ms(answers.recovery_after(released)),
            "integrity_check": integrity,
        }),
    );
    reconciliation.assert_clean("SQLite locked");
    assert_eq!(integrity, "ok");
    assert_eq!(written_while_locked, 0, "orders were written while the file was locked: the lock held nothing");
    assert!(!held_up.is_empty(), "no order was in flight while the file was locked");
    // A write that cannot get the lock in SQLITE_BUSY_TIMEOUT is a clean 503, which the gateway
    // may retry (the order carries an Idempotency-Key); what reaches the client is 201 or 503.
    for f in answers.failures() {
        assert_eq!(f.status, 503, "not a clean 503: {f:?}");
        assert!(
            f.at + f.latency >= locked_at && f.at <= released + Duration::from_secs(1),
            "a failure outside the lock: {f:?}"
        );
    }
    assert!(answers.recovery_after(released) < Duration::from_secs(3));
}

/// A small disk (tmpfs) filled to the last byte under load: orders fail with a clear 503,
/// reads go on, nothing is corrupted, and orders flow again once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault suite: kills and starts servers for minutes; .ci/run runs it"]
async fn a_full_disk_gives_clear_errors_and_recovers_when_space_returns() {
    let disk = SmallDisk::mount(64);
    let up = Up::start_in(disk.path.clone(), false, &[]);
    let shop = Shop::open(&up.gateway, 1_000_000).await;
    let load = shop.order_load(std::slice::from_ref(&up.gateway), 4, 1);
    load.wait_for(200, Duration::from_secs(60)).await;
    let filled_at = load.now();
    let ballast = disk.fill();
    let full_for = secs_from_env("FAULT_DISK_FULL_SECS", 4);
    tokio::time::sleep(full_for).await;
    // Reads still work on a full disk.
    let product = shop.http.get(format!("{}/api/products/{}", up.gateway, shop.product_id)).send().await.unwrap();
    assert_eq!(product.status(), 200, "reading a product on a full disk");
    std::fs::remove_file(&ballast).unwrap();
    let freed = load.now();
    load.wait_for(300, Duration::from_secs(60)).await;
    let answers = load.finish().await;
    let reconciliation = shop.reconcile(&answers, Duration::from_secs(30)).await;
    let integrity = sqlite_integrity(&up.data_dir).await;
    let details: std::collections::BTreeSet<String> =
        answers.failures().iter().filter_map(|f| f.problem.clone()).collect();
    report(
        "disk full (tmpfs, ordermesh up on SQLite)",
        json!({
            "full_ms": ms(freed - filled_at),
            "orders_sent": answers.sent(),
            "failed": answers.failed(),
            "failed_by_status": answers.failures_by_status(),
            "failure_details": details,
            "recovery_after_space_freed_ms": ms(answers.recovery_after(freed)),
            "integrity_check": integrity,
        }),
    );
    reconciliation.assert_clean("disk full");
    assert_eq!(integrity, "ok");
    assert!(answers.failed() > 0, "a full disk failed no order: the test did not fill what the service writes");
    for f in answers.failures() {
        assert_eq!(f.status, 503, "not a clean 503: {f:?}");
    }
    assert!(answers.recovery_after(freed) < Duration::from_secs(3));
    drop(up);
}

/// A tmpfs of a few megabytes, mounted for one test.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let path = std::env::temp_dir().join(format!("ordermesh-disk-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a small tmpfs needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { path }
    }

    /// Fills what is left with one file, to the last byte; returns it.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let ballast = self.path.join("ballast");
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut size = chunk.len();
        loop {
            match f.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) if size > 1 => size /= 2,
                Err(_) => break,
            }
        }
        let _ = f.sync_all();
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
