//! Evaluation of incoming expressions in two steps: [`Binder`] looks every reference up in the
//! session tables the moment the message arrives (a later `release` must not change what an
//! earlier `push` meant), then [`eval`] awaits whatever is still pending and performs the calls.

use futures::FutureExt as _;
use futures::future::{BoxFuture, ready};

use super::mapper::map;
use super::promise::PromiseCell;
use super::{ExportKind, Import, Shared, State};
use crate::capability::{CallContext, Capability, RemoteCapability, RpcResult, apply};
use crate::error::{ProtocolError, RpcError};
use crate::value::{Capture, Expr, PathKey, Remap, Value, WebKind, WritableStream};

/// An expression whose references are resolved to table entries.
pub(crate) enum Bound {
    Ready(Value),
    Fail(RpcError),
    Array(Vec<Bound>),
    Object(Vec<(String, Bound)>),
    /// A promise the peer will resolve proactively (`["promise", -n]`).
    Await(PromiseCell),
    /// `.map()`: the mapper applied to what `subject` evaluates to.
    Remap {
        subject: Box<Bound>,
        captures: Vec<Bound>,
        instructions: Vec<Expr>,
    },
    /// A web platform value made once its body is evaluated.
    Web {
        kind: WebKind,
        body: Box<Bound>,
    },
    /// A property path and optional call on one of our exports.
    Apply {
        base: Base,
        path: Vec<PathKey>,
        args: Option<Vec<Bound>>,
    },
}

pub(crate) enum Base {
    Value(Value),
    Pending(PromiseCell),
}

pub(crate) struct Binder<'a> {
    pub(crate) shared: &'a std::sync::Arc<Shared>,
    pub(crate) state: &'a mut State,
}

impl Binder<'_> {
    pub(crate) fn bind(&mut self, expr: Expr) -> Result<Bound, ProtocolError> {
        Ok(match expr {
            Expr::Literal(value) => Bound::Ready(value),
            Expr::Web(web) => {
                let (kind, body) = *web;
                Bound::Web { kind, body: Box::new(self.bind(body)?) }
            }
            Expr::Array(items) => {
                let items = items.into_iter().map(|e| self.bind(e)).collect::<Result<Vec<_>, _>>()?;
                if items.iter().all(|b| matches!(b, Bound::Ready(_))) {
                    Bound::Ready(Value::Array(items.into_iter().map(ready_value).collect()))
                } else {
                    Bound::Array(items)
                }
            }
            Expr::Object(fields) => {
                let fields = fields
                    .into_iter()
                    .map(|(k, e)| Ok((k, self.bind(e)?)))
                    .collect::<Result<Vec<_>, ProtocolError>>()?;
                if fields.iter().all(|(_, b)| matches!(b, Bound::Ready(_))) {
                    Bound::Ready(Value::Object(fields.into_iter().map(|(k, b)| (k, ready_value(b))).collect()))
                } else {
                    Bound::Object(fields)
                }
            }
            Expr::Export(id) => Bound::Ready(Value::Capability(Capability::Remote(self.import_capability(id)?))),
            Expr::Promise(id) => Bound::Await(self.import_promise(id)?),
            Expr::Reference { id, path, args } => self.reference(id, path, args)?,
            Expr::Remap(remap) => self.remap(*remap)?,
            Expr::Readable(id) => match self.state.pipe_readables.remove(&id) {
                Some(stream) => Bound::Ready(Value::Readable(stream)),
                None => Bound::Fail(RpcError::bad_request(format!(
                    "export {id} is not a pipe, or its readable end was used already"
                ))),
            },
            Expr::Writable(id) => Bound::Ready(Value::Writable(WritableStream { target: self.import_capability(id)? })),
        })
    }

    /// Captures are looked up now, like any reference; the instructions stay unbound: their ids
    /// name the mapper's own variables.
    fn remap(&mut self, remap: Remap) -> Result<Bound, ProtocolError> {
        let Remap { id, path, captures, instructions } = remap;
        let captures = captures
            .into_iter()
            .map(|capture| match capture {
                Capture::Import(id) => self.reference(id, Vec::new(), None),
                Capture::Export(id) => {
                    Ok(Bound::Ready(Value::Capability(Capability::Remote(self.import_capability(id)?))))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let subject = Box::new(self.reference(id, path, None)?);
        Ok(Bound::Remap { subject, captures, instructions })
    }

    /// The peer introduces its export `id`: reuse our handle if we still hold one, counting
    /// the introduction so a later release gives back the exact number.
    fn import_capability(&mut self, id: i64) -> Result<RemoteCapability, ProtocolError> {
        match self.state.imports.get(&id) {
            Some(Import::Capability(weak)) => {
                if let Some(inner) = weak.upgrade() {
                    inner.introductions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(RemoteCapability { inner });
                }
            }
            Some(_) => return Err(ProtocolError::malformed(format!("id {id} reused for a capability"))),
            None => self.check_import_room()?,
        }
        let remote = RemoteCapability::new(std::sync::Arc::downgrade(self.shared) as _, id);
        self.state.imports.insert(id, Import::Capability(std::sync::Arc::downgrade(&remote.inner)));
        Ok(remote)
    }

    fn import_promise(&mut self, id: i64) -> Result<PromiseCell, ProtocolError> {
        if self.state.imports.contains_key(&id) {
            return Err(ProtocolError::malformed(format!("promise id {id} is already in use")));
        }
        self.check_import_room()?;
        let cell = PromiseCell::new();
        self.state.imports.insert(id, Import::Promise(cell.clone()));
        Ok(cell)
    }

    fn check_import_room(&self) -> Result<(), ProtocolError> {
        let limit = self.shared.limits.max_imports;
        if self.state.imports.len() >= limit {
            return Err(ProtocolError::TooLarge { what: "open imports", limit });
        }
        Ok(())
    }

    fn reference(&mut self, id: i64, path: Vec<PathKey>, args: Option<Vec<Expr>>) -> Result<Bound, ProtocolError> {
        let args = match args {
            Some(args) => Some(args.into_iter().map(|a| self.bind(a)).collect::<Result<Vec<_>, _>>()?),
            None => None,
        };
        let base = match self.state.exports.get(&id).map(|e| &e.kind) {
            None => return Ok(Bound::Fail(RpcError::not_found(format!("no such export: {id}")))),
            Some(ExportKind::Capability(cap)) => Base::Value(Value::Capability(cap.clone())),
            Some(ExportKind::Promise(cell)) => match cell.peek() {
                Some(Ok(value)) => Base::Value(value),
                Some(Err(err)) => return Ok(Bound::Fail(err)),
                None => Base::Pending(cell.clone()),
            },
        };
        Ok(match (base, path.is_empty(), args) {
            (Base::Value(value), true, None) => Bound::Ready(value),
            (base, _, args) => Bound::Apply { base, path, args },
        })
    }
}

fn ready_value(bound: Bound) -> Value {
    match bound {
        Bound::Ready(value) => value,
        _ => Value::Undefined, // only called after checking every item is ready
    }
}

/// Awaits and performs everything a bound expression still needs.
pub(crate) fn eval(bound: Bound, ctx: CallContext) -> BoxFuture<'static, RpcResult> {
    match bound {
        Bound::Ready(value) => ready(Ok(value)).boxed(),
        Bound::Fail(err) => ready(Err(err)).boxed(),
        Bound::Await(cell) => cell.wait(),
        Bound::Array(items) => async move { Ok(Value::Array(eval_all(items, &ctx).await?)) }.boxed(),
        Bound::Object(fields) => async move {
            let mut out = indexmap::IndexMap::new();
            for (key, item) in fields {
                out.insert(key, eval(item, ctx.clone()).await?);
            }
            Ok(Value::Object(out))
        }
        .boxed(),
        Bound::Remap { subject, captures, instructions } => async move {
            let subject = eval(*subject, ctx.clone()).await?;
            let captures = eval_all(captures, &ctx).await?;
            map(subject, &captures, &instructions, &ctx).await
        }
        .boxed(),
        Bound::Web { kind, body } => async move { kind.finish(eval(*body, ctx).await?).await }.boxed(),
        Bound::Apply { base, path, args } => async move {
            let base = match base {
                Base::Value(value) => value,
                Base::Pending(cell) => cell.wait().await?,
            };
            let args = match args {
                None => None,
                Some(args) => Some(eval_all(args, &ctx).await?),
            };
            apply(base, path, args, ctx).await
        }
        .boxed(),
    }
}

/// Evaluates each in order; the first failure fails them all.
async fn eval_all(bound: Vec<Bound>, ctx: &CallContext) -> Result<Vec<Value>, RpcError> {
    let mut out = Vec::with_capacity(bound.len());
    for item in bound {
        out.push(eval(item, ctx.clone()).await?);
    }
    Ok(out)
}
