//! `Topology`: declaring exchanges, queues and bindings exactly as Nameko declares them.
//!
//! RabbitMQ refuses a declaration whose flags or arguments differ from an existing entity's
//! with `406 PRECONDITION_FAILED` and closes the channel, so a Rust service sharing a broker
//! with Python services must declare the very same flags, and argument *types*: Python sends
//! the reply queue's `x-expires` as a 32-bit integer, so [`QueueSpec::with_expires`] does too.
//! The named helpers carry Nameko's flags so callers cannot get them wrong.
//!
//! Because a refused declaration kills its channel, `Topology` reopens its channel on the next
//! call rather than staying broken, and existence checks (passive declares, which fail with
//! 404) run on a throwaway channel of their own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::ExchangeKind;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::connection::Connection;
use crate::error::{Error, Result, short_string};

/// The AMQP reply code of a passive declare for something that does not exist.
const NOT_FOUND: u16 = 404;

/// The name of a service's event exchange: `<source_service>.events`.
#[must_use]
pub fn event_exchange_name(source_service: &str) -> String {
    format!("{source_service}.events")
}

/// An exchange to declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// Its name.
    pub name: String,
    /// Its type; Nameko uses topic exchanges throughout.
    pub kind: ExchangeKind,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted by the broker when its last binding goes.
    pub auto_delete: bool,
}

impl ExchangeSpec {
    /// A durable topic exchange, as Nameko declares its RPC and event exchanges.
    #[must_use]
    pub fn topic(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ExchangeKind::Topic,
            durable: true,
            auto_delete: false,
        }
    }
}

/// A queue to declare.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Its name.
    pub name: String,
    /// Survives a broker restart (Nameko declares every queue durable).
    pub durable: bool,
    /// Only this connection may use it, and it goes when the connection does.
    pub exclusive: bool,
    /// Deleted by the broker when its last consumer goes.
    pub auto_delete: bool,
    /// Extra arguments such as `x-expires`; their AMQP types matter to the broker.
    pub arguments: FieldTable,
}

impl QueueSpec {
    /// A durable, non-exclusive, non-auto-delete queue without arguments: Nameko's RPC
    /// request queues and reliable event handler queues.
    #[must_use]
    pub fn durable(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
        }
    }

    /// Set `exclusive`.
    #[must_use]
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Set `auto_delete`.
    #[must_use]
    pub fn auto_delete(mut self, auto_delete: bool) -> Self {
        self.auto_delete = auto_delete;
        self
    }

    /// Let the broker delete the queue after it has been unused this long (`x-expires`),
    /// encoded as a 32-bit integer as Python declares it (Nameko's reply queues use 300000
    /// ms); durations beyond the 32-bit range are capped at about 24.8 days.
    #[must_use]
    pub fn with_expires(self, idle: Duration) -> Self {
        let millis = i32::try_from(idle.as_millis()).unwrap_or(i32::MAX);
        self.with_argument("x-expires", AMQPValue::LongInt(millis))
    }

    /// Add a declaration argument. Keys longer than 255 bytes cannot be sent and are ignored
    /// with a warning.
    #[must_use]
    pub fn with_argument(mut self, key: &str, value: AMQPValue) -> Self {
        match ShortString::try_new(key) {
            Ok(key) => {
                self.arguments.insert(key, value);
            }
            Err(_) => tracing::warn!(queue = %self.name, "queue argument name too long, ignored"),
        }
        self
    }
}

/// What the broker reports about a declared queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Messages ready for delivery (not counting delivered but unacknowledged ones).
    pub message_count: u32,
    /// Active consumers.
    pub consumer_count: u32,
}

/// Declares and removes broker entities on a channel of its own. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Topology {
    connection: Connection,
    /// The current channel; replaced when the broker has closed it.
    channel: Arc<Mutex<lapin::Channel>>,
}

impl Topology {
    /// Open a channel for declarations on `connection`.
    pub async fn new(connection: &Connection) -> Result<Self> {
        let channel = connection.create_channel().await?;
        Ok(Self {
            connection: connection.clone(),
            channel: Arc::new(Mutex::new(channel)),
        })
    }

    /// The channel to use, reopened if a refused declaration has closed it.
    async fn channel(&self) -> Result<lapin::Channel> {
        let current = self
            .channel
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        if current.status().connected() {
            return Ok(current);
        }
        let fresh = self.connection.create_channel().await?;
        *self
            .channel
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Declare Nameko's RPC exchange (`nameko-rpc` unless configured): topic, durable.
    pub async fn declare_rpc_exchange(&self, name: &str) -> Result<()> {
        self.declare_exchange(&ExchangeSpec::topic(name)).await
    }

    /// Declare the event exchange of `source_service`, `<source_service>.events`: topic,
    /// durable, auto-delete as Nameko's `AUTO_DELETE_EVENT_EXCHANGES` says. Returns its name.
    pub async fn declare_event_exchange(
        &self,
        source_service: &str,
        auto_delete: bool,
    ) -> Result<String> {
        let spec = ExchangeSpec {
            auto_delete,
            ..ExchangeSpec::topic(event_exchange_name(source_service))
        };
        self.declare_exchange(&spec).await?;
        Ok(spec.name)
    }

    /// Declare an exchange (never internal, no arguments).
    pub async fn declare_exchange(&self, spec: &ExchangeSpec) -> Result<()> {
        let name = short_string("exchange name", &spec.name)?;
        let options = ExchangeDeclareOptions {
            passive: false,
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            internal: false,
            nowait: false,
        };
        self.channel()
            .await?
            .exchange_declare(name, spec.kind.clone(), options, FieldTable::default())
            .await
            .map_err(|source| Error::amqp(format!("exchange.declare `{}`", spec.name), source))
    }

    /// Declare a queue with exactly the given flags and arguments.
    pub async fn declare_queue(&self, spec: &QueueSpec) -> Result<QueueState> {
        declare_queue_on(&self.channel().await?, spec).await
    }

    /// Bind `queue` to `exchange` with `routing_key`.
    pub async fn bind_queue(&self, queue: &str, exchange: &str, routing_key: &str) -> Result<()> {
        let (queue_name, exchange_name, key) = binding_names(queue, exchange, routing_key)?;
        self.channel()
            .await?
            .queue_bind(
                queue_name,
                exchange_name,
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| {
                Error::amqp(
                    format!("queue.bind `{queue}` to `{exchange}` with `{routing_key}`"),
                    source,
                )
            })
    }

    /// Remove a binding made by [`Topology::bind_queue`].
    pub async fn unbind_queue(&self, queue: &str, exchange: &str, routing_key: &str) -> Result<()> {
        let (queue_name, exchange_name, key) = binding_names(queue, exchange, routing_key)?;
        self.channel()
            .await?
            .queue_unbind(queue_name, exchange_name, key, FieldTable::default())
            .await
            .map_err(|source| {
                Error::amqp(
                    format!("queue.unbind `{queue}` from `{exchange}` with `{routing_key}`"),
                    source,
                )
            })
    }

    /// Look a queue up without changing it: `None` when it does not exist. Runs on a
    /// throwaway channel, since the broker closes the channel of a failed lookup.
    pub async fn inspect_queue(&self, name: &str) -> Result<Option<QueueState>> {
        let queue_name = short_string("queue name", name)?;
        let channel = self.connection.create_channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let result = channel
            .queue_declare(queue_name, options, FieldTable::default())
            .await
            .map_err(|source| Error::amqp(format!("queue.declare passive `{name}`"), source));
        match result {
            Ok(queue) => {
                close_quietly(&channel).await;
                Ok(Some(QueueState {
                    message_count: queue.message_count(),
                    consumer_count: queue.consumer_count(),
                }))
            }
            Err(error) if error.reply_code() == Some(NOT_FOUND) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Delete a queue and the messages in it; returns how many messages went with it.
    pub async fn delete_queue(&self, name: &str) -> Result<u32> {
        let queue_name = short_string("queue name", name)?;
        self.channel()
            .await?
            .queue_delete(queue_name, QueueDeleteOptions::default())
            .await
            .map_err(|source| Error::amqp(format!("queue.delete `{name}`"), source))
    }

    /// Delete an exchange.
    pub async fn delete_exchange(&self, name: &str) -> Result<()> {
        let exchange_name = short_string("exchange name", name)?;
        self.channel()
            .await?
            .exchange_delete(exchange_name, ExchangeDeleteOptions::default())
            .await
            .map_err(|source| Error::amqp(format!("exchange.delete `{name}`"), source))
    }
}

pub(crate) async fn declare_queue_on(
    channel: &lapin::Channel,
    spec: &QueueSpec,
) -> Result<QueueState> {
    let name = short_string("queue name", &spec.name)?;
    let options = QueueDeclareOptions {
        passive: false,
        durable: spec.durable,
        exclusive: spec.exclusive,
        auto_delete: spec.auto_delete,
        nowait: false,
    };
    let queue = channel
        .queue_declare(name, options, spec.arguments.clone())
        .await
        .map_err(|source| Error::amqp(format!("queue.declare `{}`", spec.name), source))?;
    Ok(QueueState {
        message_count: queue.message_count(),
        consumer_count: queue.consumer_count(),
    })
}

fn binding_names(
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(ShortString, ShortString, ShortString)> {
    Ok((
        short_string("queue name", queue)?,
        short_string("exchange name", exchange)?,
        short_string("routing key", routing_key)?,
    ))
}

async fn close_quietly(channel: &lapin::Channel) {
    if let Err(error) = channel.close(200, "OK".into()).await {
        tracing::debug!(%error, "closing a lookup channel failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_flags_match_nameko() {
        assert_eq!(event_exchange_name("orders"), "orders.events");
        let rpc = ExchangeSpec::topic("nameko-rpc");
        assert_eq!(rpc.kind, ExchangeKind::Topic);
        assert!(rpc.durable && !rpc.auto_delete);

        let queue = QueueSpec::durable("rpc-orders");
        assert!(queue.durable && !queue.exclusive && !queue.auto_delete);
        assert_eq!(queue.arguments, FieldTable::default());
    }

    #[test]
    fn reply_queue_expiry_is_a_32_bit_int() {
        let queue = QueueSpec::durable("rpc.reply-x-1").with_expires(Duration::from_secs(300));
        assert_eq!(
            queue.arguments.inner().get("x-expires"),
            Some(&AMQPValue::LongInt(300_000))
        );
        let capped = QueueSpec::durable("q").with_expires(Duration::from_secs(u64::MAX));
        assert_eq!(
            capped.arguments.inner().get("x-expires"),
            Some(&AMQPValue::LongInt(i32::MAX))
        );
    }
}
