//! The `timer` entrypoint: runs a service method every interval, on every running instance.
//!
//! One loop task per timer waits for the next due point of its [`Schedule`], starts a worker and
//! waits for that worker to finish before it schedules the next tick, so ticks of one timer never
//! overlap. A failing tick is logged by the container and the timer keeps going. `stop` ends the
//! loop and waits for a tick that is running; `kill` aborts the loop (the container aborts the
//! running worker). As in Nameko, timers are not cluster-aware, and a tick's worker starts with
//! empty context data and no arguments.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nameko_core::{
    BoxError, Container, ContextData, DirectCall, Entrypoint, EntrypointInfo, Extension,
    IntoWorkerResult, Worker, WorkerAborted, WorkerResult,
};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::schedule::Schedule;

/// A timer entrypoint; build it with [`timer`].
pub struct Timer<S, H> {
    info: Arc<EntrypointInfo>,
    interval: Duration,
    eager: bool,
    handler: H,
    stop: CancellationToken,
    /// The loop task. A std mutex is enough: it is only taken to store or take the handle.
    running: Mutex<Option<JoinHandle<()>>>,
    _state: PhantomData<fn() -> S>,
}

/// Runs `handler` as the service method `method_name` every `interval`.
///
/// The first tick comes one interval after the service starts, or at once with
/// [`Timer::eager`].
///
/// ```
/// use std::time::Duration;
/// use nameko_core::{Service, Worker};
/// use nameko_timer::timer;
///
/// async fn ping(_: Worker) {
///     println!("pong");
/// }
///
/// let service = Service::new("service").entrypoint(timer(Duration::from_secs(1), "ping", ping));
/// # let _ = service;
/// ```
pub fn timer<S, H, F>(interval: Duration, method_name: &str, handler: H) -> Timer<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
{
    Timer {
        info: Arc::new(EntrypointInfo::new("timer", method_name)),
        interval,
        eager: false,
        handler,
        stop: CancellationToken::new(),
        running: Mutex::new(None),
        _state: PhantomData,
    }
}

impl<S, H> Timer<S, H> {
    /// Whether the first tick comes at start rather than one interval later.
    pub fn eager(mut self, eager: bool) -> Self {
        self.eager = eager;
        self
    }

    /// `exc_type`s a tick is expected to fail with; they are logged as warnings.
    pub fn expected_exceptions<I, T>(mut self, exc_types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.info = Arc::new((*self.info).clone().with_expected_exceptions(exc_types));
        self
    }

    /// The interval between ticks.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn take_running(&self) -> Option<JoinHandle<()>> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Starts one tick's worker; the future resolves when the worker has finished.
fn spawn_tick<S, H, F>(
    container: &Container,
    info: &Arc<EntrypointInfo>,
    handler: &H,
) -> impl Future<Output = Result<WorkerResult, WorkerAborted>> + Send + 'static
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
{
    let handler = handler.clone();
    container.spawn_worker(
        info,
        ContextData::new(),
        Value::Null,
        move |worker| async move { handler(worker).await.into_worker_result() },
    )
}

impl<S, H, F> Extension for Timer<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
{
    async fn start(&self, container: &Container) -> Result<(), BoxError> {
        if self.interval.is_zero() {
            return Err(format!(
                "timer `{}` needs an interval above zero",
                self.info.method_name()
            )
            .into());
        }
        let mut schedule = Schedule::new(Instant::now(), self.interval, self.eager);
        let stop = self.stop.clone();
        let (container, info, handler) =
            (container.clone(), self.info.clone(), self.handler.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep_until(schedule.next_due()) => {}
                }
                if spawn_tick(&container, &info, &handler).await.is_err() {
                    // The container is stopping or was killed: no more ticks.
                    break;
                }
                schedule.finished(Instant::now());
            }
            tracing::debug!(method = info.method_name(), "timer ended");
        });
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(())
    }

    async fn stop(&self) {
        self.stop.cancel();
        if let Some(task) = self.take_running() {
            let _ = task.await;
        }
    }

    async fn kill(&self) {
        self.stop.cancel();
        if let Some(task) = self.take_running() {
            task.abort();
        }
    }
}

impl<S, H, F> Entrypoint for Timer<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
{
    type State = S;

    fn info(&self) -> &Arc<EntrypointInfo> {
        &self.info
    }

    /// Runs one tick now, outside the schedule (what `entrypoint_hook` does).
    async fn call(
        &self,
        container: &Container,
        _call: DirectCall,
    ) -> Result<WorkerResult, BoxError> {
        Ok(spawn_tick(container, &self.info, &self.handler).await?)
    }
}
