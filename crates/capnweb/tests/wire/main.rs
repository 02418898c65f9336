//! The protocol's newer forms on the raw wire, exactly as npm capnweb 0.12 sends them: one test
//! binary for all four (each binary costs a link of the whole crate).

#[path = "../common/mod.rs"]
mod common;

mod promises;
mod remap;
mod streams;
mod web_values;
