//! Entrypoints: what starts a worker (an RPC request, an event, an HTTP request, a timer tick).
//!
//! In Nameko an entrypoint is a decorator on a service method; here it is a value built by a
//! constructor named after the decorator (`rpc(..)`, `event_handler(..)`, `http(..)`, `timer(..)`)
//! and added to a [`Service`](crate::Service). Each one carries an [`EntrypointInfo`]: the method
//! name a Nameko user would recognise, plus the two options every Nameko entrypoint accepts,
//! `expected_exceptions` and `sensitive_arguments`.
//!
//! An entrypoint names the service state its handler expects ([`Entrypoint::State`]), and
//! [`Service::entrypoint`](crate::Service::entrypoint) accepts only entrypoints for its own state:
//! a handler taking `Worker<Orders>` cannot be added to a `Service<Payments>`. The state type is
//! inferred from the handler's first parameter, so nobody writes it out.

use std::future::Future;

use serde_json::{Map, Value};

use crate::container::Container;
use crate::context::ContextData;
use crate::extension::{BoxError, Extension};
use crate::worker::WorkerResult;

/// The name and options of one entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrypointInfo {
    kind: &'static str,
    method_name: String,
    expected_exceptions: Vec<String>,
    sensitive_arguments: Vec<String>,
}

impl EntrypointInfo {
    /// Info for an entrypoint of `kind` (such as `"rpc"`) bound to `method_name`.
    pub fn new(kind: &'static str, method_name: impl Into<String>) -> Self {
        Self {
            kind,
            method_name: method_name.into(),
            expected_exceptions: Vec::new(),
            sensitive_arguments: Vec::new(),
        }
    }

    /// Errors with these `exc_type`s are part of the method's contract: they are logged as
    /// warnings rather than errors, and HTTP answers them with 400 instead of 500.
    pub fn with_expected_exceptions<I, S>(mut self, exc_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expected_exceptions = exc_types.into_iter().map(Into::into).collect();
        self
    }

    /// Argument paths (`"password"`, `"card.number"`, `"tokens[0]"`) that are redacted whenever
    /// arguments are logged.
    pub fn with_sensitive_arguments<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sensitive_arguments = paths.into_iter().map(Into::into).collect();
        self
    }

    /// The kind of entrypoint, such as `rpc` or `timer`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The service method this entrypoint is bound to.
    pub fn method_name(&self) -> &str {
        &self.method_name
    }

    /// The `exc_type`s this method is expected to fail with.
    pub fn expected_exceptions(&self) -> &[String] {
        &self.expected_exceptions
    }

    /// Whether an error of this `exc_type` is expected.
    pub fn is_expected(&self, exc_type: &str) -> bool {
        self.expected_exceptions.iter().any(|e| e == exc_type)
    }

    /// The argument paths to redact in logs.
    pub fn sensitive_arguments(&self) -> &[String] {
        &self.sensitive_arguments
    }
}

/// Arguments for calling an entrypoint directly, as the testing helpers do.
#[derive(Debug, Clone, Default)]
pub struct DirectCall {
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// Context data the worker sees, as if it came in headers.
    pub context_data: ContextData,
}

/// An entrypoint: an extension that spawns workers for one service method.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an entrypoint",
    note = "entrypoints are built by `rpc(..)`, `event_handler(..)`, `http(..)`, `timer(..)`; \
            a handler is `async fn(Worker<S>, ..) -> R` where `S` is the service's state"
)]
pub trait Entrypoint: Extension {
    /// The service state its handler reads through [`Worker::service`](crate::Worker::service)
    /// (`()` for a stateless service).
    type State: Send + Sync + 'static;

    /// The method name and options.
    fn info(&self) -> &std::sync::Arc<EntrypointInfo>;

    /// Runs one worker as if the entrypoint had fired with these arguments, returning its result.
    ///
    /// This is what [`entrypoint_hook`](crate::testing::entrypoint_hook) uses. The default says
    /// the entrypoint does not support it.
    fn call(
        &self,
        container: &Container,
        call: DirectCall,
    ) -> impl Future<Output = Result<WorkerResult, BoxError>> + Send {
        let _ = (container, call);
        let kind = self.info().kind();
        async move { Err(format!("`{kind}` entrypoints cannot be called directly").into()) }
    }
}
