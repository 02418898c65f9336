//! The public API's OpenAPI document: each service's own document (generated from its code),
//! with paths moved under `/api` and only what the gateway actually lets through, plus the
//! gateway's own endpoints. Built from the code, so it cannot drift from it.

use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::{OpenApi as Document, Server};

use crate::ApiDoc;
use crate::rules::{self, Access, Service};

/// The document clients of the gateway use, from the services' documents.
pub fn public_api(services: &[(Service, Document)]) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.title = "ordermesh API".to_string();
    doc.info.description = Some(
        "The platform's public HTTP API through its gateway: users and sessions, the catalogue, orders. \
         Sign in with POST /api/users/login and use the access token as a bearer token. Errors are \
         application/problem+json."
            .to_string(),
    );
    doc.servers = Some(vec![Server::new("/")]);
    for (service, service_doc) in services {
        for (path, item) in &service_doc.paths.paths {
            let public = format!("/api{path}");
            if rules::route(&public).map(|(s, _)| s) != Some(*service) {
                continue;
            }
            if let Some(item) = reachable_operations(&public, item) {
                doc.paths.paths.insert(public, item);
            }
        }
        if let Some(theirs) = &service_doc.components {
            let ours = doc.components.get_or_insert_with(Default::default);
            for (name, schema) in &theirs.schemas {
                ours.schemas.entry(name.clone()).or_insert_with(|| schema.clone());
            }
            for (name, scheme) in &theirs.security_schemes {
                ours.security_schemes.entry(name.clone()).or_insert_with(|| scheme.clone());
            }
        }
        if let Some(tags) = &service_doc.tags {
            let ours = doc.tags.get_or_insert_with(Vec::new);
            for tag in tags {
                if !ours.iter().any(|t| t.name == tag.name) {
                    ours.push(tag.clone());
                }
            }
        }
    }
    // Keep only the tags some public operation uses (reservations, say, are internal).
    let used: std::collections::BTreeSet<String> = doc
        .paths
        .paths
        .values()
        .flat_map(|item| {
            [&item.get, &item.put, &item.post, &item.delete, &item.patch, &item.head, &item.options, &item.trace]
                .into_iter()
                .flatten()
                .flat_map(|op| op.tags.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        })
        .collect();
    if let Some(tags) = &mut doc.tags {
        tags.retain(|t| used.contains(&t.name));
    }
    doc
}

/// The operations of `item` the edge lets through (internal ones, like event delivery, are
/// dropped); `None` when nothing is left.
fn reachable_operations(public_path: &str, item: &PathItem) -> Option<PathItem> {
    let mut kept = item.clone();
    let methods = [
        (HttpMethod::Get, axum::http::Method::GET),
        (HttpMethod::Put, axum::http::Method::PUT),
        (HttpMethod::Post, axum::http::Method::POST),
        (HttpMethod::Delete, axum::http::Method::DELETE),
        (HttpMethod::Patch, axum::http::Method::PATCH),
        (HttpMethod::Head, axum::http::Method::HEAD),
        (HttpMethod::Options, axum::http::Method::OPTIONS),
    ];
    let mut any = false;
    for (kind, method) in methods {
        let slot: &mut Option<Operation> = match kind {
            HttpMethod::Get => &mut kept.get,
            HttpMethod::Put => &mut kept.put,
            HttpMethod::Post => &mut kept.post,
            HttpMethod::Delete => &mut kept.delete,
            HttpMethod::Patch => &mut kept.patch,
            HttpMethod::Head => &mut kept.head,
            HttpMethod::Options => &mut kept.options,
            HttpMethod::Trace => &mut kept.trace,
        };
        if slot.is_some() {
            // Path parameters stay in braces here; any value stands for them.
            let concrete = public_path.replace('{', "x").replace('}', "");
            if rules::access(&method, &concrete) == Access::Forbidden {
                *slot = None;
            } else {
                any = true;
            }
        }
    }
    any.then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_public_paths_and_drops_internal_ones() {
        let mut catalog = Document::new(utoipa::openapi::Info::new("catalog", "1"), utoipa::openapi::Paths::new());
        let op = || Operation::new();
        let mut events = PathItem::new(HttpMethod::Post, op());
        events.get = None;
        catalog.paths.paths.insert("/events".into(), events);
        catalog.paths.paths.insert("/events/stats".into(), PathItem::new(HttpMethod::Get, op()));
        catalog.paths.paths.insert("/products".into(), PathItem::new(HttpMethod::Get, op()));
        catalog.paths.paths.insert("/reservations".into(), PathItem::new(HttpMethod::Post, op()));
        let doc = public_api(&[(Service::Catalog, catalog)]);
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        assert!(paths.contains(&&"/api/products".to_string()));
        assert!(paths.contains(&&"/api/events/stats".to_string()));
        assert!(!paths.contains(&&"/api/events".to_string()), "event delivery is internal");
        assert!(!paths.iter().any(|p| p.contains("reservations")), "reservations are internal");
        assert!(paths.contains(&&"/health".to_string()));
    }
}
