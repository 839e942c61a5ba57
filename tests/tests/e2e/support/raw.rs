//! Raw broker access for the RPC tests, to send what no well-behaved client sends and to watch
//! what goes over the wire.
//!
//! [`Raw`] is a connection of the test's own on the test's RPC exchange: it publishes arbitrary
//! bytes with arbitrary properties and listens on temporary queues bound next to the services'
//! own. It also cleans up after a test: request queues are durable, as Nameko declares them.

use nameko_amqp::{
    Connection, ConnectionConfig, Consumer, Delivery, PublishOptions, Publisher, QueueSpec,
    Topology,
};

use crate::support::rpc::within;
use crate::support::unique;

pub struct Raw {
    pub connection: Connection,
    pub publisher: Publisher,
    pub topology: Topology,
    pub exchange: String,
}

impl Raw {
    pub async fn new(uri: &str, exchange: &str) -> Self {
        let settings = ConnectionConfig::parse(uri).expect("uri");
        let connection = within(Connection::connect(&settings))
            .await
            .expect("connect");
        let publisher = Publisher::new(&connection).await.expect("publisher");
        let topology = Topology::new(&connection).await.expect("topology");
        topology
            .declare_rpc_exchange(exchange)
            .await
            .expect("exchange");
        Self {
            connection,
            publisher,
            topology,
            exchange: exchange.to_owned(),
        }
    }

    /// A temporary queue bound to the exchange with `binding`.
    pub async fn listen(&self, binding: &str) -> Consumer {
        let name = unique("spy");
        let spec = QueueSpec::durable(&name).exclusive(true).auto_delete(true);
        let consumer = Consumer::start(&self.connection, &spec, 0)
            .await
            .expect("consume");
        self.topology
            .bind_queue(&name, &self.exchange, binding)
            .await
            .expect("bind");
        consumer
    }

    pub async fn publish(&self, routing_key: &str, body: &[u8], options: PublishOptions) {
        self.publisher
            .publish(&self.exchange, routing_key, body, options)
            .await
            .expect("raw publish");
    }
}

/// Deletes the request queues of these services: they are durable, as Nameko declares them, and
/// would otherwise stay on the broker after the test.
pub async fn delete_rpc_queues(uri: &str, services: &[&str]) {
    let raw = Raw::new(uri, "nameko-rpc").await;
    for service in services {
        raw.topology
            .delete_queue(&format!("rpc-{service}"))
            .await
            .expect("delete the test's rpc queue");
    }
}

pub async fn next(consumer: &mut Consumer) -> Delivery {
    let delivery = within(consumer.next())
        .await
        .expect("consumer open")
        .expect("delivery");
    delivery.ack().await.expect("ack");
    delivery
}

pub fn text(delivery: &Delivery) -> String {
    String::from_utf8(delivery.body().to_vec()).expect("utf-8 body")
}

/// Waits until every request in `rpc-<service>` has been handed to a consumer.
pub async fn wait_until_handed_out(raw: &Raw, service: &str) {
    within(async {
        loop {
            let queue = raw
                .topology
                .inspect_queue(&format!("rpc-{service}"))
                .await
                .unwrap()
                .unwrap();
            if queue.message_count == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}
