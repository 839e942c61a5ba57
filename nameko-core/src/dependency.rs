//! Dependency providers: what a service method gets injected (Nameko's class attributes such as
//! `other = RpcProxy("other")`).
//!
//! A provider is registered on a [`Service`](crate::Service) under a name (Nameko's `attr_name`)
//! and, for every worker, hands over a value through [`DependencyProvider::get_dependency`]; the
//! handler reaches it with [`Worker::dependency`](crate::Worker::dependency). The per-worker hooks
//! run in Nameko's order around the method: `get_dependency`, `worker_setup`, the method and the
//! entrypoint's result handling, `worker_result`, `worker_teardown`.
//!
//! Unlike Python Nameko, a failing `get_dependency` fails only that worker (its caller gets the
//! error); it never kills the container.

use std::future::Future;

use crate::context::WorkerContext;
use crate::extension::{BoxError, Extension};
use crate::worker::WorkerResult;

/// A dependency provider: injects a value into every worker and observes its lifecycle.
pub trait DependencyProvider: Extension {
    /// What handlers receive. Usually a cheap-clone handle over an `Arc`.
    type Dependency: Send + Sync + 'static;

    /// Produces the value for one worker.
    fn get_dependency(
        &self,
        worker: &WorkerContext,
    ) -> impl Future<Output = Result<Self::Dependency, BoxError>> + Send;

    /// Runs before the method.
    fn worker_setup(&self, worker: &WorkerContext) -> impl Future<Output = ()> + Send {
        let _ = worker;
        async {}
    }

    /// Runs after the method and the entrypoint's result handling (so an RPC reply has already
    /// been sent), with the result.
    fn worker_result(
        &self,
        worker: &WorkerContext,
        result: &WorkerResult,
    ) -> impl Future<Output = ()> + Send {
        let _ = (worker, result);
        async {}
    }

    /// Runs last, whatever happened.
    fn worker_teardown(&self, worker: &WorkerContext) -> impl Future<Output = ()> + Send {
        let _ = worker;
        async {}
    }
}
