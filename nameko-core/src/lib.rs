//! Nameko's service model for Rust: services, entrypoints, dependency providers, the container
//! that runs them and the runner that runs several.
//!
//! This is the small, stable core of nameko-rs. It knows nothing of AMQP or HTTP: the extension
//! crates (`nameko-rpc`, `nameko-events`, `nameko-http`, `nameko-timer`) build their entrypoints
//! and dependencies on the traits here, and `nameko-cli` puts everything together. Every Nameko
//! concept maps one to one:
//!
//! | Nameko (Python)                | nameko-core                                   |
//! |--------------------------------|-----------------------------------------------|
//! | service class with `name`      | [`Service::new`], or [`Service::with_state`] for one with attributes |
//! | decorated method               | an [`Entrypoint`] added with [`Service::entrypoint`] |
//! | class attribute dependency     | a field of the state; a [`DependencyProvider`] registered with [`Dependencies::add`] |
//! | `self.<attr>` inside a method  | `worker.service().<field>` ([`Worker::service`]) |
//! | `ServiceContainer`, `ServiceRunner` | [`ServiceContainer`], [`ServiceRunner`]  |
//! | `worker_ctx`                   | [`WorkerContext`]                             |
//! | `nameko.testing`               | [`testing`]                                   |
//!
//! ```
//! use nameko_core::testing::{dummy, entrypoint_hook};
//! use nameko_core::{Config, DirectCall, RemoteError, Service, ServiceContainer, Worker};
//!
//! async fn hello(_worker: Worker, call: DirectCall) -> Result<String, RemoteError> {
//!     let name = call.args.first().and_then(|v| v.as_str()).unwrap_or("world");
//!     Ok(format!("Hello, {name}!"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = Service::new("greeting_service").entrypoint(dummy("hello", hello));
//! let container = ServiceContainer::new(service, Config::new())?;
//! container.start().await?;
//! let result = entrypoint_hook(&container, "hello")?
//!     .call(vec!["Matt".into()], Default::default())
//!     .await?;
//! assert_eq!(result?, "Hello, Matt!");
//! container.stop().await;
//! # Ok(())
//! # }
//! ```

mod boxed;
mod catch_unwind;
mod config;
mod container;
mod context;
mod dependency;
mod entrypoint;
mod error;
mod extension;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod redact;
mod remote_error;
mod runner;
mod running_worker;
mod service;
pub mod testing;
mod worker;
mod worker_pipeline;

pub use config::{Config, DEFAULT_MAX_WORKERS, DEFAULT_PARENT_CALLS_TRACKED, hide_passwords};
pub use container::{Container, ContainerState, ServiceContainer};
pub use context::{
    AUTH_TOKEN, CALL_ID_STACK, ContextData, LANGUAGE, USER_AGENT, USER_ID, WorkerContext,
};
pub use dependency::DependencyProvider;
pub use entrypoint::{DirectCall, Entrypoint, EntrypointInfo};
pub use error::{ConfigError, ContainerError, RunnerError, WorkerAborted};
pub use extension::{BoxError, Extension, SharedExtension};
pub use remote_error::{
    GENERIC_ERROR, HANDLER_PANICKED, INCORRECT_SIGNATURE, IntoRemoteError, MALFORMED_REQUEST,
    METHOD_NOT_FOUND, RemoteError, STATE_MISMATCH, UNSERIALIZABLE_VALUE, safe_for_serialization,
};
pub use runner::ServiceRunner;
pub use running_worker::RunningWorker;
pub use service::{AnyService, Dependencies, Service};
pub use worker::{AnyWorker, IntoWorkerResult, ServiceState, Worker, WorkerResult};
pub use worker_pipeline::WorkerEvent;
