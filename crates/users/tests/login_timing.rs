//! Login timing, on its own: the real users service on 127.0.0.1 port 0 (SQLite, or PostgreSQL
//! when `ORDERMESH_TEST_POSTGRES` is set).

use std::net::{IpAddr, Ipv4Addr};

use kit::testing::{TestData, TestServer};
use reqwest::StatusCode;
use serde_json::json;

/// Issue 16 (a promise no test confirmed): a name with no account and a wrong password take
/// the same time, or the time would tell which names have accounts. Both spend one Argon2
/// verification (a decoy hash for the unknown name). 50 pairs, each an unknown name and a
/// wrong password back to back, so that whatever else the machine does falls on both alike:
/// the pairs' median difference is under 10% of the median attempt, in the best of up to three
/// rounds. A name answered without the decoy verification, or with a cheaper one, shows as a
/// difference of 50% and more in every round; on a busy 2-core machine the honest difference
/// has measured up to ±6% and once 16%, so a single round failed `cargo test` now and then
/// without a leak. In a test binary of its
/// own, so that `cargo test` runs it with nothing else on the machine's cores (other users
/// tests hash passwords in parallel), and alone in nextest's CI profile (.config/nextest.toml).
#[tokio::test]
async fn an_unknown_name_and_a_wrong_password_take_the_same_time() {
    // Limits out of the way: this measures the verification, not the throttle's delays.
    let (data, settings) = TestData::new("users");
    let settings =
        settings.with("LOGIN_MAX_FAILURES_PER_ACCOUNT", "1000").with("LOGIN_MAX_FAILURES_PER_ADDRESS", "1000");
    let config = users::Config::from_settings(&settings, IpAddr::V4(Ipv4Addr::LOCALHOST), 0).expect("config");
    let server = TestServer::start(users::router(users::AppState::start(config).await.expect("users starts"))).await;
    let http = reqwest::Client::new();
    let attempt = |username: String| {
        let (http, url) = (&http, server.url("/users/login"));
        async move {
            let started = std::time::Instant::now();
            let body = json!({"username": username, "password": "not-it-9"});
            let (status, _) = kit::testing::send_json(http, reqwest::Method::POST, &url, None, Some(&body)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            started.elapsed().as_secs_f64()
        }
    };
    attempt("warm-up".into()).await; // the decoy hash is made on first use
    // A leak shows in every round; a busy machine (CI's test step once measured 16% with no
    // leak) only in some. So up to three rounds, and the best of them is held to the bound.
    let mut best = f64::INFINITY;
    for round in 1..=3 {
        let (difference, wrong) = round_of_pairs(&attempt).await;
        let gap = difference.abs() / wrong;
        println!(
            "login timing, round {round}: wrong password median {:.2} ms; unknown name minus wrong password, median of 50 pairs: {:+.2} ms ({:.1}%)",
            wrong * 1e3,
            difference * 1e3,
            gap * 100.0
        );
        best = best.min(gap);
        if best < 0.10 {
            break;
        }
    }
    assert!(
        best < 0.10,
        "in each of three rounds an unknown name took {:.1}% or more longer than a wrong password",
        best * 100.0
    );
    data.cleanup().await;
}

/// 50 pairs, each an unknown name and a wrong password back to back: the pairs' median
/// difference and the median wrong-password attempt, in seconds. Whichever of a pair goes
/// first is a little slower, so the order alternates and the two orders' median differences
/// are averaged: the order effect cancels out.
async fn round_of_pairs<F, Fut>(attempt: &F) -> (f64, f64)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let (mut unknown_first, mut wrong_first, mut wrong) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..50 {
        if i % 2 == 0 {
            let u = attempt(format!("nobody-{i}")).await;
            let w = attempt("alice".into()).await;
            unknown_first.push(u - w);
            wrong.push(w);
        } else {
            let w = attempt("alice".into()).await;
            let u = attempt(format!("nobody-{i}")).await;
            wrong_first.push(u - w);
            wrong.push(w);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    ((median(unknown_first) + median(wrong_first)) / 2.0, median(wrong))
}
