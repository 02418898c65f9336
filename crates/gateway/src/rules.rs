//! The public API's map: which service serves a path, what it is called there, and what a
//! caller needs to be let through at the edge. The services enforce their own rules again;
//! this is the first line, which keeps the obviously unauthorised away from them.

use api::Permission;
use axum::http::Method;

/// A service behind the gateway. Adding one here is the gateway's whole share of adding a
/// service: a variant, its row in [`Service::ALL`] and the methods below, its paths in
/// [`route`] and its rules in [`access`]; the configuration, upstream pools, health checks and
/// breaker gauges follow from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Users,
    Catalog,
    Orders,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Users, Service::Catalog, Service::Orders];

    /// Its name in metrics, health reports and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Catalog => "catalog",
            Service::Orders => "orders",
        }
    }

    /// The settings its instances' addresses are read from: the platform's own name first,
    /// then the names the seed systems used for the same thing.
    pub const fn url_keys(self) -> &'static [&'static str] {
        match self {
            Service::Users => &["USER_SERVICE_URL"],
            Service::Catalog => &["CATALOG_SERVICE_URL", "PRODUCT_SERVICE_URL", "INVENTORY_SERVICE_URL"],
            Service::Orders => &["ORDER_SERVICE_URL"],
        }
    }

    /// Where it listens when no setting says (its `serve` default port).
    pub const fn default_url(self) -> &'static str {
        match self {
            Service::Users => "http://127.0.0.1:8081",
            Service::Catalog => "http://127.0.0.1:8083",
            Service::Orders => "http://127.0.0.1:8082",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// One value for each service behind the gateway (its instances' addresses, its upstream pool),
/// indexed by [`Service`].
#[derive(Debug, Clone)]
pub struct PerService<T>([T; Service::ALL.len()]);

impl<T> PerService<T> {
    pub fn try_from_fn<E>(mut make: impl FnMut(Service) -> Result<T, E>) -> Result<Self, E> {
        let mut values = Vec::with_capacity(Service::ALL.len());
        for service in Service::ALL {
            values.push(make(service)?);
        }
        Ok(PerService(values.try_into().unwrap_or_else(|_| unreachable!("one value per service"))))
    }

    pub fn from_fn(make: impl FnMut(Service) -> T) -> Self {
        PerService(Service::ALL.map(make))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

impl<T> std::ops::Index<Service> for PerService<T> {
    type Output = T;

    fn index(&self, service: Service) -> &T {
        &self.0[service.index()]
    }
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
    fn every_service_has_its_own_row_in_the_table() {
        for (position, service) in Service::ALL.into_iter().enumerate() {
            assert_eq!(service.index(), position, "{service:?} is out of place in Service::ALL");
        }
        let table = PerService::from_fn(Service::name);
        assert_eq!(table.values().copied().collect::<Vec<_>>(), ["users", "catalog", "orders"]);
        assert_eq!(table[Service::Orders], "orders");
    }

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
