//! What the fault and cluster tests share: private PostgreSQL and Redis servers they can stop
//! and start (NATS comes from `kit::testing`), the platform as real processes (`ordermesh up`,
//! `ordermesh serve`, `ordermesh cluster`), a TCP proxy that can make an upstream hang or
//! crawl, a closed-loop order load that records every answer, and the reconciliation that
//! proves nothing was lost or applied twice.
// Each test file uses its own part of this.
#![allow(dead_code, unused_imports)]

mod backing;
mod fault_proxy;
mod platform;
mod shop;

pub use backing::{Postgres, Redis};
pub use fault_proxy::{Fault, FaultProxy};
pub use platform::{Cluster, ClusterOptions, Serve, Up, tail, test_settings};
pub use shop::*;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use kit::testing::{NatsServer, free_port};

/// The binary the tests start: `ORDERMESH_BIN` when set (a release build, say), else this
/// test build's (what `.ci/run` uses).
pub fn ordermesh_bin() -> PathBuf {
    std::env::var_os("ORDERMESH_BIN").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_BIN_EXE_ordermesh").into())
}

pub fn scratch_dir(kind: &str) -> PathBuf {
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
