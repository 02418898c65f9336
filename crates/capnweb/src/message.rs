//! Top-level protocol messages: parsing (tolerant of the quirks real clients have) and compact
//! serialisation (strict, so the strict Python fork parser accepts everything we send).

use serde_json::{Value as Json, json};

use crate::error::ProtocolError;
use crate::limits::Limits;
use crate::value::parse_id;

/// One protocol message. Expressions stay as JSON here; the session decodes them against its
/// tables.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// `["push", expr]`: evaluate `expr`; the result becomes the receiver's next positive export.
    Push(Json),
    /// `["pull", id]`: send `resolve`/`reject` for export `id` once it settles.
    Pull(i64),
    /// `["resolve", id, expr]`: the sender's export `id` settled to a value.
    Resolve(i64, Json),
    /// `["reject", id, expr]`: the sender's export `id` failed; `expr` is normally an error.
    Reject(i64, Json),
    /// `["release", id, count]`: the sender drops `count` references to the receiver's export.
    Release(i64, u64),
    /// `["abort", expr]`: the sender ends the session because of `expr`.
    Abort(Json),
    /// `["stream", expr]`: like push, implicitly pulled and released once settled.
    Stream(Json),
    /// `["pipe"]`: opens a stream pipe (not supported: the export is created already rejected).
    Pipe,
}

impl Message {
    /// Parses one message (one line of a frame or batch body).
    pub fn parse(text: &str, limits: &Limits) -> Result<Message, ProtocolError> {
        if text.len() > limits.max_message_bytes {
            return Err(ProtocolError::TooLarge { what: "message size in bytes", limit: limits.max_message_bytes });
        }
        // serde_json refuses nesting beyond 128 levels without deep recursion, so even a
        // megabyte of `[[[[` costs only the first 128 bytes.
        let json: Json =
            serde_json::from_str(text).map_err(|e| ProtocolError::malformed(format!("invalid JSON: {e}")))?;
        Self::from_json(json)
    }

    /// Interprets an already-parsed JSON message.
    pub fn from_json(json: Json) -> Result<Message, ProtocolError> {
        let Json::Array(mut items) = json else {
            return Err(ProtocolError::malformed("a message must be a JSON array"));
        };
        let Some(Json::String(kind)) = items.first() else {
            return Err(ProtocolError::malformed("a message must start with its type as a string"));
        };
        let kind = kind.clone();
        let id_at = |items: &[Json], i: usize| {
            items
                .get(i)
                .and_then(parse_id)
                .ok_or_else(|| ProtocolError::malformed(format!("'{kind}' needs an integer id")))
        };
        let arity = |items: &[Json], min: usize, max: usize| {
            if items.len() < min || items.len() > max {
                Err(ProtocolError::malformed(format!("'{kind}' has {} elements", items.len())))
            } else {
                Ok(())
            }
        };
        match kind.as_str() {
            "push" | "stream" => {
                arity(&items, 2, 2)?;
                let expr = items.pop().unwrap_or(Json::Null);
                Ok(if kind == "push" { Message::Push(expr) } else { Message::Stream(expr) })
            }
            "pull" => {
                arity(&items, 2, 2)?;
                Ok(Message::Pull(id_at(&items, 1)?))
            }
            "resolve" | "reject" => {
                arity(&items, 3, 3)?;
                let id = id_at(&items, 1)?;
                let expr = items.pop().unwrap_or(Json::Null);
                Ok(if kind == "resolve" { Message::Resolve(id, expr) } else { Message::Reject(id, expr) })
            }
            "release" => {
                // A missing count means one reference; nobody has been seen sending anything
                // but 1.
                arity(&items, 2, 3)?;
                let id = id_at(&items, 1)?;
                let count = match items.get(2) {
                    None => 1,
                    Some(count) => parse_id(count)
                        .and_then(|c| u64::try_from(c).ok())
                        .ok_or_else(|| ProtocolError::malformed("release count must be a non-negative integer"))?,
                };
                Ok(Message::Release(id, count))
            }
            "abort" => {
                // Any expression is accepted; PyPI's server even sends a bare string.
                arity(&items, 1, 2)?;
                Ok(Message::Abort(items.get(1).cloned().unwrap_or(Json::Null)))
            }
            "pipe" => {
                arity(&items, 1, 1)?;
                Ok(Message::Pipe)
            }
            other => Err(ProtocolError::malformed(format!(
                "unknown message type '{}'",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// Splits a WebSocket frame or batch body into messages: UTF-8, one message per line,
    /// blank lines ignored.
    pub fn parse_frame(frame: &[u8], limits: &Limits) -> Result<Vec<Message>, ProtocolError> {
        let text = std::str::from_utf8(frame).map_err(|_| ProtocolError::malformed("frame is not valid UTF-8"))?;
        split_lines(text).map(|line| Message::parse(line, limits)).collect()
    }

    pub fn to_json(&self) -> Json {
        match self {
            Message::Push(expr) => json!(["push", expr]),
            Message::Pull(id) => json!(["pull", id]),
            Message::Resolve(id, expr) => json!(["resolve", id, expr]),
            Message::Reject(id, expr) => json!(["reject", id, expr]),
            Message::Release(id, count) => json!(["release", id, count]),
            Message::Abort(expr) => json!(["abort", expr]),
            Message::Stream(expr) => json!(["stream", expr]),
            Message::Pipe => json!(["pipe"]),
        }
    }

    /// Compact JSON text: never contains a raw newline.
    pub fn to_text(&self) -> String {
        self.to_json().to_string()
    }
}

/// The non-blank lines of a frame or body, trimmed (tolerates `\r\n` and surrounding spaces).
pub(crate) fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').map(str::trim).filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Message, ProtocolError> {
        Message::parse(text, &Limits::default())
    }

    #[test]
    fn every_message_type_round_trips() {
        let messages = [
            Message::Push(json!(["pipeline", 0, ["login"], ["bob", "bob123"]])),
            Message::Pull(1),
            Message::Resolve(1, json!({"token": "t"})),
            Message::Reject(2, json!(["error", "bad_request", "nope"])),
            Message::Release(-1, 3),
            Message::Abort(json!(["error", "Error", "bye"])),
            Message::Stream(json!(["pipeline", 3, ["write"], [1]])),
            Message::Pipe,
        ];
        for message in messages {
            let text = message.to_text();
            assert!(!text.contains('\n'));
            assert_eq!(parse(&text).unwrap(), message, "{text}");
        }
    }

    #[test]
    fn exact_wire_text() {
        assert_eq!(Message::Pull(1).to_text(), r#"["pull",1]"#);
        assert_eq!(Message::Release(5, 1).to_text(), r#"["release",5,1]"#);
        assert_eq!(Message::Resolve(3, json!("user2")).to_text(), r#"["resolve",3,"user2"]"#);
    }

    #[test]
    fn client_quirks_are_tolerated() {
        // Python spacing, integral floats as ids, a release without count, abort with a string.
        assert_eq!(parse(r#"[ "pull" , 1 ]"#).unwrap(), Message::Pull(1));
        assert_eq!(parse(r#"["pull", 1.0]"#).unwrap(), Message::Pull(1));
        assert_eq!(parse(r#"["release", 4]"#).unwrap(), Message::Release(4, 1));
        assert_eq!(parse(r#"["abort", "plain string"]"#).unwrap(), Message::Abort(json!("plain string")));
        assert_eq!(parse(r#"["abort"]"#).unwrap(), Message::Abort(Json::Null));
        assert_eq!(
            parse(r#"["push", ["pipeline", -1, null, []]]"#).unwrap(),
            Message::Push(json!(["pipeline", -1, null, []]))
        );
    }

    #[test]
    fn frames_split_on_newlines() {
        let frame = b"[\"push\", [\"pipeline\", 0, [\"login\"], [\"bob\", \"bob123\"]]]\n[\"pull\", 1]\n\r\n";
        let messages = Message::parse_frame(frame, &Limits::default()).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1], Message::Pull(1));
        assert!(Message::parse_frame(b"", &Limits::default()).unwrap().is_empty());
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        let deep = "[".repeat(100_000);
        let cases: Vec<&[u8]> = vec![
            b"",
            b"null",
            b"{}",
            b"[]",
            b"[1,2]",
            b"[\"pull\"]",
            b"[\"pull\", \"1\"]",
            b"[\"pull\", true]",
            b"[\"pull\", 1.5]",
            b"[\"pull\", 1e300]",
            b"[\"pull\", 1, 2]",
            b"[\"release\", 1, -1]",
            b"[\"resolve\", 1]",
            b"[\"bogus\", 1]",
            b"[\"push\"",
            b"\xff\xfe[\"pull\",1]",
            deep.as_bytes(),
        ];
        for case in cases {
            let result = std::str::from_utf8(case)
                .map_err(|_| ProtocolError::malformed("utf8"))
                .and_then(|text| if text.is_empty() { Err(ProtocolError::malformed("empty")) } else { parse(text) });
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(&case[..case.len().min(40)]));
        }
        assert!(Message::parse_frame(b"\xff[\"pull\",1]", &Limits::default()).is_err());
    }

    #[test]
    fn oversized_messages_are_rejected_before_parsing() {
        let limits = Limits { max_message_bytes: 16, ..Limits::default() };
        assert!(matches!(Message::parse(r#"["push", "0123456789"]"#, &limits), Err(ProtocolError::TooLarge { .. })));
    }
}
