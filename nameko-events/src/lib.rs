//! Events (publish/subscribe) for nameko-rs, wire-compatible with Python Nameko 2.14.
//!
//! A service dispatches events with an [`EventDispatcher`] dependency (or, outside any
//! service, a [`StandaloneDispatcher`]); services handle them with [`event_handler`]
//! entrypoints. Events cross between Rust and Python services in both directions, and a Rust
//! and a Python instance of the same service share one queue, because everything on the wire
//! is Nameko's: the topic exchange `<source>.events`, the event type as routing key, the raw
//! JSON payload, `nameko.*` context headers, and the queue names and flags of each
//! [`HandlerType`] (see [`names`]).
//!
//! This crate sits on `nameko-core` (services, workers, the container) and `nameko-amqp`
//! (connections, publishing, consuming, codecs); it knows nothing of RPC or HTTP.
//!
//! ```no_run
//! use nameko_core::{Config, RemoteError, Service, ServiceContainer, Worker};
//! use nameko_core::testing::{dummy, entrypoint_hook};
//! use nameko_events::{EventDispatcher, HandlerType, event_handler};
//! use serde_json::json;
//!
//! struct Orders {
//!     dispatch: EventDispatcher,
//! }
//!
//! async fn create(worker: Worker<Orders>, _: nameko_core::DirectCall) -> Result<(), RemoteError> {
//!     let dispatch = &worker.service().dispatch;
//!     dispatch.dispatch(&worker, "order_created", &json!({"id": 7})).await?;
//!     Ok(())
//! }
//!
//! async fn on_order(_worker: Worker, order: serde_json::Value) {
//!     println!("order {} was created", order["id"]);
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::new();
//! config.set("AMQP_URI", "amqp://guest:guest@localhost");
//!
//! let orders = Service::with_state("orders", |deps| Orders {
//!     dispatch: deps.add("dispatch", EventDispatcher::new()),
//! })
//! .entrypoint(dummy("create", create));
//! let mailer = Service::new("mailer").entrypoint(
//!     event_handler("orders", "order_created", "on_order", on_order)
//!         .handler_type(HandlerType::Singleton),
//! );
//! let mailer = ServiceContainer::new(mailer, config.clone())?;
//! mailer.start().await?;
//! let orders = ServiceContainer::new(orders, config)?;
//! orders.start().await?;
//! entrypoint_hook(&orders, "create")?.call(vec![], Default::default()).await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Delivery guarantees and failures
//!
//! A dispatch returns once the broker has confirmed the message. A handler's message is
//! acknowledged after its worker has finished, failed or not, so an event is handled at least
//! once: if an instance dies mid-way, the broker gives the event to another.
//!
//! - **Unreadable messages** (not JSON, a content type other than `application/json`, a kombu
//!   `__type__` wrapper of an unknown type) are logged and rejected without requeue: the
//!   broker drops them, or dead-letters them if an operator set a dead-letter policy on the
//!   queue. Python Nameko acks and drops them. They never reach a worker and never stop the
//!   service.
//! - **A payload that does not fit the handler's type** is that worker's error,
//!   `MalformedEvent`, settled like any other failure.
//! - **`requeue_on_error`**: Nameko requeues a failed event at once and forever. Here the
//!   event is put back at most [`EventHandler::max_redeliveries`] times (default
//!   [`DEFAULT_MAX_REDELIVERIES`]): it is published again to its own queue only, counting in
//!   the header [`names::REDELIVERIES_HEADER`], and then acked. The header is removed before
//!   headers become context data, so it never travels on. When the bound is reached the event
//!   is parked in the durable queue `dead.<queue>` ([`names::dead_event_queue`]) if the handler
//!   has reliable delivery, or logged and dropped if it has not. Details in [`redelivery`].
//! - **Graceful stop**: consumption is cancelled, running handlers finish and settle their
//!   events; events whose worker never started (or was killed) go back to the queue.
//! - **A lost connection**: handlers reconnect with backoff and declare their exchange, queue
//!   and binding again while the service keeps running; unacknowledged events come back from
//!   the broker. A dispatch whose message may have been lost with its connection is an error to
//!   the caller.

mod broker;
mod consumers;
mod dispatcher;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod handler_type;
mod message;
pub mod names;
pub mod redelivery;
mod standalone;

pub use dispatcher::{Dispatch, DispatchedEvent, EventDispatcher};
pub use error::{
    EVENT_DISPATCH_ERROR, EVENT_DISPATCH_ERROR_PATH, Error, MALFORMED_EVENT, MALFORMED_EVENT_PATH,
    Result,
};
pub use handler::{EventHandler, PAYLOAD_ARGUMENT, event_handler};
pub use handler_type::{BROADCAST, BroadcastIdentifier, HandlerType, SERVICE_POOL, SINGLETON};
pub use names::{dead_event_queue, event_exchange};
pub use redelivery::DEFAULT_MAX_REDELIVERIES;
pub use standalone::StandaloneDispatcher;
