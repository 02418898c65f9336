//! The value model and its wire codec.
//!
//! On the wire a value is JSON with one escape rule: an array whose first element is a string is
//! a tagged special form (`["date", 0]`, `["export", -1]`, …), and a genuine array is written
//! wrapped in one extra array (`[[1, 2]]` is the array `[1, 2]`). [`encode`] and [`decode`]
//! translate plain values; capabilities and references only make sense inside a session, which
//! uses the crate-internal `Expr` form (in `codec.rs`).

use std::fmt;

pub use indexmap::IndexMap;

use serde_json::Value as Json;

use crate::capability::Capability;
use crate::error::RpcError;

mod codec;
mod pending;
mod stream;
mod web;

pub(crate) use codec::Exportable;
use codec::number_to_value;
pub(crate) use codec::{Capture, Expr, Remap, decode_expr, encode_with, error_to_json, parse_id};
pub use codec::{check_expression, decode, encode};
pub use pending::Pending;
pub(crate) use pending::settle_all;
pub(crate) use stream::already_read;
pub use stream::{Chunks, ReadableStream, WritableStream};
pub(crate) use web::WebKind;
pub use web::{Blob, Request, Response};

/// Integers up to this magnitude are exact in a JavaScript number; bigger ones travel as bigint.
pub(crate) const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

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
    /// Keys in insertion order, as in a JavaScript object.
    Object(IndexMap<String, Value>),
    /// An error value (what `reject` carries; may also appear inside data).
    Error(RpcError),
    /// A reference to an object that lives on this side or on the peer.
    Capability(Capability),
    /// A part of a result still being computed; sent as `["promise", -n]` (see [`Pending`]).
    Pending(Pending),
    /// A stream of values, sent through a pipe (see [`ReadableStream`]).
    Readable(ReadableStream),
    /// The peer's writable stream (see [`WritableStream`]).
    Writable(WritableStream),
    /// A `URL`, as its `href`.
    Url(String),
    /// A fetch `Headers`, as `[name, value]` pairs (names lower-case, as the sender gave them).
    Headers(Vec<(String, String)>),
    Blob(Blob),
    Request(Box<Request>),
    Response(Box<Response>),
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

    pub fn as_object(&self) -> Option<&IndexMap<String, Value>> {
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
            Value::Pending(_) => "promise",
            Value::Readable(_) => "ReadableStream",
            Value::Writable(_) => "WritableStream",
            Value::Url(_) => "URL",
            Value::Headers(_) => "Headers",
            Value::Blob(_) => "Blob",
            Value::Request(_) => "Request",
            Value::Response(_) => "Response",
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
            (Url(a), Url(b)) => a == b,
            (Headers(a), Headers(b)) => a == b,
            (Blob(a), Blob(b)) => a == b,
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
    IndexMap<String, Value> => Object,
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
