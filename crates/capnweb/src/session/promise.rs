//! A settle-once cell for call results that any number of later operations (pulls, pipelined
//! calls, pipelined arguments) may wait on.

use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::capability::RpcResult;
use crate::error::RpcError;

#[derive(Clone)]
pub(crate) struct PromiseCell(Arc<watch::Sender<Option<RpcResult>>>);

impl PromiseCell {
    pub(crate) fn new() -> Self {
        PromiseCell(Arc::new(watch::Sender::new(None)))
    }

    pub(crate) fn settle(&self, outcome: RpcResult) {
        self.0.send_replace(Some(outcome));
    }

    pub(crate) fn peek(&self) -> Option<RpcResult> {
        self.0.borrow().clone()
    }

    /// Waits for the outcome. The future keeps the cell alive, so only the end of the session
    /// (which cancels every waiter) stops it early.
    pub(crate) fn wait(&self) -> BoxFuture<'static, RpcResult> {
        if let Some(outcome) = self.peek() {
            return futures::future::ready(outcome).boxed();
        }
        let cell = self.clone();
        async move {
            let mut rx = cell.0.subscribe();
            let settled = rx.wait_for(Option::is_some).await.map(|v| v.clone());
            match settled {
                Ok(Some(outcome)) => outcome,
                _ => Err(RpcError::session_closed()),
            }
        }
        .boxed()
    }
}
