//! Standalone clients: calling services from code that is not itself a service (Nameko's
//! `ClusterRpcProxy`/`ServiceRpcProxy`, 3.x's `ClusterRpcClient`/`ServiceRpcClient`).
//!
//! A client owns its reply queue (`rpc.reply-standalone_rpc_client-<uuid>`) and a confirmed
//! publisher on the process's shared connections. Unlike Python's single-threaded proxies, a
//! client is `Clone + Send + Sync`: any number of tasks may have calls in flight on it at once,
//! each reply matched to its call by correlation id.
//!
//! Each call carries the client's context data plus a `call_id_stack` entry in Nameko 3's
//! shape, `standalone_rpc_client.<client-uuid>.<call-uuid>`, fresh for every call, so a call
//! chain can be traced back to the client. Calls time out after [`DEFAULT_TIMEOUT`] unless
//! configured otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nameko_amqp::Publisher;
use nameko_core::{CALL_ID_STACK, Config, ContextData};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::task::AbortOnDropHandle;

use crate::args::IntoRpcArgs;
use crate::broker::{connection_config, connections, prefetch_count, rpc_exchange};
use crate::call::{Caller, DEFAULT_TIMEOUT, Request, RpcCall};
use crate::error::RpcError;
use crate::names::{STANDALONE_CALLER, standalone_call_id};
use crate::reply_listener::ReplyListener;

/// A client for calling any service: `client.call("greeting_service", "hello", ("Matt",))`.
///
/// ```no_run
/// use nameko_rpc::ClusterRpcClient;
///
/// # async fn example() -> Result<(), nameko_rpc::RpcError> {
/// let client = ClusterRpcClient::connect_uri("amqp://guest:guest@localhost").await?;
/// let greeting: String = client.call("greeting_service", "hello", ("Matt",)).await?;
/// assert_eq!(greeting, "Hello, Matt!");
/// client.stop().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterRpcClient {
    shared: Arc<Shared>,
    context: ContextData,
    timeout: Option<Duration>,
}

#[derive(Debug)]
struct Shared {
    caller: Caller,
    /// The client's own uuid, the middle part of its call ids.
    client_id: String,
    stopped: AtomicBool,
    /// The reply consumer; aborted when the last clone of the client goes.
    _listening: AbortOnDropHandle<()>,
}

impl ClusterRpcClient {
    /// Connects with the broker settings of `config` (`AMQP_URI`, `HEARTBEAT`, `LOGIN_METHOD`, `AMQP_SSL`,
    /// `rpc_exchange`, `PREFETCH_COUNT`), declares the client's reply queue and starts listening.
    pub async fn connect(config: &Config) -> Result<Self, RpcError> {
        let settings = connection_config(config)?;
        let exchange = rpc_exchange(config)?;
        let (consuming, publishing) = connections(&settings).await?;
        let listener = ReplyListener::new(STANDALONE_CALLER);
        listener.declare(&consuming, &exchange).await?;
        let consume = listener
            .listen(&consuming, &exchange, prefetch_count(config)?)
            .await?;
        let queue = listener.queue().to_owned();
        let listening = tokio::spawn(async move {
            if let Err(error) = consume.await {
                tracing::warn!(%error, %queue, "the standalone client's reply listener stopped");
            }
        });
        let publisher = Publisher::new(&publishing).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                caller: Caller::new(publisher, listener, exchange),
                client_id: uuid::Uuid::new_v4().to_string(),
                stopped: AtomicBool::new(false),
                _listening: AbortOnDropHandle::new(listening),
            }),
            context: ContextData::new(),
            timeout: Some(DEFAULT_TIMEOUT),
        })
    }

    /// Connects to the broker at `uri` with every other setting at its default.
    pub async fn connect_uri(uri: &str) -> Result<Self, RpcError> {
        let mut config = Config::new();
        config.set("AMQP_URI", uri);
        Self::connect(&config).await
    }

    /// This client with context data sent along with every call (`user_id`, `language`, custom
    /// keys), as Nameko's `context_data=`.
    #[must_use]
    pub fn with_context_data(mut self, context: ContextData) -> Self {
        self.context = context;
        self
    }

    /// This client with another timeout for its calls; `None` waits forever.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// A client for one service that shares this client's reply queue (Nameko's
    /// `proxy["service"]`).
    pub fn service(&self, service: impl Into<String>) -> ServiceRpcClient {
        ServiceRpcClient {
            cluster: self.clone(),
            service: service.into(),
        }
    }

    /// The reply queue's name.
    pub fn reply_queue(&self) -> &str {
        self.shared.caller.listener().queue()
    }

    /// Calls `service.method` and waits for its result. `args` is a tuple or list
    /// (positional), a struct or map (keyword), `()` for none, or an [`Args`](crate::Args).
    pub async fn call<R: DeserializeOwned>(
        &self,
        service: &str,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<R, RpcError> {
        self.call_async(service, method, args).await?.result().await
    }

    /// Sends the call and returns at once with a handle on its reply. Fails here already if the
    /// service is unknown.
    pub async fn call_async<R>(
        &self,
        service: &str,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<RpcCall<R>, RpcError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(RpcError::Stopped);
        }
        let context = self.call_context();
        let request = Request {
            service,
            method,
            context: &context,
            timeout: self.timeout,
        };
        self.shared.caller.send(request, args).await
    }

    /// The context of one call: the client's, with this call's id appended to the stack.
    fn call_context(&self) -> ContextData {
        let mut context = self.context.clone();
        let call_id = standalone_call_id(&self.shared.client_id, &uuid::Uuid::new_v4().to_string());
        let mut stack = match context.remove(CALL_ID_STACK) {
            Some(Value::Array(stack)) => stack,
            Some(Value::String(single)) => vec![Value::String(single)],
            _ => Vec::new(),
        };
        stack.push(Value::String(call_id));
        context.insert(CALL_ID_STACK.to_owned(), Value::Array(stack));
        context
    }

    /// Stops listening for replies; calls still waiting fail at once, and the client (with every
    /// clone) can no longer be used.
    pub async fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.caller.listener().close().await;
    }
}

/// A client for one service (Nameko's `ServiceRpcProxy`): `client.call("hello", ("Matt",))`.
#[derive(Debug, Clone)]
pub struct ServiceRpcClient {
    cluster: ClusterRpcClient,
    service: String,
}

impl ServiceRpcClient {
    /// Connects a client for `service` with the broker settings of `config`.
    pub async fn connect(service: impl Into<String>, config: &Config) -> Result<Self, RpcError> {
        Ok(ClusterRpcClient::connect(config).await?.service(service))
    }

    /// The service this client calls.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// This client with context data sent along with every call.
    #[must_use]
    pub fn with_context_data(mut self, context: ContextData) -> Self {
        self.cluster = self.cluster.with_context_data(context);
        self
    }

    /// This client with another timeout for its calls; `None` waits forever.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.cluster = self.cluster.with_timeout(timeout);
        self
    }

    /// Calls `method` and waits for its result.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<R, RpcError> {
        self.cluster.call(&self.service, method, args).await
    }

    /// Sends the call and returns at once with a handle on its reply.
    pub async fn call_async<R>(
        &self,
        method: &str,
        args: impl IntoRpcArgs,
    ) -> Result<RpcCall<R>, RpcError> {
        self.cluster.call_async(&self.service, method, args).await
    }

    /// Stops the underlying client (and every client sharing its reply queue).
    pub async fn stop(&self) {
        self.cluster.stop().await;
    }
}
