//! Objects reachable over RPC: the [`RpcTarget`] trait a server implements, and the
//! [`Capability`] handle that refers either to such a local object or to an object the peer
//! exported to us.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use futures::FutureExt as _;
use futures::future::{BoxFuture, ready};

use crate::error::RpcError;
use crate::value::{PathKey, Pending, Value, settle_all};

/// The outcome of a call.
pub type RpcResult = Result<Value, RpcError>;

/// An object that can be called over RPC.
///
/// Implement [`call`](RpcTarget::call) by matching on the method name and return
/// [`RpcError::method_not_found`] for names you do not know. Properties are served by
/// [`get`](RpcTarget::get); a zero-argument call to an unknown method falls back to `get` (the
/// Python fork client reads properties that way).
///
/// ```
/// use std::sync::Arc;
/// use capnweb::{CallContext, Capability, RpcError, RpcTarget, Value};
/// use futures::future::BoxFuture;
///
/// struct Counter { start: i64 }
///
/// impl RpcTarget for Counter {
///     fn call<'a>(
///         &'a self,
///         method: &'a str,
///         args: Vec<Value>,
///         _ctx: &'a CallContext,
///     ) -> BoxFuture<'a, Result<Value, RpcError>> {
///         Box::pin(async move {
///             match method {
///                 "add" => {
///                     let n = args.first().and_then(Value::as_i64)
///                         .ok_or_else(|| RpcError::bad_request("add(n) needs a number"))?;
///                     Ok(Value::Int(self.start + n))
///                 }
///                 // Returning an object by reference: the peer gets a stub it can call.
///                 "child" => Ok(Capability::local(Arc::new(Counter { start: self.start + 100 })).into()),
///                 _ => Err(RpcError::method_not_found(method)),
///             }
///         })
///     }
///
///     fn get(&self, property: &str) -> Result<Value, RpcError> {
///         match property {
///             "start" => Ok(Value::Int(self.start)),
///             _ => Err(RpcError::property_not_found(property)),
///         }
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let counter = Capability::local(Arc::new(Counter { start: 1 }));
/// assert_eq!(counter.call("add", vec![Value::Int(2)]).await, Ok(Value::Int(3)));
/// assert_eq!(counter.get("start").await, Ok(Value::Int(1)));
/// assert!(counter.downcast_local::<Counter>().is_some());
/// # });
/// ```
pub trait RpcTarget: AsAny + Send + Sync + 'static {
    /// Calls `method` with already-decoded arguments.
    fn call<'a>(
        &'a self,
        method: &'a str,
        args: Vec<Value>,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value, RpcError>>;

    /// Reads a property. The default knows none.
    fn get(&self, property: &str) -> Result<Value, RpcError> {
        Err(RpcError::property_not_found(property))
    }
}

/// Lets [`Capability::downcast_local`] recover the concrete type; implemented for every type,
/// so targets never write it.
pub trait AsAny {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Which transport a session runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// A long-lived bidirectional session.
    WebSocket,
    /// One HTTP request; calls back into the client are impossible and fail at once.
    HttpBatch,
    /// A long-lived bidirectional session on a WebTransport stream (HTTP/3).
    WebTransport,
    /// A direct Rust call on a local capability, outside any session.
    Direct,
}

/// The session a remote capability came over, as capabilities see it. The session implements
/// it; capabilities know nothing else of the session, so the session's tables depend on
/// capabilities and never the other way round.
pub(crate) trait Peer: Send + Sync + 'static {
    /// Calls (or reads, when `args` is `None`) `path` on the peer's export `import_id`.
    fn call(
        self: Arc<Self>,
        import_id: i64,
        path: Vec<PathKey>,
        args: Option<Vec<Value>>,
    ) -> BoxFuture<'static, RpcResult>;

    /// Like `call`, as a `stream` message: the peer answers without a pull and drops its
    /// export itself (writes to a stream).
    fn call_streaming(
        self: Arc<Self>,
        import_id: i64,
        method: &'static str,
        args: Vec<Value>,
    ) -> BoxFuture<'static, RpcResult>;

    /// Runs `task` until it finishes or the session ends.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// The last handle to the import went away; the peer is sent a release for `count`
    /// introductions. Called from `Drop`, so it must not lock the session.
    fn release_later(&self, import_id: i64, count: u64);
}

/// What a target may know about the call it is serving.
#[derive(Clone)]
pub struct CallContext {
    transport: TransportKind,
    session: Option<Weak<dyn Peer>>,
}

impl CallContext {
    pub(crate) fn for_session(transport: TransportKind, session: Weak<dyn Peer>) -> Self {
        CallContext { transport, session: Some(session) }
    }

    /// The context of a direct Rust call (no session, no peer).
    pub fn direct() -> Self {
        CallContext { transport: TransportKind::Direct, session: None }
    }

    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    /// True for an HTTP batch: the peer cannot be called back and nothing outlives the request.
    pub fn is_batch(&self) -> bool {
        self.transport == TransportKind::HttpBatch
    }

    /// The peer's main object (its export 0), for calling the client directly. `None` outside a
    /// session or once it has ended.
    pub fn peer_main(&self) -> Option<Capability> {
        let session = self.session.as_ref()?;
        session.upgrade()?;
        Some(Capability::Remote(RemoteCapability::peer_main(session.clone())))
    }

    /// Runs `task` in the background until it finishes or the session ends, whichever comes
    /// first (e.g. a call into the client whose answer the current call does not wait for).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(session) = self.session.as_ref().and_then(Weak::upgrade) {
            session.spawn(task.boxed());
        }
    }
}

/// A cheap-to-clone reference to an RPC object.
#[derive(Clone)]
pub enum Capability {
    /// An object living in this process.
    Local(Arc<dyn RpcTarget>),
    /// An object the peer exported; calls travel over the session it came from.
    Remote(RemoteCapability),
}

impl Capability {
    pub fn local<T: RpcTarget>(target: Arc<T>) -> Self {
        Capability::Local(target)
    }

    /// Calls a method. Local objects are called directly; remote ones via a `push` + `pull` to
    /// the peer (which fails at once on an HTTP batch session or a closed one).
    pub async fn call(&self, method: &str, args: Vec<Value>) -> RpcResult {
        self.invoke(vec![PathKey::from(method)], Some(args), &CallContext::direct()).await
    }

    /// Calls the capability itself, for a function the peer passed (`stub(args)` in
    /// JavaScript). Local objects are not callable.
    pub async fn call_function(&self, args: Vec<Value>) -> RpcResult {
        self.invoke(Vec::new(), Some(args), &CallContext::direct()).await
    }

    /// Reads a property.
    pub async fn get(&self, property: &str) -> RpcResult {
        self.invoke(vec![PathKey::from(property)], None, &CallContext::direct()).await
    }

    /// The concrete local object, when this is a local capability of type `T`. Remote stubs —
    /// including a peer's proxy around one of our own objects — give `None`: verify those by
    /// calling them.
    pub fn downcast_local<T: RpcTarget>(&self) -> Option<&T> {
        match self {
            Capability::Local(target) => {
                let target: &dyn RpcTarget = target.as_ref();
                target.as_any().downcast_ref::<T>()
            }
            Capability::Remote(_) => None,
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Capability::Remote(_))
    }

    /// Identity: the same local object, or the same peer export on the same session.
    pub fn same_as(&self, other: &Capability) -> bool {
        match (self, other) {
            (Capability::Local(a), Capability::Local(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            (Capability::Remote(a), Capability::Remote(b)) => a.same_as(b),
            _ => false,
        }
    }

    /// Walks `path` (all but the last key are property reads) and calls the last key with
    /// `args`, or reads it when `args` is `None`. An empty path with no args is the capability
    /// itself.
    pub(crate) fn invoke(
        &self,
        path: Vec<PathKey>,
        args: Option<Vec<Value>>,
        ctx: &CallContext,
    ) -> BoxFuture<'static, RpcResult> {
        match self {
            Capability::Remote(remote) => {
                let remote = remote.clone();
                async move { remote.invoke(path, args).await }.boxed()
            }
            Capability::Local(target) => invoke_local(target.clone(), path, args, ctx.clone()),
        }
    }
}

fn invoke_local(
    target: Arc<dyn RpcTarget>,
    mut path: Vec<PathKey>,
    args: Option<Vec<Value>>,
    ctx: CallContext,
) -> BoxFuture<'static, RpcResult> {
    if path.is_empty() {
        return ready(match args {
            None => Ok(Value::Capability(Capability::Local(target))),
            Some(_) => Err(RpcError::bad_request("this object is not callable; name a method")),
        })
        .boxed();
    }
    if path.len() > 1 {
        // A property of the object, then the rest of the path on whatever that is.
        let first = path.remove(0);
        return match target.get(&first.to_string()) {
            Ok(value) => apply(value, path, args, ctx),
            Err(err) => ready(Err(err)).boxed(),
        };
    }
    let name = path.remove(0).to_string();
    async move {
        match args {
            None => target.get(&name),
            Some(args) => {
                let args = settle_all(args).await?;
                let zero_args = args.is_empty();
                match target.call(&name, args, &ctx).await {
                    Err(err) if zero_args && err.is_method_not_found(&name) => target.get(&name).map_err(|_| err),
                    other => other,
                }
            }
        }
    }
    .boxed()
}

/// Walks `path` through data (object keys, array indices) until it reaches a capability, which
/// takes the rest of the path and the call; then calls with `args`, or returns the value found
/// when `args` is `None`.
pub(crate) fn apply(
    mut value: Value,
    path: Vec<PathKey>,
    args: Option<Vec<Value>>,
    ctx: CallContext,
) -> BoxFuture<'static, RpcResult> {
    for (i, key) in path.iter().enumerate() {
        value = match value {
            Value::Capability(cap) => return cap.invoke(path[i..].to_vec(), args, &ctx),
            Value::Pending(pending) => return apply_when_settled(pending, path[i..].to_vec(), args, ctx),
            Value::Object(mut map) => map.swap_remove(&key.to_string()).unwrap_or_default(),
            Value::Array(mut items) => match index_of(key) {
                Some(index) if index < items.len() => items.swap_remove(index),
                _ => Value::Undefined,
            },
            Value::Null | Value::Undefined => {
                return ready(Err(RpcError::bad_request(format!(
                    "cannot read '{key}' of {}",
                    if value.is_undefined() { "undefined" } else { "null" }
                ))))
                .boxed();
            }
            _ => Value::Undefined,
        };
    }
    match (args, value) {
        (None, value) => ready(Ok(value)).boxed(),
        (Some(args), Value::Capability(cap)) => cap.invoke(Vec::new(), Some(args), &ctx),
        (args, Value::Pending(pending)) => apply_when_settled(pending, Vec::new(), args, ctx),
        (Some(_), _) => {
            let name = path.iter().map(ToString::to_string).collect::<Vec<_>>().join(".");
            ready(Err(RpcError::bad_request(format!("'{name}' is not a function")))).boxed()
        }
    }
}

fn apply_when_settled(
    pending: Pending,
    path: Vec<PathKey>,
    args: Option<Vec<Value>>,
    ctx: CallContext,
) -> BoxFuture<'static, RpcResult> {
    async move { apply(pending.outcome().await?, path, args, ctx).await }.boxed()
}

fn index_of(key: &PathKey) -> Option<usize> {
    match key {
        PathKey::Index(i) => usize::try_from(*i).ok(),
        PathKey::Name(name) => name.parse().ok(),
    }
}

impl fmt::Debug for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Local(target) => {
                write!(f, "Capability::Local({:p})", Arc::as_ptr(target) as *const ())
            }
            Capability::Remote(remote) => write!(f, "Capability::Remote({})", remote.inner.import_id),
        }
    }
}

impl<T: RpcTarget> From<Arc<T>> for Capability {
    fn from(target: Arc<T>) -> Self {
        Capability::Local(target)
    }
}

/// A peer's exported object, reached through the session it was received on.
#[derive(Clone)]
pub struct RemoteCapability {
    pub(crate) inner: Arc<RemoteInner>,
}

pub(crate) struct RemoteInner {
    pub(crate) session: Weak<dyn Peer>,
    pub(crate) import_id: i64,
    /// How many times the peer introduced this id to us; a release must give back exactly this.
    pub(crate) introductions: AtomicU64,
}

impl RemoteCapability {
    pub(crate) fn new(session: Weak<dyn Peer>, import_id: i64) -> Self {
        RemoteCapability { inner: Arc::new(RemoteInner { session, import_id, introductions: AtomicU64::new(1) }) }
    }

    /// The peer's main object: never released, so it carries no introductions.
    pub(crate) fn peer_main(session: Weak<dyn Peer>) -> Self {
        let remote = Self::new(session, 0);
        remote.inner.introductions.store(0, Ordering::Relaxed);
        remote
    }

    /// The id of this object in the peer's export table.
    pub fn peer_export_id(&self) -> i64 {
        self.inner.import_id
    }

    /// Whether it came over `session` (compared by address: the session is the `Peer`).
    pub(crate) fn belongs_to<S>(&self, session: &S) -> bool {
        std::ptr::addr_eq(self.inner.session.as_ptr(), session as *const S)
    }

    fn same_as(&self, other: &RemoteCapability) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.import_id == other.inner.import_id
                && Weak::ptr_eq(&self.inner.session, &other.inner.session))
    }

    /// Sends `path`/`args` to the peer and waits for the answer.
    pub async fn invoke(&self, path: Vec<PathKey>, args: Option<Vec<Value>>) -> RpcResult {
        if path.is_empty() && args.is_none() {
            return Ok(Value::Capability(Capability::Remote(self.clone())));
        }
        let Some(session) = self.inner.session.upgrade() else {
            return Err(RpcError::session_closed());
        };
        session.call(self.inner.import_id, path, args).await
    }

    /// Calls `method` as a `stream` message (a write, close or abort on a stream).
    pub(crate) async fn invoke_streaming(&self, method: &'static str, args: Vec<Value>) -> RpcResult {
        let Some(session) = self.inner.session.upgrade() else {
            return Err(RpcError::session_closed());
        };
        session.call_streaming(self.inner.import_id, method, args).await
    }
}

impl Drop for RemoteInner {
    fn drop(&mut self) {
        let count = *self.introductions.get_mut();
        // Once the session has ended there is nobody to release to.
        if count > 0
            && let Some(session) = self.session.upgrade()
        {
            session.release_later(self.import_id, count);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A target that knows no methods.
    pub(crate) struct Nothing;

    impl RpcTarget for Nothing {
        fn call<'a>(&'a self, method: &'a str, _args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
            Box::pin(async move { Err(RpcError::method_not_found(method)) })
        }
    }
}
