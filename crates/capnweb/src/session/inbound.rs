//! What each incoming message does to the session's tables: pushes and pipes start calls,
//! pulls ask for their settlement, resolves and rejects settle our imports, releases drop
//! exports.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;
use serde_json::{Value as Json, json};

use super::eval::{Binder, eval};
use super::promise::PromiseCell;
use super::{Export, ExportKind, Followup, Import, Outbound, Outgoing, Shared, State, pipe};
use crate::capability::{Capability, RemoteCapability, RpcResult, TransportKind};
use crate::error::{ProtocolError, RpcError};
use crate::message::Message;
use crate::value::{self, Exportable, Value, already_read, decode_expr, encode_with, error_to_json};

impl Shared {
    pub(super) fn receive(&self, message: Message) {
        let Some(this) = self.arc() else { return };
        if self.lock().closed {
            return;
        }
        let result = match message {
            Message::Push(expr) => this.on_push(&expr, false),
            Message::Stream(expr) => this.on_push(&expr, true),
            Message::Pipe => this.on_pipe(),
            Message::Pull(id) => {
                this.on_pull(id);
                Ok(())
            }
            Message::Resolve(id, expr) => this.on_settle(id, &expr, false),
            Message::Reject(id, expr) => this.on_settle(id, &expr, true),
            Message::Release(id, count) => {
                this.on_release(id, count);
                Ok(())
            }
            Message::Abort(expr) => {
                let reason = match value::decode(&expr, &self.limits) {
                    Ok(Value::Error(err)) => err.message,
                    Ok(Value::String(text)) => text,
                    _ => "peer aborted the session".to_owned(),
                };
                tracing::debug!(%reason, "peer aborted the RPC session");
                self.close(&reason, None);
                Ok(())
            }
        };
        if let Err(err) = result {
            self.abort(err);
        }
    }

    pub(super) fn abort(&self, err: ProtocolError) {
        tracing::debug!(error = %err, "aborting RPC session");
        let error = RpcError::bad_request(err.to_string());
        self.close(&error.message, Some(error_to_json(&error)));
    }

    pub(super) fn close(&self, reason: &str, abort_with: Option<Json>) {
        let (exports, imports) = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.closed = true;
            (std::mem::take(&mut state.exports), std::mem::take(&mut state.imports))
        };
        let aborted = abort_with.is_some();
        if let Some(error) = abort_with {
            self.send(Message::Abort(error));
        }
        let _ = self.outbound.send(Outbound::Close { reason: reason.to_owned(), aborted });
        self.cancel.cancel();
        self.frame_sent.notify_waiters();
        // Dropped outside the lock: this fails outgoing calls (their senders go away) and may
        // drop peer capabilities.
        drop(exports);
        drop(imports);
    }

    fn on_push(self: &Arc<Self>, expr: &Json, is_stream: bool) -> Result<(), ProtocolError> {
        let expr = decode_expr(expr, &self.limits)?;
        let cell = PromiseCell::new();
        let (id, bound, overloaded) = {
            let mut state = self.lock();
            let id = state.next_push_export;
            state.next_push_export += 1;
            if state.exports.len() > self.limits.max_exports {
                return Err(ProtocolError::TooLarge { what: "open exports", limit: self.limits.max_exports });
            }
            let bound = Binder { shared: self, state: &mut state }.bind(expr)?;
            let overloaded = state.running_calls >= self.limits.max_pending_calls;
            if !overloaded {
                state.running_calls += 1;
            }
            state.exports.insert(
                id,
                Export { kind: ExportKind::Promise(cell.clone()), refcount: 1, release_after_pull: is_stream },
            );
            (id, bound, overloaded)
        };
        if overloaded {
            cell.settle(Err(RpcError::overloaded(format!(
                "more than {} calls in progress on this session",
                self.limits.max_pending_calls
            ))));
        } else {
            let call = AssertUnwindSafe(eval(bound, self.context())).catch_unwind();
            let this = self.clone();
            self.spawn(async move {
                let outcome = match call.await {
                    // A result that is itself pending is answered with what it settles to.
                    Ok(Ok(Value::Pending(pending))) => pending.outcome().await,
                    Ok(outcome) => outcome,
                    Err(_) => Err(RpcError::internal("the method panicked")),
                };
                cell.settle(outcome);
                let mut state = this.lock();
                state.running_calls = state.running_calls.saturating_sub(1);
            });
        }
        if is_stream {
            self.on_pull(id);
        }
        Ok(())
    }

    /// The peer opens a pipe to send us a stream: its write end becomes this export, its read
    /// end waits for the `["readable", id]` that names it.
    fn on_pipe(&self) -> Result<(), ProtocolError> {
        let mut state = self.lock();
        if state.exports.len() > self.limits.max_exports {
            return Err(ProtocolError::TooLarge { what: "open exports", limit: self.limits.max_exports });
        }
        let id = state.next_push_export;
        state.next_push_export += 1;
        let (writer, readable) = pipe::open();
        state
            .exports
            .insert(id, Export { kind: ExportKind::Capability(writer), refcount: 1, release_after_pull: false });
        state.pipe_readables.insert(id, readable);
        Ok(())
    }

    fn on_pull(self: &Arc<Self>, id: i64) {
        let cell = match self.lock().exports.get(&id).map(|e| &e.kind) {
            Some(ExportKind::Promise(cell)) => cell.clone(),
            Some(ExportKind::Capability(cap)) => {
                let settled = PromiseCell::new();
                settled.settle(Ok(Value::Capability(cap.clone())));
                settled
            }
            None => {
                let error = RpcError::not_found(format!("no such export: {id}"));
                self.send(Message::Reject(id, error_to_json(&error)));
                return;
            }
        };
        self.pending_pulls.send_modify(|n| *n += 1);
        let this = self.clone();
        self.spawn(async move {
            let outcome = cell.wait().await;
            this.send_settlement(id, outcome);
            this.pending_pulls.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    fn send_settlement(&self, id: i64, outcome: RpcResult) {
        let mut followups = Vec::new();
        let message = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            let message = match outcome {
                Ok(value) => match self.encode(&mut state, &value, &mut followups) {
                    Ok(json) => Message::Resolve(id, json),
                    Err(err) => {
                        Message::Reject(id, error_to_json(&RpcError::internal(format!("cannot send result: {err}"))))
                    }
                },
                Err(error) => Message::Reject(id, error_to_json(&error)),
            };
            if state.exports.get(&id).is_some_and(|e| e.release_after_pull) {
                state.exports.remove(&id);
            }
            message
        };
        self.send(message);
        self.start_followups(followups);
    }

    /// Encodes a value, giving every capability in it a fresh export id, every pending part
    /// one too, and every stream a pipe (opened on the peer right here). What must happen once
    /// the message is sent is added to `followups`: hand them to [`Self::start_followups`]
    /// then. On failure nothing stays allocated (an opened pipe is released).
    pub(super) fn encode(
        &self,
        state: &mut State,
        value: &Value,
        followups: &mut Vec<Followup>,
    ) -> Result<Json, ProtocolError> {
        let mut allocated = Vec::new();
        let first_followup = followups.len();
        let result = encode_with(value, &self.limits, &mut |exportable| {
            if let Exportable::Capability(Capability::Remote(remote)) = exportable
                && remote.belongs_to(self)
            {
                // The peer's own object goes back as a reference into its own table.
                return Ok(json!(["import", remote.peer_export_id()]));
            }
            let (kind, json) = match exportable {
                Exportable::Readable(stream) => return self.open_pipe_on_peer(state, stream, followups),
                Exportable::Capability(cap) => (ExportKind::Capability(cap.clone()), "export"),
                Exportable::Promise(_) => (ExportKind::Promise(PromiseCell::new()), "promise"),
            };
            if state.exports.len() > self.limits.max_exports {
                return Err(ProtocolError::TooLarge { what: "open exports", limit: self.limits.max_exports });
            }
            let id = state.next_cap_export;
            state.next_cap_export -= 1;
            allocated.push(id);
            if let Exportable::Promise(pending) = exportable {
                followups.push(Followup::Settle(id, pending.clone()));
            }
            state.exports.insert(id, Export { kind, refcount: 1, release_after_pull: false });
            Ok(json!([json, id]))
        });
        if result.is_err() {
            for id in allocated {
                state.exports.remove(&id);
            }
            // Dropping a pump's pipe handle releases the pipe on the peer.
            followups.truncate(first_followup);
        }
        result
    }

    /// `["pipe"]` to the peer, then `["readable", id]` in the message; the chunks follow once
    /// the message is out.
    fn open_pipe_on_peer(
        &self,
        state: &mut State,
        stream: &crate::value::ReadableStream,
        followups: &mut Vec<Followup>,
    ) -> Result<Json, ProtocolError> {
        if self.kind == TransportKind::HttpBatch {
            return Err(ProtocolError::Unsupported("a ReadableStream needs a WebSocket session".into()));
        }
        let chunks = stream.take().ok_or_else(|| ProtocolError::Unsupported(already_read().message))?;
        let id = state.next_outgoing_push;
        state.next_outgoing_push += 1;
        let pipe = RemoteCapability::new(self.weak_self.clone() as _, id);
        state.imports.insert(id, Import::Capability(Arc::downgrade(&pipe.inner)));
        self.send(Message::Pipe);
        followups.push(Followup::Pump(pipe, chunks));
        Ok(json!(["readable", id]))
    }

    /// Starts what encoding left for after the send: promise exports are settled and told to
    /// the peer unprompted, as the protocol has it (no pull comes for these) — unless the peer
    /// released them first; streams are pumped into their pipes. An HTTP batch waits for the
    /// promises' answers as it does for pulls.
    pub(super) fn start_followups(&self, followups: Vec<Followup>) {
        let Some(this) = self.arc() else { return };
        for followup in followups {
            match followup {
                Followup::Settle(id, pending) => {
                    let cell = match self.lock().exports.get(&id).map(|e| &e.kind) {
                        Some(ExportKind::Promise(cell)) => cell.clone(),
                        _ => continue,
                    };
                    self.pending_pulls.send_modify(|n| *n += 1);
                    let this = this.clone();
                    self.spawn(async move {
                        let outcome = pending.outcome().await;
                        cell.settle(outcome.clone());
                        let still_wanted = this.lock().exports.contains_key(&id);
                        if still_wanted {
                            this.send_settlement(id, outcome);
                        }
                        this.pending_pulls.send_modify(|n| *n = n.saturating_sub(1));
                    });
                }
                Followup::Pump(pipe, chunks) => self.spawn(pipe::pump(pipe, chunks)),
            }
        }
    }

    fn on_settle(self: &Arc<Self>, id: i64, expr: &Json, is_reject: bool) -> Result<(), ProtocolError> {
        let expr = decode_expr(expr, &self.limits)?;
        let (entry, bound) = {
            let mut state = self.lock();
            let entry = match state.imports.get(&id) {
                Some(Import::Call(_) | Import::StreamCall(_) | Import::Promise(_)) => state.imports.remove(&id),
                // Unknown or already settled: ignore, like the reference implementation.
                _ => None,
            };
            let Some(entry) = entry else { return Ok(()) };
            if let Import::Call(_) | Import::StreamCall(_) = entry {
                state.outgoing_calls = state.outgoing_calls.saturating_sub(1);
            }
            let bound = Binder { shared: self, state: &mut state }.bind(expr)?;
            (entry, bound)
        };
        // Our import is settled; tell the peer it may drop its export (both reference clients
        // do this after resolve and reject alike). A `stream` call's export the peer drops itself.
        if !matches!(entry, Import::StreamCall(_)) {
            self.send(Message::Release(id, 1));
        }
        let value = eval(bound, self.context());
        self.spawn(async move {
            let outcome = match value.await {
                Ok(value) if is_reject => Err(match value {
                    Value::Error(err) => err,
                    other => RpcError::new("Error", other.to_string()),
                }),
                other => other,
            };
            match entry {
                Import::Call(reply) | Import::StreamCall(reply) => {
                    let _ = reply.send(outcome);
                }
                Import::Promise(cell) => cell.settle(outcome),
                Import::Capability(_) => {}
            }
        });
        Ok(())
    }

    fn on_release(&self, id: i64, count: u64) {
        if id == 0 || count == 0 {
            return; // the main object lives as long as the session
        }
        let removed = {
            let mut state = self.lock();
            match state.exports.get_mut(&id) {
                Some(export) => {
                    export.refcount = export.refcount.saturating_sub(count);
                    if export.refcount == 0 {
                        state.pipe_readables.remove(&id);
                        state.exports.remove(&id)
                    } else {
                        None
                    }
                }
                None => None, // unknown or over-released: be lenient (PyPI 0.5 does this)
            }
        };
        // A running call behind a released promise keeps going: pipelined calls may need it.
        drop(removed);
    }

    pub(super) fn import_dropped(&self, id: i64, count: u64) -> Option<Outgoing> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        if let Some(Import::Capability(weak)) = state.imports.get(&id)
            && weak.strong_count() == 0
        {
            state.imports.remove(&id);
        }
        Some(Outgoing::Message(Message::Release(id, count).to_text()))
    }
}
