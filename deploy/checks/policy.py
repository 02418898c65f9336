#!/usr/bin/env python3
"""Checks of deploy/ that no schema can make: that the pieces agree with each other and with
what ordermesh needs. Run by deploy/check.sh (inside its venv, which has PyYAML):

    policy.py --compose compose.yaml --k8s base=rendered-base.yaml dev=… production=…

Prints one line per finding and exits 1 if there is any.

Kubernetes (every rendered overlay):
  - every pod: non-root, seccomp RuntimeDefault, no service-account token, no service links
    (Kubernetes would inject USERS_PORT=tcp://… and the like, which ordermesh reads as
    settings); every container: no privilege escalation, read-only root filesystem, all
    capabilities dropped, CPU and memory requests and limits, a pinned image tag;
  - each service (gateway, users, catalog, orders): `serve <name>`, PORT = containerPort =
    Service port = scrape annotation, startup/liveness/readiness probes (readiness /ready,
    liveness /live), a Service, a
    PodDisruptionBudget, a HorizontalPodAutoscaler for gateway/catalog/orders (and then no
    fixed replica count), the settings production mode requires, the signing key file on a
    mounted Secret; the migration Job runs `migrate`;
  - every ConfigMap and Secret referenced exists (or, where the overlay brings no Secrets, is
    one of the documented externally managed ones) and has the keys referenced;
  - the Ingress points at the gateway Service;
  - the NetworkPolicies, evaluated: exactly the allowed paths between the services, the
    gateway alone reachable from the ingress controller, DNS and PostgreSQL/Redis/NATS
    reachable by every service and the migration Job.

Compose: depends_on targets exist and the services wait for the migration; each service's
PORT matches its health check; production-mode settings are present and consistent (service
secret pair, 128-hex-digit session key, no dev- secrets); files referenced exist; Prometheus
scrapes every ordermesh instance on the right port.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import yaml

SERVICES = {"gateway": 8080, "users": 8081, "orders": 8082, "catalog": 8083}
AUTOSCALED = {"gateway", "catalog", "orders"}
# Who may call whom (destination: callers), as issue 10 and the README describe.
ALLOWED_CALLERS = {
    "users": {"gateway", "orders", "catalog"},
    "catalog": {"gateway", "orders"},
    "orders": {"gateway"},
    "gateway": set(),
}
BACKING_PORTS = {"postgres": 5432, "redis": 6379, "nats": 4222}
EXTERNAL_SECRETS = {
    "ordermesh-database": {"USERS_DATABASE_URL", "CATALOG_DATABASE_URL", "ORDERS_DATABASE_URL"},
    "ordermesh-backing": {"REDIS_URL", "NATS_URL"},
    "ordermesh-service-credentials": {
        "SERVICE_CLIENTS",
        "ORDERS_CLIENT_SECRET",
        "GATEWAY_CLIENT_SECRET",
        "CATALOG_CLIENT_SECRET",
    },
    "ordermesh-gateway": {"SESSION_KEY"},
    "ordermesh-jwt": {"jwt-ed25519.pem"},
}
# Settings each process needs in production mode (see crates/*/src/config.rs), besides the
# shared ConfigMap.
REQUIRED_ENV = {
    "gateway": {"PORT", "SESSION_KEY", "REDIS_URL", "GATEWAY_CLIENT_SECRET"},
    "users": {"PORT", "USERS_DATABASE_URL", "SERVICE_CLIENTS", "JWT_PRIVATE_KEY_FILE"},
    "catalog": {"PORT", "CATALOG_DATABASE_URL", "NATS_URL", "CATALOG_CLIENT_SECRET"},
    "orders": {"PORT", "ORDERS_DATABASE_URL", "NATS_URL", "ORDERS_CLIENT_SECRET"},
    # `migrate` reads only the database URLs.
    "migrate": {"USERS_DATABASE_URL", "CATALOG_DATABASE_URL", "ORDERS_DATABASE_URL"},
}
SHARED_CONFIG = {"ORDERMESH_ENV", "LOG_FORMAT", "USER_SERVICE_URL", "CATALOG_SERVICE_URL", "ORDER_SERVICE_URL"}

findings: list[str] = []


def fail(where: str, message: str) -> None:
    findings.append(f"{where}: {message}")


# ------------------------------------------------------------------------------ Kubernetes


def load_all(path: str) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector against a label set ({} selects everything)."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_specs(docs: list[dict]):
    """(kind/name, pod template metadata, pod spec) of every workload."""
    for d in docs:
        kind = d["kind"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            t = d["spec"]["template"]
            yield f"{kind}/{d['metadata']['name']}", t.get("metadata") or {}, t["spec"], d
        elif kind == "CronJob":
            t = d["spec"]["jobTemplate"]["spec"]["template"]
            yield f"{kind}/{d['metadata']['name']}", t.get("metadata") or {}, t["spec"], d


def env_names(container: dict, docs_by_kind: dict) -> set[str]:
    names = {e["name"] for e in container.get("env") or []}
    for ef in container.get("envFrom") or []:
        ref = ef.get("configMapRef") or ef.get("secretRef")
        if not ref:
            continue
        kind = "ConfigMap" if "configMapRef" in ef else "Secret"
        obj = docs_by_kind.get(kind, {}).get(ref["name"])
        if obj:
            names |= set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())
    return names


def env_value(container: dict, name: str) -> str | None:
    for e in container.get("env") or []:
        if e["name"] == name:
            return e.get("value")
    return None


def probe_path(probe: dict | None) -> str | None:
    if not probe:
        return None
    return (probe.get("httpGet") or {}).get("path")


def check_pod_security(where: str, spec: dict) -> None:
    psc = spec.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        fail(where, "pod securityContext.runAsNonRoot is not true")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        fail(where, "pod seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken is not false")
    if spec.get("enableServiceLinks") is not False:
        fail(where, "enableServiceLinks is not false (injected *_PORT variables are read as settings)")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        fail(where, "uses a host namespace")
    for c in (spec.get("initContainers") or []) + spec["containers"]:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(cw, "allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(cw, "readOnlyRootFilesystem is not true")
        if sc.get("privileged"):
            fail(cw, "is privileged")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            fail(cw, "does not drop ALL capabilities")
        if sc.get("runAsUser") == 0 or psc.get("runAsUser") == 0:
            fail(cw, "runs as uid 0")
        res = c.get("resources") or {}
        for section in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(section) or {}):
                    fail(cw, f"has no {section}.{r}")
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        if "@" not in image and (":" not in tag or tag.endswith(":latest")):
            fail(cw, f"image {image!r} is not pinned to a tag or digest")


def check_references(where: str, spec: dict, by_kind: dict, external_ok: bool) -> None:
    """ConfigMaps and Secrets referenced by a pod exist with the keys used."""

    def need(kind: str, name: str, key: str | None, optional: bool = False) -> None:
        obj = by_kind.get(kind, {}).get(name)
        if obj is None:
            if kind == "Secret" and external_ok and name in EXTERNAL_SECRETS:
                if key is not None and key not in EXTERNAL_SECRETS[name]:
                    fail(where, f"uses key {key} of external Secret {name}, not in its documented keys")
                return
            if not optional:
                fail(where, f"references {kind} {name}, which this overlay does not define")
            return
        keys = set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())
        keys |= set((obj.get("binaryData") or {}).keys())
        if key is not None and key not in keys:
            fail(where, f"uses key {key} of {kind} {name}, which has no such key")

    for c in (spec.get("initContainers") or []) + spec["containers"]:
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                r = vf["secretKeyRef"]
                need("Secret", r["name"], r["key"], r.get("optional", False))
            if "configMapKeyRef" in vf:
                r = vf["configMapKeyRef"]
                need("ConfigMap", r["name"], r["key"], r.get("optional", False))
        for ef in c.get("envFrom") or []:
            if "configMapRef" in ef:
                need("ConfigMap", ef["configMapRef"]["name"], None, ef["configMapRef"].get("optional", False))
            if "secretRef" in ef:
                need("Secret", ef["secretRef"]["name"], None, ef["secretRef"].get("optional", False))
    for v in spec.get("volumes") or []:
        if "secret" in v:
            for item in v["secret"].get("items") or [None]:
                need("Secret", v["secret"]["secretName"], item and item["key"], v["secret"].get("optional", False))
        if "configMap" in v:
            for item in v["configMap"].get("items") or [None]:
                need("ConfigMap", v["configMap"]["name"], item and item["key"], v["configMap"].get("optional", False))


def check_services(overlay: str, docs: list[dict], by_kind: dict) -> None:
    deployments = by_kind.get("Deployment", {})
    services = by_kind.get("Service", {})
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", {}).values()}
    pdbs = list(by_kind.get("PodDisruptionBudget", {}).values())
    for name, port in SERVICES.items():
        where = f"[{overlay}] Deployment/{name}"
        d = deployments.get(name)
        if d is None:
            fail(where, "missing")
            continue
        tmeta = d["spec"]["template"]["metadata"]
        labels = tmeta.get("labels") or {}
        if not selector_matches(d["spec"]["selector"], labels):
            fail(where, "selector does not match its pod template")
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        if c.get("args") != ["serve", name] and c.get("command", [None])[-2:] != ["serve", name]:
            fail(where, f"does not run `serve {name}` (args {c.get('args')})")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
        if ports.get("http") != port:
            fail(where, f"containerPort http is {ports.get('http')}, expected {port}")
        if env_value(c, "PORT") != str(port):
            fail(where, f"PORT is {env_value(c, 'PORT')!r}, expected {port} (the health check reads PORT)")
        ann = tmeta.get("annotations") or {}
        if ann.get("prometheus.io/port") != str(port) or ann.get("prometheus.io/path") != "/metrics":
            fail(where, "scrape annotations do not name its port and /metrics")
        have = env_names(c, by_kind)
        missing = (REQUIRED_ENV[name] | SHARED_CONFIG) - have
        if missing:
            fail(where, f"lacks settings {sorted(missing)}")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind not in c:
                fail(where, f"has no {kind}")
        if probe_path(c.get("readinessProbe")) != "/ready":
            fail(where, "readinessProbe is not GET /ready")
        expected_liveness = "/live"
        if probe_path(c.get("livenessProbe")) != expected_liveness:
            fail(where, f"livenessProbe is not GET {expected_liveness}")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            p = (c.get(kind) or {}).get("httpGet") or {}
            if p and p.get("port") not in ("http", port):
                fail(where, f"{kind} probes port {p.get('port')}")
        if name == "users":
            key_file = env_value(c, "JWT_PRIVATE_KEY_FILE") or ""
            check_key_mount(where, spec, c, key_file)
        # Service
        svc = services.get(name)
        if svc is None:
            fail(f"[{overlay}] Service/{name}", "missing")
        else:
            if not selector_matches({"matchLabels": svc["spec"].get("selector") or {}}, labels):
                fail(f"[{overlay}] Service/{name}", "selector does not match the Deployment's pods")
            sports = {p["port"]: p.get("targetPort") for p in svc["spec"]["ports"]}
            if port not in sports or sports[port] not in ("http", port):
                fail(f"[{overlay}] Service/{name}", f"does not expose port {port} to the pods' http port")
        # Disruption budget and autoscaling
        if not any(selector_matches(p["spec"].get("selector"), labels) for p in pdbs):
            fail(where, "no PodDisruptionBudget selects its pods")
        if name in AUTOSCALED:
            h = hpas.get(name)
            if h is None:
                fail(where, "no HorizontalPodAutoscaler")
            else:
                if h["apiVersion"] != "autoscaling/v2" or h["spec"]["scaleTargetRef"].get("kind") != "Deployment":
                    fail(f"[{overlay}] HPA/{name}", "is not an autoscaling/v2 HPA of the Deployment")
                if h["spec"].get("minReplicas", 1) > h["spec"]["maxReplicas"]:
                    fail(f"[{overlay}] HPA/{name}", "minReplicas > maxReplicas")
            if "replicas" in d["spec"]:
                fail(where, "sets replicas although an HPA owns the count")
    for h in by_kind.get("HorizontalPodAutoscaler", {}).values():
        target = h["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            fail(f"[{overlay}] HPA/{h['metadata']['name']}", f"targets missing Deployment {target}")
    # Migration Job
    jobs = [j for j in by_kind.get("Job", {}).values() if (j["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == "migrate"]
    if len(jobs) != 1:
        fail(f"[{overlay}] migration Job", f"expected one, found {len(jobs)}")
    for j in jobs:
        c = j["spec"]["template"]["spec"]["containers"][0]
        where = f"[{overlay}] Job/{j['metadata']['name']}"
        if c.get("args") != ["migrate"]:
            fail(where, f"does not run `migrate` (args {c.get('args')})")
        missing = REQUIRED_ENV["migrate"] - env_names(c, by_kind)
        if missing:
            fail(where, f"lacks settings {sorted(missing)}")
        # Least privilege: migrations read the database URLs and nothing else.
        spec = j["spec"]["template"]["spec"]
        secrets = {v["secret"]["secretName"] for v in spec.get("volumes") or [] if v.get("secret")}
        secrets |= {
            (e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name")
            for e in c.get("env") or []
            if (e.get("valueFrom") or {}).get("secretKeyRef")
        }
        secrets |= {(s.get("secretRef") or {}).get("name") for s in c.get("envFrom") or [] if s.get("secretRef")}
        # (The dev overlay's generated Secrets carry kustomize's 10-character hash suffix.)
        extra = {s for s in secrets if re.sub(r"-[a-z0-9]{10}$", "", s) != "ordermesh-database"}
        if extra:
            fail(where, f"gets Secrets migrations do not read: {sorted(extra)}")
    # Ingress → gateway
    ingresses = list(by_kind.get("Ingress", {}).values())
    if not ingresses:
        fail(f"[{overlay}] Ingress", "missing")
    for ing in ingresses:
        for rule in ing["spec"].get("rules") or []:
            for p in rule["http"]["paths"]:
                svc = p["backend"]["service"]
                if svc["name"] != "gateway":
                    fail(f"[{overlay}] Ingress/{ing['metadata']['name']}", f"routes to {svc['name']}, not the gateway")
                port = svc["port"].get("name") or svc["port"].get("number")
                if port not in ("http", SERVICES["gateway"]):
                    fail(f"[{overlay}] Ingress/{ing['metadata']['name']}", f"routes to port {port}")


def check_key_mount(where: str, spec: dict, c: dict, key_file: str) -> None:
    """JWT_PRIVATE_KEY_FILE is a key of a Secret volume mounted read-only."""
    if not key_file:
        fail(where, "has no JWT_PRIVATE_KEY_FILE")
        return
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for m in c.get("volumeMounts") or []:
        mount = m["mountPath"].rstrip("/") + "/"
        if key_file.startswith(mount):
            v = volumes.get(m["name"]) or {}
            sec = v.get("secret")
            rel = key_file[len(mount) :]
            if not sec:
                fail(where, f"{key_file} is not on a Secret volume")
            elif sec.get("items") and rel not in {i["path"] for i in sec["items"]}:
                fail(where, f"{key_file}: the Secret volume has no item {rel}")
            if not m.get("readOnly"):
                fail(where, f"the signing key mount {m['mountPath']} is not read-only")
            return
    fail(where, f"JWT_PRIVATE_KEY_FILE {key_file} is on no mounted volume")


# --- NetworkPolicy evaluation (one namespace; other namespaces by name label) ---------------


def policy_ports_allow(ports: list | None, port: int, protocol: str = "TCP") -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        lo = p["port"]
        hi = p.get("endPort", lo)
        if isinstance(lo, int) and lo <= port <= hi:
            return True
    return False


def peer_matches(peer: dict, pod_labels: dict | None, namespace: str | None, ip: bool) -> bool:
    """A NetworkPolicyPeer against a pod (same namespace when namespace is None) or an outside
    address (ip=True)."""
    if "ipBlock" in peer:
        return ip
    if ip or pod_labels is None:
        return False
    if "namespaceSelector" in peer:
        if namespace is None:
            return False  # a namespaceSelector alone never matches our namespace by name here
        if not selector_matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return False
        return selector_matches(peer.get("podSelector", {}), pod_labels)
    if namespace is not None:
        return False
    return selector_matches(peer.get("podSelector", {}), pod_labels)


def allowed(policies: list[dict], direction: str, subject: dict, peer_labels: dict | None, peer_ns: str | None, port: int, protocol: str = "TCP", ip: bool = False) -> bool:
    """Whether `subject` (pod labels) may receive from / send to the peer on port."""
    kind = "Ingress" if direction == "ingress" else "Egress"
    selecting = [p for p in policies if kind in p["spec"].get("policyTypes", ["Ingress"]) and selector_matches(p["spec"]["podSelector"], subject)]
    if not selecting:
        return True  # not isolated
    key, peers_key = (("ingress", "from") if direction == "ingress" else ("egress", "to"))
    for p in selecting:
        for rule in p["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if not policy_ports_allow(rule.get("ports"), port, protocol):
                continue
            if peers is None or any(peer_matches(peer, peer_labels, peer_ns, ip) for peer in peers):
                return True
    return False


def check_network(overlay: str, docs: list[dict], by_kind: dict) -> None:
    policies = list(by_kind.get("NetworkPolicy", {}).values())
    where = f"[{overlay}] NetworkPolicy"
    if not any(p["spec"]["podSelector"] == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies):
        fail(where, "no default-deny policy for ingress and egress")
    pods = {}
    for _, meta, _, _ in pod_specs(docs):
        labels = meta.get("labels") or {}
        name = labels.get("app.kubernetes.io/name")
        if name:
            pods[name] = labels
    callers = [n for n in list(SERVICES) + ["migrate"] if n in pods]
    for dst, port in SERVICES.items():
        if dst not in pods:
            continue
        for src in callers:
            if src == dst:
                continue
            ok = allowed(policies, "egress", pods[src], pods[dst], None, port) and allowed(policies, "ingress", pods[dst], pods[src], None, port)
            expected = src in ALLOWED_CALLERS[dst]
            if ok != expected:
                fail(where, f"{src} → {dst}:{port} is {'allowed' if ok else 'blocked'}, expected {'allowed' if expected else 'blocked'}")
        from_ingress = allowed(policies, "ingress", pods[dst], {"app.kubernetes.io/name": "controller"}, "ingress-nginx", port)
        if from_ingress != (dst == "gateway"):
            fail(where, f"ingress controller → {dst}:{port} is {'allowed' if from_ingress else 'blocked'}")
        if not allowed(policies, "ingress", pods[dst], {"app.kubernetes.io/name": "prometheus"}, "monitoring", port):
            fail(where, f"Prometheus (namespace monitoring) cannot scrape {dst}:{port}")
        if allowed(policies, "ingress", pods[dst], {"app": "x"}, "default", port):
            fail(where, f"{dst}:{port} is reachable from an arbitrary namespace")
    dns = {"k8s-app": "kube-dns"}
    for src in callers:
        for proto in ("UDP", "TCP"):
            if not allowed(policies, "egress", pods[src], dns, "kube-system", 53, proto):
                fail(where, f"{src} cannot reach DNS over {proto}")
        for backing, port in BACKING_PORTS.items():
            if backing in pods:  # in-cluster (dev)
                ok = allowed(policies, "egress", pods[src], pods[backing], None, port) and allowed(policies, "ingress", pods[backing], pods[src], None, port)
            elif overlay == "base":  # the base names neither in-cluster nor managed ones
                continue
            else:  # managed, outside the cluster
                ok = allowed(policies, "egress", pods[src], None, None, port, ip=True)
            if not ok:
                fail(where, f"{src} cannot reach {backing}:{port}")
    for backing, port in BACKING_PORTS.items():
        if backing in pods and allowed(policies, "ingress", pods[backing], {"app": "x"}, "default", port):
            fail(where, f"{backing} is reachable from an arbitrary namespace")


def check_k8s(overlay: str, path: str) -> None:
    docs = load_all(path)
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    # Generated names carry a hash suffix; index them by their base name as well.
    for kind in ("ConfigMap", "Secret"):
        for name, obj in list(by_kind.get(kind, {}).items()):
            base = re.sub(r"-[a-z0-9]{10}$", "", name)
            by_kind[kind].setdefault(base, obj)
    external_ok = "Secret" not in by_kind or overlay in ("base", "production")
    for where, _, spec, _ in pod_specs(docs):
        check_pod_security(f"[{overlay}] {where}", spec)
        check_references(f"[{overlay}] {where}", spec, by_kind, external_ok)
    check_services(overlay, docs, by_kind)
    check_network(overlay, docs, by_kind)
    if overlay == "production":
        if by_kind.get("Secret"):
            fail("[production]", f"brings Secrets {sorted(by_kind['Secret'])}; production Secrets are managed outside")
        cm = next((c for n, c in by_kind.get("ConfigMap", {}).items() if n.startswith("ordermesh-config")), None)
        if not cm or cm["data"].get("ORDERMESH_ENV") != "production":
            fail("[production]", "ORDERMESH_ENV is not production")
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] not in ("Namespace",)}
    if overlay != "base" and len(namespaces) != 1:
        fail(f"[{overlay}]", f"resources span namespaces {sorted(map(str, namespaces))}")


# --------------------------------------------------------------------------------- compose


def parse_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, _, v = line.partition("=")
        out[k.strip()] = v.strip()
    return out


def check_compose(path: str) -> None:
    compose_path = Path(path)
    base = compose_path.parent
    doc = yaml.safe_load(compose_path.read_text())
    services = doc["services"]
    where = "[compose]"
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items() if isinstance(svc.get("depends_on"), dict) else [(d, None) for d in svc.get("depends_on") or []]:
            if dep not in services:
                fail(where, f"{name} depends on unknown service {dep}")
            elif cond and cond.get("condition") == "service_healthy":
                hc = services[dep].get("healthcheck") or {}
                if hc.get("disable") or (not hc and services[dep].get("image") != "ordermesh:local"):
                    fail(where, f"{name} waits for {dep} to be healthy, but {dep} has no health check")
        for env_file in svc.get("env_file") or []:
            entry = env_file if isinstance(env_file, dict) else {"path": env_file}
            if entry.get("required", True) and not (base / entry["path"]).is_file():
                fail(where, f"{name}: env_file {entry['path']} is missing")
        for vol in svc.get("volumes") or []:
            src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("."):
                if not (base / src).exists():
                    fail(where, f"{name}: volume source {src} is missing")
    for sname, sec in (doc.get("secrets") or {}).items():
        f = sec.get("file", "")
        f = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", f)
        if f and not (base / f).is_file():
            fail(where, f"secret {sname}: file {f} is missing")
        elif f and not os.access(base / f, os.R_OK):
            fail(where, f"secret {sname}: file {f} is unreadable")
    example_env = {}
    for name, svc in services.items():
        if svc.get("image") != "ordermesh:local":
            continue
        for env_file in svc.get("env_file") or []:
            entry = env_file if isinstance(env_file, dict) else {"path": env_file}
            p = base / entry["path"]
            if p.is_file() and entry["path"] != "local.env":
                example_env.update(parse_env_file(p))
    ordermesh = {n: s for n, s in services.items() if s.get("image") == "ordermesh:local"}
    if "build" not in next(iter(ordermesh.values()), {}):
        fail(where, "the ordermesh services do not build the image")
    instances: dict[str, list[str]] = {}
    for name, svc in ordermesh.items():
        cmd = svc.get("command") or []
        env = {**example_env, **{k: str(v) for k, v in (svc.get("environment") or {}).items()}}
        if cmd[:1] == ["migrate"]:
            missing = REQUIRED_ENV["migrate"] - set(env)
            if missing:
                fail(where, f"{name} (migrate) lacks {sorted(missing)}")
            if (svc.get("restart") or "no") != "no":
                fail(where, f"{name} (migrate) restarts")
            continue
        if cmd[:1] != ["serve"] or len(cmd) != 2 or cmd[1] not in SERVICES:
            fail(where, f"{name} runs {cmd}, not `serve <service>`")
            continue
        service = cmd[1]
        instances.setdefault(service, []).append(name)
        port = SERVICES[service]
        if env.get("PORT") != str(port):
            fail(where, f"{name}: PORT is {env.get('PORT')!r}, expected {port}")
        test = " ".join((svc.get("healthcheck") or {}).get("test") or [])
        if f"127.0.0.1:{port}/" not in test:
            fail(where, f"{name}: health check does not probe port {port}")
        missing = (REQUIRED_ENV[service] | SHARED_CONFIG) - set(env)
        if missing:
            fail(where, f"{name} lacks {sorted(missing)}")
        if service != "gateway":
            deps = svc.get("depends_on") or {}
            if (deps.get("migrate") or {}).get("condition") != "service_completed_successfully":
                fail(where, f"{name} does not wait for migrate to complete")
        if service == "users" and "jwt_private_key" not in (svc.get("secrets") or []):
            fail(where, f"{name} does not mount the jwt_private_key secret")
        if env.get("ORDERMESH_ENV") == "production":
            for k, v in env.items():
                if (k in ("SERVICE_CLIENTS", "SESSION_KEY") or k.endswith("_CLIENT_SECRET")) and ("dev-" in v):
                    fail(where, f"{name}: {k} is a dev- secret, refused in production mode")
    if services.get("migrate", {}).get("secrets"):
        fail(where, "migrate mounts secrets; migrations read only the database URLs")
    clients = dict(pair.split(":", 1) for pair in example_env.get("SERVICE_CLIENTS", "").split(",") if ":" in pair)
    for client in ("orders", "gateway", "catalog"):
        key = f"{client.upper()}_CLIENT_SECRET"
        if clients.get(client) != example_env.get(key):
            fail(where, f"SERVICE_CLIENTS has no {client} entry matching {key}")
        if len(clients.get(client, "")) < 12:
            fail(where, f"the {client} client secret is shorter than 12 characters")
    if not re.fullmatch(r"[0-9a-fA-F]{128}", example_env.get("SESSION_KEY", "")):
        fail(where, "SESSION_KEY is not 128 hex digits")
    if len(instances.get("gateway", [])) < 2 or len(instances.get("orders", [])) < 2:
        fail(where, f"expected gateway ×2 and orders ×2, found {instances}")
    for service in ("users", "catalog"):
        if not instances.get(service):
            fail(where, f"no {service} instance")
    # Upstream lists name the instances that exist.
    shared = {**example_env, **{k: str(v) for k, v in (ordermesh[instances['gateway'][0]].get("environment") or {}).items()}}
    for key, service in (("USER_SERVICE_URL", "users"), ("CATALOG_SERVICE_URL", "catalog"), ("ORDER_SERVICE_URL", "orders")):
        urls = [u.strip() for u in shared.get(key, "").split(",") if u.strip()]
        expected = sorted(f"http://{n}:{SERVICES[service]}" for n in instances.get(service, []))
        if sorted(urls) != expected:
            fail(where, f"{key} is {urls}, expected {expected}")
    # Prometheus scrapes each instance.
    prom_path = base / "prometheus" / "prometheus.yml"
    prom = yaml.safe_load(prom_path.read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job.get("static_configs") or [] for t in sc["targets"]}
    for service, names in instances.items():
        for n in names:
            if f"{n}:{SERVICES[service]}" not in targets:
                fail("[prometheus]", f"does not scrape {n}:{SERVICES[service]}")
    for job in prom["scrape_configs"]:
        if job.get("metrics_path", "/metrics") != "/metrics":
            fail("[prometheus]", f"job {job['job_name']} scrapes {job['metrics_path']}")
    # The tracing profile is complete on its own.
    tracing = {n for n, s in services.items() if "tracing" in (s.get("profiles") or [])}
    if not tracing:
        fail(where, "no service in the tracing profile")
    for n in tracing:
        for dep in services[n].get("depends_on") or []:
            if dep not in tracing and services[dep].get("profiles"):
                fail(where, f"{n} (tracing) depends on {dep} from another profile")
    otel = yaml.safe_load((base / "otel" / "collector.yaml").read_text())
    for pname, pipe in otel["service"]["pipelines"].items():
        for section in ("receivers", "processors", "exporters"):
            for comp in pipe.get(section) or []:
                if comp not in (otel.get(section) or {}):
                    fail("[otel]", f"pipeline {pname} uses undefined {section[:-1]} {comp}")


def check_dockerignore(path: str) -> None:
    lines = {l.strip() for l in Path(path).read_text().splitlines() if l.strip() and not l.startswith("#")}
    for needed in ("target", ".git", "data"):
        if needed not in lines:
            fail("[.dockerignore]", f"does not exclude {needed}")
    for kept in ("crates", "Cargo.toml", "Cargo.lock"):
        if kept in lines:
            fail("[.dockerignore]", f"excludes {kept}, which the build needs")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compose")
    ap.add_argument("--dockerignore")
    ap.add_argument("--k8s", nargs="*", default=[], metavar="OVERLAY=RENDERED.yaml")
    args = ap.parse_args()
    for item in args.k8s:
        overlay, _, path = item.partition("=")
        check_k8s(overlay, path)
    if args.compose:
        check_compose(args.compose)
    if args.dockerignore:
        check_dockerignore(args.dockerignore)
    for f in findings:
        print(f"FINDING {f}")
    checked = ", ".join([i.partition("=")[0] for i in args.k8s] + (["compose"] if args.compose else []) + ([".dockerignore"] if args.dockerignore else []))
    print(f"policy: {len(findings)} finding(s) in {checked}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
