//! The public API's operations as route templates (`/api/products/{id}`), so that the gateway's
//! metrics and access log count each operation instead of the one `/api/{*rest}` route every
//! proxied request matches. Only the document's templates become labels: a client inventing
//! paths cannot mint new series.

use std::sync::Arc;

use kit::layers::RouteTemplate;

pub struct RouteTemplates {
    router: matchit::Router<RouteTemplate>,
}

impl RouteTemplates {
    /// The templates of every path in `document` (OpenAPI writes parameters as `{name}`, the
    /// matcher's syntax too). A template the matcher cannot hold beside the others is counted
    /// under the catch-all route, and said once here.
    pub fn of(document: &utoipa::openapi::OpenApi) -> Self {
        let mut router = matchit::Router::new();
        for path in document.paths.paths.keys() {
            if let Err(e) = router.insert(path.as_str(), RouteTemplate(Arc::from(path.as_str()))) {
                tracing::warn!(path = %path, error = %e, "this path is counted under the catch-all route");
            }
        }
        RouteTemplates { router }
    }

    /// The template `path` matches, if the document has one.
    pub fn of_path(&self, path: &str) -> Option<&RouteTemplate> {
        self.router.at(path).ok().map(|m| m.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{OpenApiBuilder, PathsBuilder};

    fn document(paths: &[&str]) -> utoipa::openapi::OpenApi {
        let mut builder = PathsBuilder::new();
        for p in paths {
            builder = builder.path(*p, PathItem::new(HttpMethod::Get, OperationBuilder::new().build()));
        }
        OpenApiBuilder::new().paths(builder.build()).build()
    }

    #[test]
    fn a_path_is_labelled_with_its_operations_template_and_a_literal_segment_wins() {
        let templates = RouteTemplates::of(&document(&[
            "/api/orders",
            "/api/orders/articles",
            "/api/orders/{id}",
            "/api/products/{id}/images/{image}",
        ]));
        let of = |p: &str| templates.of_path(p).map(|t| t.0.to_string());
        assert_eq!(of("/api/orders").as_deref(), Some("/api/orders"));
        assert_eq!(of("/api/orders/articles").as_deref(), Some("/api/orders/articles"));
        assert_eq!(of("/api/orders/42").as_deref(), Some("/api/orders/{id}"));
        assert_eq!(of("/api/products/7/images/3").as_deref(), Some("/api/products/{id}/images/{image}"));
        assert_eq!(of("/api/orders/42/unknown"), None, "a path of no operation keeps the catch-all label");
        assert_eq!(of("/api/nothing-here"), None);
    }
}
