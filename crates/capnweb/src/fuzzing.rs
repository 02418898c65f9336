//! Feeds arbitrary bytes to the frame/message decoder and the expression decoder, the code
//! that sees untrusted input first. Any panic, overflow or hang is a bug.

use crate::{Limits, Message, ProtocolError, value};

/// The fuzz target `decode_message`'s body (`fuzz/fuzz_targets/`), also replayed over its
/// committed corpus by `crates/fuzz-checks/tests/corpus.rs` on the stable toolchain.
pub fn decode_message(data: &[u8]) {
    let limits = Limits::default();
    let Ok(messages) = Message::parse_frame(data, &limits) else { return };
    for message in messages {
        let expression = match &message {
            Message::Push(e)
            | Message::Stream(e)
            | Message::Resolve(_, e)
            | Message::Reject(_, e)
            | Message::Abort(e) => Some(e),
            Message::Pull(_) | Message::Release(..) | Message::Pipe => None,
        };
        if let Some(expression) = expression {
            let _ = value::check_expression(expression, &limits);
            if let Ok(plain) = value::decode(expression, &limits) {
                // What decodes must encode again (leniently read unescaped arrays cost more
                // depth once escaped, so only the depth limit may refuse).
                match value::encode(&plain, &limits) {
                    Ok(_) | Err(ProtocolError::TooDeep { .. }) => {}
                    Err(err) => panic!("decoded value does not re-encode: {err}"),
                }
            }
        }
        // What was parsed serialises to something that parses again.
        let text = message.to_text();
        let unlimited = Limits { max_message_bytes: usize::MAX, ..Limits::default() };
        if let Err(err) = Message::parse(&text, &unlimited) {
            panic!("re-serialised message does not parse: {err}: {text}");
        }
    }
}
