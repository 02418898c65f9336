//! The platform's shared vocabulary: what the services, the gateway, the storefront and the
//! load generator say to each other. `kit` is the plumbing every service needs and knows
//! nothing of users, products or orders; this crate is where those words live.
//!
//! The shapes a service answers with (`users::User`, `catalog::Product`, `orders::Order`, …)
//! are defined here once: the service serialises them and documents them in its OpenAPI
//! document, and the storefront, the Cap'n Web shop and the orders service (reading the
//! catalog's reservations) deserialise the same types, so a field renamed in one place is
//! renamed for every reader, or the build breaks.

pub mod access;
pub mod catalog;
pub mod events;
pub mod money;
pub mod orders;
pub mod users;

pub use access::{Grants, Permission};
pub use money::Money;
