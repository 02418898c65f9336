#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::catalog_requests::check(data));
