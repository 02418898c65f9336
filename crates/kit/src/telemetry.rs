//! Logging and tracing set up once per process: logs human-readable on a terminal, JSON lines
//! otherwise or with `LOG_FORMAT=json`; `LOG_LEVEL` (the seeds' name) or `RUST_LOG` choose
//! what is shown. Spans are exported over OTLP when the standard `OTEL_*` variables say where,
//! and the last `TRACES_KEPT` traces are kept in memory for the admin's Traces page
//! ([`crate::traces`]).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ConfigError, Settings};
use crate::traces::TraceExport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
    /// Where spans are exported, if anywhere ([`TraceExport::from_env`]).
    pub traces: Option<TraceExport>,
    /// How many of the last traces the process keeps in memory (`TRACES_KEPT`; 0: none).
    pub keep_traces: usize,
    /// When traces are only kept (not exported), how many new ones a second are recorded
    /// (`TRACES_PER_SECOND`; 0: every one).
    pub new_traces_per_second: u32,
}

/// New traces recorded a second for the Traces page unless `TRACES_PER_SECOND` says otherwise:
/// every click of a developer, a sample of a load test.
pub const DEFAULT_NEW_TRACES_PER_SECOND: u32 = 20;

/// Traces kept in memory unless `TRACES_KEPT` says otherwise: a few minutes of a developer's
/// clicking (probes and static assets are not traced), typically well under a MB; at most 256
/// spans each.
pub const DEFAULT_KEPT_TRACES: usize = 200;

impl LogConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let s = settings.global();
        let filter = match s.lookup(&["RUST_LOG", "LOG_LEVEL"]) {
            None => "info".to_string(),
            Some((key, value, origin)) => {
                let value = value.trim().to_ascii_lowercase();
                // The seeds say "warn"/"warning"; tracing says "warn".
                let value = if value == "warning" { "warn".to_string() } else { value };
                EnvFilter::try_new(&value).map_err(|e| crate::config::ConfigError::invalid(&key, &value, origin, e))?;
                value
            }
        };
        let format = match s.lookup(&["LOG_FORMAT"]) {
            None => {
                if std::io::stdout().is_terminal() {
                    LogFormat::Pretty
                } else {
                    LogFormat::Json
                }
            }
            Some((key, value, origin)) => match value.trim().to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "pretty" | "text" | "human" => LogFormat::Pretty,
                _ => {
                    return Err(ConfigError::invalid(&key, &value, origin, "expected json or pretty"));
                }
            },
        };
        let keep_traces = s.parse_checked(&["TRACES_KEPT"], DEFAULT_KEPT_TRACES, |n| {
            if *n <= 10_000 { Ok(()) } else { Err("at most 10000 traces are kept".to_string()) }
        })?;
        let new_traces_per_second = s.parse_or(&["TRACES_PER_SECOND"], DEFAULT_NEW_TRACES_PER_SECOND)?;
        Ok(LogConfig { filter, format, traces: None, keep_traces, new_traces_per_second })
    }
}

/// Installs the global subscriber. Calling it twice is harmless (tests do). With trace export
/// configured it must run inside the Tokio runtime (the gRPC exporter is bound to it), and it
/// fails when the exporter cannot be set up.
pub fn init(config: &LogConfig) -> Result<(), String> {
    init_with_writer(config, std::io::stdout)
}

/// [`init`], writing somewhere else than standard output (tests read what was logged).
pub fn init_with_writer<W>(config: &LogConfig, writer: W) -> Result<(), String>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // Quieten chatty dependencies unless asked for explicitly.
    let mut filter = EnvFilter::new(&config.filter);
    if !config.filter.contains("sqlx") {
        filter = filter.add_directive("sqlx=warn".parse().expect("static directive"));
    }
    if !config.filter.contains("hyper") {
        filter = filter.add_directive("hyper=warn".parse().expect("static directive"));
    }
    if !config.filter.contains("opentelemetry") {
        // The SDK's own failures (an unreachable collector) once a batch, not its chatter.
        filter = filter.add_directive("opentelemetry=warn".parse().expect("static directive"));
        filter = filter.add_directive("opentelemetry_sdk=warn".parse().expect("static directive"));
        filter = filter.add_directive("opentelemetry_otlp=warn".parse().expect("static directive"));
    }
    // Each layer filters for itself: `LOG_LEVEL=warn` quietens the logs, not the traces.
    let traces = crate::traces::layer(config.traces.as_ref(), config.keep_traces, config.new_traces_per_second)?
        .map(|layer| layer.with_filter(crate::traces::recorded()));
    let registry = tracing_subscriber::registry().with(traces);
    let _ = match config.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(false)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(writer).compact().with_target(false).with_filter(filter))
            .try_init(),
    };
    Ok(())
}
