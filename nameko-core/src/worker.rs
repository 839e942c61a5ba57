//! The worker: what a handler receives, and what it gives back.
//!
//! A handler is an ordinary `async fn` whose first parameter is a [`Worker<S>`]: the
//! [`WorkerContext`] of this call plus the service's state `S`, the struct that holds its
//! dependencies as typed fields. A Nameko method reads `self.other_rpc`; a handler reads
//! `worker.service().other_rpc`. The state is built once per container and shared by every
//! worker behind one `Arc`, so handing it to a worker costs a reference count, and a misspelt or
//! mistyped dependency is a compile error rather than a failed call. Stateless services use
//! `Worker` (that is, `Worker<()>`) and never see the parameter.
//!
//! Every worker ends in a [`WorkerResult`], a JSON value or a [`RemoteError`], whatever the
//! entrypoint: dependency providers, the testing helpers and RPC replies all see one shape.

use std::any::Any;
use std::ops::Deref;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::context::WorkerContext;
use crate::remote_error::{IntoRemoteError, RemoteError};

/// How a worker ended: the method's result as JSON, or the error its caller sees.
pub type WorkerResult = Result<Value, RemoteError>;

/// What a handler receives: this call's context and the service's state.
///
/// It dereferences to [`WorkerContext`], so `worker.call_id()` and `worker.context_data()` read
/// as they do in Nameko's `worker_ctx`.
pub struct Worker<S: ?Sized = ()> {
    context: Arc<WorkerContext>,
    state: Arc<S>,
}

/// A worker whose state type its starter does not know: what an extension that keeps the
/// handlers of one service behind one type-erased list (the RPC consumer) runs; the handler's
/// own wrapper turns it back into a `Worker<S>` with [`Worker::downcast`].
pub type AnyWorker = Worker<dyn Any + Send + Sync>;

impl<S: ?Sized> Worker<S> {
    /// A worker for `context` over `state`; containers and the testing helpers build these.
    pub fn new(context: Arc<WorkerContext>, state: Arc<S>) -> Self {
        Self { context, state }
    }

    /// The service's state: its dependencies, as the fields of `S` (Nameko's `self`).
    pub fn service(&self) -> &S {
        &self.state
    }

    /// The shared state itself, for handing it on to a task the handler spawns.
    pub fn service_arc(&self) -> &Arc<S> {
        &self.state
    }

    /// This call's context.
    pub fn context(&self) -> &Arc<WorkerContext> {
        &self.context
    }
}

impl AnyWorker {
    /// The same worker with its state's type known again, or itself when the state is another
    /// type.
    pub fn downcast<S: Send + Sync + 'static>(self) -> Result<Worker<S>, Self> {
        match self.state.downcast::<S>() {
            Ok(state) => Ok(Worker {
                context: self.context,
                state,
            }),
            Err(state) => Err(Worker {
                context: self.context,
                state,
            }),
        }
    }
}

/// A state type a container can hand its workers: any `Send + Sync + 'static` type, found
/// again by its type id, or the erased state itself.
pub trait ServiceState: Send + Sync + 'static {
    /// This type's view of a container's state, if it is this type.
    fn from_any(state: Arc<dyn Any + Send + Sync>) -> Option<Arc<Self>>;
}

impl<S: Send + Sync + 'static> ServiceState for S {
    fn from_any(state: Arc<dyn Any + Send + Sync>) -> Option<Arc<Self>> {
        state.downcast().ok()
    }
}

impl ServiceState for dyn Any + Send + Sync {
    fn from_any(state: Arc<dyn Any + Send + Sync>) -> Option<Arc<Self>> {
        Some(state)
    }
}

impl<S: ?Sized> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Self {
            context: self.context.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S: ?Sized> std::fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("context", &self.context)
            .field("state", &std::any::type_name::<S>())
            .finish()
    }
}

impl<S: ?Sized> Deref for Worker<S> {
    type Target = WorkerContext;

    fn deref(&self) -> &WorkerContext {
        &self.context
    }
}

/// What a handler may return: `()` or `Result<T, E>` with a serialisable `T` and an error that
/// knows its wire form.
pub trait IntoWorkerResult {
    /// Converts the handler's return value.
    fn into_worker_result(self) -> WorkerResult;
}

impl IntoWorkerResult for () {
    fn into_worker_result(self) -> WorkerResult {
        Ok(Value::Null)
    }
}

impl<T: Serialize, E: IntoRemoteError> IntoWorkerResult for Result<T, E> {
    fn into_worker_result(self) -> WorkerResult {
        match self {
            Ok(value) => serde_json::to_value(value).map_err(RemoteError::unserializable_value),
            Err(err) => Err(err.into_remote_error()),
        }
    }
}
