//! `/openapi.json` and the interactive docs every service serves: `/docs` (Swagger UI, with
//! "try it out") and `/redoc` (ReDoc). Both come from crates.io packages at build time —
//! Swagger UI from `utoipa-swagger-ui-vendored`, ReDoc's standalone bundle from `aide` — and
//! are embedded in the binary, so the pages load with no internet.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa_swagger_ui::SwaggerUi;

pub fn routes(openapi: utoipa::openapi::OpenApi, service: &'static str) -> Router {
    let title = format!("{} — {service}", openapi.info.title);
    let redoc = Bytes::from(redoc_page(&title));
    Router::new()
        .merge(
            SwaggerUi::new("/docs")
                .external_url_unchecked("/openapi.json", to_json(&openapi))
                .config(utoipa_swagger_ui::Config::default().persist_authorization(true).try_it_out_enabled(true)),
        )
        .route(
            "/redoc",
            get(move || {
                let page = redoc.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                            (header::CACHE_CONTROL, "public, max-age=3600"),
                            // ReDoc's bundle is inline script; nothing else may run or load.
                            (
                                header::CONTENT_SECURITY_POLICY,
                                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                                 img-src data:; font-src data:; connect-src 'self'; worker-src blob:; frame-ancestors 'none'",
                            ),
                        ],
                        page,
                    )
                        .into_response()
                }
            }),
        )
        .layer(axum::middleware::map_response(docs_security_headers))
}

/// Swagger UI's page loads its own scripts and styles from this server (its views also set
/// inline styles), shows inline images, and talks to this origin only (the document, and the
/// requests "Try it out" makes).
pub const SWAGGER_UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The headers every docs answer carries (ReDoc's page keeps its own policy): no framing, no
/// sniffing, no referrer beyond this origin.
async fn docs_security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(SWAGGER_UI_CSP));
    h.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
    res
}

/// The document as JSON, as served and as printed by `ordermesh openapi`.
///
/// utoipa 5 writes Link objects' fields in snake_case (`operation_id`); OpenAPI spells them
/// `operationId`, `operationRef`, `requestBody`, so they are renamed here.
pub fn to_json(openapi: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut value = serde_json::to_value(openapi).unwrap_or(serde_json::Value::Null);
    if let Some(paths) = value.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
            for operation in item.values_mut().filter_map(|o| o.as_object_mut()) {
                let Some(responses) = operation.get_mut("responses").and_then(|r| r.as_object_mut()) else { continue };
                for response in responses.values_mut() {
                    let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else { continue };
                    for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                        for (snake, camel) in [
                            ("operation_id", "operationId"),
                            ("operation_ref", "operationRef"),
                            ("request_body", "requestBody"),
                        ] {
                            if let Some(v) = link.remove(snake) {
                                link.insert(camel.to_string(), v);
                            }
                        }
                    }
                }
            }
        }
    }
    value
}

/// Documents `alias` as another path of the operation at `canonical` (a seed's path for the
/// same handler): same parameters, bodies and answers, its own operation id, tagged as a
/// seed dialect.
pub fn alias_path(
    doc: &mut utoipa::openapi::OpenApi,
    canonical: &str,
    method: utoipa::openapi::path::HttpMethod,
    alias: &str,
    alias_method: utoipa::openapi::path::HttpMethod,
) {
    use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
    fn slot(item: &mut PathItem, method: HttpMethod) -> &mut Option<Operation> {
        match method {
            HttpMethod::Get => &mut item.get,
            HttpMethod::Post => &mut item.post,
            HttpMethod::Put => &mut item.put,
            HttpMethod::Patch => &mut item.patch,
            HttpMethod::Delete => &mut item.delete,
            HttpMethod::Head => &mut item.head,
            HttpMethod::Options => &mut item.options,
            HttpMethod::Trace => &mut item.trace,
        }
    }
    let Some(mut operation) = doc.paths.paths.get_mut(canonical).and_then(|item| slot(item, method).clone()) else {
        return;
    };
    let suffix: String = alias.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    operation.operation_id = operation.operation_id.map(|id| format!("{id}_as{suffix}"));
    operation.tags = Some(vec!["seed dialects".to_string()]);
    // Links belong to the canonical operation.
    for response in operation.responses.responses.values_mut() {
        if let utoipa::openapi::RefOr::T(r) = response {
            r.links.clear();
        }
    }
    let item = doc
        .paths
        .paths
        .entry(alias.to_string())
        .or_insert_with(|| PathItem::new(alias_method.clone(), Operation::new()));
    *slot(item, alias_method) = Some(operation);
}

/// ReDoc's page with its one external reference (a footer logo on a CDN) removed, so the
/// page makes no request beyond this server.
fn redoc_page(title: &str) -> String {
    aide::redoc::Redoc::new("/openapi.json")
        .with_title(title)
        .html()
        .replace("https://cdn.redoc.ly/redoc/logo-mini.svg", "data:,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redoc_page_is_self_contained() {
        let page = redoc_page("t");
        assert!(page.contains("Redoc.init(\"/openapi.json\""));
        assert!(page.len() > 500_000, "the bundle is embedded");
        for external in ["https://cdn", "http://cdn", "fonts.googleapis"] {
            assert!(!page.contains(external), "the page loads {external}");
        }
    }
}
