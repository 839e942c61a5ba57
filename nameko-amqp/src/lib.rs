//! AMQP plumbing for nameko-rs: the broker side that Nameko's RPC and events stand on.
//!
//! This crate knows AMQP and Nameko's wire conventions, but nothing of RPC or event
//! semantics: it depends on none of nameko-rs's extension crates, and `nameko-rpc` and
//! `nameko-events` build on it. It provides
//!
//! - [`AmqpSettings`]: the one reading of a service's broker keys (`AMQP_URI`, `HEARTBEAT`,
//!   `LOGIN_METHOD`, `AMQP_SSL`, `serializer`, `PREFETCH_COUNT`), shared by every extension;
//! - [`AmqpUri`] and [`ConnectionConfig`]: broker addresses as Nameko configs write them
//!   (`pyamqp://`, kombu's vhost rules), never printed with their password;
//! - [`TlsOptions`]: TLS to the broker for `amqps://` and Nameko's `AMQP_SSL`, always
//!   verifying the broker's certificate (against `ca_certs` and the bundled Mozilla roots),
//!   with an optional client certificate for the `EXTERNAL` login;
//! - [`Connection`]: shared per process and role ([`Connection::shared`]), because lapin runs
//!   a thread per connection;
//! - [`Publisher`]: confirmed, pipelined publishing, with unroutable mandatory messages
//!   reported as [`PublishError::Unroutable`];
//! - [`Consumer`]: one queue, one channel, bounded prefetch, manual acks (consecutive ones
//!   folded into one `basic.ack multiple` under load, never across a delivery still being
//!   worked on), and a cancel that leaves in-flight deliveries acknowledgeable;
//! - [`RecoveringConsumer`]: a consumer that survives its connection: after a broker restart,
//!   a network cut, missed heartbeats or a forced close it reconnects with [`Backoff`],
//!   declares its [`Declarations`] again and resumes, and publishers reconnect on their next
//!   publish;
//! - [`ServedQueue`]: the consumer core the RPC consumer, the reply listener and the event
//!   handlers adapt: one reading of the stream, tracked per-delivery tasks that requeue what
//!   they did not settle, and Nameko's stop in steps (stop consuming, drain, close) or a kill;
//! - [`Topology`]: declarations with exactly Nameko's flags and argument types;
//! - [`headers`] and [`json`]: the context-data header codec and the kombu JSON codec, byte
//!   compatible with Python Nameko.
//!
//! ```no_run
//! use nameko_amqp::{
//!     Connection, ConnectionConfig, ConnectionRole, Consumer, PublishOptions, Publisher,
//!     QueueSpec, Topology,
//! };
//! use serde_json::json;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ConnectionConfig::parse("pyamqp://guest:guest@localhost")?;
//! let consuming = Connection::shared(&config, ConnectionRole::Consumer).await?;
//! let publishing = Connection::shared(&config, ConnectionRole::Publisher).await?;
//!
//! let topology = Topology::new(&consuming).await?;
//! topology.declare_rpc_exchange("nameko-rpc").await?;
//! let mut consumer = Consumer::start(&consuming, &QueueSpec::durable("rpc-greeter"), 10).await?;
//! topology.bind_queue("rpc-greeter", "nameko-rpc", "greeter.*").await?;
//!
//! let publisher = Publisher::new(&publishing).await?;
//! let body = nameko_amqp::json::encode(&json!({"args": ["Matt"], "kwargs": {}}));
//! let options = PublishOptions { mandatory: true, ..PublishOptions::default() };
//! publisher.publish("nameko-rpc", "greeter.hello", &body, options).await?;
//!
//! if let Some(delivery) = consumer.next().await {
//!     let delivery = delivery?;
//!     let request = nameko_amqp::json::decode(delivery.body())?;
//!     println!("{request} with context {:?}", delivery.context_data());
//!     delivery.ack().await?;
//! }
//! # Ok(())
//! # }
//! ```

mod acknowledgements;
mod backoff;
mod connection;
mod consumer;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
pub mod json;
mod publisher;
mod recovery;
mod served_queue;
mod settings;
mod tls;
mod topology;
mod uri;

pub use backoff::Backoff;
pub use connection::{Connection, ConnectionConfig, ConnectionRole};
pub use consumer::{Consumer, ConsumerHandle, Delivery};
pub use error::{DecodeError, Error, PublishError, Result, UriError};
pub use publisher::{PublishOptions, Publisher};
pub use recovery::{Binding, Declarations, RecoveringConsumer, RecoveringHandle, Recovery};
pub use served_queue::{Deliveries, ServedQueue, Settle};
pub use settings::{AmqpSettings, DEFAULT_AMQP_URI, SERIALIZER};
pub use tls::TlsOptions;
pub use topology::{ExchangeSpec, QueueSpec, QueueState, Topology, event_exchange_name};
pub use uri::{AmqpUri, DEFAULT_FRAME_MAX, Scheme};

/// The lapin version this crate is built on, so dependants use the very same types.
pub use lapin;
pub use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
