//! The service definition: Nameko's service class, built in plain Rust.
//!
//! A Nameko service is a class with a `name`, decorated methods (entrypoints) and class attributes
//! that are dependency providers. Here the same three things are put together with a builder, no
//! macros:
//!
//! ```
//! use nameko_core::Service;
//! # use nameko_core::testing::dummy;
//! # async fn hello(_: nameko_core::Worker, _: nameko_core::DirectCall) {}
//! let service = Service::new("greeting_service").entrypoint(dummy("hello", hello));
//! assert_eq!(service.name(), "greeting_service");
//! ```
//!
//! A `Service` is only a declaration; a [`ServiceContainer`](crate::ServiceContainer) runs it and
//! owns its extensions from then on. `Service` is deliberately not `Clone`: extensions keep
//! per-container state (a timer's loop, a consumer's channel), so two containers must never share
//! one extension value. Nameko gets the same guarantee by binding a fresh copy of every extension
//! to each container; here, build the service once per container (a `fn() -> Service` does it).

use std::sync::Arc;

use crate::boxed::{DynDependencyProvider, DynEntrypoint};
use crate::dependency::DependencyProvider;
use crate::entrypoint::Entrypoint;

/// A named service with its entrypoints and dependency providers.
pub struct Service {
    pub(crate) name: Arc<str>,
    pub(crate) entrypoints: Vec<Arc<dyn DynEntrypoint>>,
    pub(crate) dependencies: Vec<(String, Arc<dyn DynDependencyProvider>)>,
}

impl Service {
    /// A service called `name`: the name peers use to reach it (`rpc-<name>`, `<name>.events`).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            entrypoints: Vec::new(),
            dependencies: Vec::new(),
        }
    }

    /// Adds an entrypoint (a decorated method in Nameko).
    pub fn entrypoint(mut self, entrypoint: impl Entrypoint) -> Self {
        self.entrypoints.push(Arc::new(entrypoint));
        self
    }

    /// Adds a dependency provider under `name` (a class attribute in Nameko); handlers reach its
    /// value with `worker.dependency::<T>(name)`.
    pub fn dependency(
        mut self,
        name: impl Into<String>,
        provider: impl DependencyProvider,
    ) -> Self {
        self.dependencies.push((name.into(), Arc::new(provider)));
        self
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The method names of its entrypoints, in the order they were added.
    pub fn entrypoint_names(&self) -> impl Iterator<Item = &str> {
        self.entrypoints.iter().map(|e| e.info().method_name())
    }

    /// The names of its dependencies, in the order they were added.
    pub fn dependency_names(&self) -> impl Iterator<Item = &str> {
        self.dependencies.iter().map(|(n, _)| n.as_str())
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("entrypoints", &self.entrypoint_names().collect::<Vec<_>>())
            .field("dependencies", &self.dependency_names().collect::<Vec<_>>())
            .finish()
    }
}
