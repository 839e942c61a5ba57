//! Testing helpers, Nameko's `nameko.testing` for Rust.
//!
//! - [`worker_factory`]: a [`Worker`] for calling a handler directly, for unit tests of service
//!   logic without a container. To replace a dependency (Nameko's `MagicMock` by attribute name),
//!   build the service's state with a fake: the state is a struct of yours, so a fake is just
//!   another value of a field's type (`RpcProxy::stub(..)`, `EventDispatcher::recording()`).
//! - [`entrypoint_hook`]: runs one entrypoint through a running container, with the full
//!   dependency lifecycle, and returns its result.
//! - [`entrypoint_waiter`]: waits until a worker of an entrypoint has finished its teardown.
//! - [`restrict_entrypoints`]: edits a container before it starts.
//! - [`dummy`] and [`once`]: test entrypoints that fire only when hooked, or once at start.
//!
//! Everything waits on events with a timeout (30 seconds by default, as Nameko's helpers do) and
//! fails with a [`TestingError`] rather than hanging.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::container::{Container, ContainerState, ServiceContainer};
use crate::context::{ContextData, WorkerContext};
use crate::entrypoint::{DirectCall, Entrypoint, EntrypointInfo};
use crate::extension::{BoxError, Extension};
use crate::service::Service;
use crate::worker::{IntoWorkerResult, Worker, WorkerResult};
use crate::worker_pipeline::WorkerEvent;

/// How long the helpers wait by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a testing helper could not do.
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    /// The service has no entrypoint bound to this method.
    #[error("service `{service}` has no entrypoint for method `{method}`")]
    UnknownEntrypoint {
        /// The service.
        service: String,
        /// The method asked for.
        method: String,
    },
    /// The container was already started; edit it before starting.
    #[error("service `{0}` is already started; replace or restrict before starting it")]
    AlreadyStarted(String),
    /// Nothing happened in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The container ended while waiting.
    #[error("service `{0}` ended while the helper was waiting")]
    ContainerEnded(String),
    /// The entrypoint refused the call.
    #[error("the entrypoint could not be called: {0}")]
    Call(BoxError),
}

/// Builds [`Worker`]s for calling handlers directly, over a service's state.
pub struct WorkerFactory<S> {
    service: String,
    state: Arc<S>,
    context_data: ContextData,
}

/// Starts a [`WorkerFactory`] over `service`'s own state; build the service with fakes in its
/// state to call a handler against them.
pub fn worker_factory<S: Send + Sync + 'static>(service: &Service<S>) -> WorkerFactory<S> {
    WorkerFactory {
        service: service.name().to_owned(),
        state: service.state().clone(),
        context_data: ContextData::new(),
    }
}

impl<S> WorkerFactory<S> {
    /// Uses `state` instead of the service's own.
    pub fn state(mut self, state: S) -> Self {
        self.state = Arc::new(state);
        self
    }

    /// Context data the worker sees.
    pub fn context_data(mut self, data: ContextData) -> Self {
        self.context_data = data;
        self
    }

    /// A worker for `method`.
    pub fn worker(&self, method: &str) -> Worker<S> {
        let context = WorkerContext::new(
            self.service.as_str().into(),
            Arc::new(EntrypointInfo::new("test", method)),
            self.context_data.clone(),
            Value::Null,
            crate::config::DEFAULT_PARENT_CALLS_TRACKED,
        );
        Worker::new(Arc::new(context), self.state.clone())
    }
}

impl<S> std::fmt::Debug for WorkerFactory<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerFactory")
            .field("service", &self.service)
            .field("context_data", &self.context_data)
            .finish_non_exhaustive()
    }
}

/// Calls one entrypoint of a running container.
#[derive(Debug)]
pub struct EntrypointHook {
    container: ServiceContainer,
    method: String,
    context_data: ContextData,
    timeout: Duration,
}

/// A hook for the entrypoint bound to `method`.
pub fn entrypoint_hook(
    container: &ServiceContainer,
    method: &str,
) -> Result<EntrypointHook, TestingError> {
    find_entrypoint(container.container(), method)?;
    Ok(EntrypointHook {
        container: container.clone(),
        method: method.to_owned(),
        context_data: ContextData::new(),
        timeout: DEFAULT_TIMEOUT,
    })
}

impl EntrypointHook {
    /// Context data for the calls, as if it came in headers.
    pub fn context_data(mut self, data: ContextData) -> Self {
        self.context_data = data;
        self
    }

    /// How long a call may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Calls the entrypoint with positional and keyword arguments and returns the worker's
    /// result. Fails if the container ends first or the call takes longer than the timeout.
    pub async fn call(
        &self,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<WorkerResult, TestingError> {
        let c = self.container.container();
        let entrypoint = find_entrypoint(c, &self.method)?;
        let call = DirectCall {
            args,
            kwargs,
            context_data: self.context_data.clone(),
        };
        let run = entrypoint.call(c, call);
        let ended = self.container.wait();
        tokio::select! {
            result = run => result.map_err(TestingError::Call),
            _ = ended => Err(TestingError::ContainerEnded(c.service_name().to_owned())),
            () = tokio::time::sleep(self.timeout) => Err(TestingError::Timeout(self.timeout)),
        }
    }
}

fn find_entrypoint(
    container: &Container,
    method: &str,
) -> Result<Arc<dyn crate::boxed::DynEntrypoint>, TestingError> {
    container
        .entrypoints()
        .into_iter()
        .find(|e| e.info().method_name() == method)
        .ok_or_else(|| TestingError::UnknownEntrypoint {
            service: container.service_name().to_owned(),
            method: method.to_owned(),
        })
}

/// Waits for a worker of one entrypoint to finish (after its teardown).
#[derive(Debug)]
pub struct EntrypointWaiter {
    events: broadcast::Receiver<Arc<WorkerEvent>>,
    container: ServiceContainer,
    method: String,
    timeout: Duration,
}

/// A waiter for workers of `method`. It listens from the moment it is made, so make it before
/// triggering the work.
pub fn entrypoint_waiter(
    container: &ServiceContainer,
    method: &str,
) -> Result<EntrypointWaiter, TestingError> {
    find_entrypoint(container.container(), method)?;
    Ok(EntrypointWaiter {
        events: container.container().subscribe_workers(),
        container: container.clone(),
        method: method.to_owned(),
        timeout: DEFAULT_TIMEOUT,
    })
}

impl EntrypointWaiter {
    /// How long to wait.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The next finished worker of the entrypoint.
    pub async fn wait(&mut self) -> Result<Arc<WorkerEvent>, TestingError> {
        self.wait_for(|_| true).await
    }

    /// The next finished worker of the entrypoint for which `accept` is true (Nameko's
    /// `callback`).
    pub async fn wait_for(
        &mut self,
        mut accept: impl FnMut(&WorkerEvent) -> bool,
    ) -> Result<Arc<WorkerEvent>, TestingError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut state = self.container.container().clone();
        loop {
            let event = tokio::select! {
                event = self.events.recv() => event,
                () = tokio::time::sleep_until(deadline) => return Err(TestingError::Timeout(self.timeout)),
            };
            match event {
                Ok(event)
                    if event.context.entrypoint().method_name() == self.method
                        && accept(&event) =>
                {
                    return Ok(event);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(TestingError::ContainerEnded(
                        state.service_name().to_owned(),
                    ));
                }
            }
            if matches!(
                state.state(),
                ContainerState::Stopped | ContainerState::Killed
            ) {
                return Err(TestingError::ContainerEnded(
                    state.service_name().to_owned(),
                ));
            }
            state = self.container.container().clone();
        }
    }
}

/// Disables every entrypoint of a container that has not started, except those bound to
/// `methods`.
pub fn restrict_entrypoints(
    container: &ServiceContainer,
    methods: &[&str],
) -> Result<(), TestingError> {
    ensure_not_started(container)?;
    container.container().edit_entrypoints(|entrypoints| {
        for method in methods {
            if !entrypoints
                .iter()
                .any(|e| e.info().method_name() == *method)
            {
                return Err(TestingError::UnknownEntrypoint {
                    service: container.service_name().to_owned(),
                    method: (*method).to_owned(),
                });
            }
        }
        entrypoints.retain(|e| methods.contains(&e.info().method_name()));
        Ok(())
    })
}

fn ensure_not_started(container: &ServiceContainer) -> Result<(), TestingError> {
    if container.state() != ContainerState::Created {
        return Err(TestingError::AlreadyStarted(
            container.service_name().to_owned(),
        ));
    }
    Ok(())
}

/// An entrypoint that fires only when called through [`entrypoint_hook`] (Nameko's `dummy`).
pub struct Dummy<S, H> {
    info: Arc<EntrypointInfo>,
    handler: H,
    state: PhantomData<fn() -> S>,
}

/// A [`Dummy`] entrypoint for `method`, running `handler(worker, call)`.
pub fn dummy<S, H, F>(method: &str, handler: H) -> Dummy<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>, DirectCall) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
{
    Dummy {
        info: Arc::new(EntrypointInfo::new("dummy", method)),
        handler,
        state: PhantomData,
    }
}

impl<S, H, F> Extension for Dummy<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>, DirectCall) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
{
}

impl<S, H, F> Entrypoint for Dummy<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>, DirectCall) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
{
    type State = S;

    fn info(&self) -> &Arc<EntrypointInfo> {
        &self.info
    }

    async fn call(
        &self,
        container: &Container,
        call: DirectCall,
    ) -> Result<WorkerResult, BoxError> {
        let handler = self.handler.clone();
        let args = serde_json::json!({"args": call.args.clone(), "kwargs": call.kwargs.clone()});
        let context_data = call.context_data.clone();
        let worker =
            container.spawn_worker(&self.info, context_data, args, move |worker| async move {
                handler(worker, call).await.into_worker_result()
            });
        Ok(worker.await?)
    }
}

/// An entrypoint that fires once when the container starts (Nameko's `once`).
pub struct Once<S, H> {
    info: Arc<EntrypointInfo>,
    handler: H,
    state: PhantomData<fn() -> S>,
}

/// A [`Once`] entrypoint for `method`.
pub fn once<S, H, F>(method: &str, handler: H) -> Once<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
{
    Once {
        info: Arc::new(EntrypointInfo::new("once", method)),
        handler,
        state: PhantomData,
    }
}

impl<S, H, F> Extension for Once<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
{
    async fn start(&self, container: &Container) -> Result<(), BoxError> {
        let handler = self.handler.clone();
        drop(container.spawn_worker(
            &self.info,
            ContextData::new(),
            Value::Null,
            move |w| async move { handler(w).await.into_worker_result() },
        ));
        Ok(())
    }
}

impl<S, H, F> Entrypoint for Once<S, H>
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
}
