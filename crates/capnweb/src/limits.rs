//! Per-session limits. Every one of them bounds memory or work a peer can make this process
//! spend; going over a limit either rejects the single call (when the session can go on) or ends
//! the session with an `abort`.

use std::time::Duration;

/// Limits applied to every session. [`Limits::default`] suits an API gateway; the values are
/// documented on each field.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest single protocol message. Default 4 MiB: real clients send more than 1 MiB (a
    /// 1 MiB string is a little more once framed; the reference's WebSocket library takes up to
    /// 100 MiB, aiohttp 4 MiB). Bigger → the session ends with an `abort` naming the limit and,
    /// on a WebSocket, a close frame (code 3000, the reason), so the peer's pending calls fail
    /// at once. The WebSocket layer reads frames up to twice this size (a frame may carry
    /// several `\n`-separated messages); a larger frame ends the session the same way, with the
    /// WebSocket layer's words.
    pub max_message_bytes: usize,
    /// Largest HTTP batch request body. Default 8 MiB. Bigger → HTTP 413.
    pub max_body_bytes: usize,
    /// Most messages in one HTTP batch request. Default 1024. More → HTTP 400.
    pub max_batch_messages: usize,
    /// Deepest nesting of arrays/objects in one message, counting the protocol's own wrapping
    /// (an escaped array costs two levels). Default 64. Deeper → abort. The JSON parser refuses
    /// more than 128 levels on its own, so values above ~120 have no effect.
    pub max_depth: usize,
    /// Longest string or object key inside a message, in bytes. Default 4 MiB.
    pub max_string_bytes: usize,
    /// Most decimal digits in a `["bigint", …]`. Default 4096 (TypeScript's default is 16384).
    pub max_bigint_digits: usize,
    /// Most entries in this side's export table (call results not yet released plus
    /// capabilities handed out). Default 65536. More → abort.
    pub max_exports: usize,
    /// Most entries in this side's import table (peer capabilities and promises held, plus
    /// outgoing calls awaiting an answer). Default 65536. More → abort.
    pub max_imports: usize,
    /// Most incoming calls running at once, and separately most outgoing calls awaiting an
    /// answer. Default 1024. An incoming call over the limit is rejected with kind `overloaded`;
    /// an outgoing one fails the same way locally.
    pub max_pending_calls: usize,
    /// Most messages queued for sending before the session stops reading from the peer (a peer
    /// that sends calls but does not read answers is slowed down instead of growing memory).
    /// Default 4096.
    pub max_outgoing_queue: usize,
    /// How long an outgoing call (server → client) may wait for its answer. Default 30 s.
    pub call_timeout: Duration,
    /// How long an HTTP batch may take to settle every pulled call before the server answers
    /// with what it has plus an `abort` line. Default 30 s.
    pub batch_timeout: Duration,
}

impl Limits {
    /// The largest WebSocket frame read: above [`Limits::max_message_bytes`], so that an
    /// over-size message reaches the session and ends it with an `abort` that says why.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_message_bytes.saturating_mul(2)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 << 20,
            max_body_bytes: 8 << 20,
            max_batch_messages: 1024,
            max_depth: 64,
            max_string_bytes: 4 << 20,
            max_bigint_digits: 4096,
            max_exports: 65_536,
            max_imports: 65_536,
            max_pending_calls: 1024,
            max_outgoing_queue: 4096,
            call_timeout: Duration::from_secs(30),
            batch_timeout: Duration::from_secs(30),
        }
    }
}
