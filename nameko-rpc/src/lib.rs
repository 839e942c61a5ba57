//! RPC over AMQP for nameko-rs, wire-compatible with Python Nameko 2.14 (and 3.x) in both
//! directions.
//!
//! This crate sits on `nameko-core` (services, workers, the container) and `nameko-amqp`
//! (connections, confirmed publishing, consuming, the header and JSON codecs), and knows nothing
//! of HTTP or events. It provides what Nameko's `nameko.rpc` and `nameko.standalone.rpc` do:
//!
//! | Nameko (Python)                         | nameko-rpc                                     |
//! |-----------------------------------------|------------------------------------------------|
//! | `@rpc` on a method                      | [`rpc`]`("method", handler)`                   |
//! | `other = RpcProxy("other")`             | [`RpcProxy::new`]`("other")`, injecting a [`ServiceProxy`] |
//! | `self.other.method(...)`                | [`ServiceProxy::call`]                         |
//! | `self.other.method.call_async(...)`     | [`ServiceProxy::call_async`], an [`RpcCall`]   |
//! | `ClusterRpcProxy(config)`               | [`ClusterRpcClient::connect`]                  |
//! | `ServiceRpcProxy("svc", config)`        | [`ServiceRpcClient::connect`]                  |
//! | `RemoteError`, `UnknownService`, `RpcTimeout` | [`RpcError`]                             |
//!
//! On the wire everything is Nameko's: the `nameko-rpc` topic exchange, one durable queue
//! `rpc-<service>` per service bound with `<service>.*`, reply queues
//! `rpc.reply-<caller>-<uuid>` that expire after five minutes unused, replies routed by
//! `reply_to` through the same exchange, `{"args": [...], "kwargs": {...}}` requests,
//! `{"result": ..., "error": ...}` replies, context in `nameko.*` headers. Python clients get
//! `MethodNotFound`, `IncorrectSignature` and `MalformedRequest` from a Rust service as their own
//! native exceptions.
//!
//! A service outlives its broker connection: its consumer and reply listener reconnect with
//! backoff and declare the same queues again (`nameko-amqp`'s `RecoveringConsumer`); a call
//! whose request may have been lost with a connection fails with an error instead of hanging,
//! and calls waiting on a reply queue that expired meanwhile fail at once with
//! [`RpcError::ReplyQueueLost`].
//!
//! Handlers are plain `async fn`s whose second parameter binds the call's arguments by position
//! or by name, as Python would (see [`rpc`] and [`Args`]):
//!
//! ```no_run
//! use nameko_core::{Config, RemoteError, Service, ServiceContainer, Worker};
//! use nameko_rpc::{ClusterRpcClient, RpcProxy, rpc};
//!
//! async fn hello(_: Worker, name: String) -> Result<String, RemoteError> {
//!     Ok(format!("Hello, {name}!"))
//! }
//!
//! struct ServiceX {
//!     y: RpcProxy,
//! }
//!
//! async fn remote_method(worker: Worker<ServiceX>, value: String) -> anyhow::Result<String> {
//!     let y = &worker.service().y;
//!     let appended: String = y.call(&worker, "append_identifier", (value,)).await?;
//!     Ok(format!("{appended}-x"))
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::new();
//! let greeter = ServiceContainer::new(
//!     Service::new("greeting_service").entrypoint(rpc("hello", hello)),
//!     config.clone(),
//! )?;
//! let x = ServiceContainer::new(
//!     Service::with_state("service_x", |deps| ServiceX {
//!         y: deps.add("y", RpcProxy::new("service_y")),
//!     })
//!     .entrypoint(rpc("remote_method", remote_method)),
//!     config.clone(),
//! )?;
//! greeter.start().await?;
//! x.start().await?;
//!
//! let client = ClusterRpcClient::connect(&config).await?;
//! let greeting: String = client.call("greeting_service", "hello", ("Matt",)).await?;
//! assert_eq!(greeting, "Hello, Matt!");
//! # Ok(())
//! # }
//! ```

mod args;
mod broker;
mod call;
mod client;
mod consumer;
mod entrypoint;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod names;
mod proxy;
mod reply_listener;
mod responder;

pub use args::{Args, IntoRpcArgs};
pub use broker::DEFAULT_RPC_EXCHANGE;
pub use call::{DEFAULT_TIMEOUT, RpcCall};
pub use client::{ClusterRpcClient, ServiceRpcClient};
pub use entrypoint::{Rpc, RpcHandler, rpc};
pub use error::{REPLY_QUEUE_EXPIRED, RPC_TIMEOUT, Result, RpcError, UNKNOWN_SERVICE};
pub use proxy::{RpcProxy, ServiceProxy};
