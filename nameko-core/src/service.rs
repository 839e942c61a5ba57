//! The service definition: Nameko's service class, built in plain Rust.
//!
//! A Nameko service is a class with a `name`, decorated methods (entrypoints) and class attributes
//! that are dependency providers. Here the class is a struct of your own, the service's state,
//! whose fields are its dependencies; a builder adds the entrypoints, no macros:
//!
//! ```
//! use nameko_core::{Service, Worker};
//! # use nameko_core::testing::dummy;
//! # use nameko_core::DirectCall;
//! struct Greeter {
//!     greeting: String,
//! }
//!
//! async fn hello(worker: Worker<Greeter>, _: DirectCall) -> Result<String, std::convert::Infallible> {
//!     Ok(format!("{}, Matt!", worker.service().greeting))
//! }
//!
//! let service = Service::with_state("greeting_service", |_deps| Greeter {
//!     greeting: "Hello".into(),
//! })
//! .entrypoint(dummy("hello", hello));
//! assert_eq!(service.name(), "greeting_service");
//! ```
//!
//! A handler written for another service's state does not compile into this one:
//!
//! ```compile_fail
//! use nameko_core::{DirectCall, Service, Worker};
//! use nameko_core::testing::dummy;
//! struct Orders;
//! struct Payments;
//! async fn refund(_: Worker<Payments>, _: DirectCall) {}
//! let _ = Service::with_state("orders", |_| Orders).entrypoint(dummy("refund", refund));
//! ```
//!
//! A field that needs the container's lifecycle or per-worker hooks (an `RpcProxy`, an
//! `EventDispatcher`, your own provider) is registered while the state is built, with
//! [`Dependencies::add`], which returns the handle to keep in the field. A stateless service is
//! `Service::new(name)`, a `Service<()>`, and its handlers take a plain `Worker`.
//!
//! A `Service` is only a declaration; a [`ServiceContainer`](crate::ServiceContainer) runs it and
//! owns its extensions from then on. `Service` is deliberately not `Clone`: extensions keep
//! per-container state (a timer's loop, a consumer's channel), so two containers must never share
//! one extension value. Nameko gets the same guarantee by binding a fresh copy of every extension
//! to each container; here, build the service once per container (a `fn() -> Service` does it).

use std::any::Any;
use std::sync::Arc;

use crate::boxed::{DynDependencyProvider, DynEntrypoint};
use crate::dependency::DependencyProvider;
use crate::entrypoint::Entrypoint;

/// A named provider, as the container keeps it: the name is a label for logs and errors.
pub(crate) type NamedProvider = (String, Arc<dyn DynDependencyProvider>);

/// A service: a name, entrypoints, and the state `S` its handlers read (`()` when they read none).
pub struct Service<S = ()> {
    pub(crate) name: Arc<str>,
    pub(crate) entrypoints: Vec<Arc<dyn DynEntrypoint>>,
    pub(crate) dependencies: Vec<NamedProvider>,
    pub(crate) state: Arc<S>,
}

/// The providers registered while a service's state is built (see [`Service::with_state`]).
#[derive(Default)]
pub struct Dependencies {
    providers: Vec<NamedProvider>,
}

impl Dependencies {
    /// Registers `provider` under `name` (Nameko's attribute name, used in logs and errors) and
    /// returns it, to be kept in the state. The container drives a clone of it through the
    /// lifecycle and worker hooks, so the provider must be a handle whose clones share their
    /// state.
    pub fn add<P: DependencyProvider + Clone>(
        &mut self,
        name: impl Into<String>,
        provider: P,
    ) -> P {
        self.providers
            .push((name.into(), Arc::new(provider.clone())));
        provider
    }

    /// The names registered so far, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|(n, _)| n.as_str())
    }
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Service<()> {
    /// A stateless service named `name`, with no entrypoints yet.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::with_state(name, |_| ())
    }
}

impl<S: Send + Sync + 'static> Service<S> {
    /// A service whose handlers read the state `build` returns. `build` registers the providers
    /// the state holds with [`Dependencies::add`]:
    ///
    /// ```text
    /// Service::with_state("service_x", |deps| ServiceX {
    ///     y: deps.add("y", RpcProxy::new("service_y")),
    /// })
    /// ```
    pub fn with_state(
        name: impl Into<Arc<str>>,
        build: impl FnOnce(&mut Dependencies) -> S,
    ) -> Self {
        let mut dependencies = Dependencies::default();
        let state = build(&mut dependencies);
        Self {
            name: name.into(),
            entrypoints: Vec::new(),
            dependencies: dependencies.providers,
            state: Arc::new(state),
        }
    }

    /// Adds an entrypoint (a decorated method) whose handler reads this service's state.
    pub fn entrypoint(mut self, entrypoint: impl Entrypoint<State = S>) -> Self {
        self.entrypoints.push(Arc::new(entrypoint));
        self
    }

    /// Adds a provider that no handler reads, for its lifecycle or worker hooks alone (a
    /// tracer, an error reporter).
    pub fn dependency(
        mut self,
        name: impl Into<String>,
        provider: impl DependencyProvider,
    ) -> Self {
        self.dependencies.push((name.into(), Arc::new(provider)));
        self
    }

    /// The service name (the routing prefix of its RPC methods, the source of its events).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The method names of its entrypoints, in the order they were added.
    pub fn entrypoint_names(&self) -> impl Iterator<Item = &str> {
        self.entrypoints.iter().map(|e| e.info().method_name())
    }

    /// The names of its dependency providers, in the order they were added.
    pub fn dependency_names(&self) -> impl Iterator<Item = &str> {
        self.dependencies.iter().map(|(n, _)| n.as_str())
    }

    /// The state its handlers read.
    pub fn state(&self) -> &Arc<S> {
        &self.state
    }
}

impl<S> std::fmt::Debug for Service<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field(
                "entrypoints",
                &self
                    .entrypoints
                    .iter()
                    .map(|e| e.info().method_name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "dependencies",
                &self.dependencies.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A service whose state type is forgotten, as a container or a runner keeps it: what lets one
/// process run services with different states side by side. Every `Service<S>` converts into one.
pub struct AnyService {
    pub(crate) name: Arc<str>,
    pub(crate) entrypoints: Vec<Arc<dyn DynEntrypoint>>,
    pub(crate) dependencies: Vec<NamedProvider>,
    pub(crate) state: Arc<dyn Any + Send + Sync>,
}

impl AnyService {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The method names of its entrypoints, in the order they were added.
    pub fn entrypoint_names(&self) -> impl Iterator<Item = &str> {
        self.entrypoints.iter().map(|e| e.info().method_name())
    }
}

impl<S: Send + Sync + 'static> From<Service<S>> for AnyService {
    fn from(service: Service<S>) -> Self {
        Self {
            name: service.name,
            entrypoints: service.entrypoints,
            dependencies: service.dependencies,
            state: service.state,
        }
    }
}

impl std::fmt::Debug for AnyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyService")
            .field("name", &self.name)
            .field("entrypoints", &self.entrypoint_names().collect::<Vec<_>>())
            .finish()
    }
}
