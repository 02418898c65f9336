//! Shared plumbing for the ordermesh services. Nothing here knows about users, products or
//! orders; it is what every service needs to be a well-behaved HTTP service.

pub mod auth;
pub mod client;
pub mod client_ip;
pub mod config;
pub mod context;
pub mod db;
pub mod docs;
pub mod error;
pub mod extract;
pub mod layers;
pub mod local;
pub mod metrics;
pub mod pagination;
pub mod problem;
pub mod server;
pub mod service_settings;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod test_certs;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod traces;

pub use problem::Problem;
