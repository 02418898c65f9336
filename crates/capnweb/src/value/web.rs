//! The web platform's values the protocol carries: `URL`, `Headers`, `Blob`, `Request` and
//! `Response`, kept as their parts so they go back out as they came in.

use serde_json::{Map, Value as Json};

use super::Value;

/// A `Blob`: its MIME type (may be empty) and its bytes. On the wire its bytes travel through a
/// pipe, so a Blob needs a WebSocket session; a received one is delivered once every chunk is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub mime: String,
    pub bytes: Vec<u8>,
}

/// A fetch `Request`: the URL, the `init` properties other than `body` as plain JSON (`method`,
/// `headers` as `[name, value]` pairs, …), and the body (`Null`, a string, bytes, or a
/// `ReadableStream`, which is how JavaScript clients send any body).
#[derive(Clone, Debug)]
pub struct Request {
    pub url: String,
    pub init: Map<String, Json>,
    pub body: Value,
}

/// A fetch `Response`: the body (as for [`Request`]) and the `init` properties (`status`,
/// `statusText`, `headers` as pairs, …) as plain JSON.
#[derive(Clone, Debug)]
pub struct Response {
    pub body: Value,
    pub init: Map<String, Json>,
}

/// What a web value with an expression inside becomes once that expression is evaluated.
#[derive(Debug)]
pub(crate) enum WebKind {
    /// The body is the blob's readable stream; at most `max_bytes` are collected.
    Blob {
        mime: String,
        max_bytes: usize,
    },
    Request {
        url: String,
        init: Map<String, Json>,
    },
    Response {
        init: Map<String, Json>,
    },
}

impl WebKind {
    /// The value, given its evaluated body (`Undefined`: a request without one).
    pub(crate) async fn finish(self, body: Value) -> Result<Value, crate::error::RpcError> {
        use crate::error::RpcError;
        use futures::StreamExt as _;
        Ok(match self {
            WebKind::Request { url, init } => Value::Request(Box::new(Request { url, init, body })),
            WebKind::Response { init } => Value::Response(Box::new(Response { body, init })),
            WebKind::Blob { mime, max_bytes } => {
                let Value::Readable(stream) = body else {
                    return Err(RpcError::bad_request("a Blob's contents must be a readable stream"));
                };
                let mut chunks = stream.take().ok_or_else(super::already_read)?;
                let mut bytes = Vec::new();
                while let Some(chunk) = chunks.next().await {
                    match chunk? {
                        Value::Bytes(more) => bytes.extend_from_slice(&more),
                        Value::String(text) => bytes.extend_from_slice(text.as_bytes()),
                        other => {
                            return Err(RpcError::bad_request(format!("a Blob's stream carried {other}, not bytes")));
                        }
                    }
                    if bytes.len() > max_bytes {
                        return Err(RpcError::bad_request(format!("a Blob may hold at most {max_bytes} bytes")));
                    }
                }
                Value::Blob(Blob { mime, bytes })
            }
        })
    }
}
