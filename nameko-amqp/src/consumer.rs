//! `Consumer` and `Delivery`: reading one queue with manual acknowledgement and bounded
//! prefetch.
//!
//! Each consumer gets its own channel, so its prefetch (`basic.qos`, the only back-pressure a
//! lapin consumer has: its buffer is otherwise unbounded) applies to it alone, and a broker
//! error on one queue cannot close another's channel.
//!
//! Stopping is two steps because Nameko's graceful stop needs it: [`ConsumerHandle::cancel`]
//! asks the broker for no more deliveries while the channel stays open, so workers still
//! running can acknowledge what they hold; [`ConsumerHandle::close`] then closes the channel,
//! after which the broker requeues anything left unacknowledged. The handle is separate from
//! the stream so that a stop signal can reach a consumer whose loop owns the stream.
//!
//! `Delivery` wraps lapin's delivery to give acknowledgements one error type and to turn
//! "already settled" into an error instead of silence. Its settlements go through the
//! consumer's `Acknowledgements`, which folds consecutive acknowledgements into one
//! `basic.ack multiple` under load.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::{FieldTable, ShortString};
use serde_json::{Map, Value};
use tokio_stream::{Stream, StreamExt};

use crate::acknowledgements::{Acknowledgements, Settlement};
use crate::connection::Connection;
use crate::error::{Error, Result, short_string};
use crate::headers::decode_optional_context;
use crate::publisher::PublishOptions;
use crate::topology::{QueueSpec, declare_queue_on};

/// Consumes one queue on a channel of its own. A [`Stream`] of deliveries; see also
/// [`Consumer::next`].
#[derive(Debug)]
pub struct Consumer {
    handle: ConsumerHandle,
    deliveries: lapin::Consumer,
    acknowledgements: Arc<Acknowledgements>,
}

/// Stops a [`Consumer`] from another task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsumerHandle {
    /// Keeps a shared connection alive as long as the consumer is.
    connection: Connection,
    channel: lapin::Channel,
    queue: String,
    tag: String,
}

impl Consumer {
    /// Declare `queue` exactly as specified, then consume it with manual acknowledgement and
    /// at most `prefetch_count` unacknowledged deliveries (0 means no limit, as in AMQP).
    pub async fn start(
        connection: &Connection,
        queue: &QueueSpec,
        prefetch_count: u16,
    ) -> Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(prefetch_count, BasicQosOptions { global: false })
            .await
            .map_err(|source| Error::amqp("basic.qos", source))?;
        declare_queue_on(&channel, queue).await?;

        let tag = format!("nameko-rs-{}", uuid::Uuid::new_v4().simple());
        let deliveries = channel
            .basic_consume(
                short_string("queue name", &queue.name)?,
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| Error::amqp(format!("basic.consume `{}`", queue.name), source))?;
        tracing::debug!(queue = %queue.name, %tag, prefetch_count, "consuming");
        Ok(Self {
            acknowledgements: Arc::new(Acknowledgements::new(channel.clone())),
            handle: ConsumerHandle {
                connection: connection.clone(),
                channel,
                queue: queue.name.clone(),
                tag,
            },
            deliveries,
        })
    }

    /// The next delivery; `None` once the consumer has been cancelled (by
    /// [`ConsumerHandle::cancel`] or by the broker, e.g. when its queue is deleted) and every
    /// delivery received before that has been handed out. An error means the channel or
    /// connection failed; the stream ends after it.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        StreamExt::next(self).await
    }

    /// A handle to cancel or close this consumer from elsewhere.
    #[must_use]
    pub fn handle(&self) -> ConsumerHandle {
        self.handle.clone()
    }

    /// The queue being consumed.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.handle.queue
    }

    /// The consumer tag, unique per consumer.
    #[must_use]
    pub fn tag(&self) -> &str {
        &self.handle.tag
    }

    /// The consumer's channel, for what this type does not wrap.
    #[must_use]
    pub fn channel(&self) -> &lapin::Channel {
        &self.handle.channel
    }

    /// See [`ConsumerHandle::cancel`].
    pub async fn cancel(&self) -> Result<()> {
        self.handle.cancel().await
    }

    /// See [`ConsumerHandle::close`].
    pub async fn close(&self) -> Result<()> {
        self.handle.close().await
    }
}

impl Stream for Consumer {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        Pin::new(&mut this.deliveries).poll_next(cx).map(|item| {
            item.map(|delivery| match delivery {
                Ok(delivery) => {
                    this.acknowledgements.delivered(delivery.delivery_tag);
                    Ok(Delivery {
                        inner: delivery,
                        acknowledgements: Some(this.acknowledgements.clone()),
                        settled: AtomicBool::new(false),
                    })
                }
                Err(source) => Err(Error::amqp(
                    format!("consuming `{}`", this.handle.queue),
                    source,
                )),
            })
        })
    }
}

impl ConsumerHandle {
    /// Ask the broker to stop delivering. The channel stays open, so deliveries already
    /// received can still be acknowledged; the stream ends once they have been handed out.
    /// Cancelling twice, or after the channel closed, does nothing.
    pub async fn cancel(&self) -> Result<()> {
        if !self.channel.status().connected() {
            return Ok(());
        }
        self.channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await
            .map_err(|source| Error::amqp(format!("basic.cancel `{}`", self.queue), source))
    }

    /// Close the channel; the broker requeues every delivery not yet acknowledged. Closing
    /// twice does nothing.
    pub async fn close(&self) -> Result<()> {
        if !self.channel.status().connected() {
            return Ok(());
        }
        self.channel
            .close(200, "OK".into())
            .await
            .map_err(|source| Error::amqp(format!("channel.close for `{}`", self.queue), source))
    }

    /// Whether the consumer's channel is open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// The connection the consumer's channel lives on.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

/// One message received by a [`Consumer`], to be acknowledged exactly once.
#[derive(Debug)]
pub struct Delivery {
    inner: lapin::message::Delivery,
    /// The books of the consumer that handed it out; `None` for a delivery wrapped by hand,
    /// which settles through lapin's own acker.
    acknowledgements: Option<Arc<Acknowledgements>>,
    settled: AtomicBool,
}

impl From<lapin::message::Delivery> for Delivery {
    /// Wrap a lapin delivery; with `lapin::message::Delivery::mock` this makes deliveries for
    /// tests that need no broker.
    fn from(inner: lapin::message::Delivery) -> Self {
        Self {
            inner,
            acknowledgements: None,
            settled: AtomicBool::new(false),
        }
    }
}

impl Delivery {
    /// The message body.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        &self.inner.data
    }

    /// The exchange the message was published to.
    #[must_use]
    pub fn exchange(&self) -> &str {
        self.inner.exchange.as_str()
    }

    /// The routing key it was published with (`<service>.<method>` for RPC requests).
    #[must_use]
    pub fn routing_key(&self) -> &str {
        self.inner.routing_key.as_str()
    }

    /// Whether the broker delivered it before without an acknowledgement.
    #[must_use]
    pub fn redelivered(&self) -> bool {
        self.inner.redelivered
    }

    /// The delivery tag on the consumer's channel.
    #[must_use]
    pub fn delivery_tag(&self) -> u64 {
        self.inner.delivery_tag
    }

    /// All message properties.
    #[must_use]
    pub fn properties(&self) -> &BasicProperties {
        &self.inner.properties
    }

    /// The message headers, if it has any.
    #[must_use]
    pub fn headers(&self) -> Option<&FieldTable> {
        self.inner.properties.headers().as_ref()
    }

    /// The headers decoded as Nameko context data (see [`crate::headers::decode_context`]).
    #[must_use]
    pub fn context_data(&self) -> Map<String, Value> {
        decode_optional_context(self.headers())
    }

    /// The `content_type` property.
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.inner
            .properties
            .content_type()
            .as_ref()
            .map(ShortString::as_str)
    }

    /// The `content_encoding` property.
    #[must_use]
    pub fn content_encoding(&self) -> Option<&str> {
        self.inner
            .properties
            .content_encoding()
            .as_ref()
            .map(ShortString::as_str)
    }

    /// The `correlation_id` property.
    #[must_use]
    pub fn correlation_id(&self) -> Option<&str> {
        self.inner
            .properties
            .correlation_id()
            .as_ref()
            .map(ShortString::as_str)
    }

    /// The `reply_to` property.
    #[must_use]
    pub fn reply_to(&self) -> Option<&str> {
        self.inner
            .properties
            .reply_to()
            .as_ref()
            .map(ShortString::as_str)
    }

    /// Acknowledge: the broker forgets the message. Returns once the acknowledgement is on its
    /// way to the broker, possibly folded with others into one `basic.ack multiple`.
    pub async fn ack(&self) -> Result<()> {
        self.settle(Settlement::Ack).await
    }

    /// Negatively acknowledge (`basic.nack`); with `requeue` the broker delivers it again,
    /// otherwise it is dropped or dead-lettered.
    pub async fn nack(&self, requeue: bool) -> Result<()> {
        self.settle(Settlement::Nack { requeue }).await
    }

    /// Reject (`basic.reject`), as Nameko does to requeue on error or when the container is
    /// being killed.
    pub async fn reject(&self, requeue: bool) -> Result<()> {
        self.settle(Settlement::Reject { requeue }).await
    }

    /// Publishes a message on this delivery's own channel, then acknowledges the delivery: how
    /// an RPC reply is sent without waiting for a publisher confirm.
    ///
    /// The broker handles one channel's frames in order, and the acknowledgement is queued only
    /// once every frame of the message has been written to the socket (lapin sends
    /// acknowledgements ahead of queued message frames, so the order is kept here, not by
    /// lapin). So the broker never processes the acknowledgement without having routed the
    /// message first; a connection lost in between loses both, and the delivery comes back.
    /// The channel is not in confirm mode, so the message is never `mandatory`: a return would
    /// have nobody to go to. Deliveries wrapped by hand have no channel and refuse.
    pub async fn publish_then_ack(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        options: PublishOptions,
    ) -> Result<()> {
        let Some(acknowledgements) = &self.acknowledgements else {
            return Err(Error::Closed {
                what: "channel of a delivery wrapped by hand",
            });
        };
        let properties = options.properties()?;
        acknowledgements
            .channel()
            .basic_publish(
                short_string("exchange name", exchange)?,
                short_string("routing key", routing_key)?,
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .map_err(|source| {
                Error::amqp(
                    format!("basic.publish to `{exchange}` with `{routing_key}`"),
                    source,
                )
            })?;
        self.ack().await
    }

    async fn settle(&self, settlement: Settlement) -> Result<()> {
        let delivery_tag = self.inner.delivery_tag;
        if self.settled.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadySettled { delivery_tag });
        }
        if let Some(acknowledgements) = &self.acknowledgements {
            return acknowledgements.settle(delivery_tag, settlement).await;
        }
        let acker = &self.inner.acker;
        let sent = match settlement {
            Settlement::Ack => acker.ack(BasicAckOptions::default()).await,
            Settlement::Nack { requeue } => {
                let options = BasicNackOptions {
                    multiple: false,
                    requeue,
                };
                acker.nack(options).await
            }
            Settlement::Reject { requeue } => acker.reject(BasicRejectOptions { requeue }).await,
        };
        match sent {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::AlreadySettled { delivery_tag }),
            Err(source) => Err(Error::amqp(settlement.operation(), source)),
        }
    }

    /// The lapin delivery inside. Settle it through lapin from then on; until it is, the
    /// consumer folds no acknowledgement across it.
    #[must_use]
    pub fn into_inner(self) -> lapin::message::Delivery {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::AMQPValue;

    #[tokio::test]
    async fn mock_deliveries_expose_their_message_and_settle_once() {
        let mut inner = lapin::message::Delivery::mock(
            7,
            "nameko-rpc".into(),
            "svc.method".into(),
            true,
            br#"{"args": [], "kwargs": {}}"#.to_vec(),
        );
        let mut headers = FieldTable::default();
        headers.insert("nameko.user_id".into(), AMQPValue::LongString("u-1".into()));
        inner.properties = BasicProperties::default()
            .with_headers(headers)
            .with_content_type("application/json".into())
            .with_correlation_id("c-1".into())
            .with_reply_to("r-1".into());
        let delivery = Delivery::from(inner);

        assert_eq!(delivery.body(), br#"{"args": [], "kwargs": {}}"#);
        assert_eq!(delivery.exchange(), "nameko-rpc");
        assert_eq!(delivery.routing_key(), "svc.method");
        assert!(delivery.redelivered());
        assert_eq!(delivery.delivery_tag(), 7);
        assert_eq!(delivery.content_type(), Some("application/json"));
        assert_eq!(delivery.content_encoding(), None);
        assert_eq!(delivery.correlation_id(), Some("c-1"));
        assert_eq!(delivery.reply_to(), Some("r-1"));
        assert_eq!(delivery.context_data()["user_id"], "u-1");

        delivery.ack().await.unwrap();
        let again = delivery.reject(true).await.unwrap_err();
        assert!(
            matches!(again, Error::AlreadySettled { delivery_tag: 7 }),
            "{again}"
        );
    }
}
