//! The platform's shared vocabulary: what the services, the gateway, the storefront and the
//! load generator say to each other. `kit` is the plumbing every service needs and knows
//! nothing of users, products or orders; this crate is where those words live.

pub mod access;
pub mod events;
pub mod money;

pub use access::{Grants, Permission};
pub use money::Money;
