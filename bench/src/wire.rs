//! Nameko's wire shapes over bare lapin: exchange, queue and property shapes the neutral client
//! and the floor share.
//!
//! Neither may use nameko-amqp: the client must be neutral between the three targets, and the
//! floor is what the framework is measured against. So the few shapes they need are spelled
//! out here once, with exactly the flags Python Nameko declares (a mismatch would be a `406`
//! from the broker when the nameko-rs or Python target declares the same entity).

use anyhow::{Context, Result};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// Nameko's RPC exchange.
pub(crate) const RPC_EXCHANGE: &str = "nameko-rpc";

/// The content type every Nameko message carries; Python Nameko crashes without one.
pub(crate) const CONTENT_TYPE: &str = "application/json";

/// Opens a connection named `name` (the name shows in the broker's connection list).
pub(crate) async fn connect(uri: &str, name: &str) -> Result<Connection> {
    Connection::connect(
        uri,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
    .with_context(|| format!("cannot connect to the broker for the {name}"))
}

/// The properties Nameko puts on every message it publishes.
pub(crate) fn nameko_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_priority(0)
}

/// A durable topic exchange, as Nameko declares both its RPC and its event exchanges.
pub(crate) async fn declare_topic_exchange(channel: &Channel, name: &str) -> Result<()> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot declare exchange `{name}`"))
}

/// A durable, non-exclusive, non-auto-delete queue bound to `exchange` with `binding_key`: the
/// shape of a service's `rpc-<service>` queue and of a reliable event handler's queue.
pub(crate) async fn declare_bound_queue(
    channel: &Channel,
    queue: &str,
    arguments: FieldTable,
    exchange: &str,
    binding_key: &str,
) -> Result<()> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .with_context(|| format!("cannot declare queue `{queue}`"))?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            binding_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot bind queue `{queue}` to `{exchange}` as `{binding_key}`"))
}

/// A service's RPC request queue.
pub(crate) fn rpc_queue(service: &str) -> String {
    format!("rpc-{service}")
}

/// The exchange events from `source` go to.
pub(crate) fn event_exchange(source: &str) -> String {
    format!("{source}.events")
}

/// A service-pool event handler's queue (`evt-<source>-<type>--<service>.<method>`).
pub(crate) fn event_queue(source: &str, service: &str) -> String {
    format!(
        "evt-{source}-{}--{service}.{}",
        nameko_bench::EVENT_TYPE,
        nameko_bench::EVENT_METHOD
    )
}

/// What one run leaves on the broker and must remove: durable queues and exchanges outlive the
/// processes that declared them.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Leftovers {
    pub(crate) fn queue(&mut self, name: String) {
        self.queues.push(name);
    }

    pub(crate) fn exchange(&mut self, name: String) {
        self.exchanges.push(name);
    }

    /// Deletes everything recorded, each on a channel of its own: a broker error closes the
    /// channel it happened on, and one failed delete must not stop the others.
    pub(crate) async fn remove(self, connection: &Connection) -> Vec<String> {
        let mut failures = Vec::new();
        for queue in self.queues {
            let deleted = async {
                let channel = connection.create_channel().await?;
                channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await?;
                channel.close(200, "bye".into()).await
            };
            if let Err(error) = deleted.await {
                failures.push(format!("queue `{queue}`: {error}"));
            }
        }
        for exchange in self.exchanges {
            let deleted = async {
                let channel = connection.create_channel().await?;
                channel
                    .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                    .await?;
                channel.close(200, "bye".into()).await
            };
            if let Err(error) = deleted.await {
                failures.push(format!("exchange `{exchange}`: {error}"));
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_nameko_names() {
        assert_eq!(rpc_queue("svc"), "rpc-svc");
        assert_eq!(event_exchange("src"), "src.events");
        assert_eq!(
            event_queue("src", "svc"),
            "evt-src-bench_event--svc.on_event"
        );
    }
}
