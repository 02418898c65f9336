//! The public API's map: which service serves a path, what it is called there, and what a
//! caller needs to be let through at the edge. The services enforce their own rules again;
//! this is the first line, which keeps the obviously unauthorised away from them.

use api::Permission;
use axum::http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Users,
    Catalog,
    Orders,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Anyone, but counted against the strict sign-in/registration quota.
    CredentialAttempt,
    /// A valid bearer token.
    Authenticated,
    /// A valid bearer token carrying this permission.
    Requires(Permission),
    /// Not through the gateway, whoever asks.
    Forbidden,
}

/// Where an API path (and query) goes: the service and the path on it (`/api` dropped).
pub fn route(path_and_query: &str) -> Option<(Service, &str)> {
    let rest = path_and_query.strip_prefix("/api")?;
    let path = rest.split('?').next().unwrap_or(rest);
    let service = if under(path, "/users") || matches!(path, "/auth/token" | "/auth/verify") {
        Service::Users
    } else if under(path, "/products") || under(path, "/categories") || under(path, "/events") {
        Service::Catalog
    } else if under(path, "/orders") {
        Service::Orders
    } else {
        return None;
    };
    Some((service, rest))
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'))
}

/// What the edge requires for `method path` (any path; non-API paths are public here and
/// protect themselves).
pub fn access(method: &Method, path: &str) -> Access {
    let Some((service, rest)) = route(path) else { return Access::Public };
    let rest = rest.split('?').next().unwrap_or(rest);
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match service {
        Service::Users => match (method, segments.as_slice()) {
            // `POST /users` is seed 004's registration: the same quota as `/users/register`.
            (&Method::POST, ["users", "login" | "register" | "verify"] | ["users"]) => Access::CredentialAttempt,
            // Service credentials are exchanged between services, on the users service's own
            // port: a client of the public API has no use for them.
            (_, ["auth", "token"]) => Access::Forbidden,
            (&Method::POST, ["auth", "verify"]) => Access::Public,
            (&Method::POST, ["users", "refresh"]) => Access::Public,
            (&Method::GET, ["users"]) => Access::Requires(Permission::UserManage),
            _ => Access::Authenticated,
        },
        // Event delivery (`/events` itself) is between services. The event records under it
        // are for administrators; the service answers other methods there with 405.
        Service::Catalog if segments.as_slice() == ["events"] => Access::Forbidden,
        Service::Catalog if segments.first() == Some(&"events") => Access::Requires(Permission::SystemAdmin),
        Service::Catalog => {
            if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
                Access::Public
            } else {
                Access::Requires(Permission::ProductManage)
            }
        }
        Service::Orders => match (method, segments.as_slice()) {
            (&Method::PUT, ["orders", _, "status"]) => Access::Requires(Permission::OrderManage),
            (&Method::POST, ["orders", _, "cancel"]) => Access::Requires(Permission::OrderCancel),
            _ => Access::Authenticated,
        },
    }
}

/// Requests whose body is a file rather than JSON (a product picture, `POST
/// /products/{id}/images` on the catalog): they get the upload limit instead of the body limit.
/// Asked of every proxied request, so it allocates nothing.
pub fn is_upload(method: &Method, upstream_path_and_query: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let path = upstream_path_and_query.split('?').next().unwrap_or_default();
    let mut segments = path.trim_matches('/').split('/');
    matches!(
        (segments.next(), segments.next(), segments.next(), segments.next()),
        (Some("products"), Some(_), Some("images"), None)
    )
}

/// The path of the users service's logout, whose success the gateway also records locally so
/// the token is refused here at once.
pub fn is_logout(method: &Method, path: &str) -> bool {
    method == Method::POST && path == "/api/users/logout"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/api/users/login"), Some((Service::Users, "/users/login")));
        assert_eq!(route("/api/products?x=1"), Some((Service::Catalog, "/products?x=1")));
        assert_eq!(route("/api/categories"), Some((Service::Catalog, "/categories")));
        assert_eq!(route("/api/orders/abc/status"), Some((Service::Orders, "/orders/abc/status")));
        assert_eq!(route("/api/ordersx"), None);
        assert_eq!(route("/api/reservations"), None, "internal APIs are not exposed");
        assert_eq!(route("/api/auth/token"), Some((Service::Users, "/auth/token")));
        assert_eq!(route("/api/auth/revocations"), None, "internal APIs are not exposed");
        assert_eq!(route("/health"), None);
    }

    #[test]
    fn access_rules() {
        use Access::*;
        assert_eq!(access(&Method::POST, "/api/users/login"), CredentialAttempt);
        assert_eq!(access(&Method::GET, "/api/users"), Requires(Permission::UserManage));
        assert_eq!(access(&Method::GET, "/api/users/me"), Authenticated);
        assert_eq!(access(&Method::GET, "/api/products/1"), Public);
        assert_eq!(access(&Method::DELETE, "/api/products/1"), Requires(Permission::ProductManage));
        assert_eq!(access(&Method::POST, "/api/orders"), Authenticated);
        assert_eq!(access(&Method::PUT, "/api/orders/x/status"), Requires(Permission::OrderManage));
        assert_eq!(access(&Method::POST, "/api/orders/x/cancel"), Requires(Permission::OrderCancel));
        assert_eq!(access(&Method::GET, "/"), Public);
        assert_eq!(access(&Method::GET, "/api/events/stats"), Requires(Permission::SystemAdmin));
        assert_eq!(access(&Method::POST, "/api/events"), Forbidden);
        assert_eq!(access(&Method::GET, "/api/events"), Forbidden);
        assert_eq!(access(&Method::TRACE, "/api/events/stats"), Requires(Permission::SystemAdmin));
        assert_eq!(access(&Method::POST, "/api/users"), CredentialAttempt);
        assert_eq!(access(&Method::POST, "/api/auth/token"), Forbidden);
    }

    #[test]
    fn only_picture_uploads_get_the_upload_limit() {
        assert!(is_upload(&Method::POST, "/products/3/images?alt=x"));
        assert!(!is_upload(&Method::POST, "/products/3/images/abc"));
        assert!(!is_upload(&Method::PUT, "/products/3/images"));
        assert!(!is_upload(&Method::POST, "/products"));
        assert!(!is_upload(&Method::POST, "/orders/3/images"));
    }
}
