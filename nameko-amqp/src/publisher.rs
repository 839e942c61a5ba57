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
//! reproduced this). So each channel that carries `mandatory` messages carries at most one at a
//! time, and their concurrency comes from a pool of confirm-mode channels instead: a publish
//! leases an idle channel (or opens one, up to a limit), sends, waits for its confirm without
//! holding any lock, and hands the channel back, so every confirm and return belongs to the
//! right message. A publish abandoned before its confirm arrives drops its channel rather than
//! returning it, so a late confirm can never be attributed to the next message; a channel the
//! broker closed is dropped too.
//!
//! Messages that are not `mandatory` (RPC replies, events) can never come back, and lapin
//! matches confirms to messages by delivery tag, so they share one pipelined channel with many
//! in flight: the broker then acknowledges a run of them in one frame instead of one frame per
//! message on a channel each, which the benchmarks showed to cost throughput.
//!
//! A publisher outlives its connection. When the connection has failed (a broker restart, a
//! network cut, missed heartbeats), the next publish asks for a working one
//! ([`Connection::reconnect`]) and opens its channel there, trying again with backoff while the
//! broker cannot be reached, for at most [`Publisher::RECONNECT_PATIENCE`]; then the publish
//! fails. A message is sent again only when it certainly did not reach the broker: its frames
//! could not even be written, because the channel had died with its connection an instant
//! before (lapin had not noticed yet when the channel was leased). Once a message was written,
//! a connection lost before its confirm is [`PublishError::Failed`] (the broker may or may not
//! have it), for the caller to decide, so a publish never succeeds silently twice and never
//! fails silently.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::connection::Connection;
use crate::error::{Error, PublishError, Result, is_connection_failure, short_string};
use crate::json::{CONTENT_ENCODING, CONTENT_TYPE};

/// The AMQP reply code of a mandatory message that matched no queue.
const NO_ROUTE: u16 = 312;

/// How often a message that could not be sent at all (its channel had just died) is tried.
const SEND_ATTEMPTS: u32 = 3;

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
    pub(crate) fn properties(self) -> Result<BasicProperties> {
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
    /// Where new channels are opened; replaced by a working one once it has failed. Keeps a
    /// shared connection alive as long as this publisher is.
    connection: Mutex<Connection>,
    /// Confirm-mode channels with nothing in flight, for `mandatory` messages.
    idle: Mutex<Vec<lapin::Channel>>,
    /// The one confirm-mode channel that carries every message that is not `mandatory`, many
    /// in flight at once: such a message can never come back, so nothing can be misattributed,
    /// and the broker can acknowledge a whole run of them with one frame.
    pipelined: Mutex<Option<lapin::Channel>>,
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
    /// How long a publish keeps trying to reach the broker again after the connection failed,
    /// before it fails: about as long as kombu's default publish retry policy (Nameko's
    /// `{'max_retries': 3, 'interval_start': 2, 'interval_step': 1, 'interval_max': 5}`) waits.
    pub const RECONNECT_PATIENCE: Duration = Duration::from_secs(10);

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
                connection: Mutex::new(connection.clone()),
                idle: Mutex::new(vec![first]),
                pipelined: Mutex::new(None),
                permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            }),
        })
    }

    /// Publish one message and wait until the broker has confirmed it.
    ///
    /// A `mandatory` message that matched no queue is [`PublishError::Unroutable`]; a message
    /// the broker refused is [`PublishError::Nacked`]; a channel or connection lost before the
    /// confirm is [`PublishError::Failed`], and [`PublishError::is_connection_failure`] tells
    /// that case apart.
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
        let options_mandatory = options.mandatory;
        let properties = options.properties()?;
        let failed = |source| PublishError::Failed {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            source,
        };

        let mut attempts = 1;
        let confirmation = loop {
            let lease = if options_mandatory {
                Some(self.lease().await?)
            } else {
                None
            };
            let channel = match &lease {
                Some(lease) => lease.channel.clone(),
                None => self.pipelined_channel().await?,
            };
            let sent = channel
                .basic_publish(
                    exchange_name.clone(),
                    routing_key_name.clone(),
                    publish_options,
                    body,
                    properties.clone(),
                )
                .await;
            let confirm = match sent {
                Ok(confirm) => confirm,
                // The frames were not all written: the broker cannot have the message. Its
                // channel went with its connection a moment ago; send it again on a fresh one.
                Err(source) if attempts < SEND_ATTEMPTS && is_connection_failure(&source) => {
                    tracing::debug!(exchange, routing_key, error = %source, "message not sent; sending it again on a fresh channel");
                    attempts += 1;
                    continue;
                }
                Err(source) => return Err(failed(source)),
            };
            let confirmation = confirm.await.map_err(failed)?;
            // Only now is a leased channel free of anything in flight, so only now may it be
            // reused.
            if let Some(lease) = lease {
                self.give_back(lease);
            }
            break confirmation;
        };

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
                        channel: self.fresh_channel().await?,
                        _permit: permit,
                    });
                }
            }
        }
    }

    /// A new confirm-mode channel, on a new connection if the current one has failed. Keeps
    /// trying while the broker is unreachable, for at most [`Self::RECONNECT_PATIENCE`].
    async fn fresh_channel(&self) -> Result<lapin::Channel> {
        let deadline = Instant::now() + Self::RECONNECT_PATIENCE;
        let mut backoff = Backoff::default();
        // The first attempt is now; `next_delay` hands out its zero delay.
        backoff.next_delay();
        loop {
            let attempt = async {
                let current = self.current_connection();
                let connection = current.reconnect().await?;
                if !connection.same_connection(&current) {
                    tracing::info!(broker = %connection.config().uri(), "publisher reconnected");
                    *lock(&self.inner.connection) = connection.clone();
                }
                open_channel(&connection).await
            };
            let failure = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(channel)) => return Ok(channel),
                Ok(Err(error)) if error.is_connection_failure() => error,
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(Error::ConnectTimedOut {
                        address: self.current_connection().config().uri().redacted(),
                        timeout: Self::RECONNECT_PATIENCE,
                    });
                }
            };
            let delay = backoff.next_delay();
            if Instant::now() + delay >= deadline {
                return Err(failure);
            }
            tracing::warn!(
                error = %failure,
                attempt = backoff.attempts(),
                ?delay,
                "publisher cannot reach the broker; trying again"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// The channel for messages that are not `mandatory`: the current one while it is open,
    /// otherwise a fresh one that replaces it.
    async fn pipelined_channel(&self) -> Result<lapin::Channel> {
        let current = lock(&self.inner.pipelined).clone();
        if let Some(channel) = current.filter(|c| c.status().connected()) {
            return Ok(channel);
        }
        let fresh = self.fresh_channel().await?;
        let mut slot = lock(&self.inner.pipelined);
        // Another publish may have replaced it meanwhile; keep the first open one.
        match &*slot {
            Some(channel) if channel.status().connected() => Ok(channel.clone()),
            _ => {
                *slot = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }

    fn current_connection(&self) -> Connection {
        lock(&self.inner.connection).clone()
    }

    fn give_back(&self, lease: Lease) {
        if lease.channel.status().connected() {
            self.idle().push(lease.channel);
        }
    }

    /// The idle list; its lock is only held to push or pop, never across an await, so a
    /// std mutex is the right tool.
    fn idle(&self) -> MutexGuard<'_, Vec<lapin::Channel>> {
        lock(&self.inner.idle)
    }

    /// Whether the connection under this publisher is open. A publisher whose connection
    /// failed still works: its next publish reconnects.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.current_connection().is_open()
    }

    /// The connection this publisher's channels live on now.
    #[must_use]
    pub fn connection(&self) -> Connection {
        self.current_connection()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Held only to clone, swap, push or pop, never across an await; a panic elsewhere cannot
    // leave the data half-edited.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
