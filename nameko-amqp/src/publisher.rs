//! `Publisher`: confirmed publishing, shared by many tasks.
//!
//! Nameko publishes everything with publisher confirms, and detects an unknown service by
//! publishing requests `mandatory` and getting them back as `NO_ROUTE`. With lapin that only
//! works on a channel in confirm mode, where a returned message arrives attached to a
//! confirmation (`Ack(Some(returned))`); this type turns each outcome into a
//! [`PublishError`] variant.
//!
//! lapin keeps the returned messages of a channel in one queue and attaches the oldest to
//! whichever confirmation it processes next, not to the confirmation of the message that was
//! returned. With several messages in flight on one channel, a routed message can therefore
//! carry another's return while the unroutable one is reported delivered (a broker test
//! reproduced this). So each channel carries at most one message at a time, and concurrency
//! comes from a pool of confirm-mode channels instead: a publish leases an idle channel (or
//! opens one, up to a limit), sends, waits for its confirm without holding any lock, and
//! hands the channel back. Publishes from many tasks thus pipeline across channels, and every
//! confirm and return belongs to the right message. A publish abandoned before its confirm
//! arrives drops its channel rather than returning it, so a late confirm can never be
//! attributed to the next message; a channel the broker closed is dropped too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::connection::Connection;
use crate::error::{Error, PublishError, Result, short_string};
use crate::json::{CONTENT_ENCODING, CONTENT_TYPE};

/// The AMQP reply code of a mandatory message that matched no queue.
const NO_ROUTE: u16 = 312;

/// Per-message settings, defaulting to what Nameko's publisher sends.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishOptions {
    /// Ask the broker to return the message if no queue matches: how RPC detects an
    /// unknown service. Nameko's default is `false`.
    pub mandatory: bool,
    /// Message headers; Nameko always sends a table, empty when there is no context.
    pub headers: FieldTable,
    /// Matches an RPC reply to its request.
    pub correlation_id: Option<String>,
    /// The routing key replies go to (a bare uuid in Nameko RPC).
    pub reply_to: Option<String>,
    /// 2 (persistent) by default, as Nameko sends.
    pub delivery_mode: u8,
    /// 0 by default; kombu always sets it.
    pub priority: u8,
    /// `application/json` by default. Python Nameko crashes on messages without one, so
    /// leave it set; an empty string sends none.
    pub content_type: String,
    /// `utf-8` by default; an empty string sends none.
    pub content_encoding: String,
    /// Per-message time to live, sent in whole milliseconds.
    pub expiration: Option<Duration>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            mandatory: false,
            headers: FieldTable::default(),
            correlation_id: None,
            reply_to: None,
            delivery_mode: 2,
            priority: 0,
            content_type: CONTENT_TYPE.to_owned(),
            content_encoding: CONTENT_ENCODING.to_owned(),
            expiration: None,
        }
    }
}

impl PublishOptions {
    fn properties(self) -> Result<BasicProperties> {
        let mut properties = BasicProperties::default()
            .with_headers(self.headers)
            .with_delivery_mode(self.delivery_mode)
            .with_priority(self.priority);
        if !self.content_type.is_empty() {
            properties =
                properties.with_content_type(short_string("content type", &self.content_type)?);
        }
        if !self.content_encoding.is_empty() {
            properties = properties
                .with_content_encoding(short_string("content encoding", &self.content_encoding)?);
        }
        if let Some(correlation_id) = &self.correlation_id {
            properties =
                properties.with_correlation_id(short_string("correlation id", correlation_id)?);
        }
        if let Some(reply_to) = &self.reply_to {
            properties = properties.with_reply_to(short_string("reply-to", reply_to)?);
        }
        if let Some(expiration) = self.expiration {
            properties = properties.with_expiration(expiration.as_millis().to_string().into());
        }
        Ok(properties)
    }
}

/// Publishes with confirms. Cheap to clone; clones share a pool of channels and can publish
/// concurrently. Dropping the last clone closes its channels.
#[derive(Clone, Debug)]
pub struct Publisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Keeps a shared connection alive as long as this publisher is.
    connection: Connection,
    /// Confirm-mode channels with nothing in flight.
    idle: Mutex<Vec<lapin::Channel>>,
    /// One permit per channel that may exist: bounds the channels, and so the messages in
    /// flight, of this publisher.
    permits: Arc<Semaphore>,
}

/// A channel lent to one publish, with the permit that counts it.
struct Lease {
    channel: lapin::Channel,
    _permit: OwnedSemaphorePermit,
}

impl Publisher {
    /// How many messages one publisher keeps in flight at most, unless told otherwise.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;

    /// A publisher on `connection`, opening its first channel now so that a refusing broker
    /// is noticed at start-up rather than on the first message.
    pub async fn new(connection: &Connection) -> Result<Self> {
        Self::with_max_in_flight(connection, Self::DEFAULT_MAX_IN_FLIGHT).await
    }

    /// A publisher that keeps at most `max_in_flight` messages (and channels) at once; further
    /// publishes wait for one to be confirmed. A limit of 0 is taken as 1.
    pub async fn with_max_in_flight(connection: &Connection, max_in_flight: usize) -> Result<Self> {
        let first = open_channel(connection).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection: connection.clone(),
                idle: Mutex::new(vec![first]),
                permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            }),
        })
    }

    /// Publish one message and wait until the broker has confirmed it.
    ///
    /// A `mandatory` message that matched no queue is [`PublishError::Unroutable`]; a message
    /// the broker refused is [`PublishError::Nacked`].
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        options: PublishOptions,
    ) -> Result<(), PublishError> {
        let exchange_name = short_string("exchange name", exchange)?;
        let routing_key_name = short_string("routing key", routing_key)?;
        let publish_options = BasicPublishOptions {
            mandatory: options.mandatory,
            immediate: false,
        };
        let properties = options.properties()?;
        let failed = |source| PublishError::Failed {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            source,
        };

        let lease = self.lease().await?;
        let confirmation = lease
            .channel
            .basic_publish(
                exchange_name,
                routing_key_name,
                publish_options,
                body,
                properties,
            )
            .await
            .map_err(failed)?
            .await
            .map_err(failed)?;
        // Only now is the channel free of anything in flight, so only now may it be reused.
        self.give_back(lease);

        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => {
                tracing::debug!(
                    exchange,
                    routing_key,
                    reply_code = returned.reply_code,
                    reply_text = %returned.reply_text,
                    "broker returned a mandatory message"
                );
                if returned.reply_code != NO_ROUTE {
                    tracing::warn!(
                        exchange,
                        routing_key,
                        reply_code = returned.reply_code,
                        "message returned with an unexpected reply code"
                    );
                }
                Err(PublishError::Unroutable {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                })
            }
            Confirmation::Nack(_) => Err(PublishError::Nacked {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            }),
            Confirmation::NotRequested => Err(PublishError::Unconfirmed {
                exchange: exchange.to_owned(),
            }),
        }
    }

    async fn lease(&self) -> Result<Lease> {
        // Nothing closes the semaphore, so acquiring only ever waits.
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed { what: "publisher" })?;
        loop {
            let idle = self.idle().pop();
            match idle {
                Some(channel) if channel.status().connected() => {
                    return Ok(Lease {
                        channel,
                        _permit: permit,
                    });
                }
                Some(closed) => drop(closed),
                None => {
                    return Ok(Lease {
                        channel: open_channel(&self.inner.connection).await?,
                        _permit: permit,
                    });
                }
            }
        }
    }

    fn give_back(&self, lease: Lease) {
        if lease.channel.status().connected() {
            self.idle().push(lease.channel);
        }
    }

    /// The idle list; its lock is only held to push or pop, never across an await, so a
    /// std mutex is the right tool.
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<lapin::Channel>> {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether the connection under this publisher is open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.inner.connection.is_open()
    }

    /// The connection this publisher's channels live on.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.inner.connection
    }
}

async fn open_channel(connection: &Connection) -> Result<lapin::Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|source| Error::amqp("confirm.select", source))?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{AMQPValue, ShortString};

    #[test]
    fn defaults_are_nameko_publisher_defaults() {
        let properties = PublishOptions::default().properties().unwrap();
        assert_eq!(properties.delivery_mode(), &Some(2));
        assert_eq!(properties.priority(), &Some(0));
        assert_eq!(
            properties.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        assert_eq!(
            properties
                .content_encoding()
                .as_ref()
                .map(ShortString::as_str),
            Some("utf-8")
        );
        // An empty table, not an absent one: Python sends `application_headers: {}`.
        assert_eq!(properties.headers(), &Some(FieldTable::default()));
        assert_eq!(properties.correlation_id(), &None);
        assert_eq!(properties.reply_to(), &None);
        assert_eq!(properties.expiration(), &None);
        assert!(!PublishOptions::default().mandatory);
    }

    #[test]
    fn options_become_properties() {
        let mut headers = FieldTable::default();
        headers.insert("nameko.language".into(), AMQPValue::LongString("en".into()));
        let properties = PublishOptions {
            headers: headers.clone(),
            correlation_id: Some("c-1".into()),
            reply_to: Some("r-1".into()),
            delivery_mode: 1,
            priority: 5,
            content_type: String::new(),
            expiration: Some(Duration::from_secs(3)),
            ..PublishOptions::default()
        }
        .properties()
        .unwrap();
        assert_eq!(properties.headers(), &Some(headers));
        assert_eq!(properties.correlation_id(), &Some("c-1".into()));
        assert_eq!(properties.reply_to(), &Some("r-1".into()));
        assert_eq!(properties.delivery_mode(), &Some(1));
        assert_eq!(properties.priority(), &Some(5));
        assert_eq!(properties.content_type(), &None);
        assert_eq!(properties.expiration(), &Some("3000".into()));
    }

    #[test]
    fn overlong_properties_are_errors_not_panics() {
        let error = PublishOptions {
            correlation_id: Some("c".repeat(300)),
            ..PublishOptions::default()
        }
        .properties()
        .unwrap_err();
        assert!(matches!(
            error,
            Error::TooLong {
                what: "correlation id",
                len: 300,
                ..
            }
        ));
    }
}
