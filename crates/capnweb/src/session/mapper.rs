//! `.map()` on the receiving side (`remap`): the client records its mapper function once as a
//! list of instructions, and we apply it to every element of an array (or to a single value)
//! here, so `api.listUsers().map(u => u.username)` costs one round trip instead of one per user.
//!
//! Inside the instructions, ids name the mapper's variables, never session tables: 0 is the
//! input, `k > 0` the result of instruction `k`, `-k` the `k`-th capture. The last instruction
//! is the function's result. Instructions cannot export anything (the reference client refuses
//! to build such a mapper), so `["export"]` and `["promise"]` there reject the map.

use futures::future::{BoxFuture, ready};
use futures::{FutureExt as _, StreamExt as _, TryStreamExt as _, stream};

use crate::capability::{CallContext, RpcResult, apply};
use crate::error::RpcError;
use crate::value::{Capture, Expr, Value};

/// How many elements of one mapped array run at once. Bounded so a long list does not start
/// thousands of calls together; results keep the array's order either way.
const ELEMENTS_IN_FLIGHT: usize = 64;

/// Applies the mapper to `subject` the way the reference does: element-wise over an array,
/// `null` and `undefined` passed through untouched, anything else mapped as a single value.
pub(crate) fn map<'a>(
    subject: Value,
    captures: &'a [Value],
    instructions: &'a [Expr],
    ctx: &'a CallContext,
) -> BoxFuture<'a, RpcResult> {
    if instructions.is_empty() {
        return ready(Err(RpcError::bad_request("invalid empty mapper function"))).boxed();
    }
    match subject {
        Value::Pending(pending) => {
            async move { map(pending.outcome().await?, captures, instructions, ctx).await }.boxed()
        }
        Value::Null | Value::Undefined => ready(Ok(subject)).boxed(),
        Value::Array(items) => stream::iter(items)
            .map(|item| apply_mapper(item, captures, instructions, ctx))
            .buffered(ELEMENTS_IN_FLIGHT)
            .try_collect()
            .map(|mapped| mapped.map(Value::Array))
            .boxed(),
        single => apply_mapper(single, captures, instructions, ctx),
    }
}

/// Runs the instructions in order on one input; each may use the results before it.
fn apply_mapper<'a>(
    input: Value,
    captures: &'a [Value],
    instructions: &'a [Expr],
    ctx: &'a CallContext,
) -> BoxFuture<'a, RpcResult> {
    async move {
        let Some((result, steps)) = instructions.split_last() else {
            return Err(RpcError::bad_request("invalid empty mapper function"));
        };
        let mut variables = Vec::with_capacity(instructions.len());
        variables.push(input);
        for step in steps {
            let value = Frame { variables: &variables, captures, ctx }.eval(step).await?;
            variables.push(value);
        }
        Frame { variables: &variables, captures, ctx }.eval(result).await
    }
    .boxed()
}

/// The variables one instruction may see.
struct Frame<'a> {
    variables: &'a [Value],
    captures: &'a [Value],
    ctx: &'a CallContext,
}

impl<'a> Frame<'a> {
    fn variable(&self, id: i64) -> Result<Value, RpcError> {
        let found = match usize::try_from(id) {
            Ok(index) => self.variables.get(index),
            Err(_) => usize::try_from(-(id + 1)).ok().and_then(|index| self.captures.get(index)),
        };
        found
            .cloned()
            .ok_or_else(|| RpcError::bad_request(format!("the mapper uses variable {id}, which it has not defined")))
    }

    fn eval(&'a self, expr: &'a Expr) -> BoxFuture<'a, RpcResult> {
        match expr {
            Expr::Literal(value) => ready(Ok(value.clone())).boxed(),
            Expr::Array(items) => async move { Ok(Value::Array(self.eval_all(items).await?)) }.boxed(),
            Expr::Object(fields) => async move {
                let mut out = indexmap::IndexMap::new();
                for (key, item) in fields {
                    out.insert(key.clone(), self.eval(item).await?);
                }
                Ok(Value::Object(out))
            }
            .boxed(),
            Expr::Reference { id, path, args } => async move {
                let base = self.variable(*id)?;
                let args = match args {
                    Some(args) => Some(self.eval_all(args).await?),
                    None => None,
                };
                apply(base, path.clone(), args, self.ctx.clone()).await
            }
            .boxed(),
            Expr::Remap(remap) => async move {
                let subject = apply(self.variable(remap.id)?, remap.path.clone(), None, self.ctx.clone()).await?;
                let captures = remap
                    .captures
                    .iter()
                    .map(|capture| match capture {
                        Capture::Import(id) => self.variable(*id),
                        Capture::Export(_) => Err(exports_refused()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                map(subject, &captures, &remap.instructions, self.ctx).await
            }
            .boxed(),
            Expr::Export(_) | Expr::Promise(_) | Expr::Readable(_) | Expr::Writable(_) => {
                ready(Err(exports_refused())).boxed()
            }
            Expr::Web(_) => ready(Err(exports_refused())).boxed(),
        }
    }

    async fn eval_all(&'a self, exprs: &'a [Expr]) -> Result<Vec<Value>, RpcError> {
        let mut out = Vec::with_capacity(exprs.len());
        for expr in exprs {
            out.push(self.eval(expr).await?);
        }
        Ok(out)
    }
}

fn exports_refused() -> RpcError {
    RpcError::bad_request("a mapper function cannot refer to exports or streams")
}
