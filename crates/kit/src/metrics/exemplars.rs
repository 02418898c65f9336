//! Exemplars: for each latency bucket of a histogram, the trace of the latest request that fell
//! in it, so a dashboard goes from a slow bucket straight to a trace. The Prometheus text
//! format has no place for them; OpenMetrics does, so a scraper that asks for
//! `application/openmetrics-text` (Prometheus does, with exemplar storage on) gets the
//! exposition in that format with `# {trace_id="…"} value timestamp` on the bucket lines.
//! `metrics-exporter-prometheus` renders the text format only; the conversion here is the
//! small part it lacks.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The content type of the OpenMetrics exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone)]
struct Exemplar {
    trace_id: String,
    value: f64,
    at: f64,
}

/// The latest exemplar per histogram, label set and bucket.
#[derive(Debug, Default)]
pub(crate) struct Exemplars {
    latest: Mutex<HashMap<Key, Exemplar>>,
}

/// Metric name, its labels in canonical form (sorted, without `le`), bucket index.
type Key = (String, String, usize);

impl Exemplars {
    pub(crate) fn record(&self, metric: &str, labels: &[(&str, &str)], buckets: &[f64], value: f64, trace_id: &str) {
        let bucket = buckets.iter().position(|b| value <= *b).unwrap_or(buckets.len());
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
        let mut owned: Vec<(&str, &str)> = labels.to_vec();
        owned.sort_unstable();
        let key = (metric.to_string(), canonical(owned.into_iter()), bucket);
        let exemplar = Exemplar { trace_id: trace_id.to_string(), value, at };
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).insert(key, exemplar);
    }

    /// The Prometheus text exposition `text` in the OpenMetrics format, with the exemplars of
    /// the histograms whose buckets are `buckets`.
    pub(crate) fn openmetrics(&self, text: &str, buckets: &[f64]) -> String {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = String::with_capacity(text.len() + text.len() / 4);
        // The family being written: its name and type, as its `# TYPE` line said.
        let mut family: Option<(String, String)> = None;
        for line in text.lines() {
            if line.trim().is_empty() {
                continue; // OpenMetrics has no blank lines.
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
                let kind = if kind == "untyped" { "unknown" } else { kind };
                // A counter's family is named without `_total`; its samples keep it.
                let family_name = if kind == "counter" { name.strip_suffix("_total").unwrap_or(name) } else { name };
                let _ = writeln!(out, "# TYPE {family_name} {kind}");
                family = Some((name.to_string(), kind.to_string()));
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = name.strip_suffix("_total").filter(|_| is_counter_next(text, name)).unwrap_or(name);
                let _ = writeln!(out, "# HELP {name} {help}");
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            match &family {
                Some((name, kind)) if kind == "counter" && !name.ends_with("_total") => {
                    // Samples of a counter are `<family>_total`.
                    let _ = writeln!(out, "{name}_total{}", &line[name.len()..]);
                }
                Some((name, kind)) if kind == "histogram" && line.starts_with(&format!("{name}_bucket")) => {
                    out.push_str(line);
                    if let Some(e) = exemplar_for(&latest, name, line, buckets) {
                        let _ = write!(out, " # {{trace_id=\"{}\"}} {} {:.3}", e.trace_id, e.value, e.at);
                    }
                    out.push('\n');
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

/// Whether the `# HELP` line for `name` belongs to a counter (its `# TYPE` line says so).
fn is_counter_next(text: &str, name: &str) -> bool {
    text.contains(&format!("# TYPE {name} counter"))
}

fn exemplar_for<'a>(
    latest: &'a HashMap<Key, Exemplar>,
    family: &str,
    line: &str,
    buckets: &[f64],
) -> Option<&'a Exemplar> {
    let open = line.find('{')?;
    let close = line.rfind('}')?;
    let labels = parse_labels(&line[open + 1..close])?;
    let le = labels.iter().find(|(k, _)| *k == "le")?.1.as_str();
    let bucket = if le == "+Inf" {
        buckets.len()
    } else {
        let le: f64 = le.parse().ok()?;
        buckets.iter().position(|b| (b - le).abs() <= le.abs() * 1e-9)?
    };
    let mut rest: Vec<(&str, &str)> =
        labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (*k, v.as_str())).collect();
    rest.sort_unstable();
    latest.get(&(family.to_string(), canonical(rest.into_iter()), bucket))
}

/// `k="v",…` as the text format writes label sets (`\\`, `\"` and `\n` escaped), unescaped.
fn parse_labels(text: &str) -> Option<Vec<(&str, String)>> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim(), value));
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    Some(labels)
}

/// Label pairs, sorted by the caller, as one comparable string.
fn canonical<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = write!(out, "{k}={v:?},");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKETS: &[f64] = &[0.001, 0.01, 0.1];

    #[test]
    fn the_text_format_becomes_openmetrics_with_the_latest_trace_of_each_bucket() {
        let exemplars = Exemplars::default();
        let route = [("method", "GET"), ("route", "/api/products/{id}"), ("service", "gateway")];
        exemplars.record("latency_seconds", &route, BUCKETS, 0.004, "00000000000000000000000000000001");
        exemplars.record("latency_seconds", &route, BUCKETS, 0.006, "4bf92f3577b34da6a3ce929d0e0e4736");
        exemplars.record("latency_seconds", &route, BUCKETS, 3.0, "0af7651916cd43dd8448eb211c80319c");
        let text = "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total{service=\"gateway\"} 7\n\n\
            # TYPE in_flight gauge\nin_flight{service=\"gateway\"} 1\n\n\
            # TYPE latency_seconds histogram\n\
            latency_seconds_bucket{method=\"GET\",route=\"/api/products/{id}\",service=\"gateway\",le=\"0.001\"} 0\n\
            latency_seconds_bucket{method=\"GET\",route=\"/api/products/{id}\",service=\"gateway\",le=\"0.01\"} 2\n\
            latency_seconds_bucket{method=\"GET\",route=\"/api/products/{id}\",service=\"gateway\",le=\"0.1\"} 2\n\
            latency_seconds_bucket{method=\"GET\",route=\"/api/products/{id}\",service=\"gateway\",le=\"+Inf\"} 3\n\
            latency_seconds_sum{method=\"GET\",route=\"/api/products/{id}\",service=\"gateway\"} 3.01\n\
            latency_seconds_count{method=\"GET\",route=\"/api/products/{id}\",service=\"gateway\"} 3\n\
            # TYPE odd_counter counter\nodd_counter 2\n";
        let om = exemplars.openmetrics(text, BUCKETS);
        let lines: Vec<&str> = om.lines().collect();
        assert!(lines.contains(&"# HELP requests Requests."), "{om}");
        assert!(lines.contains(&"# TYPE requests counter"), "{om}");
        assert!(lines.contains(&"requests_total{service=\"gateway\"} 7"), "{om}");
        assert!(lines.contains(&"# TYPE odd_counter counter") && lines.contains(&"odd_counter_total 2"), "{om}");
        assert!(!lines.contains(&""), "no blank lines: {om}");
        assert_eq!(lines.last(), Some(&"# EOF"));
        let bucket = |le: &str| *lines.iter().find(|l| l.contains(&format!("le=\"{le}\""))).unwrap();
        assert!(!bucket("0.001").contains('#'), "no request fell there: {om}");
        assert!(
            bucket("0.01").contains("} 2 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.006 "),
            "the latest of the bucket: {om}"
        );
        assert!(bucket("+Inf").contains("# {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 3 "), "{om}");
        assert!(!bucket("0.1").contains('#'), "{om}");
    }

    #[test]
    fn label_values_with_escapes_are_read_back() {
        let labels = parse_labels(r#"route="/a\"b\\c",le="0.1""#).unwrap();
        assert_eq!(labels, [("route", "/a\"b\\c".to_string()), ("le", "0.1".to_string())]);
        assert!(parse_labels(r#"route="unterminated"#).is_none());
    }
}
