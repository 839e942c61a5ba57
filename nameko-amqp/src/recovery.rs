//! `RecoveringConsumer`: a [`Consumer`] that outlives its connection.
//!
//! A service must keep serving through what production does to its broker connection: a
//! broker restart, a network cut, a peer gone silent (found by missed heartbeats), a forced
//! close by an operator, or its queue deleted under it (the broker then cancels the consumer).
//! Each ends the plain consumer's stream. This type then recovers by itself, the way kombu's
//! consumers do for Nameko: it waits according to a [`Backoff`], asks for a working connection
//! ([`Connection::reconnect`], which the process's consumers share), declares again exactly what
//! it declared at start ([`Declarations`]: exchanges, the queue with the same flags and
//! arguments, bindings), and consumes anew with the same prefetch. Its owner only sees a stream
//! of deliveries with a gap in it.
//!
//! Recovery is done here rather than by lapin's `enable_auto_recover` because the owner must
//! decide about things lapin cannot know: what a missing queue means (a reply queue that
//! expired loses replies, see [`RecoveringConsumer::on_recover`]), and which failures are final.
//! Losing the connection is never final: the consumer tries again, forever, with a capped delay,
//! as Nameko does. The broker refusing a declaration is final and ends the stream with the
//! error, because retrying cannot help: 406 `PRECONDITION_FAILED` (someone declared the queue
//! with other flags meanwhile), 403 `ACCESS_REFUSED`, 404 `NOT_FOUND` (a binding to an exchange
//! this consumer does not declare). 405 `RESOURCE_LOCKED` is the exception: an exclusive queue
//! is still held by the connection that just died, until the broker notices, so it is retried.
//!
//! Deliveries handed out before a recovery belong to the old channel: acknowledging them fails
//! (see [`Delivery::ack`]) and the broker delivers them again, to this consumer or another. That
//! is at-least-once delivery, which is what Nameko promises.
//!
//! Stopping works as for [`Consumer`], through a [`RecoveringHandle`] that always reaches the
//! current channel: `cancel` then `close`. Both also end recovery: the stream ends instead.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::connection::Connection;
use crate::consumer::{Consumer, ConsumerHandle, Delivery};
use crate::error::{Error, Result};
use crate::topology::{ExchangeSpec, QueueSpec, QueueState, Topology};

/// The reply code of a declaration on a queue another connection holds exclusively.
const RESOURCE_LOCKED: u16 = 405;

/// A consumer that has delivered for this long counts as recovered for good: the next failure
/// starts again with an immediate attempt. One that fails sooner keeps backing off, so a
/// connection that flaps does not turn into a reconnect storm.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// A binding of the consumed queue to an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The exchange bound from.
    pub exchange: String,
    /// The binding key.
    pub routing_key: String,
}

/// What a consumer declares before it consumes, in order: exchanges, its queue, the queue's
/// bindings. Declared at start and again after every recovery, exactly alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Declarations {
    /// Exchanges to declare first.
    pub exchanges: Vec<ExchangeSpec>,
    /// The queue to declare and consume.
    pub queue: QueueSpec,
    /// Bindings of the queue.
    pub bindings: Vec<Binding>,
}

impl Declarations {
    /// Declare just `queue`.
    #[must_use]
    pub fn queue(queue: QueueSpec) -> Self {
        Self {
            exchanges: Vec::new(),
            queue,
            bindings: Vec::new(),
        }
    }

    /// Also declare `exchange`, before the queue.
    #[must_use]
    pub fn exchange(mut self, exchange: ExchangeSpec) -> Self {
        self.exchanges.push(exchange);
        self
    }

    /// Also bind the queue to `exchange` with `routing_key`.
    #[must_use]
    pub fn bind(mut self, exchange: impl Into<String>, routing_key: impl Into<String>) -> Self {
        self.bindings.push(Binding {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
        });
        self
    }

    /// Declare everything, in order, on `topology`.
    pub async fn declare(&self, topology: &Topology) -> Result<QueueState> {
        for exchange in &self.exchanges {
            topology.declare_exchange(exchange).await?;
        }
        let state = topology.declare_queue(&self.queue).await?;
        for binding in &self.bindings {
            topology
                .bind_queue(&self.queue.name, &binding.exchange, &binding.routing_key)
                .await?;
        }
        Ok(state)
    }
}

/// What a recovery found, told to the [`RecoveringConsumer::on_recover`] hook once everything
/// is declared again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Whether the queue still existed when the consumer came back. When it did not, whatever
    /// it held (and whatever was routed to it meanwhile) is lost; it has been declared afresh.
    pub queue_existed: bool,
    /// Which attempt this is since the consumer was lost, counted from 1.
    pub attempt: u32,
}

type Hook = Arc<dyn Fn(&Recovery) + Send + Sync>;

/// Consumes one queue and keeps consuming across connection failures. See the module docs.
pub struct RecoveringConsumer {
    declarations: Declarations,
    prefetch: u16,
    /// The connection of the current consumer, from which the next recovery starts.
    connection: Connection,
    consumer: Option<Consumer>,
    control: Arc<Control>,
    on_recover: Option<Hook>,
    backoff: Backoff,
    /// When the current consumer started delivering.
    since: Instant,
    /// A final error was handed out: the stream has ended.
    failed: bool,
}

#[derive(Debug)]
struct Control {
    queue: String,
    /// Cancelled by the owner (`cancel` or `close`): the stream's end is expected and no
    /// recovery follows.
    stopped: CancellationToken,
    /// The consumer delivering now. Swapped and read under this std mutex, never across an
    /// await; `stopped` is cancelled under it too, so a recovery that installs a new consumer
    /// and a `cancel` racing it always see each other.
    current: Mutex<Option<ConsumerHandle>>,
}

/// Stops a [`RecoveringConsumer`] from another task, whichever channel it consumes on by then.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct RecoveringHandle {
    control: Arc<Control>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single swap or clone; a panic elsewhere cannot leave it
    // half-done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecoveringConsumer {
    /// Declare everything in `declarations` on `connection`, then consume the queue with
    /// manual acknowledgement and at most `prefetch` unacknowledged deliveries. A failure here
    /// is returned as is: recovery starts only once consuming has started.
    pub async fn start(
        connection: &Connection,
        declarations: Declarations,
        prefetch: u16,
    ) -> Result<Self> {
        let topology = Topology::new(connection).await?;
        declarations.declare(&topology).await?;
        let consumer = Consumer::start(connection, &declarations.queue, prefetch).await?;
        let control = Arc::new(Control {
            queue: declarations.queue.name.clone(),
            stopped: CancellationToken::new(),
            current: Mutex::new(Some(consumer.handle())),
        });
        Ok(Self {
            declarations,
            prefetch,
            connection: connection.clone(),
            consumer: Some(consumer),
            control,
            on_recover: None,
            backoff: Backoff::default(),
            since: Instant::now(),
            failed: false,
        })
    }

    /// Call `hook` during each recovery, once the consumer has a working connection again and
    /// has declared everything again, before it consumes: the moment to act on a queue that
    /// had vanished, because from then on the queue keeps what is routed to it. It runs inside
    /// [`RecoveringConsumer::next`], so it must be quick and must not block.
    #[must_use]
    pub fn on_recover(mut self, hook: impl Fn(&Recovery) + Send + Sync + 'static) -> Self {
        self.on_recover = Some(Arc::new(hook));
        self
    }

    /// Use these delays between recovery attempts instead of [`Backoff::default`].
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A handle to cancel or close this consumer from elsewhere.
    #[must_use]
    pub fn handle(&self) -> RecoveringHandle {
        RecoveringHandle {
            control: self.control.clone(),
        }
    }

    /// The queue being consumed.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.control.queue
    }

    /// The connection the consumer currently uses.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The next delivery, recovering first whenever the connection or channel was lost or the
    /// broker cancelled the consumer. `None` once the consumer was cancelled or closed through
    /// its handle and every delivery received before that has been handed out. An error is
    /// final (the broker refused a declaration during a recovery); the stream ends after it.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            if self.failed {
                return None;
            }
            let outcome = match self.consumer.as_mut() {
                Some(consumer) => consumer.next().await,
                None => None,
            };
            match outcome {
                Some(Ok(delivery)) => return Some(Ok(delivery)),
                _ if self.control.stopped.is_cancelled() => return None,
                Some(Err(error)) => tracing::warn!(
                    queue = %self.control.queue,
                    %error,
                    "consumer lost its connection or channel; recovering"
                ),
                None => tracing::warn!(
                    queue = %self.control.queue,
                    "the broker cancelled the consumer (was the queue deleted?); recovering"
                ),
            }
            match self.recover().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
    }

    /// Replaces the lost consumer. `Ok(false)` when stopped meanwhile.
    async fn recover(&mut self) -> Result<bool> {
        *lock(&self.control.current) = None;
        if let Some(lost) = self.consumer.take() {
            // After a broker cancel the channel is still open and holds unacknowledged
            // deliveries: closing it gives them back to the queue now.
            let handle = lost.handle();
            drop(lost);
            if let Err(error) = handle.close().await {
                tracing::debug!(queue = %self.control.queue, %error, "closing the lost consumer's channel failed");
            }
        }
        if self.since.elapsed() >= STABLE_AFTER {
            self.backoff.reset();
        }
        let stopped = self.control.stopped.clone();
        loop {
            let delay = self.backoff.next_delay();
            let attempt = self.backoff.attempts();
            tokio::select! {
                () = stopped.cancelled() => return Ok(false),
                () = tokio::time::sleep(delay) => {}
            }
            let recovered = tokio::select! {
                () = stopped.cancelled() => return Ok(false),
                recovered = self.try_recover(attempt) => recovered,
            };
            match recovered {
                Ok(consumer) => return Ok(self.install(consumer).await),
                Err(error) if is_final(&error) => {
                    tracing::error!(
                        queue = %self.control.queue,
                        %error,
                        "the broker refused a declaration while recovering the consumer; giving up"
                    );
                    return Err(error);
                }
                Err(error) => tracing::warn!(
                    queue = %self.control.queue,
                    attempt,
                    %error,
                    "recovering the consumer failed; trying again"
                ),
            }
        }
    }

    async fn try_recover(&mut self, attempt: u32) -> Result<Consumer> {
        let connection = self.connection.reconnect().await?;
        let topology = Topology::new(&connection).await?;
        let queue = &self.declarations.queue;
        let queue_existed = topology.inspect_queue(&queue.name).await?.is_some();
        if !queue_existed {
            if queue.auto_delete || queue.exclusive {
                tracing::info!(queue = %queue.name, "the queue went with its consumer; declaring it again");
            } else {
                tracing::warn!(
                    queue = %queue.name,
                    "the queue no longer exists and whatever it held is lost; declaring it again"
                );
            }
        }
        self.declarations.declare(&topology).await?;
        // Only now: whatever is routed to the queue from here on is kept, so a call made after
        // the owner acted on a lost queue cannot lose its reply the same way.
        if let Some(hook) = &self.on_recover {
            hook(&Recovery {
                queue_existed,
                attempt,
            });
        }
        let consumer = Consumer::start(&connection, queue, self.prefetch).await?;
        self.connection = connection;
        Ok(consumer)
    }

    /// Makes `consumer` the current one, unless the owner stopped meanwhile.
    async fn install(&mut self, consumer: Consumer) -> bool {
        let installed = {
            let mut current = lock(&self.control.current);
            if self.control.stopped.is_cancelled() {
                false
            } else {
                *current = Some(consumer.handle());
                true
            }
        };
        if !installed {
            if let Err(error) = consumer.close().await {
                tracing::debug!(queue = %self.control.queue, %error, "closing a consumer recovered after its stop failed");
            }
            return false;
        }
        tracing::info!(
            queue = %self.control.queue,
            attempts = self.backoff.attempts(),
            "consuming again after recovery"
        );
        self.consumer = Some(consumer);
        self.since = Instant::now();
        true
    }
}

impl std::fmt::Debug for RecoveringConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveringConsumer")
            .field("queue", &self.control.queue)
            .field("prefetch", &self.prefetch)
            .field("connection", &self.connection)
            .field("stopped", &self.control.stopped.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// A failure recovery cannot get past by trying again.
fn is_final(error: &Error) -> bool {
    !error.is_connection_failure() && error.reply_code() != Some(RESOURCE_LOCKED)
}

impl RecoveringHandle {
    /// Ask the broker for no more deliveries and stop recovering. The channel stays open, so
    /// deliveries already received can still be acknowledged; the stream ends once they have
    /// been handed out. Cancelling twice does nothing.
    pub async fn cancel(&self) -> Result<()> {
        match self.stop() {
            Some(current) => current.cancel().await,
            None => Ok(()),
        }
    }

    /// Stop recovering and close the channel; the broker requeues every delivery not yet
    /// acknowledged. Closing twice does nothing.
    pub async fn close(&self) -> Result<()> {
        match self.stop() {
            Some(current) => current.close().await,
            None => Ok(()),
        }
    }

    fn stop(&self) -> Option<ConsumerHandle> {
        let current = lock(&self.control.current);
        self.control.stopped.cancel();
        current.clone()
    }

    /// Whether a channel is consuming right now (false while recovering and after a stop).
    #[must_use]
    pub fn is_open(&self) -> bool {
        lock(&self.control.current)
            .as_ref()
            .is_some_and(ConsumerHandle::is_open)
    }

    /// Whether the consumer was cancelled or closed through a handle.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.control.stopped.is_cancelled()
    }

    /// The queue being consumed.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.control.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};
    use lapin::types::{AMQPValue, FieldTable};

    #[test]
    fn declarations_keep_their_order_and_flags() {
        let declarations = Declarations::queue(
            QueueSpec::durable("rpc.reply-x-1").with_expires(Duration::from_secs(300)),
        )
        .exchange(ExchangeSpec::topic("nameko-rpc"))
        .bind("nameko-rpc", "1");
        assert_eq!(
            declarations.exchanges,
            vec![ExchangeSpec::topic("nameko-rpc")]
        );
        assert_eq!(
            declarations.bindings,
            vec![Binding {
                exchange: "nameko-rpc".into(),
                routing_key: "1".into()
            }]
        );
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongInt(300_000));
        assert_eq!(declarations.queue.arguments, arguments);
    }

    #[test]
    fn only_refusals_end_recovery() {
        let lost = Error::Amqp {
            operation: "basic.consume".into(),
            source: lapin::ErrorKind::MissingHeartbeatError.into(),
        };
        assert!(!is_final(&lost));
        let io = Error::Amqp {
            operation: "channel.open".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
        };
        assert!(!is_final(&io));
        let timed_out = Error::ConnectTimedOut {
            address: "amqp://guest:***@h:5672/%2f".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(!is_final(&timed_out));
        assert!(is_final(&Error::NoRuntime));

        let broker = |kind| Error::Amqp {
            operation: "queue.declare `q`".into(),
            source: lapin::ErrorKind::ProtocolError(AMQPError::new(kind, "refused".into())).into(),
        };
        let forced = broker(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED));
        assert!(forced.is_connection_failure(), "320 closes the connection");
        assert!(!is_final(&forced));
        let locked = broker(AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED));
        assert!(!locked.is_connection_failure());
        assert!(
            !is_final(&locked),
            "an exclusive queue of a dead connection"
        );
        for refusal in [
            AMQPSoftError::PRECONDITIONFAILED,
            AMQPSoftError::ACCESSREFUSED,
            AMQPSoftError::NOTFOUND,
        ] {
            let refused = broker(AMQPErrorKind::Soft(refusal));
            assert!(!refused.is_connection_failure());
            assert!(is_final(&refused), "{refused}");
        }
    }
}
