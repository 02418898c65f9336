//! What ordermesh's fuzz targets check, one module a target, each with `check(data)` (the Cap'n
//! Web decoder's check lives in `capnweb::fuzzing`, beside the code it checks).
//!
//! The libFuzzer binaries in `fuzz/fuzz_targets/` are one line each around these functions, so
//! the same code runs under the fuzzer (nightly, `fuzz/run.sh`) and in `cargo test` on stable,
//! where `tests/corpus.rs` feeds it every file of `fuzz/corpus/<target>/`: a regression an old
//! find once caught is caught again on every machine, nightly toolchain or not.

pub mod catalog_requests;
pub mod decode_message;
pub mod gateway_headers;
pub mod gateway_paths;
pub mod list_queries;
pub mod money;
pub mod orders_requests;
pub mod users_requests;

/// A target's check: any input at all, a panic for a bug.
pub type Check = fn(&[u8]);

/// Every target by the name of its libFuzzer binary and corpus directory.
pub const TARGETS: &[(&str, Check)] = &[
    ("catalog_requests", catalog_requests::check),
    ("decode_message", decode_message::check),
    ("gateway_headers", gateway_headers::check),
    ("gateway_paths", gateway_paths::check),
    ("list_queries", list_queries::check),
    ("money", money::check),
    ("orders_requests", orders_requests::check),
    ("users_requests", users_requests::check),
];
