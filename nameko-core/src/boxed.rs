//! Object-safe twins of the public extension traits, so a container can hold a list of different
//! extensions.
//!
//! The public traits return `impl Future` so that users write plain `async fn`s; such traits
//! cannot be made into trait objects. Each twin here is implemented for every type that
//! implements the public trait, boxing the futures once, as axum's `boxed.rs` does for handlers.
//! None of this is public: users never see a boxed future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::container::Container;
use crate::context::WorkerContext;
use crate::dependency::DependencyProvider;
use crate::entrypoint::{DirectCall, Entrypoint, EntrypointInfo};
use crate::extension::{BoxError, Extension};
use crate::worker::WorkerResult;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub(crate) trait DynExtension: Send + Sync {
    fn setup<'a>(&'a self, container: &'a Container) -> BoxFuture<'a, Result<(), BoxError>>;
    fn start<'a>(&'a self, container: &'a Container) -> BoxFuture<'a, Result<(), BoxError>>;
    fn stop(&self) -> BoxFuture<'_, ()>;
    fn kill(&self) -> BoxFuture<'_, ()>;
}

impl<T: Extension> DynExtension for T {
    fn setup<'a>(&'a self, container: &'a Container) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(Extension::setup(self, container))
    }
    fn start<'a>(&'a self, container: &'a Container) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(Extension::start(self, container))
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(Extension::stop(self))
    }
    fn kill(&self) -> BoxFuture<'_, ()> {
        Box::pin(Extension::kill(self))
    }
}

pub(crate) trait DynEntrypoint: DynExtension {
    fn info(&self) -> &Arc<EntrypointInfo>;
    fn call<'a>(
        &'a self,
        container: &'a Container,
        call: DirectCall,
    ) -> BoxFuture<'a, Result<WorkerResult, BoxError>>;
}

impl<T: Entrypoint> DynEntrypoint for T {
    fn info(&self) -> &Arc<EntrypointInfo> {
        Entrypoint::info(self)
    }
    fn call<'a>(
        &'a self,
        container: &'a Container,
        call: DirectCall,
    ) -> BoxFuture<'a, Result<WorkerResult, BoxError>> {
        Box::pin(Entrypoint::call(self, container, call))
    }
}

pub(crate) trait DynDependencyProvider: DynExtension {
    fn worker_setup<'a>(&'a self, worker: &'a WorkerContext) -> BoxFuture<'a, ()>;
    fn worker_result<'a>(
        &'a self,
        worker: &'a WorkerContext,
        result: &'a WorkerResult,
    ) -> BoxFuture<'a, ()>;
    fn worker_teardown<'a>(&'a self, worker: &'a WorkerContext) -> BoxFuture<'a, ()>;
}

impl<T: DependencyProvider> DynDependencyProvider for T {
    fn worker_setup<'a>(&'a self, worker: &'a WorkerContext) -> BoxFuture<'a, ()> {
        Box::pin(DependencyProvider::worker_setup(self, worker))
    }
    fn worker_result<'a>(
        &'a self,
        worker: &'a WorkerContext,
        result: &'a WorkerResult,
    ) -> BoxFuture<'a, ()> {
        Box::pin(DependencyProvider::worker_result(self, worker, result))
    }
    fn worker_teardown<'a>(&'a self, worker: &'a WorkerContext) -> BoxFuture<'a, ()> {
        Box::pin(DependencyProvider::worker_teardown(self, worker))
    }
}
