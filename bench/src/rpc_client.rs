//! The neutral RPC client: one lapin client, shaped like a Nameko standalone client, that drives
//! every RPC target (the floor, the nameko-rs service, the Python Nameko service) the same way.
//!
//! It behaves on the wire as a Python `ClusterRpcProxy` does, so no target gets an easier
//! request than it would in production: requests are published `mandatory` on a channel in
//! confirm mode with Nameko's properties and a `nameko.call_id_stack` header, and replies come
//! back through an expiring `rpc.reply-<caller>-<uuid>` queue bound to `nameko-rpc` with the
//! uuid, consumed with manual acknowledgement. Unlike Python's client it waits for the confirm
//! and for the reply at the same time, as any client should (they are independent), so the
//! round trip it measures is the service's and the broker's, not a serialised confirm wait.
//!
//! The same request sent to the client's own reply queue measures the broker alone
//! ([`RpcClient::loopback`]): one trip through it and back, with no service.
//!
//! All calls of one client share one publishing channel. The neutral client never expects a
//! returned message (every target's queue exists before it is called), so lapin's habit of
//! attaching a return to whichever confirm comes next cannot mislead it; any return at all
//! fails the call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{Channel, Confirmation, Connection, Consumer};
use nameko_bench::ECHO_METHOD;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::StreamExt;
use uuid::Uuid;

use crate::latency::{Latencies, Throughput, Window};
use crate::wire::{self, RPC_EXCHANGE};

/// The caller name in the reply queue's name; Nameko 3's standalone client calls itself this.
const CALLER: &str = "standalone_rpc_client";

/// How long a call may take before the measurement is declared broken.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Replies a client may hold unacknowledged; more than ever in flight, so it never throttles.
const REPLY_PREFETCH: u16 = 1024;

/// What every call sends and expects back: a short string, the typical small RPC argument.
const ECHOED: &str = "nameko-bench";

/// Waiters for replies, by correlation id. A std mutex: it is held only to insert or remove,
/// never across an await.
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// A Nameko-shaped standalone RPC client on bare lapin.
pub(crate) struct RpcClient {
    connection: Connection,
    publisher: Channel,
    /// The reply binding key, sent as `reply_to`.
    reply_to: String,
    reply_queue: String,
    /// The first entry of every call's `call_id_stack`, as Nameko 3's standalone client sends.
    client_id: String,
    pending: Pending,
    replies: JoinHandle<()>,
}

impl RpcClient {
    pub(crate) async fn connect(uri: &str) -> Result<Arc<Self>> {
        let connection = wire::connect(uri, "nameko-bench rpc client").await?;
        let consuming = connection.create_channel().await?;
        wire::declare_topic_exchange(&consuming, RPC_EXCHANGE).await?;
        let reply_to = Uuid::new_v4().to_string();
        let reply_queue = format!("rpc.reply-{CALLER}-{reply_to}");
        let mut arguments = FieldTable::default();
        // Nameko's reply queues expire five minutes after their last consumer left.
        arguments.insert("x-expires".into(), AMQPValue::LongInt(300_000));
        wire::declare_bound_queue(&consuming, &reply_queue, arguments, RPC_EXCHANGE, &reply_to)
            .await?;
        consuming
            .basic_qos(REPLY_PREFETCH, BasicQosOptions::default())
            .await?;
        let consumer = consuming
            .basic_consume(
                reply_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("cannot consume the reply queue `{reply_queue}`"))?;
        let pending = Pending::default();
        let replies = tokio::spawn(route_replies(consumer, Arc::clone(&pending)));

        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Arc::new(Self {
            connection,
            publisher,
            reply_to,
            reply_queue,
            client_id: format!("{CALLER}.{}", Uuid::new_v4()),
            pending,
            replies,
        }))
    }

    /// One call of `<service>.echo`, checked: the broker must confirm it and the reply must
    /// carry the value sent and no error.
    pub(crate) async fn call(&self, service: &str) -> Result<()> {
        let reply = self
            .round_trip(&format!("{service}.{ECHO_METHOD}"), service)
            .await?;
        check_reply(&reply)
    }

    /// One request sent, exactly as [`Self::call`] sends it, to this client's own reply queue
    /// instead of a service: the message crosses the broker once and comes straight back, and
    /// the broker confirms it. No call through a service can be faster: it sends the same
    /// request and waits for the same confirm, and its request must still reach the service and
    /// the reply come back.
    pub(crate) async fn loopback(&self) -> Result<()> {
        let request = self.round_trip(&self.reply_to, "the broker alone").await?;
        if request != request_body()? {
            bail!("the request came back changed from the broker");
        }
        Ok(())
    }

    /// Publishes a request with `routing_key` and waits for the broker's confirm and for the
    /// message that comes back with its correlation id, at the same time.
    async fn round_trip(&self, routing_key: &str, target: &str) -> Result<Vec<u8>> {
        let correlation_id = Uuid::new_v4().to_string();
        let body = request_body()?;
        let mut headers = FieldTable::default();
        headers.insert(
            "nameko.call_id_stack".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString(
                format!("{}.{correlation_id}", self.client_id).into(),
            )])),
        );
        let properties = wire::nameko_properties()
            .with_correlation_id(correlation_id.as_str().into())
            .with_reply_to(self.reply_to.as_str().into())
            .with_headers(headers);

        let (sender, reply) = oneshot::channel();
        self.pending().insert(correlation_id.clone(), sender);
        let outcome = async {
            let confirm = self
                .publisher
                .basic_publish(
                    RPC_EXCHANGE.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    &body,
                    properties,
                )
                .await?;
            let confirmed = async {
                match confirm.await? {
                    Confirmation::Ack(None) => Ok(()),
                    Confirmation::Ack(Some(returned)) => Err(anyhow!(
                        "the broker returned the request to `{target}` ({} {})",
                        returned.reply_code,
                        returned.reply_text
                    )),
                    Confirmation::Nack(_) => Err(anyhow!("the broker refused the request")),
                    Confirmation::NotRequested => Err(anyhow!("the channel is not confirming")),
                }
            };
            let replied = async {
                tokio::time::timeout(CALL_TIMEOUT, reply)
                    .await
                    .map_err(|_| anyhow!("no reply from `{target}` within {CALL_TIMEOUT:?}"))?
                    .map_err(|_| anyhow!("the reply consumer stopped"))
            };
            let ((), reply) = tokio::try_join!(confirmed, replied)?;
            Ok(reply)
        }
        .await;
        if outcome.is_err() {
            self.pending().remove(&correlation_id);
        }
        outcome
    }

    /// `calls` calls one after the other, to warm up the target and the connections.
    pub(crate) async fn warm_up(&self, service: &str, calls: usize) -> Result<()> {
        for _ in 0..calls {
            self.call(service).await?;
        }
        Ok(())
    }

    /// Round trips one at a time, as many as fit in `duration`.
    pub(crate) async fn sequential(&self, service: &str, duration: Duration) -> Result<Latencies> {
        let mut latencies = Latencies::default();
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let started = Instant::now();
            self.call(service).await?;
            latencies.record(started.elapsed());
        }
        Ok(latencies)
    }

    /// [`Self::loopback`]s one at a time, as many as fit in `duration`.
    pub(crate) async fn sequential_loopback(&self, duration: Duration) -> Result<Latencies> {
        let mut latencies = Latencies::default();
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let started = Instant::now();
            self.loopback().await?;
            latencies.record(started.elapsed());
        }
        Ok(latencies)
    }

    /// `concurrency` callers, each calling again as soon as its reply is in, until the end of
    /// `window`; calls completed within the window are counted.
    pub(crate) async fn in_flight(
        self: &Arc<Self>,
        service: &str,
        concurrency: usize,
        window: Window,
    ) -> Result<Throughput> {
        let mut callers = JoinSet::new();
        for _ in 0..concurrency {
            let client = Arc::clone(self);
            let service = service.to_owned();
            callers.spawn(async move {
                let mut completed = 0_u64;
                let mut latencies = Latencies::default();
                loop {
                    let started = Instant::now();
                    if started >= window.until {
                        break;
                    }
                    client.call(&service).await?;
                    let finished = Instant::now();
                    if window.contains(finished) {
                        completed += 1;
                        latencies.record(finished - started);
                    }
                }
                anyhow::Ok((completed, latencies))
            });
        }
        let mut total = Throughput::empty(window.duration());
        while let Some(joined) = callers.join_next().await {
            let (completed, latencies) = joined.context("a caller task failed")??;
            total.add(completed, latencies);
        }
        Ok(total)
    }

    /// Deletes the reply queue (rather than leaving it to expire) and closes the connection.
    pub(crate) async fn close(&self) -> Result<()> {
        self.replies.abort();
        let channel = self.connection.create_channel().await?;
        channel
            .queue_delete(
                self.reply_queue.as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await?;
        self.connection.close(200, "bye".into()).await?;
        Ok(())
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<Vec<u8>>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hands each reply to the call waiting for it, then acknowledges it, as Nameko's reply
/// listener does (a reply nobody waits for is acknowledged and dropped).
async fn route_replies(mut consumer: Consumer, pending: Pending) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let waiter = delivery
            .properties
            .correlation_id()
            .as_ref()
            .and_then(|id| {
                pending
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .remove(id.as_str())
            });
        let lapin::message::Delivery { data, acker, .. } = delivery;
        if let Some(waiter) = waiter {
            let _ = waiter.send(data);
        }
        if acker.ack(BasicAckOptions::default()).await.is_err() {
            break;
        }
    }
}

/// What every request carries: Nameko's `(args, kwargs)` with the echoed value.
fn request_body() -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(
        &json!({"args": [ECHOED], "kwargs": {}}),
    )?)
}

/// A reply must be `{"result": <the value sent>, "error": null}`.
fn check_reply(body: &[u8]) -> Result<()> {
    let reply: Value = serde_json::from_slice(body).context("the reply is not JSON")?;
    if !reply["error"].is_null() {
        bail!("the service answered with an error: {}", reply["error"]);
    }
    if reply["result"] != ECHOED {
        bail!(
            "expected the reply to echo {ECHOED:?}, found {}",
            reply["result"]
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_echo_without_error_is_a_good_reply() {
        check_reply(br#"{"result": "nameko-bench", "error": null}"#).unwrap();
        assert!(check_reply(br#"{"result": "other", "error": null}"#).is_err());
        assert!(check_reply(br#"{"result": null, "error": {"exc_type": "X"}}"#).is_err());
        assert!(check_reply(b"not json").is_err());
    }
}
