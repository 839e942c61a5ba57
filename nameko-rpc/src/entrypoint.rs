//! The `rpc` entrypoint: Nameko's `@rpc` decorator as a constructor.
//!
//! `rpc("hello", hello)` exposes the `async fn hello(worker, args)` as the method `hello` of its
//! service. The handler's second parameter says how the call's arguments bind (see the `args`
//! module: a struct binds like a Python parameter list, a tuple positionally, a plain type as one
//! argument), and its return value is anything [`IntoWorkerResult`]: `()` or `Result<T, E>` with
//! a serialisable `T` and an error that knows its wire form (`RemoteError`, `anyhow::Error`, ...).
//!
//! The entrypoint itself holds no connection: all `rpc` entrypoints of a service share one
//! `RpcConsumer` (one queue, one consumer), to which each registers its method at setup. Binding
//! is type-erased into an [`RpcMethod`] there, so the consumer can answer `IncorrectSignature`
//! before a worker is spawned, as Nameko does.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use nameko_core::{
    AnyWorker, BoxError, Container, DirectCall, Entrypoint, EntrypointInfo, Extension,
    IntoWorkerResult, RemoteError, Worker, WorkerResult,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::args::bind_redacting;
use crate::consumer::RpcConsumer;

/// A boxed, sendable future, as the type-erased method table stores them.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A handler an `rpc` entrypoint can run: an `async fn(Worker, A) -> R` (or a closure returning a
/// future) where `A` binds the call's arguments and `R` becomes the reply.
///
/// Implemented for every such function; there is nothing to implement by hand.
pub trait RpcHandler<S, A>: Clone + Send + Sync + 'static {
    /// Runs the handler and turns its return value into the worker's result.
    fn run(
        &self,
        worker: Worker<S>,
        args: A,
    ) -> impl Future<Output = WorkerResult> + Send + 'static;
}

impl<F, S, A, Fut> RpcHandler<S, A> for F
where
    F: Fn(Worker<S>, A) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoWorkerResult,
    A: DeserializeOwned + Send + 'static,
{
    fn run(
        &self,
        worker: Worker<S>,
        args: A,
    ) -> impl Future<Output = WorkerResult> + Send + 'static {
        let call = self(worker, args);
        async move { call.await.into_worker_result() }
    }
}

/// A call bound to a handler, ready to run in a worker.
pub(crate) struct BoundCall {
    /// The arguments as worker logs show them (by name for struct parameters).
    pub(crate) logged: Value,
    /// Runs the handler.
    pub(crate) run: Box<dyn FnOnce(AnyWorker) -> BoxFuture<WorkerResult> + Send>,
}

type Binder = dyn Fn(Vec<Value>, Map<String, Value>) -> Result<BoundCall, String> + Send + Sync;

/// One `rpc` method, type-erased for the consumer's method table.
pub(crate) struct RpcMethod {
    pub(crate) info: Arc<EntrypointInfo>,
    /// Binds a call's arguments, or says why they do not fit (an `IncorrectSignature` text).
    pub(crate) bind: Box<Binder>,
}

impl std::fmt::Debug for RpcMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcMethod")
            .field("info", &self.info)
            .finish()
    }
}

/// The `rpc` entrypoint; build it with [`rpc`].
pub struct Rpc<S, H, A> {
    info: Arc<EntrypointInfo>,
    handler: H,
    consumer: OnceLock<Arc<RpcConsumer>>,
    _args: PhantomData<fn() -> (S, A)>,
}

/// Exposes `handler` as the RPC method `method_name` (Nameko's `@rpc`).
///
/// The handler's second parameter decides how a call's `args` and `kwargs` bind, as Python binds
/// them to a signature:
///
/// - a struct: positional values fill its fields in declaration order, keyword values by name;
///   `Option` and `#[serde(default)]` fields may be left out;
/// - a tuple: exactly that many positional values;
/// - `()`: no arguments;
/// - [`Args`](crate::Args): every argument as it came;
/// - `Option<T>`: `None` without arguments, otherwise `T`;
/// - any other type (`String`, numbers, `Vec<T>`, maps, enums, and `serde_json::Value` too):
///   exactly one argument, positional or a lone keyword argument.
///
/// Arguments that do not fit are answered with `IncorrectSignature` and Python's wording,
/// without running a worker.
///
/// ```
/// use nameko_core::{RemoteError, Service, Worker};
/// use nameko_rpc::rpc;
///
/// async fn hello(_: Worker, name: String) -> Result<String, RemoteError> {
///     Ok(format!("Hello, {name}!"))
/// }
///
/// let service = Service::new("greeting_service").entrypoint(rpc("hello", hello));
/// # let _ = service;
/// ```
pub fn rpc<S, H, A>(method_name: impl Into<String>, handler: H) -> Rpc<S, H, A>
where
    S: Send + Sync + 'static,
    H: RpcHandler<S, A>,
    A: DeserializeOwned + Send + 'static,
{
    Rpc {
        info: Arc::new(EntrypointInfo::new("rpc", method_name)),
        handler,
        consumer: OnceLock::new(),
        _args: PhantomData,
    }
}

impl<S, H, A> Rpc<S, H, A>
where
    S: Send + Sync + 'static,
    H: RpcHandler<S, A>,
    A: DeserializeOwned + Send + 'static,
{
    /// Errors with these `exc_type`s are part of the method's contract: they are logged as
    /// warnings, not errors (Nameko's `expected_exceptions`).
    #[must_use]
    pub fn expected_exceptions<I, T>(mut self, exc_types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.info = Arc::new((*self.info).clone().with_expected_exceptions(exc_types));
        self
    }

    /// Arguments (`"password"`, `"card.number"`, `"tokens[0]"`) redacted whenever the call's
    /// arguments are logged (Nameko's `sensitive_arguments`). Names refer to the fields of a
    /// struct parameter; other parameters are logged as `{"args": [...], "kwargs": {...}}`.
    #[must_use]
    pub fn sensitive_arguments<I, T>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.info = Arc::new((*self.info).clone().with_sensitive_arguments(paths));
        self
    }

    fn method(&self) -> RpcMethod {
        let handler = self.handler.clone();
        let method_name = self.info.method_name().to_owned();
        let sensitive = self.info.sensitive_arguments().to_vec();
        RpcMethod {
            info: self.info.clone(),
            bind: Box::new(move |args, kwargs| {
                let bound = bind_redacting::<A>(&method_name, args, kwargs, &sensitive)?;
                let handler = handler.clone();
                let value = bound.value;
                Ok(BoundCall {
                    logged: bound.logged,
                    run: Box::new(move |worker: AnyWorker| match worker.downcast::<S>() {
                        Ok(worker) => Box::pin(handler.run(worker, value)),
                        Err(_) => {
                            Box::pin(std::future::ready(Err(RemoteError::state_mismatch::<S>())))
                        }
                    }),
                })
            }),
        }
    }
}

impl<S, H, A> Extension for Rpc<S, H, A>
where
    S: Send + Sync + 'static,
    H: RpcHandler<S, A>,
    A: DeserializeOwned + Send + 'static,
{
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let consumer = RpcConsumer::of(container);
        consumer.register(container.service_name(), self.method())?;
        let _ = self.consumer.set(consumer);
        Ok(())
    }

    async fn stop(&self) {
        if let Some(consumer) = self.consumer.get() {
            consumer.entrypoint_stopped(self.info.method_name()).await;
        }
    }
}

impl<S, H, A> Entrypoint for Rpc<S, H, A>
where
    S: Send + Sync + 'static,
    H: RpcHandler<S, A>,
    A: DeserializeOwned + Send + 'static,
{
    type State = S;

    fn info(&self) -> &Arc<EntrypointInfo> {
        &self.info
    }

    /// Binds the arguments exactly as a request's are bound; arguments that do not fit give an
    /// `IncorrectSignature` result without running a worker.
    async fn call(
        &self,
        container: &Container,
        call: DirectCall,
    ) -> Result<WorkerResult, BoxError> {
        let method = self.method();
        let bound = match (method.bind)(call.args, call.kwargs) {
            Ok(bound) => bound,
            Err(message) => return Ok(Err(RemoteError::incorrect_signature(message))),
        };
        let worker = container.run_worker(&self.info, call.context_data, bound.logged, bound.run);
        Ok(worker.await?)
    }
}
