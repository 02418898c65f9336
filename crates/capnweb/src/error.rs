//! The two kinds of failure: an [`RpcError`] is an ordinary outcome of one call and travels to the
//! peer as `["error", kind, message]`; a [`ProtocolError`] means the peer broke the protocol and
//! ends the whole session with an `abort`.

use std::fmt;

/// Error kinds understood by the Python clients (they map `kind` to their `ErrorCode`); the
/// TypeScript client turns any kind into a plain `Error` carrying the message.
pub mod kinds {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const NOT_FOUND: &str = "not_found";
    pub const CAP_REVOKED: &str = "cap_revoked";
    pub const PERMISSION_DENIED: &str = "permission_denied";
    pub const CANCELED: &str = "canceled";
    pub const INTERNAL: &str = "internal";
    /// Not a Python `ErrorCode` (those clients see it as `internal`); used when a limit refuses work.
    pub const OVERLOADED: &str = "overloaded";
}

/// The failure of one call, as the peer sees it: `["error", kind, message]` on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    /// A short code such as `not_found` (see [`kinds`]) or a JavaScript error class name
    /// (`Error`, `TypeError`) when it came from a TypeScript peer.
    pub kind: String,
    /// Human-readable text; this is what the clients show to their users.
    pub message: String,
}

impl RpcError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        RpcError { kind: kind.into(), message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(kinds::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(kinds::NOT_FOUND, message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(kinds::PERMISSION_DENIED, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(kinds::INTERNAL, message)
    }

    pub fn cap_revoked(message: impl Into<String>) -> Self {
        Self::new(kinds::CAP_REVOKED, message)
    }

    pub fn canceled(message: impl Into<String>) -> Self {
        Self::new(kinds::CANCELED, message)
    }

    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(kinds::OVERLOADED, message)
    }

    /// What a target should return for a method name it does not implement. The session
    /// recognises exactly this error to fall back to [`RpcTarget::get`](crate::RpcTarget::get)
    /// for zero-argument calls (the Python fork sends property reads that way).
    pub fn method_not_found(method: &str) -> Self {
        Self::not_found(format!("Method '{method}' not found"))
    }

    /// The default answer of [`RpcTarget::get`](crate::RpcTarget::get).
    pub fn property_not_found(property: &str) -> Self {
        Self::not_found(format!("Property '{property}' not found"))
    }

    /// True when this is [`RpcError::method_not_found`] for `method`.
    pub fn is_method_not_found(&self, method: &str) -> bool {
        self.kind == kinds::NOT_FOUND
            && self.message.strip_prefix("Method '").and_then(|rest| rest.strip_suffix("' not found")) == Some(method)
    }

    pub(crate) fn session_closed() -> Self {
        Self::canceled("RPC session closed")
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for RpcError {}

/// The peer sent something this implementation will not process. The session answers with an
/// `abort` and ends; the process carries on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("nesting deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge { what: &'static str, limit: usize },
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl ProtocolError {
    pub(crate) fn malformed(text: impl Into<String>) -> Self {
        ProtocolError::Malformed(text.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_not_found_is_recognised_only_for_its_own_name() {
        let err = RpcError::method_not_found("role");
        assert!(err.is_method_not_found("role"));
        assert!(!err.is_method_not_found("rol"));
        assert!(!RpcError::not_found("Order 'x' not found").is_method_not_found("x"));
        assert!(!RpcError::bad_request("Method 'role' not found").is_method_not_found("role"));
    }
}
