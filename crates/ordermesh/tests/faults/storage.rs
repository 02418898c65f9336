//! The disk under SQLite: locked by another process, or full.

use std::time::{Duration, Instant};

use serde_json::json;

use super::support::*;
use super::*;

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
