//! Catching a handler's panic as that call's error, without a task of its own.
//!
//! A worker must survive its handler panicking: the panic becomes a `HandlerPanicked` error for
//! that one call. Spawning the handler as a separate task would catch it too, but costs a task
//! spawn per call on the hot path of every entrypoint; polling the handler inside
//! `std::panic::catch_unwind` gives the same outcome in the worker's own task. Dropping the
//! worker (a kill) drops the handler with it.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;

/// A future that resolves to `Err(panic payload)` when polling `inner` panicked.
#[pin_project]
pub(crate) struct CatchUnwind<F> {
    #[pin]
    inner: F,
}

impl<F> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        // The handler is never polled again after a panic (the worker ends with its error), so
        // whatever state the panic left behind is never observed: asserting unwind safety is
        // sound here.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
