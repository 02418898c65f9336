//! The Cap'n Web frame, message and expression decoders, the code that sees untrusted RPC
//! input first: the check itself is `capnweb::fuzzing::decode_message`.

pub fn check(data: &[u8]) {
    capnweb::fuzzing::decode_message(data);
}
