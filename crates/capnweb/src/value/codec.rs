//! The wire codec: values to and from JSON, and the expressions a session resolves.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value as Json;

use super::{MAX_SAFE_INTEGER, PathKey, Value, WebKind};
use crate::capability::Capability;
use crate::error::{ProtocolError, RpcError};
use crate::limits::Limits;

/// TypeScript emits unpadded base64, Python padded; accept both, emit unpadded like TypeScript.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A decoded wire expression whose references to session tables are not yet looked up.
/// Subtrees without references collapse into [`Expr::Literal`], so plain arguments cost nothing
/// extra.
#[derive(Debug)]
pub(crate) enum Expr {
    Literal(Value),
    Array(Vec<Expr>),
    Object(Vec<(String, Expr)>),
    /// `["export", id]`: the sender's capability `id`.
    Export(i64),
    /// `["promise", id]`: the sender's promise `id`, which it will resolve proactively.
    Promise(i64),
    /// `["import"|"pipeline", id, path?, args?]`: the receiver's own export `id`, optionally a
    /// property path into it and a call on that path.
    Reference {
        id: i64,
        path: Vec<PathKey>,
        args: Option<Vec<Expr>>,
    },
    /// `["readable", id]`: the read end of the pipe the sender created as our export `id`.
    Readable(i64),
    /// `["writable", id]`: the sender's `WritableStream`, its export `id`.
    Writable(i64),
    /// `["remap", id, path, captures, instructions]`: `.map()` over what the receiver's export
    /// `id` holds at `path` (see `session::mapper`).
    Remap(Box<Remap>),
    /// A web platform value around an expression (a Blob's stream, a Request's or Response's
    /// body).
    Web(Box<(WebKind, Expr)>),
}

/// The body of a `remap`. Inside `instructions` ids name the mapper's own variables, not
/// session tables: 0 is the input, `k > 0` the result of instruction `k`, `-k` capture `k`.
#[derive(Debug)]
pub(crate) struct Remap {
    pub(crate) id: i64,
    pub(crate) path: Vec<PathKey>,
    pub(crate) captures: Vec<Capture>,
    pub(crate) instructions: Vec<Expr>,
}

/// A stub the mapper function closes over.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Capture {
    /// `["import", id]`: the receiver's export `id` (inside a nested mapper: a variable).
    Import(i64),
    /// `["export", id]`: a capability the sender exports with this message.
    Export(i64),
}

/// Decodes a plain value; references and capabilities are refused.
pub fn decode(json: &Json, limits: &Limits) -> Result<Value, ProtocolError> {
    match decode_expr(json, limits)? {
        Expr::Literal(value) => Ok(value),
        _ => Err(ProtocolError::malformed("expression contains references, expected a plain value")),
    }
}

/// Checks that `json` is a well-formed expression (references allowed) within `limits`.
pub fn check_expression(json: &Json, limits: &Limits) -> Result<(), ProtocolError> {
    decode_expr(json, limits).map(drop)
}

/// Encodes a plain value; capabilities are refused.
pub fn encode(value: &Value, limits: &Limits) -> Result<Json, ProtocolError> {
    encode_with(value, limits, &mut |_| {
        Err(ProtocolError::Unsupported("a capability or a pending value can only be sent inside a session".into()))
    })
}

pub(crate) fn decode_expr(json: &Json, limits: &Limits) -> Result<Expr, ProtocolError> {
    Decoder { limits }.expr(json, 0)
}

struct Decoder<'a> {
    limits: &'a Limits,
}

impl Decoder<'_> {
    fn expr(&self, json: &Json, depth: usize) -> Result<Expr, ProtocolError> {
        if depth > self.limits.max_depth {
            return Err(ProtocolError::TooDeep { limit: self.limits.max_depth });
        }
        Ok(match json {
            Json::Null => Expr::Literal(Value::Null),
            Json::Bool(b) => Expr::Literal(Value::Bool(*b)),
            Json::Number(n) => Expr::Literal(number_to_value(n)),
            Json::String(s) => Expr::Literal(Value::String(self.string(s)?.to_owned())),
            Json::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                for (key, value) in map {
                    fields.push((self.string(key)?.to_owned(), self.expr(value, depth + 1)?));
                }
                collapse_object(fields)
            }
            Json::Array(items) => self.array(items, depth)?,
        })
    }

    fn string<'s>(&self, s: &'s str) -> Result<&'s str, ProtocolError> {
        if s.len() > self.limits.max_string_bytes {
            return Err(ProtocolError::TooLarge { what: "string", limit: self.limits.max_string_bytes });
        }
        Ok(s)
    }

    fn array(&self, items: &[Json], depth: usize) -> Result<Expr, ProtocolError> {
        if let [Json::Array(inner)] = items {
            if depth + 1 > self.limits.max_depth {
                return Err(ProtocolError::TooDeep { limit: self.limits.max_depth });
            }
            let elements = inner.iter().map(|item| self.expr(item, depth + 2)).collect::<Result<_, _>>()?;
            return Ok(collapse_array(elements));
        }
        let Some(Json::String(tag)) = items.first() else {
            // Not escaped, yet it cannot be a tag either: PyPI py-capnweb 0.5 escapes only the
            // outermost array of an argument, so read it as the plain array it must be.
            let elements = items.iter().map(|item| self.expr(item, depth + 1)).collect::<Result<_, _>>()?;
            return Ok(collapse_array(elements));
        };
        let args = &items[1..];
        let literal = |value| Ok(Expr::Literal(value));
        match (tag.as_str(), args) {
            ("undefined", []) => literal(Value::Undefined),
            ("inf", []) => literal(Value::Float(f64::INFINITY)),
            ("-inf", []) => literal(Value::Float(f64::NEG_INFINITY)),
            ("nan", []) => literal(Value::Float(f64::NAN)),
            ("date", [Json::Number(ms)]) => literal(Value::Date(ms.as_f64().unwrap_or(f64::NAN))),
            ("date", [Json::Null]) => literal(Value::Date(f64::NAN)),
            ("bigint", [Json::String(digits)]) => literal(Value::BigInt(self.bigint(digits)?)),
            ("bytes", [Json::String(b64)] | [Json::String(b64), Json::String(_)]) => {
                let bytes = BASE64_LENIENT
                    .decode(self.string(b64)?)
                    .map_err(|e| ProtocolError::malformed(format!("bad base64 in bytes: {e}")))?;
                literal(Value::Bytes(bytes))
            }
            ("error", [name, message, rest @ ..]) if rest.len() <= 2 => {
                let text = |j: &Json| match j {
                    Json::String(s) => self.string(s).map(str::to_owned),
                    other => Ok(other.to_string()),
                };
                literal(Value::Error(RpcError::new(text(name)?, text(message)?)))
            }
            ("export", [id]) => Ok(Expr::Export(self.peer_export_id(id)?)),
            ("promise", [id]) => Ok(Expr::Promise(self.peer_export_id(id)?)),
            ("import" | "pipeline", [id, rest @ ..]) if rest.len() <= 2 => {
                let id = parse_id(id).ok_or_else(|| ProtocolError::malformed("bad id in reference"))?;
                let path = match rest.first() {
                    None | Some(Json::Null) => Vec::new(),
                    Some(path) => self.path(path)?,
                };
                let args = match rest.get(1) {
                    None | Some(Json::Null) => None,
                    Some(Json::Array(args)) => {
                        Some(args.iter().map(|a| self.expr(a, depth + 2)).collect::<Result<_, _>>()?)
                    }
                    Some(_) => return Err(ProtocolError::malformed("call arguments must be an array")),
                };
                Ok(Expr::Reference { id, path, args })
            }
            ("remap", [id, path, Json::Array(captures), Json::Array(instructions)]) => {
                let id = parse_id(id).ok_or_else(|| ProtocolError::malformed("bad id in remap"))?;
                let path = self.path(path)?;
                let captures = captures.iter().map(|c| self.capture(c)).collect::<Result<_, _>>()?;
                let instructions = instructions.iter().map(|i| self.expr(i, depth + 2)).collect::<Result<_, _>>()?;
                Ok(Expr::Remap(Box::new(Remap { id, path, captures, instructions })))
            }
            ("readable", [id]) => match parse_id(id) {
                Some(id) if id > 0 => Ok(Expr::Readable(id)),
                _ => Err(ProtocolError::malformed("a readable must name a pipe (a positive id)")),
            },
            ("writable", [id]) => Ok(Expr::Writable(self.peer_export_id(id)?)),
            ("url", [Json::String(href)]) => literal(Value::Url(self.string(href)?.to_owned())),
            ("headers", [Json::Array(pairs)]) => literal(Value::Headers(self.header_pairs(pairs)?)),
            ("blob", [Json::String(mime), body]) => {
                let kind =
                    WebKind::Blob { mime: self.string(mime)?.to_owned(), max_bytes: self.limits.max_message_bytes };
                Ok(Expr::Web(Box::new((kind, self.expr(body, depth + 1)?))))
            }
            ("request", [Json::String(url), Json::Object(init)]) => {
                let mut init = init.clone();
                let body = match init.remove("body") {
                    Some(body) => self.expr(&body, depth + 2)?,
                    None => Expr::Literal(Value::Undefined),
                };
                Ok(web(WebKind::Request { url: self.string(url)?.to_owned(), init }, body))
            }
            ("response", [body, Json::Object(init)]) => {
                Ok(web(WebKind::Response { init: init.clone() }, self.expr(body, depth + 1)?))
            }
            (tag, _) => {
                Err(ProtocolError::malformed(format!("unknown expression tag or wrong arity: '{}'", truncate(tag, 40))))
            }
        }
    }

    fn capture(&self, json: &Json) -> Result<Capture, ProtocolError> {
        match json.as_array().map(Vec::as_slice) {
            Some([Json::String(tag), id]) if tag == "import" => {
                parse_id(id).map(Capture::Import).ok_or_else(|| ProtocolError::malformed("bad id in map capture"))
            }
            Some([Json::String(tag), id]) if tag == "export" => Ok(Capture::Export(self.peer_export_id(id)?)),
            _ => Err(ProtocolError::malformed("a map capture must be [\"import\", id] or [\"export\", id]")),
        }
    }

    fn header_pairs(&self, pairs: &[Json]) -> Result<Vec<(String, String)>, ProtocolError> {
        pairs
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Json::String(name), Json::String(value)]) => {
                    Ok((self.string(name)?.to_owned(), self.string(value)?.to_owned()))
                }
                _ => Err(ProtocolError::malformed("headers must be [name, value] pairs of strings")),
            })
            .collect()
    }

    fn bigint(&self, digits: &str) -> Result<String, ProtocolError> {
        let body = digits.strip_prefix('-').unwrap_or(digits);
        if body.len() > self.limits.max_bigint_digits {
            return Err(ProtocolError::TooLarge { what: "bigint digits", limit: self.limits.max_bigint_digits });
        }
        if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProtocolError::malformed("bigint must be decimal digits"));
        }
        Ok(digits.to_owned())
    }

    /// Exports and promises are named by their sender, who allocates negative ids.
    fn peer_export_id(&self, id: &Json) -> Result<i64, ProtocolError> {
        match parse_id(id) {
            Some(id) if id < 0 => Ok(id),
            _ => Err(ProtocolError::malformed("export/promise ids must be negative integers")),
        }
    }

    fn path(&self, path: &Json) -> Result<Vec<PathKey>, ProtocolError> {
        let Json::Array(keys) = path else {
            return Err(ProtocolError::malformed("a property path must be an array"));
        };
        keys.iter()
            .map(|key| match key {
                Json::String(name) => Ok(PathKey::Name(self.string(name)?.to_owned())),
                Json::Number(n) => n
                    .as_u64()
                    .map(PathKey::Index)
                    .ok_or_else(|| ProtocolError::malformed("path index must be a non-negative integer")),
                _ => Err(ProtocolError::malformed("path keys must be strings or integers")),
            })
            .collect()
    }
}

/// A request or response whose body is known already is a plain value.
fn web(kind: WebKind, body: Expr) -> Expr {
    match (kind, body) {
        (WebKind::Request { url, init }, Expr::Literal(body)) => {
            Expr::Literal(Value::Request(Box::new(super::Request { url, init, body })))
        }
        (WebKind::Response { init }, Expr::Literal(body)) => {
            Expr::Literal(Value::Response(Box::new(super::Response { body, init })))
        }
        (kind, body) => Expr::Web(Box::new((kind, body))),
    }
}

fn collapse_array(elements: Vec<Expr>) -> Expr {
    if elements.iter().all(|e| matches!(e, Expr::Literal(_))) {
        Expr::Literal(Value::Array(elements.into_iter().map(into_literal).collect()))
    } else {
        Expr::Array(elements)
    }
}

fn collapse_object(fields: Vec<(String, Expr)>) -> Expr {
    if fields.iter().all(|(_, e)| matches!(e, Expr::Literal(_))) {
        Expr::Literal(Value::Object(fields.into_iter().map(|(k, e)| (k, into_literal(e))).collect()))
    } else {
        Expr::Object(fields)
    }
}

fn into_literal(expr: Expr) -> Value {
    match expr {
        Expr::Literal(value) => value,
        _ => Value::Undefined, // callers only pass literals
    }
}

/// Ids are JSON integers; an integral float such as `1.0` is tolerated.
pub(crate) fn parse_id(json: &Json) -> Option<i64> {
    let Json::Number(n) = json else { return None };
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64).map(|f| f as i64))
}

pub(super) fn number_to_value(n: &serde_json::Number) -> Value {
    // `is_i64` is only true for integer tokens, also under serde_json's arbitrary_precision.
    match n.as_i64() {
        Some(i) if n.is_i64() => Value::Int(i),
        // Out-of-range tokens only get here under arbitrary_precision; read them as JavaScript does.
        _ => Value::Float(n.as_f64().or_else(|| n.to_string().parse().ok()).unwrap_or(f64::NAN)),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Encodes a value; `export_cap` decides how each capability is written (the session allocates
/// an export id for it).
pub(crate) fn encode_with(
    value: &Value,
    limits: &Limits,
    export: &mut dyn FnMut(Exportable<'_>) -> Result<Json, ProtocolError>,
) -> Result<Json, ProtocolError> {
    Encoder { limits, export }.value(value, 0)
}

/// What only a session can put on the wire: it gives each an export id.
pub(crate) enum Exportable<'v> {
    Capability(&'v Capability),
    /// A pending value whose outcome is not known yet.
    Promise(&'v super::Pending),
    /// A stream to send through a pipe.
    Readable(&'v super::ReadableStream),
}

struct Encoder<'a, 'f> {
    limits: &'a Limits,
    export: &'f mut dyn FnMut(Exportable<'_>) -> Result<Json, ProtocolError>,
}

impl Encoder<'_, '_> {
    fn value(&mut self, value: &Value, depth: usize) -> Result<Json, ProtocolError> {
        if depth > self.limits.max_depth {
            return Err(ProtocolError::TooDeep { limit: self.limits.max_depth });
        }
        let tagged = |tag: &str| Json::Array(vec![Json::String(tag.to_owned())]);
        Ok(match value {
            Value::Undefined => tagged("undefined"),
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) if i.abs() <= MAX_SAFE_INTEGER => Json::from(*i),
            Value::Int(i) => serde_json::json!(["bigint", i.to_string()]),
            Value::Float(f) => float_to_json(*f),
            Value::BigInt(digits) => serde_json::json!(["bigint", digits]),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(bytes) => serde_json::json!(["bytes", BASE64_LENIENT.encode(bytes)]),
            Value::Date(ms) if ms.is_finite() => serde_json::json!(["date", ms]),
            Value::Date(_) => serde_json::json!(["date", null]),
            Value::Array(items) => {
                let inner = items.iter().map(|v| self.value(v, depth + 2)).collect::<Result<_, _>>()?;
                Json::Array(vec![Json::Array(inner)])
            }
            Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.value(v, depth + 1)?)))
                    .collect::<Result<_, ProtocolError>>()?,
            ),
            Value::Error(err) => error_to_json(err),
            Value::Capability(cap) => (self.export)(Exportable::Capability(cap))?,
            Value::Pending(pending) => match pending.peek() {
                // Settled already: no need for a promise round.
                Some(Ok(value)) => self.value(&value, depth)?,
                _ => (self.export)(Exportable::Promise(pending))?,
            },
            Value::Readable(stream) => (self.export)(Exportable::Readable(stream))?,
            Value::Url(href) => serde_json::json!(["url", href]),
            Value::Headers(pairs) => {
                serde_json::json!(["headers", pairs.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>()])
            }
            Value::Blob(blob) => {
                // Its bytes go through a pipe, as the reference sends every Blob.
                let bytes = Ok(Value::Bytes(blob.bytes.clone()));
                let contents = super::ReadableStream::new(futures::stream::iter([bytes]));
                serde_json::json!(["blob", blob.mime, (self.export)(Exportable::Readable(&contents))?])
            }
            Value::Request(request) => {
                let mut init = request.init.clone();
                if !request.body.is_undefined() {
                    init.insert("body".into(), self.value(&request.body, depth + 2)?);
                }
                serde_json::json!(["request", request.url, init])
            }
            Value::Response(response) => {
                serde_json::json!(["response", self.value(&response.body, depth + 1)?, response.init])
            }
            Value::Writable(_) => {
                return Err(ProtocolError::Unsupported("a WritableStream cannot be sent on to another peer".into()));
            }
        })
    }
}

/// As JavaScript's `JSON.stringify` writes numbers: an integral value without a fraction
/// (`4`, not `4.0`; `-0` as `0`), so both sides of a comparison see the same text.
pub(crate) fn float_to_json(f: f64) -> Json {
    if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64 {
        return Json::from(f as i64);
    }
    match serde_json::Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => serde_json::json!(["nan"]),
        None if f > 0.0 => serde_json::json!(["inf"]),
        None => serde_json::json!(["-inf"]),
    }
}

pub(crate) fn error_to_json(err: &RpcError) -> Json {
    serde_json::json!(["error", err.kind, err.message])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits::default()
    }

    fn round_trip(value: Value) -> Value {
        let json = encode(&value, &limits()).expect("encodes");
        let text = json.to_string();
        let back: Json = serde_json::from_str(&text).expect("valid JSON");
        decode(&back, &limits()).expect("decodes")
    }

    #[test]
    fn plain_json_values_round_trip() {
        for value in [
            Value::Null,
            Value::Bool(true),
            Value::Int(-42),
            Value::Float(1059.97),
            Value::from("text with \n newline and \"quotes\""),
            Value::object([("a", Value::Int(1)), ("b", Value::from("x"))]),
        ] {
            assert_eq!(round_trip(value.clone()), value);
        }
    }

    #[test]
    fn arrays_are_escaped_by_wrapping() {
        let value = Value::Array(vec![Value::Int(1), Value::Array(vec![Value::Int(2)])]);
        let json = encode(&value, &limits()).unwrap();
        assert_eq!(json, json!([[1, [[2]]]]));
        assert_eq!(decode(&json, &limits()).unwrap(), value);
        assert_eq!(decode(&json!([[]]), &limits()).unwrap(), Value::Array(vec![]));
        // An array that looks like a tag must survive as data.
        let tricky = Value::Array(vec![Value::from("export"), Value::Int(-1)]);
        assert_eq!(encode(&tricky, &limits()).unwrap(), json!([["export", -1]]));
        assert_eq!(round_trip(tricky.clone()), tricky);
    }

    #[test]
    fn special_forms_round_trip() {
        let special = [
            (Value::Undefined, json!(["undefined"])),
            (Value::Float(f64::INFINITY), json!(["inf"])),
            (Value::Float(f64::NEG_INFINITY), json!(["-inf"])),
            (
                Value::BigInt("-123456789012345678901234567890".into()),
                json!(["bigint", "-123456789012345678901234567890"]),
            ),
            (Value::Int(1 << 60), json!(["bigint", "1152921504606846976"])),
            (Value::Bytes(vec![1, 2, 3, 4]), json!(["bytes", "AQIDBA"])),
            (Value::Date(0.0), json!(["date", 0.0])),
            (Value::Date(1.5), json!(["date", 1.5])),
            (Value::Date(f64::NAN), json!(["date", null])),
            (Value::Error(RpcError::permission_denied("no")), json!(["error", "permission_denied", "no"])),
        ];
        for (value, wire) in special {
            assert_eq!(encode(&value, &limits()).unwrap(), wire, "{value:?}");
            let back = decode(&wire, &limits()).unwrap();
            match (&value, &back) {
                (Value::Int(i), Value::BigInt(s)) => assert_eq!(i.to_string(), *s),
                _ => assert_eq!(back, value),
            }
        }
        let nan = decode(&json!(["nan"]), &limits()).unwrap();
        assert!(matches!(nan, Value::Float(f) if f.is_nan()));
        assert!(matches!(encode(&Value::Float(f64::NAN), &limits()).unwrap(), Json::Array(_)));
    }

    #[test]
    fn decoding_is_lenient_where_clients_differ() {
        // Padded base64 (Python) and the typed-array form (TypeScript >= 0.11).
        assert_eq!(decode(&json!(["bytes", "AQIDBA=="]), &limits()).unwrap(), Value::Bytes(vec![1, 2, 3, 4]));
        assert_eq!(decode(&json!(["bytes", "AQID", "Uint8Array"]), &limits()).unwrap(), Value::Bytes(vec![1, 2, 3]));
        // Errors with a stack and with stack + props.
        let with_stack = json!(["error", "TypeError", "boom", "at x"]);
        assert_eq!(decode(&with_stack, &limits()).unwrap(), Value::Error(RpcError::new("TypeError", "boom")));
        let with_props = json!(["error", "Error", "boom", null, {"code": 7}]);
        assert!(decode(&with_props, &limits()).is_ok());
        let nested = json!({"when": ["date", 1700000000000u64], "list": [[["undefined"], 2]]});
        let value = decode(&nested, &limits()).unwrap();
        assert_eq!(value.get("list").unwrap().as_array().unwrap()[1], Value::Int(2));
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for bad in [
            json!(["nosuchtag"]),
            json!(["bigint", "12a"]),
            json!(["bigint", ""]),
            json!(["bytes", "!!!"]),
            json!(["date"]),
            json!(["export", 1]),
            json!(["export", "x"]),
            json!(["pipeline", 0, "notapath"]),
            json!(["pipeline", 0, [], "notargs"]),
            json!(["error", "only-name"]),
        ] {
            assert!(check_expression(&bad, &limits()).is_err(), "{bad}");
        }
    }

    #[test]
    fn unescaped_arrays_that_cannot_be_tags_are_read_as_arrays() {
        // PyPI py-capnweb 0.5 sends `[[1, [2, 3]]]` for the argument `[1, [2, 3]]`.
        let value = decode(&json!([[1, [2, 3]]]), &limits()).unwrap();
        let inner = Value::Array(vec![Value::Int(2), Value::Int(3)]);
        assert_eq!(value, Value::Array(vec![Value::Int(1), inner]));
        assert_eq!(decode(&json!([]), &limits()).unwrap(), Value::Array(vec![]));
        // What we send is always escaped.
        assert_eq!(encode(&value, &limits()).unwrap(), json!([[1, [[2, 3]]]]));
    }

    #[test]
    fn references_decode_but_are_not_plain_values() {
        let call = json!(["pipeline", 0, ["login"], ["bob", "bob123"]]);
        assert!(check_expression(&call, &limits()).is_ok());
        assert!(decode(&call, &limits()).is_err());
        let fork_style = json!(["pipeline", -1, null, []]);
        match decode_expr(&fork_style, &limits()).unwrap() {
            Expr::Reference { id: -1, path, args: Some(args) } => {
                assert!(path.is_empty() && args.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn limits_are_enforced() {
        let tight = Limits { max_depth: 4, max_string_bytes: 8, max_bigint_digits: 5, ..Limits::default() };
        assert!(matches!(decode(&json!({"a":{"b":{"c":{"d":{"e":1}}}}}), &tight), Err(ProtocolError::TooDeep { .. })));
        assert!(matches!(decode(&json!("123456789"), &tight), Err(ProtocolError::TooLarge { .. })));
        assert!(matches!(decode(&json!(["bigint", "123456"]), &tight), Err(ProtocolError::TooLarge { .. })));
        assert!(decode(&json!(["bigint", "-12345"]), &tight).is_ok());
        // Encoding refuses values deeper than the limit instead of recursing without bound.
        let mut deep = Value::Null;
        for _ in 0..10 {
            deep = Value::Array(vec![deep]);
        }
        assert!(matches!(encode(&deep, &tight), Err(ProtocolError::TooDeep { .. })));
    }

    #[test]
    fn huge_numbers_do_not_panic() {
        let limits = limits();
        for text in ["1e400", "-1e400", "123456789012345678901234567890", "1.7976931348623157e308"] {
            if let Ok(json) = serde_json::from_str::<Json>(text) {
                let value = decode(&json, &limits).unwrap();
                assert!(matches!(value, Value::Float(_)), "{text}: {value:?}");
                let _ = encode(&value, &limits).unwrap();
            }
        }
    }

    #[test]
    fn capabilities_need_a_session() {
        let cap = Capability::local(std::sync::Arc::new(crate::capability::tests_support::Nothing));
        assert!(encode(&Value::Capability(cap), &limits()).is_err());
    }

    #[test]
    fn serde_helpers() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Item {
            name: String,
            price: f64,
        }
        let item = Item { name: "Laptop".into(), price: 999.99 };
        let value = Value::from_serde(&item).unwrap();
        assert_eq!(value.get("name").and_then(Value::as_str), Some("Laptop"));
        assert_eq!(value.to_serde::<Item>().unwrap(), item);
    }
}
