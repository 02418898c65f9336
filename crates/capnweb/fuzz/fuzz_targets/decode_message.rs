#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| capnweb::fuzzing::decode_message(data));
