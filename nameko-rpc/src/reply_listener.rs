//! The reply listener: one reply queue per caller, and the table of calls waiting on it.
//!
//! Nameko routes replies through the RPC exchange: a caller declares `rpc.reply-<caller>-<uuid>`
//! (durable, `x-expires` five minutes, so a queue left behind by a dead caller disappears), binds
//! it with the bare uuid, and sends that uuid as every request's `reply_to`. Many calls can be in
//! flight on one queue; each reply is matched to its call by `correlation_id`, so replies may
//! arrive in any order. A reply nobody waits for (its call timed out, or it was never ours) is
//! acknowledged and dropped.
//!
//! Inside a service the listener is a shared extension, one per container for all its
//! `RpcProxy`s. Shared extensions stop after every worker has finished, so the listener keeps
//! receiving replies for as long as a worker may wait for one. A standalone client owns a
//! listener of its own.
//!
//! The listener outlives its connection: its consumer recovers by itself (reconnecting,
//! declaring the queue and its binding again), and calls keep waiting meanwhile, because the
//! queue is durable and keeps their replies. Unless the queue itself is gone: it expired while
//! the listener could not reach the broker for five minutes, or someone deleted it (the broker
//! then cancels the consumer). Its replies are lost then, so the listener checks for the queue
//! on every recovery and, once the queue is declared and bound again, fails the calls waiting
//! at that moment with [`RpcError::ReplyQueueLost`](crate::RpcError::ReplyQueueLost) at once,
//! as Nameko 3 does (`ReplyQueueExpiredWithPendingReplies`); Nameko 2 leaves them hanging.
//! Calls made after that are not affected. (A call sent in the instant between the queue's
//! return and that moment is failed too, though its reply may come: an error it did not need,
//! rather than a wait that never ends.)
//!
//! When the listener stops, or its consumer ends for good (the broker refused to declare the
//! queue again), every waiting call is told at once instead of waiting for its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use nameko_amqp::{
    Connection, Declarations, Deliveries, Delivery, ExchangeSpec, QueueSpec, RecoveringConsumer,
    Recovery, ServedQueue, Topology,
};
use nameko_core::{BoxError, Container, Extension, SharedExtension};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::broker::{connection_config, connections, prefetch_count, rpc_exchange};
use crate::error::RpcError;
use crate::names::{REPLY_QUEUE_EXPIRES, reply_queue};

/// A reply as the listener hands it over: the decoded body, or why there is none.
pub(crate) type Reply = Result<Value, ReplyFailure>;

/// Why a call got no reply body from the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyFailure {
    /// A reply arrived but cannot be decoded; why.
    Malformed(String),
    /// The reply queue vanished while the call waited, so its reply is lost; the queue's name.
    QueueLost(String),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a single map or option operation, never held across an await; a
    // panic elsewhere cannot leave it half-done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One caller's reply queue and its waiting calls. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ReplyListener {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The uuid: the queue's binding key and every request's `reply_to`.
    reply_to: String,
    queue: String,
    /// Correlation id to the waiting call. `None` once the listener has stopped: nothing can
    /// wait any more.
    pending: Mutex<Option<HashMap<String, oneshot::Sender<Reply>>>>,
    /// The served reply queue while the listener consumes.
    served: Mutex<Option<ServedQueue>>,
    /// The consuming connection, when the listener runs inside a container.
    consuming: OnceLock<Connection>,
}

impl ReplyListener {
    /// A listener for `caller` (a service name, or the standalone caller) with a fresh uuid.
    pub(crate) fn new(caller: &str) -> Self {
        let reply_to = uuid::Uuid::new_v4().to_string();
        Self {
            inner: Arc::new(Inner {
                queue: reply_queue(caller, &reply_to),
                reply_to,
                pending: Mutex::new(Some(HashMap::new())),
                served: Mutex::new(None),
                consuming: OnceLock::new(),
            }),
        }
    }

    /// The listener of this container, created on first use.
    pub(crate) fn of(container: &Container) -> Arc<Self> {
        let caller = container.service_name().to_owned();
        container.shared_extension("nameko_rpc::ReplyListener", move || Self::new(&caller))
    }

    /// What requests carry as `reply_to`.
    pub(crate) fn reply_to(&self) -> &str {
        &self.inner.reply_to
    }

    /// The reply queue's name.
    pub(crate) fn queue(&self) -> &str {
        &self.inner.queue
    }

    /// The RPC exchange, the reply queue (durable, `x-expires` five minutes) and its binding
    /// by the uuid: declared at start and again after every recovery.
    fn declarations(&self, exchange: &str) -> Declarations {
        Declarations::queue(QueueSpec::durable(&self.inner.queue).with_expires(REPLY_QUEUE_EXPIRES))
            .exchange(ExchangeSpec::topic(exchange))
            .bind(exchange, &self.inner.reply_to)
    }

    /// Declares the reply queue and binds it, so replies are kept from now on even before
    /// consumption starts.
    pub(crate) async fn declare(
        &self,
        consuming: &Connection,
        exchange: &str,
    ) -> Result<(), RpcError> {
        let topology = Topology::new(consuming).await?;
        self.declarations(exchange).declare(&topology).await?;
        Ok(())
    }

    /// Starts consuming; the returned future is the consumer loop, to run as a task.
    pub(crate) async fn listen(
        &self,
        consuming: &Connection,
        exchange: &str,
        prefetch: u16,
    ) -> Result<impl Future<Output = Result<(), BoxError>> + Send + 'static, RpcError> {
        let inner = self.inner.clone();
        let consumer = RecoveringConsumer::start(consuming, self.declarations(exchange), prefetch)
            .await?
            .on_recover(move |recovery: &Recovery| {
                if !recovery.queue_existed {
                    inner.reply_queue_lost();
                }
            });
        let (served, deliveries) = ServedQueue::new(consumer);
        *lock(&self.inner.served) = Some(served);
        Ok(self.inner.clone().consume(deliveries))
    }

    /// Registers a call before its request is sent; `None` when the listener has stopped.
    pub(crate) fn register(&self, correlation_id: &str) -> Option<oneshot::Receiver<Reply>> {
        let (sender, receiver) = oneshot::channel();
        lock(&self.inner.pending)
            .as_mut()?
            .insert(correlation_id.to_owned(), sender);
        Some(receiver)
    }

    /// Forgets a call that will not wait for its reply any more (timed out, failed or dropped).
    pub(crate) fn forget(&self, correlation_id: &str) {
        if let Some(pending) = lock(&self.inner.pending).as_mut() {
            pending.remove(correlation_id);
        }
    }

    /// Stops consuming and closes the channel; waiting calls are told at once.
    pub(crate) async fn close(&self) {
        self.inner.release_waiters();
        let served = lock(&self.inner.served).take();
        if let Some(served) = served {
            // Replies are acknowledged in the consumer loop itself: nothing to drain.
            served.stop_consuming().await;
            served.close().await;
        }
    }
}

impl Inner {
    /// Drops every waiting call's sender (each then sees the listener gone) and refuses new ones.
    fn release_waiters(&self) {
        let released = lock(&self.pending).take();
        if let Some(released) = released
            && !released.is_empty()
        {
            tracing::debug!(queue = %self.queue, calls = released.len(), "reply listener stopped with calls waiting");
        }
    }

    /// Fails every call waiting now: the queue their replies were routed to is gone. The
    /// listener keeps serving; calls made from now on wait on the queue declared again.
    fn reply_queue_lost(&self) {
        let lost: Vec<_> = match lock(&self.pending).as_mut() {
            Some(pending) => pending.drain().collect(),
            None => return,
        };
        if lost.is_empty() {
            return;
        }
        tracing::error!(
            queue = %self.queue,
            calls = lost.len(),
            "the reply queue vanished with calls waiting; their replies are lost"
        );
        for (_, waiting) in lost {
            let _ = waiting.send(Err(ReplyFailure::QueueLost(self.queue.clone())));
        }
    }

    /// Hands replies to their calls until the consumer ends: when the listener is closed, or
    /// for good because the broker refused to declare the queue again during a recovery.
    async fn consume(self: Arc<Self>, deliveries: Deliveries) -> Result<(), BoxError> {
        let outcome = deliveries.serve(|delivery| self.deliver(delivery)).await;
        self.release_waiters();
        Ok(outcome?)
    }

    async fn deliver(&self, delivery: Delivery) {
        let waiting = delivery
            .correlation_id()
            .and_then(|id| lock(&self.pending).as_mut()?.remove(id));
        match waiting {
            Some(sender) => {
                let reply = nameko_amqp::json::decode(delivery.body())
                    .map_err(|e| ReplyFailure::Malformed(e.to_string()));
                // The caller may have stopped waiting a moment ago; then the reply is dropped.
                let _ = sender.send(reply);
            }
            None => tracing::debug!(
                queue = %self.queue,
                correlation_id = delivery.correlation_id(),
                "reply for no waiting call: dropped"
            ),
        }
        if let Err(error) = delivery.ack().await {
            tracing::debug!(%error, queue = %self.queue, "acknowledging a reply failed");
        }
    }
}

impl Extension for ReplyListener {
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let config = container.config();
        let (consuming, _) = connections(&connection_config(config)?).await?;
        self.declare(&consuming, &rpc_exchange(config)?).await?;
        let _ = self.inner.consuming.set(consuming);
        Ok(())
    }

    async fn start(&self, container: &Container) -> Result<(), BoxError> {
        let consuming = self
            .inner
            .consuming
            .get()
            .ok_or("the reply listener was started before it was set up")?;
        let config = container.config();
        let consume = self
            .listen(consuming, &rpc_exchange(config)?, prefetch_count(config)?)
            .await?;
        container.spawn_managed(format!("reply listener of `{}`", self.inner.queue), consume);
        Ok(())
    }

    async fn stop(&self) {
        self.close().await;
    }

    async fn kill(&self) {
        self.close().await;
    }
}

impl SharedExtension for ReplyListener {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lost_reply_queue_fails_the_calls_waiting_at_that_moment() {
        let listener = ReplyListener::new("caller");
        let first = listener.register("c-1").unwrap();
        let second = listener.register("c-2").unwrap();
        listener.inner.reply_queue_lost();
        for waiting in [first, second] {
            assert_eq!(
                waiting.await.unwrap(),
                Err(ReplyFailure::QueueLost(listener.queue().to_owned()))
            );
        }

        // The listener serves on: a call made afterwards waits for its own reply.
        let mut later = listener.register("c-3").unwrap();
        assert!(later.try_recv().is_err(), "still waiting");
        listener.close().await;
        assert!(later.await.is_err(), "closing releases the waiting calls");
        assert!(
            listener.register("c-4").is_none(),
            "a closed listener takes no calls"
        );
    }
}
