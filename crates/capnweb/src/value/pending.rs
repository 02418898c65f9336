//! Values still being computed, which a method may put inside its result.

use std::fmt;
use std::future::Future;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared, ready};
use indexmap::IndexMap;

use super::Value;
use crate::capability::RpcResult;
use crate::error::RpcError;

/// A value still being computed. A method may return one inside its result — an object whose
/// field is a call still running, say — and the peer gets the rest at once with
/// `["promise", -n]` in that place, then a `resolve` or `reject` for `-n` when it settles, as
/// the reference implementation does. A method never finds one in its arguments (they are
/// awaited first), and a property path or a call through one awaits it.
#[derive(Clone)]
pub struct Pending(Shared<BoxFuture<'static, RpcResult>>);

impl Pending {
    pub fn new(future: impl Future<Output = RpcResult> + Send + 'static) -> Self {
        Pending(future.boxed().shared())
    }

    /// The outcome, if it is known already.
    pub fn peek(&self) -> Option<RpcResult> {
        self.0.peek().cloned()
    }

    /// Waits for the outcome.
    pub async fn outcome(&self) -> RpcResult {
        self.0.clone().await
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.peek().is_some() { "Pending(settled)" } else { "Pending" })
    }
}

impl Value {
    /// A part of a result that is still being computed (see [`Pending`]).
    pub fn pending(future: impl Future<Output = RpcResult> + Send + 'static) -> Value {
        Value::Pending(Pending::new(future))
    }

    fn has_pending(&self) -> bool {
        match self {
            Value::Pending(_) => true,
            Value::Array(items) => items.iter().any(Value::has_pending),
            Value::Object(map) => map.values().any(Value::has_pending),
            _ => false,
        }
    }

    /// This value with every pending part replaced by its outcome; the first rejection (by
    /// position) fails the whole.
    pub fn settled(self) -> BoxFuture<'static, RpcResult> {
        if !self.has_pending() {
            return ready(Ok(self)).boxed();
        }
        async move {
            match self {
                Value::Pending(pending) => pending.outcome().await?.settled().await,
                Value::Array(items) => Ok(Value::Array(settle_all(items).await?)),
                Value::Object(map) => {
                    let mut out = IndexMap::with_capacity(map.len());
                    for (key, value) in map {
                        out.insert(key, value.settled().await?);
                    }
                    Ok(Value::Object(out))
                }
                other => Ok(other),
            }
        }
        .boxed()
    }
}

/// Arguments as a method receives them: nothing pending left inside.
pub(crate) async fn settle_all(values: Vec<Value>) -> Result<Vec<Value>, RpcError> {
    if !values.iter().any(Value::has_pending) {
        return Ok(values);
    }
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        out.push(value.settled().await?);
    }
    Ok(out)
}
