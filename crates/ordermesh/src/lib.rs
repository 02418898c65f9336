//! The platform's table of services, shared by the `ordermesh` binary and the test kit, so a
//! service added to [`services::SERVICES`] is started by `up`, `serve`, `cluster` and every
//! end-to-end test alike.

pub mod services;
