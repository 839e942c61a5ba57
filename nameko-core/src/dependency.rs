//! Dependency providers: the extensions behind a service's state (Nameko's class attributes such
//! as `other = RpcProxy("other")`).
//!
//! A service keeps its dependencies as typed fields of its state
//! ([`Service::with_state`](crate::Service::with_state)). A field whose value needs the
//! container's lifecycle (a connection opened at `setup`, closed at `stop`) or hooks around every
//! worker is a provider: registered through [`Dependencies::add`](crate::Dependencies::add), which
//! gives the container a clone of it to drive and hands the other clone back for the state. So a
//! provider is a cheap-clone handle over shared state (an `Arc` inside), as axum's state is.
//!
//! Nameko's `get_dependency(worker_ctx)` made a value per worker and injected it. Here a handler
//! asks its provider for one with the worker in hand (`self.db.session(&worker)`), and the
//! provider can keep what it made per call id and clean it up in
//! [`worker_teardown`](DependencyProvider::worker_teardown): the value is explicit at the call
//! site and costs nothing for workers that never ask. The per-worker hooks run in Nameko's order
//! around the method: `worker_setup`, the method and the entrypoint's result handling,
//! `worker_result`, `worker_teardown`.

use std::future::Future;

use crate::context::WorkerContext;
use crate::extension::Extension;
use crate::worker::WorkerResult;

/// An extension the container drives on behalf of a service's state, with hooks around every
/// worker. Every hook has a no-op default.
pub trait DependencyProvider: Extension {
    /// Runs before the method.
    fn worker_setup(&self, worker: &WorkerContext) -> impl Future<Output = ()> + Send {
        let _ = worker;
        async {}
    }

    /// Runs after the method and the entrypoint's result handling, with the worker's result.
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
