//! The value model and its wire codec.
//!
//! On the wire a value is JSON with one escape rule: an array whose first element is a string is
//! a tagged special form (`["date", 0]`, `["export", -1]`, …), and a genuine array is written
//! wrapped in one extra array (`[[1, 2]]` is the array `[1, 2]`). [`encode`] and [`decode`]
//! translate plain values; capabilities and references only make sense inside a session, which
//! uses the crate-internal `Expr` form below.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value as Json;

use crate::capability::Capability;
use crate::error::{ProtocolError, RpcError};
use crate::limits::Limits;

/// Integers up to this magnitude are exact in a JavaScript number; bigger ones travel as bigint.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// TypeScript emits unpadded base64, Python padded; accept both, emit unpadded like TypeScript.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A value as the protocol sees it: JSON plus JavaScript's extra types and capabilities.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// JavaScript `undefined` (also what a missing property reads as).
    #[default]
    Undefined,
    Null,
    Bool(bool),
    /// A number written without fraction or exponent that fits in an `i64`.
    Int(i64),
    /// Any other number, including ±infinity and NaN (sent as `["inf"]`, `["-inf"]`, `["nan"]`).
    Float(f64),
    /// A JavaScript BigInt, as its decimal text (optional `-`, then digits).
    BigInt(String),
    String(String),
    Bytes(Vec<u8>),
    /// A JavaScript Date: milliseconds since the epoch; NaN is the invalid date.
    Date(f64),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
    /// An error value (what `reject` carries; may also appear inside data).
    Error(RpcError),
    /// A reference to an object that lives on this side or on the peer.
    Capability(Capability),
}

impl Value {
    /// Builds an object from key/value pairs.
    pub fn object<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as an integer, accepting floats that hold an integral value.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64 => Some(*f as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_capability(&self) -> Option<&Capability> {
        match self {
            Value::Capability(cap) => Some(cap),
            _ => None,
        }
    }

    /// Looks up an object key; `None` for missing keys and non-objects.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|map| map.get(key))
    }

    pub fn is_undefined(&self) -> bool {
        matches!(self, Value::Undefined)
    }

    /// Converts a serde-serialisable Rust value (plain JSON data; no special forms).
    pub fn from_serde<T: serde::Serialize>(value: &T) -> Result<Value, RpcError> {
        serde_json::to_value(value)
            .map(Value::from)
            .map_err(|e| RpcError::internal(format!("cannot serialise result: {e}")))
    }

    /// Reads plain JSON data into a Rust type; special forms other than `undefined` (read as
    /// null) and finite numbers are refused.
    pub fn to_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T, RpcError> {
        let json = self.to_plain_json().ok_or_else(|| RpcError::bad_request("value is not plain JSON data"))?;
        serde_json::from_value(json).map_err(|e| RpcError::bad_request(e.to_string()))
    }

    /// The value as plain JSON if it is plain data (capabilities, bytes, dates … give `None`).
    pub fn to_plain_json(&self) -> Option<Json> {
        Some(match self {
            Value::Undefined | Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => Json::Number(serde_json::Number::from_f64(*f)?),
            Value::String(s) => Json::String(s.clone()),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_plain_json).collect::<Option<_>>()?),
            Value::Object(map) => {
                Json::Object(map.iter().map(|(k, v)| Some((k.clone(), v.to_plain_json()?))).collect::<Option<_>>()?)
            }
            _ => return None,
        })
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Value::Undefined => "undefined",
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::Float(_) => "number",
            Value::BigInt(_) => "bigint",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Error(_) => "error",
            Value::Capability(_) => "capability",
        }
    }
}

/// Numbers compare by value (`Int(2) == Float(2.0)`, as in JavaScript); capabilities by identity.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Undefined, Undefined) | (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Int(a), Float(b)) | (Float(b), Int(a)) => *a as f64 == *b,
            (Float(a), Float(b)) => a == b,
            (BigInt(a), BigInt(b)) => a == b,
            (String(a), String(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Date(a), Date(b)) => a == b || (a.is_nan() && b.is_nan()),
            (Array(a), Array(b)) => a == b,
            (Object(a), Object(b)) => a == b,
            (Error(a), Error(b)) => a == b,
            (Capability(a), Capability(b)) => a.same_as(b),
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_plain_json() {
            Some(json) => write!(f, "{json}"),
            None => write!(f, "<{}>", self.kind_name()),
        }
    }
}

macro_rules! from_impls {
    ($($t:ty => $variant:ident $(as $cast:ty)?),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v $(as $cast)?)
            }
        })*
    };
}

from_impls! {
    bool => Bool,
    i64 => Int,
    i32 => Int as i64,
    u32 => Int as i64,
    f64 => Float,
    String => String,
    Vec<Value> => Array,
    BTreeMap<String, Value> => Object,
    RpcError => Error,
    Capability => Capability,
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_owned())
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Plain JSON into a value, with no escape interpretation (arrays are arrays).
impl From<Json> for Value {
    fn from(json: Json) -> Value {
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => number_to_value(&n),
            Json::String(s) => Value::String(s),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Json::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, Value::from(v))).collect()),
        }
    }
}

/// One step of a property path: a name, or an index into an array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKey {
    Name(String),
    Index(u64),
}

impl PathKey {
    pub(crate) fn to_json(&self) -> Json {
        match self {
            PathKey::Name(name) => Json::String(name.clone()),
            PathKey::Index(i) => Json::from(*i),
        }
    }
}

impl fmt::Display for PathKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathKey::Name(name) => f.write_str(name),
            PathKey::Index(i) => write!(f, "{i}"),
        }
    }
}

impl From<&str> for PathKey {
    fn from(name: &str) -> PathKey {
        PathKey::Name(name.to_owned())
    }
}

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
    /// A well-formed form this implementation does not support (remap, streams, …).
    Unsupported(&'static str),
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
        Err(ProtocolError::Unsupported("a capability can only be sent inside a session".into()))
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
            ("remap", _) => Ok(Expr::Unsupported("remap (.map() on a promise)")),
            ("writable" | "readable", _) => Ok(Expr::Unsupported("streams")),
            ("blob", _) => Ok(Expr::Unsupported("Blob values")),
            ("url" | "headers" | "request" | "response", _) => Ok(Expr::Unsupported("web platform values")),
            (tag, _) => {
                Err(ProtocolError::malformed(format!("unknown expression tag or wrong arity: '{}'", truncate(tag, 40))))
            }
        }
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

fn number_to_value(n: &serde_json::Number) -> Value {
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
    export_cap: &mut dyn FnMut(&Capability) -> Result<Json, ProtocolError>,
) -> Result<Json, ProtocolError> {
    Encoder { limits, export_cap }.value(value, 0)
}

struct Encoder<'a, 'f> {
    limits: &'a Limits,
    export_cap: &'f mut dyn FnMut(&Capability) -> Result<Json, ProtocolError>,
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
            Value::Capability(cap) => (self.export_cap)(cap)?,
        })
    }
}

pub(crate) fn float_to_json(f: f64) -> Json {
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
