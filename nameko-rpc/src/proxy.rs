//! `RpcProxy`: how a service calls another service (Nameko's `RpcProxy`, 3.x's `ServiceRpc`).
//!
//! Declared on a service like any dependency, `.dependency("y", RpcProxy::new("service_y"))`, it
//! injects a [`ServiceProxy`] into every worker; the handler reaches it with
//! `worker.dependency::<ServiceProxy>("y")`. The proxy carries the worker's context data, so every
//! call it makes sends the worker's `call_id_stack` (ending with the worker's own call id),
//! `user_id`, `language` and custom keys on as `nameko.*` headers, as Nameko does.
//!
//! All proxies of a container share one reply queue (the container's reply listener); each proxy
//! has a confirmed publisher of its own. Calls time out after [`DEFAULT_TIMEOUT`] unless
//! [`RpcProxy::timeout`] says otherwise (Python Nameko 2's `RpcProxy` never times out).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nameko_amqp::Publisher;
use nameko_core::{BoxError, Container, ContextData, DependencyProvider, Extension, WorkerContext};
use serde::de::DeserializeOwned;

use crate::args::IntoRpcArgs;
use crate::broker::{connection_config, connections};
use crate::call::{Caller, DEFAULT_TIMEOUT, Request, RpcCall};
use crate::error::RpcError;
use crate::reply_listener::ReplyListener;

/// A dependency provider for calling the service `target`; injects a [`ServiceProxy`].
#[derive(Debug)]
pub struct RpcProxy {
    target: Arc<str>,
    timeout: Option<Duration>,
    caller: OnceLock<Caller>,
}

impl RpcProxy {
    /// A proxy to the service named `target`.
    pub fn new(target: impl Into<Arc<str>>) -> Self {
        Self {
            target: target.into(),
            timeout: Some(DEFAULT_TIMEOUT),
            caller: OnceLock::new(),
        }
    }

    /// How long each call waits for its reply; `None` waits forever. Default: [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Extension for RpcProxy {
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let config = container.config();
        let listener = ReplyListener::of(container);
        let (_, publishing) = connections(&connection_config(config)?).await?;
        let publisher = Publisher::new(&publishing).await?;
        let caller = Caller::new(publisher, (*listener).clone(), config.rpc_exchange()?);
        let _ = self.caller.set(caller);
        Ok(())
    }
}

impl DependencyProvider for RpcProxy {
    type Dependency = ServiceProxy;

    async fn get_dependency(&self, worker: &WorkerContext) -> Result<ServiceProxy, BoxError> {
        let caller = self
            .caller
            .get()
            .ok_or("the rpc proxy was used before it was set up")?;
        Ok(ServiceProxy {
            caller: caller.clone(),
            service: self.target.clone(),
            context: worker.context_data(),
            timeout: self.timeout,
        })
    }
}

/// A handle for calling one service, with the calling worker's context. Cheap to clone.
///
/// ```no_run
/// use nameko_core::Worker;
/// use nameko_rpc::ServiceProxy;
///
/// async fn remote_method(worker: Worker, value: String) -> anyhow::Result<String> {
///     let y = worker.dependency::<ServiceProxy>("y")?;
///     let appended: String = y.call("append_identifier", (value,)).await?;
///     Ok(format!("{appended}-x"))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceProxy {
    caller: Caller,
    service: Arc<str>,
    context: ContextData,
    timeout: Option<Duration>,
}

impl ServiceProxy {
    /// The service this proxy calls.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// The context data every call sends (the worker's, call id stack included).
    pub fn context_data(&self) -> &ContextData {
        &self.context
    }

    /// This proxy with another timeout for its calls; `None` waits forever.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Calls `method` and waits for its result. `args` is a tuple or list (positional), a
    /// struct or map (keyword), `()` for none, or an [`Args`](crate::Args) for both.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<R, RpcError> {
        self.call_async(method, args).await?.result().await
    }

    /// Sends the call and returns at once with a handle on its reply (Nameko's `call_async`).
    /// Fails here already if the service is unknown.
    pub async fn call_async<R>(
        &self,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<RpcCall<R>, RpcError> {
        let request = Request {
            service: &self.service,
            method,
            context: &self.context,
            timeout: self.timeout,
        };
        self.caller.send(request, args).await
    }
}
