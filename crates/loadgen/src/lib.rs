//! `ordermesh load`: a load generator that drives a running ordermesh through its public HTTP
//! API with a weighted mix of shopper journeys, measures what it sees, and then reconciles what
//! the platform was told with what the platform holds.
//!
//! It knows the platform only by its HTTP API (no service crate is a dependency), so it can
//! drive any ordermesh at any base URL.

mod args;
mod driver;
mod html;
mod http;
mod journeys;
mod reconcile;
mod report;
mod setup;
mod stats;

pub use args::{Args, EXAMPLES, Journey, LONG_ABOUT, Mix, RateUnit, parse_duration, parse_mix};
pub use reconcile::{Check, Reconciliation};
pub use report::Report;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

/// Runs a load test as the CLI does: setup, load with a live progress line, summary printed,
/// reports written, reconciliation. Fails (so the process exits non-zero) when the
/// reconciliation found any difference.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let report = execute(args.clone()).await?;
    print!("{}", report::render_text(&report));
    if !args.no_report {
        write_reports(&args, &report)?;
    }
    if !report.reconciliation.ok {
        let failed: Vec<&str> =
            report.reconciliation.checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "reconciliation failed: {} difference(s) in {}",
            report.reconciliation.difference_count(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Writes the JSON and HTML reports where the arguments say.
pub fn write_reports(args: &Args, report: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report).context("serialising the report")?;
    std::fs::write(&args.json, json).with_context(|| format!("writing {}", args.json.display()))?;
    std::fs::write(&args.html, html::render(report)).with_context(|| format!("writing {}", args.html.display()))?;
    eprintln!("reports: {} and {}", args.json.display(), args.html.display());
    Ok(())
}

/// The whole run without printing the summary or writing files: for tests and embedding.
pub async fn execute(args: Args) -> anyhow::Result<Report> {
    args.validate()?;
    let started_at = report::now_rfc3339();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
    let api = http::Api::new(&args.url, args.timeout)?;
    let setup_started = Instant::now();
    eprintln!("setup: {} (run {run_id})", args.url);
    let world = Arc::new(setup::prepare(&api, &args, &run_id).await?);
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    eprintln!(
        "setup: {} dedicated products, {} shoppers ({} registered, {} reused) in {:.1}s",
        world.products.len(),
        world.shoppers.len(),
        world.registered,
        world.shoppers.len() - world.registered,
        setup_seconds
    );
    let refresher = setup::spawn_token_refresher(api.clone(), world.clone());
    let outcome = driver::drive(api.clone(), world.clone(), &args, &run_id).await;
    eprintln!("reconciling what the platform was told with what it holds…");
    let reconciliation = reconcile::reconcile(&api, &world, &outcome.ledger, &args).await;
    refresher.abort();
    if !args.keep_products {
        setup::retire_products(&api, &world).await;
    }
    Ok(report::build(report::Inputs {
        args: &args,
        run_id,
        started_at,
        setup_seconds,
        world: &world,
        outcome: &outcome,
        reconciliation,
    }))
}
