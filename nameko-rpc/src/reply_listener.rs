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
//! When the listener stops, or its consumer ends because the connection failed, every waiting
//! call is told at once instead of waiting for its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use nameko_amqp::{Connection, Consumer, ConsumerHandle, Delivery, QueueSpec, Topology};
use nameko_core::{BoxError, Container, Extension, SharedExtension};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::broker::{connection_config, connections};
use crate::error::RpcError;
use crate::names::{REPLY_QUEUE_EXPIRES, reply_queue};

/// A reply as the listener hands it over: the decoded body, or why it could not be decoded.
pub(crate) type Reply = Result<Value, String>;

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
    handle: Mutex<Option<ConsumerHandle>>,
    /// Cancelled when the listener is being stopped, so the end of its consumer is expected.
    closing: CancellationToken,
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
                handle: Mutex::new(None),
                closing: CancellationToken::new(),
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

    fn spec(&self) -> QueueSpec {
        QueueSpec::durable(&self.inner.queue).with_expires(REPLY_QUEUE_EXPIRES)
    }

    /// Declares the reply queue and binds it, so replies are kept from now on even before
    /// consumption starts.
    pub(crate) async fn declare(
        &self,
        consuming: &Connection,
        exchange: &str,
    ) -> Result<(), RpcError> {
        let topology = Topology::new(consuming).await?;
        topology.declare_rpc_exchange(exchange).await?;
        topology.declare_queue(&self.spec()).await?;
        topology
            .bind_queue(&self.inner.queue, exchange, &self.inner.reply_to)
            .await?;
        Ok(())
    }

    /// Starts consuming; the returned future is the consumer loop, to run as a task.
    pub(crate) async fn listen(
        &self,
        consuming: &Connection,
        prefetch: u16,
    ) -> Result<impl Future<Output = Result<(), BoxError>> + Send + 'static, RpcError> {
        let consumer = Consumer::start(consuming, &self.spec(), prefetch).await?;
        *lock(&self.inner.handle) = Some(consumer.handle());
        Ok(self.inner.clone().consume(consumer))
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
        self.inner.closing.cancel();
        self.inner.release_waiters();
        let handle = lock(&self.inner.handle).take();
        if let Some(handle) = handle {
            if let Err(error) = handle.cancel().await {
                tracing::debug!(%error, queue = %self.inner.queue, "cancelling the reply consumer failed");
            }
            if let Err(error) = handle.close().await {
                tracing::debug!(%error, queue = %self.inner.queue, "closing the reply consumer failed");
            }
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

    async fn consume(self: Arc<Self>, mut consumer: Consumer) -> Result<(), BoxError> {
        let outcome = loop {
            match consumer.next().await {
                Some(Ok(delivery)) => self.deliver(delivery).await,
                Some(Err(_)) | None if self.closing.is_cancelled() => break Ok(()),
                Some(Err(error)) => break Err(error.into()),
                None => {
                    break Err(format!(
                        "the broker cancelled consumption of reply queue `{}`",
                        self.queue
                    )
                    .into());
                }
            }
        };
        self.release_waiters();
        outcome
    }

    async fn deliver(&self, delivery: Delivery) {
        let waiting = delivery
            .correlation_id()
            .and_then(|id| lock(&self.pending).as_mut()?.remove(id));
        match waiting {
            Some(sender) => {
                let reply = nameko_amqp::json::decode(delivery.body()).map_err(|e| e.to_string());
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
        self.declare(&consuming, &config.rpc_exchange()?).await?;
        let _ = self.inner.consuming.set(consuming);
        Ok(())
    }

    async fn start(&self, container: &Container) -> Result<(), BoxError> {
        let consuming = self
            .inner
            .consuming
            .get()
            .ok_or("the reply listener was started before it was set up")?;
        let prefetch = container.config().prefetch_count()?;
        let consume = self.listen(consuming, prefetch).await?;
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
