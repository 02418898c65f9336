//! The gateway's path handling: seed-dialect translation, routing to a service and the edge's
//! access rules, on any method, path, query and request headers. The edge and the proxy must
//! agree on which service a request goes to (or the edge would authorise one service's rules
//! and the proxy reach another), a translated request must stay under `/api/` and remain a
//! valid URI, and a body rewrite must give JSON.

use gateway::dialects::{self, BodyChange};
use gateway::rules::{self, Access};
use http::{HeaderMap, HeaderValue, Method, header};

const METHODS: [Method; 7] =
    [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS];

fn check_rules(method: &Method, path_and_query: &str) {
    let path = path_and_query.split('?').next().unwrap_or(path_and_query);
    let by_path = rules::route(path).map(|(s, _)| s);
    let by_full = rules::route(path_and_query);
    assert_eq!(by_path, by_full.map(|(s, _)| s), "edge and proxy disagree on the service of {path_and_query:?}");
    if let Some((_, rest)) = by_full {
        assert_eq!(format!("/api{rest}"), path_and_query);
    }
    let access = rules::access(method, path);
    assert_eq!(access, rules::access(method, path_and_query), "the query changed the access rule of {path:?}");
    if by_path.is_none() {
        assert_eq!(access, Access::Public);
    }
    let _ = rules::is_logout(method, path);
}

/// The target's body: libFuzzer calls it with every input it makes, and the corpus replay
/// test with every committed seed.
pub fn check(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let method = &METHODS[data[0] as usize % METHODS.len()];
    let flags = data[1];
    let rest = &data[2..];
    let (target, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else { return };
    // Any text at all: the rules take strings.
    check_rules(method, target);
    // What hyper lets through: an origin-form request target.
    let Ok(uri) = target.parse::<http::Uri>() else { return };
    let Some(pq) = uri.path_and_query() else { return };
    if !pq.as_str().starts_with('/') {
        return;
    }
    check_rules(method, pq.as_str());
    let mut headers = HeaderMap::new();
    if flags & 1 != 0 {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if flags & 2 != 0 {
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x.y.z"));
    }
    if flags & 4 != 0 {
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
    }
    let Some(t) = dialects::translate(method, uri.path(), uri.query(), &headers) else { return };
    assert!(t.path_and_query.starts_with("/api/"), "{pq} became {}", t.path_and_query);
    let translated: http::Uri =
        t.path_and_query.parse().unwrap_or_else(|e| panic!("{pq} became {}: {e}", t.path_and_query));
    check_rules(&t.method, translated.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    if let Some(acting) = &t.acting_as {
        assert!(!acting.username.contains('/'), "{pq} acts as {:?}", acting.username);
    }
    if let BodyChange::Rewrite(rewrite) = t.body
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
    {
        let out = rewrite(value);
        assert!(serde_json::to_vec(&out).is_ok());
    }
}
