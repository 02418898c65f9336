"""What promtool and the JSON parser cannot see in the monitoring files: that every metric the
alert rules and the Grafana dashboard query is one the platform exports, that the dashboard is
wired to the data source compose provisions, and that Prometheus loads the rules it is given.

    observability.py --crates ../crates --alerts prometheus/alerts.yml \
        --dashboard grafana/ordermesh.json --compose compose.yaml

The metric names come from the source: every `counter!`/`gauge!`/`histogram!` with a literal
name under --crates (histograms also as `_bucket`, `_sum`, `_count`), plus Prometheus's own
`up`. Exits 1 with one line per finding.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

MACRO = re.compile(r'\b(counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "abs", "absent", "clamp_min", "clamp_max", "time", "vector",
    "scalar", "label_replace", "avg_over_time", "max_over_time", "min_over_time",
    "sum_over_time", "changes", "resets", "round", "sort", "sort_desc", "inf", "nan",
}

findings: list[str] = []


def fail(where: str, message: str) -> None:
    findings.append(f"{where} {message}")


def exported_metrics(crates: Path) -> set[str]:
    names = {"up"}
    for source in crates.rglob("*.rs"):
        for kind, name in MACRO.findall(source.read_text()):
            names.add(name)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    words = set(re.findall(r"(?<![0-9.])\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", text))
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def check_queries(where: str, exprs: list[tuple[str, str]], exported: set[str]) -> None:
    if not exprs:
        fail(where, "has no queries")
    for what, expr in exprs:
        for name in sorted(metric_names(expr)):
            if name not in exported:
                fail(where, f"{what} queries {name}, which no service exports")


def check_alerts(path: Path, exported: set[str]) -> None:
    doc = yaml.safe_load(path.read_text())
    exprs = []
    for group in doc.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record")
            exprs.append((f"rule {name}", rule["expr"]))
            if rule.get("alert") and not (rule.get("annotations") or {}).get("summary"):
                fail(f"[{path}]", f"alert {name} has no summary for whoever is paged")
    check_queries(f"[{path}]", exprs, exported)


def check_dashboard(path: Path, datasource_uid: str, exported: set[str]) -> None:
    where = f"[{path}]"
    dash = json.loads(path.read_text())
    if not dash.get("uid"):
        fail(where, "has no uid (links to it would change on every import)")
    ids = [p.get("id") for p in dash.get("panels") or []]
    if len(ids) != len(set(ids)):
        fail(where, f"panel ids repeat: {ids}")
    exprs = []
    for panel in dash.get("panels") or []:
        title = panel.get("title", panel.get("id"))
        if (panel.get("datasource") or {}).get("uid") != datasource_uid:
            fail(where, f"panel {title!r} reads data source {panel.get('datasource')}, not {datasource_uid!r}")
        if not {"x", "y", "w", "h"} <= set(panel.get("gridPos") or {}):
            fail(where, f"panel {title!r} has no place on the grid")
        targets = panel.get("targets") or []
        if not targets:
            fail(where, f"panel {title!r} has no query")
        refs = [t.get("refId") for t in targets]
        if len(refs) != len(set(refs)):
            fail(where, f"panel {title!r} repeats a refId")
        exprs.extend((f"panel {title!r}", t["expr"]) for t in targets)
    check_queries(where, exprs, exported)


def mounted(service: dict, source: str) -> str | None:
    """Where a compose service mounts `source` (a path relative to compose.yaml), if it does."""
    for volume in service.get("volumes") or []:
        parts = volume.split(":") if isinstance(volume, str) else [volume.get("source"), volume.get("target")]
        if Path(parts[0]) == Path(source):
            return parts[1]
    return None


def check_wiring(compose_path: Path, alerts: Path, dashboard: Path) -> str:
    """Prometheus loads the rules, Grafana the data source and the dashboard; returns the
    provisioned data source's uid."""
    base = compose_path.parent
    services = yaml.safe_load(compose_path.read_text())["services"]
    where = "[compose]"
    prometheus, grafana = services.get("prometheus"), services.get("grafana")
    if not prometheus or not grafana:
        fail(where, "has no prometheus or no grafana service")
        return ""
    prom = yaml.safe_load((base / "prometheus" / "prometheus.yml").read_text())
    rules_at = mounted(prometheus, "./" + str(alerts.relative_to(base)))
    if rules_at is None:
        fail(where, f"prometheus does not mount {alerts.relative_to(base)}")
    elif rules_at not in (prom.get("rule_files") or []):
        fail("[prometheus]", f"rule_files does not load {rules_at}, where the alert rules are mounted")
    provisioning = mounted(grafana, "./grafana/provisioning")
    if provisioning != "/etc/grafana/provisioning":
        fail(where, "grafana does not mount ./grafana/provisioning at /etc/grafana/provisioning")
    sources = yaml.safe_load((base / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    uid = sources[0].get("uid", "")
    if sources[0].get("url") != "http://prometheus:9090":
        fail("[grafana]", f"the data source reads {sources[0].get('url')}, not the compose Prometheus")
    providers = yaml.safe_load((base / "grafana/provisioning/dashboards/ordermesh.yml").read_text())["providers"]
    dashboard_at = mounted(grafana, "./" + str(dashboard.relative_to(base)))
    folders = {p["options"]["path"] for p in providers}
    if dashboard_at is None or str(Path(dashboard_at).parent) not in folders:
        fail(where, f"grafana mounts the dashboard at {dashboard_at}, outside the provisioned folders {sorted(folders)}")
    return uid


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crates", required=True)
    ap.add_argument("--alerts", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--compose", required=True)
    args = ap.parse_args()
    exported = exported_metrics(Path(args.crates))
    compose = Path(args.compose).resolve()
    alerts, dashboard = Path(args.alerts).resolve(), Path(args.dashboard).resolve()
    uid = check_wiring(compose, alerts, dashboard)
    check_alerts(alerts, exported)
    check_dashboard(dashboard, uid, exported)
    for line in findings:
        print(line)
    if findings:
        print(f"observability: {len(findings)} finding(s)")
        return 1
    print(f"observability: the alert rules and the dashboard query only the {len(exported)} exported metrics; compose loads both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
