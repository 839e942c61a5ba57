//! A route as the server takes it: methods, a url rule and an object-safe handler.
//!
//! The server's table holds the handlers of every service on an address, so a handler is a
//! trait object, and every `Fn(Request) -> impl Future<Output = impl IntoResponse>` closure is
//! one. That keeps the transport usable without a container (tests, a plain web server), while
//! the `http` entrypoint hands the server a handler that runs each request as a worker.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;
use crate::method::Methods;
use crate::request::Request;
use crate::response::{IntoResponse, Response};
use crate::rule::Rule;

/// A boxed, sendable future, as returned by [`RouteHandler::call`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What runs a request for a route.
///
/// Object-safe so that one table can hold the handlers of several services; any
/// `Fn(Request) -> impl Future<Output = impl IntoResponse>` closure is one.
pub trait RouteHandler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, request: Request) -> BoxFuture<Response>;
}

impl<F, Fut> RouteHandler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoResponse,
{
    fn call(&self, request: Request) -> BoxFuture<Response> {
        let future = self(request);
        Box::pin(async move { future.await.into_response() })
    }
}

/// One route to register: methods, rule and handler.
#[derive(Clone)]
pub struct Route {
    pub(super) methods: Methods,
    pub(super) rule: Rule,
    pub(super) handler: Arc<dyn RouteHandler>,
}

impl Route {
    /// A route from parsed methods and rule.
    pub fn new(methods: Methods, rule: Rule, handler: impl RouteHandler) -> Self {
        Self::shared(methods, rule, Arc::new(handler))
    }

    /// A route whose handler is already shared.
    pub fn shared(methods: Methods, rule: Rule, handler: Arc<dyn RouteHandler>) -> Self {
        Self {
            methods,
            rule,
            handler,
        }
    }

    /// A route from Nameko's method string and url rule, as `http("GET,POST", "/x")` takes.
    pub fn parse(methods: &str, rule: &str, handler: impl RouteHandler) -> Result<Self> {
        Ok(Self::new(
            Methods::parse(methods)?,
            Rule::parse(rule)?,
            handler,
        ))
    }

    /// The methods.
    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Route({} {})", self.methods, self.rule)
    }
}
