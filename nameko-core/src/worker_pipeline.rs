//! The worker pipeline: what the container does for one call of one entrypoint.
//!
//! A worker waits for one of the container's `max_workers` slots, builds its
//! [`WorkerContext`], runs every dependency's `worker_setup`, the method (a panic caught as that
//! call's error), the entrypoint's own result handling (Nameko's `handle_result`: an RPC reply),
//! every `worker_result`, every `worker_teardown`, and last announces a [`WorkerEvent`] to
//! whoever listens. It is kept apart from `container.rs`, which owns the lifecycle, because it
//! is the per-call path every entrypoint goes through, and reads best start to end in one place.
//!
//! The pipeline is one future, run either in a task of its own
//! ([`Container::spawn_worker`]) or in a task the entrypoint has anyway
//! ([`Container::run_worker`], through [`RunningWorker`]). Waiting for a slot happens inside
//! it, so starting a worker never blocks its entrypoint. A worker still waiting for a slot when
//! the container stops gives its work back ([`WorkerAborted::Stopping`]); a kill aborts it
//! ([`WorkerAborted::Killed`]).

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::TryAcquireError;

use crate::catch_unwind::CatchUnwind;
use crate::container::{Container, Inner};
use crate::context::{ContextData, WorkerContext};
use crate::entrypoint::EntrypointInfo;
use crate::error::WorkerAborted;
use crate::remote_error::{HANDLER_PANICKED, RemoteError};
use crate::running_worker::RunningWorker;
use crate::worker::{ServiceState, Worker, WorkerResult};

/// A finished worker, as the testing helpers and monitoring see it.
#[derive(Debug, Clone)]
pub struct WorkerEvent {
    /// The worker's context.
    pub context: Arc<WorkerContext>,
    /// Its result, after the entrypoint's result handling.
    pub result: WorkerResult,
}

impl Container {
    /// Starts a worker for `entrypoint` in a task of its own and returns a future of its result.
    ///
    /// The worker runs whether or not the future is awaited; it waits in its task for a
    /// `max_workers` permit, so calling this never blocks. `context_data` is the incoming context
    /// (headers, `nameko.` prefix removed); `args` are the call's arguments for logging. An
    /// entrypoint that awaits the worker anyway, in a task it has, saves the spawn with
    /// [`Self::run_worker`].
    pub fn spawn_worker<S: ServiceState + ?Sized, M, MF>(
        &self,
        entrypoint: &Arc<EntrypointInfo>,
        context_data: ContextData,
        args: Value,
        method: M,
    ) -> impl Future<Output = Result<WorkerResult, WorkerAborted>> + Send + 'static
    where
        M: FnOnce(Worker<S>) -> MF + Send + 'static,
        MF: Future<Output = WorkerResult> + Send + 'static,
    {
        self.spawn_worker_with(entrypoint, context_data, args, method, keep_result)
    }

    /// Like [`Self::spawn_worker`], with the entrypoint's own result handling run between the
    /// method and the dependencies' `worker_result` hooks, as Nameko's `handle_result` is: an RPC
    /// entrypoint sends its reply and acknowledges the request there.
    pub fn spawn_worker_with<S: ServiceState + ?Sized, M, MF, H, HF>(
        &self,
        entrypoint: &Arc<EntrypointInfo>,
        context_data: ContextData,
        args: Value,
        method: M,
        handle_result: H,
    ) -> impl Future<Output = Result<WorkerResult, WorkerAborted>> + Send + 'static
    where
        M: FnOnce(Worker<S>) -> MF + Send + 'static,
        MF: Future<Output = WorkerResult> + Send + 'static,
        H: FnOnce(Arc<WorkerContext>, WorkerResult) -> HF + Send + 'static,
        HF: Future<Output = WorkerResult> + Send + 'static,
    {
        let worker = self.run_worker_with(entrypoint, context_data, args, method, handle_result);
        let task = tokio::spawn(worker);
        async move { task.await.unwrap_or(Err(WorkerAborted::Killed)) }
    }

    /// A worker for `entrypoint` that runs in the task awaiting it, without a task of its own.
    ///
    /// Everything else is as with [`Self::spawn_worker`]: the worker waits for a `max_workers`
    /// permit (so await it where waiting is fine, such as a task spawned per message or a
    /// request's own future), the container tracks it and a kill aborts it. If the future is
    /// dropped before the worker ended, the worker is not cancelled: it goes on in a task of its
    /// own (see [`RunningWorker`]).
    pub fn run_worker<S: ServiceState + ?Sized, M, MF>(
        &self,
        entrypoint: &Arc<EntrypointInfo>,
        context_data: ContextData,
        args: Value,
        method: M,
    ) -> RunningWorker
    where
        M: FnOnce(Worker<S>) -> MF + Send + 'static,
        MF: Future<Output = WorkerResult> + Send + 'static,
    {
        self.run_worker_with(entrypoint, context_data, args, method, keep_result)
    }

    /// Like [`Self::run_worker`], with the entrypoint's own result handling (see
    /// [`Self::spawn_worker_with`]).
    pub fn run_worker_with<S: ServiceState + ?Sized, M, MF, H, HF>(
        &self,
        entrypoint: &Arc<EntrypointInfo>,
        context_data: ContextData,
        args: Value,
        method: M,
        handle_result: H,
    ) -> RunningWorker
    where
        M: FnOnce(Worker<S>) -> MF + Send + 'static,
        MF: Future<Output = WorkerResult> + Send + 'static,
        H: FnOnce(Arc<WorkerContext>, WorkerResult) -> HF + Send + 'static,
        HF: Future<Output = WorkerResult> + Send + 'static,
    {
        let killed = self.inner.killed.clone();
        let tracked = self.inner.workers.track_future(run_worker(
            self.inner.clone(),
            entrypoint.clone(),
            context_data,
            args,
            method,
            handle_result,
        ));
        RunningWorker::new(async move {
            if killed.is_cancelled() {
                return Err(WorkerAborted::Killed);
            }
            // The worker is polled first: one that ends in its first poll, as most do, never
            // registers with the kill signal.
            tokio::select! {
                biased;
                outcome = tracked => outcome,
                () = killed.cancelled() => Err(WorkerAborted::Killed),
            }
        })
    }
}

async fn run_worker<S: ServiceState + ?Sized, M, MF, H, HF>(
    inner: Arc<Inner>,
    entrypoint: Arc<EntrypointInfo>,
    context_data: ContextData,
    args: Value,
    method: M,
    handle_result: H,
) -> Result<WorkerResult, WorkerAborted>
where
    M: FnOnce(Worker<S>) -> MF + Send + 'static,
    MF: Future<Output = WorkerResult> + Send + 'static,
    H: FnOnce(Arc<WorkerContext>, WorkerResult) -> HF + Send + 'static,
    HF: Future<Output = WorkerResult> + Send + 'static,
{
    if inner.stopping.is_cancelled() {
        return Err(WorkerAborted::Stopping);
    }
    // A free slot is taken at once; only a worker that has to wait for one also listens for
    // the container stopping meanwhile.
    let _permit = match inner.worker_slots.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(TryAcquireError::Closed) => return Err(WorkerAborted::Stopping),
        Err(TryAcquireError::NoPermits) => tokio::select! {
            biased;
            () = inner.stopping.cancelled() => return Err(WorkerAborted::Stopping),
            permit = inner.worker_slots.clone().acquire_owned() => {
                permit.map_err(|_| WorkerAborted::Stopping)?
            }
        },
    };
    let container = Container {
        inner: inner.clone(),
    };
    let context = Arc::new(WorkerContext::new(
        inner.service_name.clone(),
        entrypoint.clone(),
        context_data,
        args,
        inner.parent_calls_tracked,
    ));
    let providers = container.dependencies();
    for (_, provider) in &providers {
        provider.worker_setup(&context).await;
    }

    let result = match S::from_any(inner.service_state.clone()) {
        Some(state) => run_method(method(Worker::new(context.clone(), state))).await,
        // `Service<S>::entrypoint` only takes entrypoints for its own state, so this needs an
        // entrypoint that calls the container with a state type of its own making.
        None => Err(RemoteError::state_mismatch::<S>()),
    };
    if let Err(err) = &result {
        let args = context.redacted_args();
        if entrypoint.is_expected(&err.exc_type) {
            tracing::warn!(call_id = context.call_id(), %args, error = %err, "expected error in worker");
        } else {
            tracing::error!(call_id = context.call_id(), %args, error = %err, "error in worker");
        }
    }

    let result = handle_result(context.clone(), result).await;
    for (_, provider) in &providers {
        provider.worker_result(&context, &result).await;
    }
    for (_, provider) in &providers {
        provider.worker_teardown(&context).await;
    }
    // Nobody listens outside tests: the event is only built for a listener.
    if inner.events.receiver_count() > 0 {
        let _ = inner.events.send(Arc::new(WorkerEvent {
            context,
            result: result.clone(),
        }));
    }
    Ok(result)
}

/// The result handling of an entrypoint that has none of its own.
async fn keep_result(_: Arc<WorkerContext>, result: WorkerResult) -> WorkerResult {
    result
}

/// Runs the method, catching a panic as that call's error (see `catch_unwind.rs`).
async fn run_method<F>(method: F) -> WorkerResult
where
    F: Future<Output = WorkerResult> + Send + 'static,
{
    match CatchUnwind::new(method).await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".to_owned());
            Err(RemoteError::new(
                "HandlerPanicked",
                HANDLER_PANICKED,
                message,
            ))
        }
    }
}
