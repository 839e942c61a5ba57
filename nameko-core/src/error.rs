//! The core's error types, one enum per thing that can fail.
//!
//! Errors of the container's own lifecycle stay Rust errors with their cause
//! attached. Messages say what was expected and what was found.

use std::sync::Arc;

use crate::extension::BoxError;

/// Why a container failed or stopped with an error. Cheap to clone so that every waiter sees it.
#[derive(Debug, thiserror::Error, Clone)]
pub enum ContainerError {
    /// The service definition cannot run (a duplicate dependency name, an empty service name).
    #[error("service `{service}` is misconfigured: {message}")]
    Definition {
        /// The service.
        service: String,
        /// What is wrong.
        message: String,
    },
    /// An extension failed in `setup` or `start`.
    #[error("service `{service}`: {extension} failed to {hook}: {source}")]
    Extension {
        /// The service.
        service: String,
        /// Which extension (`rpc entrypoint \`hello\``, `dependency \`db\``).
        extension: String,
        /// `setup` or `start`.
        hook: &'static str,
        /// The cause.
        source: Arc<BoxError>,
    },
    /// A long-running task the container depends on (a consumer, a server) failed.
    #[error("service `{service}`: `{task}` failed: {source}")]
    TaskFailed {
        /// The service.
        service: String,
        /// The task's name.
        task: String,
        /// The cause.
        source: Arc<BoxError>,
    },
    /// The configuration has a bad value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The container was already started.
    #[error("service `{0}` was already started")]
    AlreadyStarted(String),
}

/// Why a worker did not produce a result.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum WorkerAborted {
    /// The container began a graceful stop before the worker got a slot; the work was not
    /// started and the entrypoint should hand it back (a message goes back to the broker).
    #[error("the container is stopping: the worker was not started")]
    Stopping,
    /// The container was killed while the worker waited or ran.
    #[error("the container was killed")]
    Killed,
    /// Something around the method panicked (a dependency's hook, the entrypoint's result
    /// handling), so the worker ended without a result. The method's own panics are not this:
    /// they are the call's `HandlerPanicked` error.
    #[error("the worker panicked outside its method")]
    Panicked,
}

/// A configuration key with a value of the wrong kind, or an override that is not `KEY=VALUE`.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigError {
    /// A key has a value of the wrong kind.
    #[error("config {origin}: key `{key}` must be {expected}, found {found}")]
    Invalid {
        /// Where the config came from: a file path, or `defaults and overrides`.
        origin: String,
        /// The key.
        key: String,
        /// What was expected.
        expected: String,
        /// What was found, as YAML-ish text.
        found: String,
    },
    /// A `--define` override is not `KEY=VALUE`.
    #[error("override `{0}` must be KEY=VALUE (or a bare KEY for true)")]
    Override(String),
}

/// A runner could not be assembled or one of its services failed.
#[derive(Debug, thiserror::Error, Clone)]
pub enum RunnerError {
    /// Two services with the same name were added.
    #[error("a service named `{0}` was already added to this runner")]
    DuplicateService(String),
    /// A container failed; the others were stopped.
    #[error(transparent)]
    Container(#[from] ContainerError),
}
