//! `ServedQueue`: the consumer core every AMQP entrypoint adapts, so that the RPC consumer, the
//! reply listener and the event handlers give one answer to the questions they share.
//!
//! A served queue is a [`RecoveringConsumer`] (declare, consume, recover) plus what serving it
//! needs:
//!
//! - **one reading of the stream**: [`Deliveries::serve`] hands each delivery to the adapter and
//!   ends `Ok` only when this queue was asked to stop. A stream that ends otherwise is
//!   [`Error::ConsumerEnded`], and a consumer that cannot recover (a refused declaration) is its
//!   own error; both kill the container when run as a managed task, since a service that
//!   silently stops receiving is worse than one that stops loudly;
//! - **tracked tasks**: work started for a delivery runs in [`ServedQueue::spawn_worker`] or
//!   [`ServedQueue::spawn`], never in a bare `tokio::spawn`, so [`ServedQueue::drain`] can wait
//!   for all of it before the channel its acknowledgements need is closed. A worker that ends
//!   without settling its delivery (aborted, killed, or failed before it could answer) has the
//!   delivery requeued: nothing received is dropped by accident;
//! - **Nameko's stop in steps**: [`ServedQueue::stop_consuming`] cancels consumption while the
//!   channel stays open (deliveries received meanwhile are the adapter's to requeue, see
//!   [`ServedQueue::is_stopping`]); [`ServedQueue::drain`] waits for the tracked tasks;
//!   [`ServedQueue::close`] closes the channel, which hands anything unacknowledged back to
//!   the broker. [`ServedQueue::kill`] skips the wait.
//!
//! The handle and the stream are separate values because the stream belongs to one loop while
//! stop signals come from elsewhere (the container's `stop`, the last entrypoint stopping).

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::consumer::Delivery;
use crate::error::{Error, Result};
use crate::recovery::{RecoveringConsumer, RecoveringHandle};

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with: acknowledged.
    Ack,
    /// Given back to the broker for this or another consumer.
    Requeue,
    /// Rejected without requeue: dropped, or dead-lettered where the queue says so.
    Discard,
}

impl Settle {
    /// Settles `delivery` this way.
    pub async fn apply(self, delivery: &Delivery) -> Result<()> {
        match self {
            Self::Ack => delivery.ack().await,
            Self::Requeue => delivery.reject(true).await,
            Self::Discard => delivery.reject(false).await,
        }
    }
}

/// The control side of a served queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServedQueue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    handle: RecoveringHandle,
    queue: String,
    /// Cancelled once this queue was asked to stop (or killed).
    stopping: CancellationToken,
    tasks: TaskTracker,
}

/// The stream side of a served queue, for the one loop that reads it.
#[derive(Debug)]
pub struct Deliveries {
    consumer: RecoveringConsumer,
    served: ServedQueue,
}

impl ServedQueue {
    /// Serves `consumer`: the returned [`Deliveries`] is to be [`served`](Deliveries::serve)
    /// by one task, the handle kept by whoever stops it.
    pub fn new(consumer: RecoveringConsumer) -> (Self, Deliveries) {
        let served = Self {
            shared: Arc::new(Shared {
                handle: consumer.handle(),
                queue: consumer.queue().to_owned(),
                stopping: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        let deliveries = Deliveries {
            consumer,
            served: served.clone(),
        };
        (served, deliveries)
    }

    /// The queue served.
    pub fn queue(&self) -> &str {
        &self.shared.queue
    }

    /// Whether this queue was asked to stop: a delivery that arrives now is not to be started.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.is_cancelled()
    }

    /// Asks the broker for no more deliveries; the channel stays open, so work under way can
    /// still settle what it holds. Idempotent.
    pub async fn stop_consuming(&self) {
        self.shared.stopping.cancel();
        if let Err(error) = self.shared.handle.cancel().await {
            tracing::debug!(%error, queue = %self.shared.queue, "cancelling a consumer failed");
        }
    }

    /// Runs `task` as work of this queue, waited for by [`ServedQueue::drain`].
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.shared.tasks.spawn(task);
    }

    /// Runs the work for `delivery` as a tracked task. The work settles the delivery itself
    /// when it succeeds; when it returns an error (it did not finish: the container stopped
    /// before it started, or was killed) the delivery is requeued.
    pub fn spawn_worker<E>(
        &self,
        delivery: Arc<Delivery>,
        work: impl Future<Output = std::result::Result<(), E>> + Send + 'static,
    ) where
        E: std::fmt::Display + Send + 'static,
    {
        let queue = self.shared.queue.clone();
        self.shared.tasks.spawn(async move {
            if let Err(why) = work.await {
                tracing::debug!(%queue, reason = %why, "requeueing a delivery whose worker did not finish");
                settle_logged(&delivery, Settle::Requeue, &queue).await;
            }
        });
    }

    /// Settles `delivery` in a tracked task; a failure is logged (a channel that is gone has
    /// handed the delivery back to the broker already).
    pub fn settle(&self, delivery: Arc<Delivery>, how: Settle) {
        let queue = self.shared.queue.clone();
        self.shared.tasks.spawn(async move {
            settle_logged(&delivery, how, &queue).await;
        });
    }

    /// Waits for every tracked task, including those started while waiting.
    pub async fn drain(&self) {
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// Closes the channel: the broker requeues anything still unacknowledged.
    pub async fn close(&self) {
        self.shared.stopping.cancel();
        if let Err(error) = self.shared.handle.close().await {
            tracing::debug!(%error, queue = %self.shared.queue, "closing a consumer's channel failed");
        }
    }

    /// Stops at once: no more deliveries, no wait for running work, the channel closed.
    pub async fn kill(&self) {
        self.close().await;
    }
}

impl Deliveries {
    /// The consumer loop: hands every delivery to `on_delivery`, awaited in turn (so it must
    /// be quick; long work goes to [`ServedQueue::spawn_worker`]). Ends `Ok` when the queue
    /// was asked to stop; see the module docs for its errors.
    pub async fn serve<F, Fut>(mut self, mut on_delivery: F) -> Result<()>
    where
        F: FnMut(Delivery) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let next = self.consumer.next().await;
            let stopping = self.served.is_stopping();
            match next {
                Some(Ok(delivery)) => on_delivery(delivery).await,
                Some(Err(error)) if stopping => {
                    tracing::debug!(%error, queue = %self.served.queue(), "consumer ended while stopping");
                    return Ok(());
                }
                Some(Err(error)) => return Err(error),
                None if stopping => return Ok(()),
                None => {
                    return Err(Error::ConsumerEnded {
                        queue: self.served.queue().to_owned(),
                    });
                }
            }
        }
    }
}

async fn settle_logged(delivery: &Delivery, how: Settle, queue: &str) {
    if let Err(error) = how.apply(delivery).await {
        tracing::debug!(%error, queue, settle = ?how, "settling a delivery failed");
    }
}
