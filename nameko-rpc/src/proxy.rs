//! `RpcProxy`: how a service calls another service (Nameko's `RpcProxy`, 3.x's `ServiceRpc`).
//!
//! A proxy is a field of the service's state, registered while the state is built:
//!
//! ```ignore
//! Service::with_state("service_x", |deps| ServiceX {
//!     y: deps.add("y", RpcProxy::new("service_y")),
//! })
//! ```
//!
//! It is a cheap-clone handle: the container sets up the clone it was given (the container's
//! reply listener, a confirmed publisher) and every clone sees it. A handler calls with the
//! worker in hand, `worker.service().y.call(&worker, "method", (arg,))`, because each call sends
//! that worker's context on: its `call_id_stack` (ending with the worker's own call id),
//! `user_id`, `language` and custom keys, as `nameko.*` headers, as Nameko does.
//! [`RpcProxy::bind`] gives a [`ServiceProxy`] that keeps the worker's context for several calls.
//!
//! All proxies of a container share one reply queue (the container's reply listener); each proxy
//! has a confirmed publisher of its own. Calls time out after [`DEFAULT_TIMEOUT`] unless
//! [`RpcProxy::timeout`] says otherwise (Python Nameko 2's `RpcProxy` never times out).
//!
//! For tests, [`RpcProxy::stub`] answers calls with a function instead of the broker, through the
//! same reply reading, so a handler's error handling is tested as it runs in production.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nameko_amqp::Publisher;
use nameko_core::{
    BoxError, Container, ContextData, DependencyProvider, Extension, RemoteError, WorkerContext,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::args::{Args, IntoRpcArgs};
use crate::broker::{connection_config, connections, rpc_exchange};
use crate::call::{Caller, DEFAULT_TIMEOUT, Request, RpcCall};
use crate::error::RpcError;
use crate::reply_listener::ReplyListener;

/// A test double's answer to one call: `(method, arguments)` to a result or a remote error.
type Answer = dyn Fn(&str, Args) -> Result<Value, RemoteError> + Send + Sync;

/// Where a proxy's calls go.
enum Route {
    /// To the broker, once the container has set the proxy up.
    Broker(OnceLock<Caller>),
    /// To a function, for tests.
    Stub(Box<Answer>),
}

/// A dependency provider for calling service `target`; a cheap-clone handle.
#[derive(Clone)]
pub struct RpcProxy {
    target: Arc<str>,
    timeout: Option<Duration>,
    route: Arc<Route>,
}

impl RpcProxy {
    /// A proxy for calling `target`.
    pub fn new(target: impl Into<Arc<str>>) -> Self {
        Self {
            target: target.into(),
            timeout: Some(DEFAULT_TIMEOUT),
            route: Arc::new(Route::Broker(OnceLock::new())),
        }
    }

    /// A test double for `target` that answers every call with `answer(method, args)`, without
    /// a broker. An `Err` reaches the caller as [`RpcError::Remote`], as a remote failure would.
    pub fn stub<F>(target: impl Into<Arc<str>>, answer: F) -> Self
    where
        F: Fn(&str, Args) -> Result<Value, RemoteError> + Send + Sync + 'static,
    {
        Self {
            target: target.into(),
            timeout: Some(DEFAULT_TIMEOUT),
            route: Arc::new(Route::Stub(Box::new(answer))),
        }
    }

    /// How long a call may wait for its reply (`None`: forever, as Nameko 2 does).
    #[must_use]
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The service this proxy calls.
    pub fn service_name(&self) -> &str {
        &self.target
    }

    /// A proxy that sends `worker`'s context with every call it makes.
    pub fn bind(&self, worker: &WorkerContext) -> ServiceProxy {
        ServiceProxy {
            proxy: self.clone(),
            context: worker.context_data(),
        }
    }

    /// Calls `method` with `args` on behalf of `worker` and waits for the result
    /// (`self.y.method(..)` in Nameko).
    pub async fn call<R: DeserializeOwned>(
        &self,
        worker: &WorkerContext,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<R, RpcError> {
        self.bind(worker).call(method, args).await
    }

    /// Sends the call on behalf of `worker` and returns it in flight (Nameko's `call_async`).
    pub async fn call_async<R>(
        &self,
        worker: &WorkerContext,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<RpcCall<R>, RpcError> {
        self.bind(worker).call_async(method, args).await
    }
}

impl std::fmt::Debug for RpcProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let route = match &*self.route {
            Route::Broker(caller) if caller.get().is_some() => "broker",
            Route::Broker(_) => "not set up",
            Route::Stub(_) => "stub",
        };
        f.debug_struct("RpcProxy")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .field("route", &route)
            .finish()
    }
}

impl Extension for RpcProxy {
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let Route::Broker(slot) = &*self.route else {
            return Ok(());
        };
        let config = container.config();
        let listener = ReplyListener::of(container);
        let (_, publishing) = connections(&connection_config(config)?).await?;
        let publisher = Publisher::new(&publishing).await?;
        let caller = Caller::new(publisher, (*listener).clone(), rpc_exchange(config)?);
        let _ = slot.set(caller);
        Ok(())
    }
}

impl DependencyProvider for RpcProxy {}

/// An [`RpcProxy`] bound to one worker's context: every call sends that context on.
#[derive(Debug, Clone)]
pub struct ServiceProxy {
    proxy: RpcProxy,
    context: ContextData,
}

impl ServiceProxy {
    /// The service this proxy calls.
    pub fn service_name(&self) -> &str {
        &self.proxy.target
    }

    /// The context data sent with every call.
    pub fn context_data(&self) -> &ContextData {
        &self.context
    }

    /// The same proxy with another reply timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.proxy.timeout = timeout;
        self
    }

    /// Calls `method` with `args` and waits for the result.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<R, RpcError> {
        self.call_async(method, args).await?.result().await
    }

    /// Sends the call and returns it in flight (Nameko's `call_async`).
    pub async fn call_async<R>(
        &self,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<RpcCall<R>, RpcError> {
        let service = &*self.proxy.target;
        match &*self.proxy.route {
            Route::Broker(caller) => {
                let caller = caller.get().ok_or_else(|| RpcError::NotSetUp {
                    service: service.to_owned(),
                })?;
                let request = Request {
                    service,
                    method,
                    context: &self.context,
                    timeout: self.proxy.timeout,
                };
                caller.send(request, args).await
            }
            Route::Stub(answer) => {
                let args = args
                    .into_rpc_args()
                    .map_err(|error| RpcError::InvalidArguments {
                        service: service.to_owned(),
                        method: method.to_owned(),
                        message: error.to_string(),
                    })?;
                let body = match answer(method, args) {
                    Ok(result) => json!({"result": result, "error": null}),
                    Err(error) => json!({"result": null, "error": error}),
                };
                Ok(RpcCall::answered(service, method, body))
            }
        }
    }
}
