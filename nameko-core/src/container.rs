//! The service container: runs one service, its extensions and its workers.
//!
//! Shaped after Nameko's `ServiceContainer` and mini-redis's server loop:
//!
//! - a [`Semaphore`] of `max_workers` permits bounds concurrent workers. A worker waits for its
//!   permit inside the task that runs it, so an entrypoint that spawns one (a consumer loop)
//!   never waits. That task is the worker's own ([`Container::spawn_worker`]) or one the
//!   entrypoint has anyway, an HTTP request's or a task per message ([`Container::run_worker`]),
//!   which saves a spawn and a wake-up per call;
//! - a [`TaskTracker`] knows every worker, so a graceful stop can wait for them to finish;
//! - two [`CancellationToken`]s are the shutdown signals: `stopping` (no new worker starts; those
//!   still waiting for a permit give their work back) and `killed` (running workers are aborted);
//! - long-running tasks the container depends on (a consumer, a server) are "managed": when one
//!   fails, the container is killed with that error and [`ServiceContainer::wait`] returns it.
//!
//! The lifecycle follows Nameko's order. Start: every dependency, entrypoint, then shared
//! extension is set up, then started. Graceful stop: entrypoints stop, running workers finish,
//! dependencies stop, shared extensions stop, managed tasks end.
//!
//! Extensions receive a [`Container`], a cheap-clone handle to the same state, in their hooks.
//! What one worker does (its slot, `worker_setup`, the method, the entrypoint's result handling,
//! `worker_result`, `worker_teardown`) lives in `worker_pipeline.rs`, whose `impl Container`
//! holds the `spawn_worker` and `run_worker` methods; this file keeps the lifecycle.

use std::any::{Any, TypeId};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::boxed::{DynEntrypoint, DynExtension};
use crate::config::Config;
use crate::error::ContainerError;
use crate::extension::{BoxError, SharedExtension};
use crate::service::{AnyService, NamedProvider};
use crate::worker_pipeline::WorkerEvent;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Built, not started.
    Created,
    /// Setting up and starting extensions.
    Starting,
    /// Serving.
    Running,
    /// Stopping gracefully.
    Stopping,
    /// Stopped gracefully.
    Stopped,
    /// Killed, by request or because something it depends on failed.
    Killed,
}

impl ContainerState {
    fn is_final(self) -> bool {
        matches!(self, Self::Stopped | Self::Killed)
    }
}

struct SharedEntry {
    type_id: TypeId,
    key: String,
    value: Arc<dyn Any + Send + Sync>,
    extension: Arc<dyn DynExtension>,
}

#[derive(Default)]
struct Extensions {
    entrypoints: Vec<Arc<dyn DynEntrypoint>>,
    dependencies: Vec<NamedProvider>,
    shared: Vec<SharedEntry>,
}

pub(crate) struct Inner {
    pub(crate) service_name: Arc<str>,
    /// The service's state, shared by every worker; each entrypoint knows its type.
    pub(crate) service_state: Arc<dyn Any + Send + Sync>,
    config: Config,
    pub(crate) parent_calls_tracked: usize,
    max_workers: usize,
    /// A std mutex is enough: it is held only to copy or edit the lists, never across an await.
    extensions: Mutex<Extensions>,
    pub(crate) worker_slots: Arc<Semaphore>,
    pub(crate) workers: TaskTracker,
    pub(crate) stopping: CancellationToken,
    pub(crate) killed: CancellationToken,
    managed: Mutex<Vec<AbortOnDropHandle<()>>>,
    /// Serialises start and stop; kill never waits for it.
    lifecycle: tokio::sync::Mutex<()>,
    state: watch::Sender<ContainerState>,
    error: Mutex<Option<ContainerError>>,
    pub(crate) events: broadcast::Sender<Arc<WorkerEvent>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the lists half-edited (every edit is
    // a single push or clear), so a poisoned lock is safe to keep using.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handle to a running container, handed to extensions. Cheap to clone.
#[derive(Clone)]
pub struct Container {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("service", &self.inner.service_name)
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

impl Container {
    /// The service's name.
    pub fn service_name(&self) -> &str {
        &self.inner.service_name
    }

    /// The shared service name, for extensions that keep it.
    pub fn service_name_arc(&self) -> Arc<str> {
        self.inner.service_name.clone()
    }

    /// The configuration the container was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// How many workers may run at once.
    pub fn max_workers(&self) -> usize {
        self.inner.max_workers
    }

    /// The current state.
    pub fn state(&self) -> ContainerState {
        *self.inner.state.borrow()
    }

    /// The shared extension of type `S` under `key`, made with `make` the first time it is asked
    /// for. Ask for it in `setup`: the container sets shared extensions up after the extensions
    /// that use them, starts them after them and stops them after them.
    pub fn shared_extension<S, F>(&self, key: &str, make: F) -> Arc<S>
    where
        S: SharedExtension,
        F: FnOnce() -> S,
    {
        let mut extensions = lock(&self.inner.extensions);
        let type_id = TypeId::of::<S>();
        let existing = extensions
            .shared
            .iter()
            .find(|e| e.type_id == type_id && e.key == key)
            .and_then(|entry| entry.value.clone().downcast::<S>().ok());
        if let Some(existing) = existing {
            return existing;
        }
        let created = Arc::new(make());
        extensions.shared.push(SharedEntry {
            type_id,
            key: key.to_owned(),
            value: created.clone(),
            extension: created.clone(),
        });
        created
    }

    /// Runs a long-lived task the container depends on. If it fails, the container is killed and
    /// [`ServiceContainer::wait`] returns the error. It is aborted when the container has stopped.
    pub fn spawn_managed<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let name = name.into();
        let container = self.clone();
        let handle = tokio::spawn(async move {
            if let Err(source) = task.await {
                container.fail(ContainerError::TaskFailed {
                    service: container.service_name().to_owned(),
                    task: name,
                    source: Arc::new(source),
                });
            }
        });
        lock(&self.inner.managed).push(AbortOnDropHandle::new(handle));
    }

    /// Kills the container because of `error`, unless it already ended; the first error wins.
    pub fn fail(&self, error: ContainerError) {
        tracing::error!(service = %self.inner.service_name, %error, "killing the container");
        {
            let mut slot = lock(&self.inner.error);
            if slot.is_none() && !self.state().is_final() {
                *slot = Some(error);
            }
        }
        let container = ServiceContainer {
            container: self.clone(),
        };
        tokio::spawn(async move { container.kill().await });
    }

    /// Every worker of this container that finishes from now on, after its teardown.
    pub fn subscribe_workers(&self) -> broadcast::Receiver<Arc<WorkerEvent>> {
        self.inner.events.subscribe()
    }

    pub(crate) fn entrypoints(&self) -> Vec<Arc<dyn DynEntrypoint>> {
        lock(&self.inner.extensions).entrypoints.clone()
    }

    pub(crate) fn edit_entrypoints<R>(
        &self,
        edit: impl FnOnce(&mut Vec<Arc<dyn DynEntrypoint>>) -> R,
    ) -> R {
        edit(&mut lock(&self.inner.extensions).entrypoints)
    }

    pub(crate) fn dependencies(&self) -> Vec<NamedProvider> {
        lock(&self.inner.extensions).dependencies.clone()
    }

    fn shared(&self) -> Vec<Arc<dyn DynExtension>> {
        lock(&self.inner.extensions)
            .shared
            .iter()
            .map(|e| e.extension.clone())
            .collect()
    }
}

/// Runs one service: owns its lifecycle. Cheap to clone; clones control the same container.
#[derive(Clone, Debug)]
pub struct ServiceContainer {
    container: Container,
}

impl ServiceContainer {
    /// A container for `service`, reading `max_workers` and `parent_calls_tracked` from `config`.
    pub fn new(service: impl Into<AnyService>, config: Config) -> Result<Self, ContainerError> {
        let service = service.into();
        let definition = |message: String| ContainerError::Definition {
            service: service.name.to_string(),
            message,
        };
        if service.name.trim().is_empty() {
            return Err(definition("a service needs a non-empty name".into()));
        }
        let max_workers = config.max_workers()?;
        let parent_calls_tracked = config.parent_calls_tracked()?;
        let inner = Inner {
            service_name: service.name.clone(),
            service_state: service.state,
            config,
            parent_calls_tracked,
            max_workers,
            extensions: Mutex::new(Extensions {
                entrypoints: service.entrypoints,
                dependencies: service.dependencies,
                shared: Vec::new(),
            }),
            worker_slots: Arc::new(Semaphore::new(max_workers)),
            workers: TaskTracker::new(),
            stopping: CancellationToken::new(),
            killed: CancellationToken::new(),
            managed: Mutex::new(Vec::new()),
            lifecycle: tokio::sync::Mutex::new(()),
            state: watch::Sender::new(ContainerState::Created),
            error: Mutex::new(None),
            events: broadcast::channel(1024).0,
        };
        Ok(Self {
            container: Container {
                inner: Arc::new(inner),
            },
        })
    }

    /// The handle extensions see.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// The service's name.
    pub fn service_name(&self) -> &str {
        self.container.service_name()
    }

    /// The current state.
    pub fn state(&self) -> ContainerState {
        self.container.state()
    }

    /// Sets up, then starts, every extension. On failure the container is killed and the error
    /// returned.
    pub async fn start(&self) -> Result<(), ContainerError> {
        let result = {
            let _guard = self.container.inner.lifecycle.lock().await;
            if self.state() != ContainerState::Created {
                return Err(ContainerError::AlreadyStarted(
                    self.service_name().to_owned(),
                ));
            }
            self.container
                .inner
                .state
                .send_replace(ContainerState::Starting);
            let result = self.start_extensions().await;
            if result.is_ok() {
                self.container
                    .inner
                    .state
                    .send_replace(ContainerState::Running);
                tracing::debug!(service = self.service_name(), "container started");
            }
            result
        };
        if let Err(err) = &result {
            self.container.fail(err.clone());
            self.wait_final().await;
        }
        result
    }

    async fn start_extensions(&self) -> Result<(), ContainerError> {
        let c = &self.container;
        let failed = |extension: String, hook: &'static str| {
            let service = c.service_name().to_owned();
            move |source: BoxError| ContainerError::Extension {
                service,
                extension,
                hook,
                source: Arc::new(source),
            }
        };
        let dependencies = c.dependencies();
        let entrypoints = c.entrypoints();
        for (name, dp) in &dependencies {
            dp.setup(c)
                .await
                .map_err(failed(format!("dependency `{name}`"), "set up"))?;
        }
        for ep in &entrypoints {
            ep.setup(c)
                .await
                .map_err(failed(describe(ep.as_ref()), "set up"))?;
        }
        let shared = c.shared();
        for ext in &shared {
            ext.setup(c)
                .await
                .map_err(failed("a shared extension".into(), "set up"))?;
        }
        for (name, dp) in &dependencies {
            dp.start(c)
                .await
                .map_err(failed(format!("dependency `{name}`"), "start"))?;
        }
        for ep in &entrypoints {
            ep.start(c)
                .await
                .map_err(failed(describe(ep.as_ref()), "start"))?;
        }
        for ext in &shared {
            ext.start(c)
                .await
                .map_err(failed("a shared extension".into(), "start"))?;
        }
        Ok(())
    }

    /// Stops gracefully, in Nameko's order: entrypoints stop taking work, running workers finish
    /// (workers still waiting for a slot give their work back), dependencies stop, shared
    /// extensions stop. Safe to call more than once and while a kill is under way.
    pub async fn stop(&self) {
        let inner = &self.container.inner;
        {
            let _guard = inner.lifecycle.lock().await;
            match self.state() {
                ContainerState::Created => {
                    inner.state.send_replace(ContainerState::Stopped);
                    return;
                }
                state if state.is_final() => return,
                _ if inner.killed.is_cancelled() => {}
                _ => {
                    inner.state.send_replace(ContainerState::Stopping);
                    self.stop_in_order().await;
                }
            }
        }
        self.wait_final().await;
    }

    async fn stop_in_order(&self) {
        let c = &self.container;
        let inner = &c.inner;
        for ep in c.entrypoints() {
            ep.stop().await;
        }
        inner.stopping.cancel();
        inner.workers.close();
        tokio::select! {
            () = inner.workers.wait() => {}
            () = inner.killed.cancelled() => return,
        }
        for (_, dp) in c.dependencies() {
            dp.stop().await;
        }
        for ext in c.shared() {
            ext.stop().await;
        }
        if inner.killed.is_cancelled() {
            return;
        }
        self.finish(ContainerState::Stopped);
        tracing::debug!(service = self.service_name(), "container stopped");
    }

    /// Stops at once: running workers are aborted (their messages go back to the broker when
    /// connections close), then every extension is killed. Happens only once.
    pub async fn kill(&self) {
        let inner = &self.container.inner;
        if self.state().is_final() {
            return;
        }
        if inner.killed.is_cancelled() {
            self.wait_final().await;
            return;
        }
        inner.killed.cancel();
        inner.stopping.cancel();
        let c = &self.container;
        for ep in c.entrypoints() {
            ep.kill().await;
        }
        inner.workers.close();
        inner.workers.wait().await;
        for (_, dp) in c.dependencies() {
            dp.kill().await;
        }
        for ext in c.shared() {
            ext.kill().await;
        }
        self.finish(ContainerState::Killed);
        tracing::debug!(service = self.service_name(), "container killed");
    }

    fn finish(&self, state: ContainerState) {
        let inner = &self.container.inner;
        // Managed tasks and extensions hold handles to this container; dropping them here breaks
        // those cycles so a finished container is freed.
        let managed = std::mem::take(&mut *lock(&inner.managed));
        drop(managed);
        let extensions = std::mem::take(&mut *lock(&inner.extensions));
        drop(extensions);
        inner.state.send_replace(state);
    }

    async fn wait_final(&self) {
        let mut state = self.container.inner.state.subscribe();
        let _ = state.wait_for(|s| s.is_final()).await;
    }

    /// Waits until the container has stopped or was killed; returns the error that killed it, if
    /// one did.
    pub async fn wait(&self) -> Result<(), ContainerError> {
        self.wait_final().await;
        match lock(&self.container.inner.error).clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

fn describe(ep: &dyn DynEntrypoint) -> String {
    format!(
        "{} entrypoint `{}`",
        ep.info().kind(),
        ep.info().method_name()
    )
}
