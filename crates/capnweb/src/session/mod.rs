//! One RPC session: the export and import tables of one side of a connection, and what each
//! incoming message does to them. Transport-independent: feed it frames with
//! [`Session::receive_frame`], send what [`Outbox::next`] yields.
//!
//! Id rules (from the sender's point of view, as every message speaks):
//! * export 0 is our main object; the k-th `push`/`stream`/`pipe` we receive creates export k;
//!   capabilities we put in a message get fresh exports −1, −2, …;
//! * our own outgoing pushes are our imports 1, 2, …; capabilities the peer sends us as
//!   `["export", −n]` are our import −n; the peer's main object is our import 0.
//!
//! Incoming calls never block the reading of further messages: each starts immediately (so
//! calls begin in arrival order and quick ones finish without touching the scheduler) and, if
//! it has to wait, continues as its own task. That is what lets a call that calls back into the
//! peer be served while the peer calls into us again (the Python fork's re-export pattern).

mod eval;
mod inbound;
mod mapper;
mod pipe;
mod promise;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Context;

use serde_json::{Value as Json, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use promise::PromiseCell;

use crate::capability::{CallContext, Capability, Peer, RemoteCapability, RemoteInner, RpcResult, TransportKind};
use crate::error::{ProtocolError, RpcError};
use crate::limits::Limits;
use crate::message::{Message, split_lines};
use crate::value::{PathKey, Value, error_to_json};

/// One side of a connection. Dropping it ends the session.
pub struct Session {
    shared: Arc<Shared>,
}

/// The messages a session wants sent, in order.
pub struct Outbox {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Outbound>,
    finished: bool,
}

/// What the transport must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Send this compact JSON message (one WebSocket text frame, or one batch response line).
    Message(String),
    /// The session is over: close the connection (WebSocket close code 3000 with this reason
    /// after an abort, like the TypeScript implementation). Nothing follows.
    Close { reason: String, aborted: bool },
}

/// Table sizes, for monitoring and for tests that check nothing leaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Exports besides the main object: unreleased call results and capabilities handed out.
    pub exports: usize,
    /// Peer capabilities and promises we hold, plus our outgoing calls awaiting an answer.
    pub imports: usize,
    /// Incoming calls still running.
    pub running_calls: usize,
    /// Outgoing calls awaiting the peer's answer.
    pub outgoing_calls: usize,
    /// Pulled exports whose resolve/reject is not sent yet.
    pub pending_pulls: usize,
}

pub(crate) enum Outbound {
    Frame(String),
    /// The last handle to a peer capability went away; the outbox turns this into a release.
    ImportDropped {
        id: i64,
        count: u64,
    },
    Close {
        reason: String,
        aborted: bool,
    },
}

pub(crate) struct Shared {
    weak_self: Weak<Shared>,
    kind: TransportKind,
    pub(crate) limits: Limits,
    state: Mutex<State>,
    outbound: mpsc::UnboundedSender<Outbound>,
    queued_frames: AtomicUsize,
    frame_sent: Notify,
    pending_pulls: watch::Sender<usize>,
    cancel: CancellationToken,
}

pub(crate) struct State {
    pub(crate) exports: HashMap<i64, Export>,
    next_push_export: i64,
    next_cap_export: i64,
    pub(crate) imports: HashMap<i64, Import>,
    /// Read ends of the pipes the peer opened, until a `["readable", id]` claims them.
    pub(crate) pipe_readables: HashMap<i64, crate::value::ReadableStream>,
    next_outgoing_push: i64,
    running_calls: usize,
    outgoing_calls: usize,
    closed: bool,
}

pub(crate) struct Export {
    pub(crate) kind: ExportKind,
    refcount: u64,
    /// A `stream` result: dropped as soon as its resolve/reject is sent.
    release_after_pull: bool,
}

pub(crate) enum ExportKind {
    Capability(Capability),
    Promise(PromiseCell),
}

pub(crate) enum Import {
    /// A capability the peer exported; weak so that dropping the last handle releases it.
    Capability(Weak<RemoteInner>),
    /// A promise the peer exported; it will send resolve/reject on its own.
    Promise(PromiseCell),
    /// One of our calls into the peer, awaiting its resolve/reject.
    Call(oneshot::Sender<RpcResult>),
    /// One of our `stream` calls: like `Call`, but the peer drops its export itself once it
    /// has answered, so we send no release.
    StreamCall(oneshot::Sender<RpcResult>),
}

/// What encoding a message leaves to do once it is sent.
pub(crate) enum Followup {
    /// A pending part went out as `["promise", id]`: answer it when it settles.
    Settle(i64, crate::value::Pending),
    /// A stream went out as `["readable", id]`: write its chunks into that pipe.
    Pump(RemoteCapability, crate::value::Chunks),
}

/// How a call into the peer goes out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallStyle {
    /// `push` + `pull`, and a `release` after the answer.
    Push,
    /// `stream`: pulled and released implicitly (writes to a stream, in order).
    Stream,
}

impl Session {
    /// Starts a session whose export 0 is `main`. Must be used inside a tokio runtime.
    pub fn new(main: Capability, kind: TransportKind, limits: Limits) -> (Session, Outbox) {
        let (outbound, rx) = mpsc::unbounded_channel();
        let shared = Arc::new_cyclic(|weak_self| {
            let mut exports = HashMap::new();
            exports.insert(
                0,
                Export { kind: ExportKind::Capability(main), refcount: u64::MAX, release_after_pull: false },
            );
            Shared {
                weak_self: weak_self.clone(),
                kind,
                limits,
                state: Mutex::new(State {
                    exports,
                    next_push_export: 1,
                    next_cap_export: -1,
                    imports: HashMap::new(),
                    pipe_readables: HashMap::new(),
                    next_outgoing_push: 1,
                    running_calls: 0,
                    outgoing_calls: 0,
                    closed: false,
                }),
                outbound,
                queued_frames: AtomicUsize::new(0),
                frame_sent: Notify::new(),
                pending_pulls: watch::Sender::new(0),
                cancel: CancellationToken::new(),
            }
        });
        let outbox = Outbox { shared: shared.clone(), rx, finished: false };
        (Session { shared }, outbox)
    }

    /// Handles one WebSocket frame (text or binary) or a batch body: UTF-8, `\n`-separated
    /// messages, blank lines ignored. A protocol violation aborts the session.
    pub fn receive_frame(&self, frame: &[u8]) {
        let Ok(text) = std::str::from_utf8(frame) else {
            self.shared.abort(ProtocolError::malformed("frame is not valid UTF-8"));
            return;
        };
        for line in split_lines(text) {
            if self.is_closed() {
                return;
            }
            match Message::parse(line, &self.shared.limits) {
                Ok(message) => self.shared.receive(message),
                Err(err) => {
                    self.shared.abort(err);
                    return;
                }
            }
        }
    }

    /// Handles one parsed message.
    pub fn receive(&self, message: Message) {
        self.shared.receive(message);
    }

    /// The peer's main object (its export 0).
    pub fn peer_main(&self) -> Capability {
        Capability::Remote(RemoteCapability::peer_main(Arc::downgrade(&self.shared) as _))
    }

    /// Resolves once every pulled export has had its resolve/reject queued (or the session
    /// ended). An HTTP batch answers after this.
    pub async fn drained(&self) {
        let mut pulls = self.shared.pending_pulls.subscribe();
        tokio::select! {
            _ = pulls.wait_for(|n| *n == 0) => {}
            _ = self.shared.cancel.cancelled() => {}
        }
    }

    /// Waits while too many messages are queued for sending; transports call this before
    /// reading more from the peer, so a peer that does not read cannot grow our memory.
    pub async fn writable(&self) {
        let limit = self.shared.limits.max_outgoing_queue;
        loop {
            let sent = self.shared.frame_sent.notified();
            tokio::pin!(sent);
            sent.as_mut().enable();
            if self.shared.queued_frames.load(Ordering::Acquire) <= limit || self.is_closed() {
                return;
            }
            sent.await;
        }
    }

    /// Ends the session without an abort message (peer went away, batch answered, …): pending
    /// outgoing calls fail, running calls are cancelled, every table is dropped.
    pub fn close(&self, reason: &str) {
        self.shared.close(reason, None);
    }

    /// Ends the session telling the peer why (`["abort", ["error", kind, message]]`).
    pub fn abort(&self, error: &RpcError) {
        self.shared.close(&error.message, Some(error_to_json(error)));
    }

    /// Ends the session on a broken protocol rule, as a malformed message would.
    pub(crate) fn abort_protocol(&self, error: ProtocolError) {
        self.shared.abort(error);
    }

    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    pub fn transport(&self) -> TransportKind {
        self.shared.kind
    }

    pub fn stats(&self) -> SessionStats {
        let state = self.shared.lock();
        SessionStats {
            exports: state.exports.len().saturating_sub(1),
            imports: state.imports.len(),
            running_calls: state.running_calls,
            outgoing_calls: state.outgoing_calls,
            pending_pulls: *self.shared.pending_pulls.borrow(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.close("session dropped", None);
    }
}

impl Outbox {
    /// The next thing to send; `None` after [`Outgoing::Close`] was returned.
    pub async fn next(&mut self) -> Option<Outgoing> {
        while !self.finished {
            let item = self.rx.recv().await?;
            if let Some(out) = self.handle(item) {
                return Some(out);
            }
        }
        None
    }

    /// Like [`Outbox::next`] but only what is already queued.
    pub fn try_next(&mut self) -> Option<Outgoing> {
        while !self.finished {
            let item = self.rx.try_recv().ok()?;
            if let Some(out) = self.handle(item) {
                return Some(out);
            }
        }
        None
    }

    fn handle(&mut self, item: Outbound) -> Option<Outgoing> {
        match item {
            Outbound::Frame(text) => {
                self.shared.queued_frames.fetch_sub(1, Ordering::AcqRel);
                self.shared.frame_sent.notify_waiters();
                Some(Outgoing::Message(text))
            }
            Outbound::ImportDropped { id, count } => self.shared.import_dropped(id, count),
            Outbound::Close { reason, aborted } => {
                self.finished = true;
                Some(Outgoing::Close { reason, aborted })
            }
        }
    }
}

impl Peer for Shared {
    fn call(
        self: Arc<Self>,
        import_id: i64,
        path: Vec<PathKey>,
        args: Option<Vec<Value>>,
    ) -> futures::future::BoxFuture<'static, RpcResult> {
        Box::pin(async move { self.call_peer(import_id, path, args, CallStyle::Push).await })
    }

    fn call_streaming(
        self: Arc<Self>,
        import_id: i64,
        method: &'static str,
        args: Vec<Value>,
    ) -> futures::future::BoxFuture<'static, RpcResult> {
        Box::pin(
            async move { self.call_peer(import_id, vec![PathKey::from(method)], Some(args), CallStyle::Stream).await },
        )
    }

    fn spawn(&self, task: futures::future::BoxFuture<'static, ()>) {
        Shared::spawn(self, task);
    }

    fn release_later(&self, import_id: i64, count: u64) {
        // The outbox turns this into a `release` message, outside any lock.
        let _ = self.outbound.send(Outbound::ImportDropped { id: import_id, count });
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the tables half-updated in a way that
        // matters more than losing the session, so keep serving.
        crate::lock(&self.state)
    }

    fn arc(&self) -> Option<Arc<Shared>> {
        self.weak_self.upgrade()
    }

    fn context(&self) -> CallContext {
        CallContext::for_session(self.kind, self.weak_self.clone() as _)
    }

    fn send(&self, message: Message) {
        self.queued_frames.fetch_add(1, Ordering::AcqRel);
        let _ = self.outbound.send(Outbound::Frame(message.to_text()));
    }

    /// Runs `task` until it completes or the session ends. The first poll happens right here.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut task = Box::pin(self.cancel.clone().run_until_cancelled_owned(task));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        if task.as_mut().poll(&mut cx).is_pending() {
            // Polled again by the runtime with a real waker, which re-registers interest.
            tokio::spawn(task);
        }
    }

    /// A call into the peer: `push` + `pull`, then wait for its resolve/reject.
    pub(crate) async fn call_peer(
        self: &Arc<Self>,
        target: i64,
        path: Vec<PathKey>,
        args: Option<Vec<Value>>,
        style: CallStyle,
    ) -> RpcResult {
        if self.kind == TransportKind::HttpBatch {
            return Err(RpcError::internal("cannot call back into an HTTP batch client"));
        }
        // Arguments go out settled: the peer's method must not wait on us for them.
        let args = match args {
            Some(args) => Some(crate::value::settle_all(args).await?),
            None => None,
        };
        let (reply, answer) = oneshot::channel();
        let mut followups = Vec::new();
        let id = {
            let mut state = self.lock();
            if state.closed {
                return Err(RpcError::session_closed());
            }
            if state.outgoing_calls >= self.limits.max_pending_calls || state.imports.len() >= self.limits.max_imports {
                return Err(RpcError::overloaded("too many calls to the peer in progress"));
            }
            let args = match args {
                None => None,
                Some(args) => {
                    let mut encoded = Vec::with_capacity(args.len());
                    for arg in &args {
                        encoded.push(
                            self.encode(&mut state, arg, &mut followups)
                                .map_err(|e| RpcError::bad_request(format!("cannot send argument: {e}")))?,
                        );
                    }
                    Some(Json::Array(encoded))
                }
            };
            let path = Json::Array(path.iter().map(PathKey::to_json).collect());
            let expr = match args {
                Some(args) => json!(["pipeline", target, path, args]),
                None => json!(["pipeline", target, path]),
            };
            let id = state.next_outgoing_push;
            state.next_outgoing_push += 1;
            state.outgoing_calls += 1;
            // Sent while locked so no other push can slip between and take our id.
            match style {
                CallStyle::Push => {
                    state.imports.insert(id, Import::Call(reply));
                    self.send(Message::Push(expr));
                    self.send(Message::Pull(id));
                }
                CallStyle::Stream => {
                    state.imports.insert(id, Import::StreamCall(reply));
                    self.send(Message::Stream(expr));
                }
            }
            id
        };
        self.start_followups(followups);
        match tokio::time::timeout(self.limits.call_timeout, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(RpcError::session_closed()),
            Err(_) => {
                let forgotten = {
                    let mut state = self.lock();
                    let removed = state.imports.remove(&id);
                    if removed.is_some() {
                        state.outgoing_calls = state.outgoing_calls.saturating_sub(1);
                    }
                    removed
                };
                if forgotten.is_some() && style == CallStyle::Push {
                    self.send(Message::Release(id, 1));
                }
                Err(RpcError::canceled("the peer did not answer in time"))
            }
        }
    }
}
