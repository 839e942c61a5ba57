//! The extension lifecycle every entrypoint, dependency provider and shared extension follows.
//!
//! Nameko gives every extension four hooks: `setup` (declare, bind, prepare), `start` (begin
//! work), `stop` (finish gracefully) and `kill` (stop now). Every hook has a no-op default so an
//! extension implements only what it needs, as tracing-subscriber's `Layer` does. Hooks are
//! declared as `fn .. -> impl Future + Send` so implementers write plain `async fn`s; the container
//! keeps object-safe twins (see `boxed.rs`) and never asks users for `async-trait`.
//!
//! Extensions are built by users before any container exists (`rpc("hello", hello)`), so the
//! container is handed to `setup` and `start` rather than to a constructor; keep what you need
//! from it (config, a shared extension) in the extension itself.

use std::future::Future;

use crate::container::Container;

/// The error type of extension hooks: any error, boxed, as tower does.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The lifecycle shared by all extensions.
pub trait Extension: Send + Sync + 'static {
    /// Prepares the extension: read config, declare queues, register with shared extensions.
    fn setup(&self, container: &Container) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = container;
        async { Ok(()) }
    }

    /// Starts the extension's work, once every extension of the container is set up.
    fn start(&self, container: &Container) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = container;
        async { Ok(()) }
    }

    /// Stops gracefully. Entrypoints stop taking new work here; the container then lets running
    /// workers finish before it stops dependencies and shared extensions.
    fn stop(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Stops at once; work in progress is abandoned (unacknowledged messages go back to the broker).
    fn kill(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// An extension that exists once per container, however many entrypoints or dependencies use it:
/// a queue consumer shared by all `rpc` entrypoints, a reply listener shared by all proxies.
///
/// Obtain one with [`Container::shared_extension`]; the container runs its lifecycle after the
/// extensions that use it have been set up and started, and stops it after them.
pub trait SharedExtension: Extension {}
