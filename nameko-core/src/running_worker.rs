//! A worker running in the task that awaits it, and in a task of its own once nobody does.
//!
//! Spawning a task per worker costs an allocation, a trip through the scheduler and a wake-up
//! of whoever waits for the result: on an HTTP request or an RPC call that is a large share of
//! what the framework adds to the handler. Yet a worker must run to its end even when whoever
//! waits for it goes away (an HTTP client that disconnects, a caller that stops listening):
//! Nameko's workers are never cut short by their caller, only by a kill. [`RunningWorker`] gives
//! both. It is a future that runs the worker inside the task polling it, with no task of its own;
//! if it is dropped before the worker ended, the rest of the worker is handed to a new task,
//! where it runs to its end as a spawned worker would have. The worker is boxed for that
//! hand-over, which is the one allocation it costs.
//!
//! Either way the worker stays tracked by its container (a graceful stop waits for it), is
//! aborted by a kill, and a panic anywhere in it (a dependency's hook, the entrypoint's result
//! handling; the method's own panics are caught earlier, as that call's error) ends it with
//! [`WorkerAborted::Panicked`] instead of unwinding into the task that polls it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::catch_unwind::CatchUnwind;
use crate::error::WorkerAborted;
use crate::worker::WorkerResult;

/// What a worker ends with: its result, or why it has none.
pub(crate) type WorkerOutcome = Result<WorkerResult, WorkerAborted>;

type BoxedWorker = Pin<Box<dyn Future<Output = WorkerOutcome> + Send + 'static>>;

/// A worker of a container, run by awaiting it; see
/// [`Container::run_worker`](crate::Container::run_worker).
///
/// Dropping it before it is ready does not cancel the worker: it goes on in a task of its own
/// (when no tokio runtime is left to run it, it is dropped with the runtime).
#[must_use = "a worker runs when it is awaited, or in a task of its own when dropped"]
pub struct RunningWorker {
    /// `None` once the worker has ended and its outcome was returned.
    worker: Option<BoxedWorker>,
}

impl RunningWorker {
    pub(crate) fn new(worker: impl Future<Output = WorkerOutcome> + Send + 'static) -> Self {
        Self {
            worker: Some(Box::pin(async move {
                CatchUnwind::new(worker)
                    .await
                    .unwrap_or(Err(WorkerAborted::Panicked))
            })),
        }
    }

    /// Whether the worker has ended (its outcome was returned by a poll).
    pub fn is_finished(&self) -> bool {
        self.worker.is_none()
    }
}

impl Future for RunningWorker {
    type Output = WorkerOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WorkerOutcome> {
        let worker = self
            .worker
            .as_mut()
            .expect("a RunningWorker is not polled again after it ended");
        let outcome = std::task::ready!(worker.as_mut().poll(cx));
        self.worker = None;
        Poll::Ready(outcome)
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = worker.await;
            });
        }
    }
}

impl fmt::Debug for RunningWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningWorker")
            .field("finished", &self.is_finished())
            .finish()
    }
}
