//! The worker: what a handler receives, and what it gives back.
//!
//! A handler is an ordinary `async fn` whose first parameter is a [`Worker`]: the
//! [`WorkerContext`] of this call plus the values the service's dependency providers injected.
//! A Nameko method reads `self.other_rpc`; a handler reads `worker.dependency::<T>("other_rpc")`.
//!
//! Every worker ends in a [`WorkerResult`], a JSON value or a [`RemoteError`], whatever the
//! entrypoint: dependency providers, the testing helpers and RPC replies all see one shape.

use std::any::Any;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::context::WorkerContext;
use crate::error::DependencyError;
use crate::remote_error::{IntoRemoteError, RemoteError};

/// How a worker ended: the method's result as JSON, or the error its caller sees.
pub type WorkerResult = Result<Value, RemoteError>;

/// The injected values of one worker, by dependency name.
#[derive(Default)]
pub struct Dependencies {
    values: HashMap<String, Box<dyn Any + Send + Sync>>,
}

impl Dependencies {
    /// An empty set, for building workers by hand.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the value injected under `name`.
    pub fn insert<T: Send + Sync + 'static>(&mut self, name: impl Into<String>, value: T) {
        self.values.insert(name.into(), Box::new(value));
    }

    pub(crate) fn insert_boxed(&mut self, name: String, value: Box<dyn Any + Send + Sync>) {
        self.values.insert(name, value);
    }

    fn get<T: 'static>(&self, name: &str) -> Result<&T, DependencyError> {
        let value = self
            .values
            .get(name)
            .ok_or_else(|| DependencyError::Missing {
                name: name.to_owned(),
            })?;
        value
            .downcast_ref::<T>()
            .ok_or_else(|| DependencyError::WrongType {
                name: name.to_owned(),
                expected: std::any::type_name::<T>(),
            })
    }
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

/// What a handler receives: the call's context and its injected dependencies. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Worker {
    context: Arc<WorkerContext>,
    dependencies: Arc<Dependencies>,
}

impl Worker {
    /// A worker over a context and dependencies; the container builds these, and so can tests.
    pub fn new(context: Arc<WorkerContext>, dependencies: Dependencies) -> Self {
        Self {
            context,
            dependencies: Arc::new(dependencies),
        }
    }

    /// The value injected under `name`, which must be of type `T`.
    ///
    /// The error converts into a [`RemoteError`], so `worker.dependency::<T>("x")?` works in a
    /// handler returning `Result<_, RemoteError>` or `anyhow::Result`.
    pub fn dependency<T: 'static>(&self, name: &str) -> Result<&T, DependencyError> {
        self.dependencies.get(name)
    }

    /// The worker's context.
    pub fn context(&self) -> &Arc<WorkerContext> {
        &self.context
    }
}

impl Deref for Worker {
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
