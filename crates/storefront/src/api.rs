//! The services' JSON the pages read: the services' own shapes, from the `api` crate.

pub use api::catalog::{Categories, Product, ProductImage};
pub use api::orders::{Order, OrderItem, OrderStatus, StatusChange};
pub use api::users::{TokenResponse, User};
pub use kit::pagination::Paged;
