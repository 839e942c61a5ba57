//! What happens to an event message once its worker has finished: Nameko's acknowledgement
//! rules, with a bound on `requeue_on_error`.
//!
//! Nameko acks every event after its worker, failed or not, except that with
//! `requeue_on_error` a failure is `basic.reject(requeue=True)`: the broker hands the event
//! straight back, and a handler that always fails spins in a hot loop forever. RabbitMQ's
//! classic queues (3.x) keep no delivery count, and a dead-letter exchange would need queue
//! arguments Nameko does not declare (the broker would refuse the Python service's declaration
//! with 406). So the count travels in the message instead:
//!
//! - a failed event that has been put back fewer than `max_redeliveries` times is published
//!   again, with its body and properties, to the same queue only (through the default exchange,
//!   so no other handler of the event sees it twice), with the header
//!   [`REDELIVERIES_HEADER`] counting up; once the broker
//!   has confirmed the copy, the original is acked. The copy joins the back of the queue, so
//!   other events are not held up behind it. If the copy cannot be published, the original is
//!   rejected with requeue, as Nameko does;
//! - a failed event that reached the bound is parked in the durable queue `dead.<queue>` (see
//!   [`dead_event_queue`]) when the handler has reliable
//!   delivery, where an operator can inspect it or move it back; without reliable delivery the
//!   events were never meant to outlive the handler, so it is logged and dropped. A parked or
//!   dropped event is logged at error level either way.
//!
//! A worker that never ran or was cut short because the container stopped or was killed gives
//! its event back with `basic.reject(requeue=true)`, unchanged.
//!
//! Rust handlers remove the counter before the headers become context data. A Python instance
//! sharing the queue cannot: if it receives a copy, it takes the counter for context data like
//! any other header and passes it on, as `nameko.x-nameko-redeliveries`, to the calls and
//! events of that one worker (Rust receivers drop that form too).

use nameko_amqp::{AMQPValue, Delivery, PublishOptions, QueueSpec};
use nameko_core::WorkerResult;

use crate::broker::Publishing;
use crate::names::{REDELIVERIES_HEADER, dead_event_queue};

/// The default for [`EventHandler::max_redeliveries`](crate::EventHandler::max_redeliveries).
pub const DEFAULT_MAX_REDELIVERIES: u32 = 5;

/// How one handler settles its deliveries.
#[derive(Debug, Clone)]
pub(crate) struct Settlement {
    pub(crate) queue: String,
    pub(crate) requeue_on_error: bool,
    pub(crate) max_redeliveries: u32,
    /// Park events that used up their redeliveries (reliable delivery) rather than drop them.
    pub(crate) park: bool,
    /// Needed only with `requeue_on_error`.
    pub(crate) publishing: Option<Publishing>,
}

impl Settlement {
    /// Settles a delivery whose worker finished with `result`.
    pub(crate) async fn settle(
        &self,
        delivery: &Delivery,
        redeliveries: u32,
        result: &WorkerResult,
    ) {
        let (Err(error), true, Some(publishing)) =
            (result, self.requeue_on_error, self.publishing.as_ref())
        else {
            ack(delivery, &self.queue).await;
            return;
        };
        if redeliveries < self.max_redeliveries {
            let copy = copy_options(delivery, redeliveries + 1);
            match publishing
                .publish_once("", &self.queue, delivery.body(), copy)
                .await
            {
                Ok(Ok(())) => ack(delivery, &self.queue).await,
                Ok(Err(failure)) => self.requeue(delivery, &failure).await,
                Err(failure) => self.requeue(delivery, &failure).await,
            }
            return;
        }
        if !self.park {
            tracing::error!(
                queue = %self.queue,
                redeliveries,
                %error,
                "event failed on every attempt; dropping it (the handler has no reliable delivery)"
            );
            ack(delivery, &self.queue).await;
            return;
        }
        let dead = dead_event_queue(&self.queue);
        match self.park(publishing, delivery, &dead, redeliveries).await {
            Ok(()) => {
                tracing::error!(
                    queue = %self.queue,
                    dead_queue = %dead,
                    redeliveries,
                    %error,
                    "event failed on every attempt; parked it"
                );
                ack(delivery, &self.queue).await;
            }
            Err(failure) => {
                tracing::error!(
                    queue = %self.queue,
                    dead_queue = %dead,
                    %error,
                    park_error = %failure,
                    "event failed on every attempt and could not be parked; dropping it"
                );
                reject(delivery, &self.queue, false).await;
            }
        }
    }

    async fn requeue(&self, delivery: &Delivery, failure: &(dyn std::fmt::Display + Sync)) {
        tracing::warn!(
            queue = %self.queue,
            error = %failure,
            "could not publish a failed event again; requeueing it as it is"
        );
        reject(delivery, &self.queue, true).await;
    }

    async fn park(
        &self,
        publishing: &Publishing,
        delivery: &Delivery,
        dead: &str,
        redeliveries: u32,
    ) -> crate::Result<()> {
        publishing
            .topology()
            .await?
            .declare_queue(&QueueSpec::durable(dead))
            .await?;
        let copy = copy_options(delivery, redeliveries);
        publishing
            .publish_once("", dead, delivery.body(), copy)
            .await?
            .map_err(crate::Error::from)
    }
}

/// The properties of a copy of `delivery`: the same, with the redelivery counter set. Copies
/// are mandatory, so a copy that reaches no queue is an error rather than a silent loss.
fn copy_options(delivery: &Delivery, redeliveries: u32) -> PublishOptions {
    let properties = delivery.properties();
    let mut headers = delivery.headers().cloned().unwrap_or_default();
    headers.insert(
        REDELIVERIES_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(redeliveries)),
    );
    let defaults = PublishOptions::default();
    PublishOptions {
        mandatory: true,
        headers,
        correlation_id: delivery.correlation_id().map(str::to_owned),
        reply_to: delivery.reply_to().map(str::to_owned),
        delivery_mode: properties.delivery_mode().unwrap_or(defaults.delivery_mode),
        priority: properties.priority().unwrap_or(defaults.priority),
        content_type: delivery.content_type().unwrap_or_default().to_owned(),
        content_encoding: delivery.content_encoding().unwrap_or_default().to_owned(),
        expiration: properties
            .expiration()
            .as_ref()
            .and_then(|ms| ms.as_str().parse().ok())
            .map(std::time::Duration::from_millis),
    }
}

async fn ack(delivery: &Delivery, queue: &str) {
    if let Err(error) = delivery.ack().await {
        // The channel is gone; the broker requeues what was not acked, so the event is not lost.
        tracing::warn!(queue, %error, "could not ack an event");
    }
}

async fn reject(delivery: &Delivery, queue: &str, requeue: bool) {
    if let Err(error) = delivery.reject(requeue).await {
        tracing::warn!(queue, requeue, %error, "could not reject an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::delivery;
    use nameko_amqp::FieldTable;

    #[test]
    fn copies_keep_the_message_and_count_up() {
        let mut headers = FieldTable::default();
        headers.insert("nameko.user_id".into(), AMQPValue::LongString("u".into()));
        headers.insert(REDELIVERIES_HEADER.into(), AMQPValue::LongLongInt(1));
        let original = delivery(Some("application/json"), b"{}", headers);
        let copy = copy_options(&original, 2);
        assert!(copy.mandatory);
        assert_eq!(copy.content_type, "application/json");
        assert_eq!(copy.content_encoding, "", "none was sent, none is sent");
        let headers = copy.headers.inner();
        assert_eq!(
            headers.get(REDELIVERIES_HEADER),
            Some(&AMQPValue::LongLongInt(2))
        );
        assert_eq!(
            headers.get("nameko.user_id"),
            Some(&AMQPValue::LongString("u".into()))
        );
        assert_eq!(copy.correlation_id, None);
        assert_eq!(copy.reply_to, None);
    }

    #[tokio::test]
    async fn without_requeue_every_outcome_is_acked() {
        let settlement = Settlement {
            queue: "q".into(),
            requeue_on_error: false,
            max_redeliveries: DEFAULT_MAX_REDELIVERIES,
            park: true,
            publishing: None,
        };
        for result in [
            Ok(serde_json::Value::Null),
            Err(nameko_core::RemoteError::generic("boom")),
        ] {
            let message = delivery(Some("application/json"), b"{}", FieldTable::default());
            settlement.settle(&message, 0, &result).await;
            let again = message.ack().await.unwrap_err();
            assert!(
                matches!(again, nameko_amqp::Error::AlreadySettled { .. }),
                "settled once"
            );
        }
    }
}
