//! What makes a proxy layer: a [`Step`] says what it does around the steps inside it, and
//! [`StepLayer`] makes any step a tower layer, so each layer's file holds only its own logic.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::BoxFuture;

/// The steps inside a step: a tower service that never fails (an attempt's failure is a
/// value, [`super::Attempt`], so each layer can decide what it means).
pub trait Inner<Req, Res>:
    Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone + Send + Sync + 'static
{
}

impl<T, Req, Res> Inner<Req, Res> for T where
    T: Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone + Send + Sync + 'static
{
}

/// One layer's logic: handle `req`, calling `inner` as often as it needs (never, once, or
/// once per attempt).
pub trait Step<Req, S>: Clone + Send + Sync + 'static {
    type Response;
    fn run(&self, req: Req, inner: S) -> impl Future<Output = Self::Response> + Send;
}

#[derive(Clone)]
pub struct StepLayer<T>(pub T);

impl<T: Clone, S> Layer<S> for StepLayer<T> {
    type Service = StepService<T, S>;
    fn layer(&self, inner: S) -> Self::Service {
        StepService { shared: Arc::new((self.0.clone(), inner)) }
    }
}

/// A step and the steps inside it, shared: a request clones one `Arc`, not the stack.
pub struct StepService<T, S> {
    shared: Arc<(T, S)>,
}

impl<T, S> Clone for StepService<T, S> {
    fn clone(&self) -> Self {
        StepService { shared: self.shared.clone() }
    }
}

impl<T, S, Req> Service<Req> for StepService<T, S>
where
    T: Step<Req, S>,
    T::Response: Send + 'static,
    S: Clone + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = T::Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<T::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let (step, inner) = &*shared;
            Ok(step.run(req, inner.clone()).await)
        })
    }
}
