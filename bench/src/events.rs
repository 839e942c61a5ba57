//! Events: the neutral publisher that drives every event handler, and the framework-free
//! handler that is the floor.
//!
//! The publisher dispatches as a standalone Nameko event dispatcher does (to `<source>.events`
//! with the event type as routing key, Nameko's properties, the raw JSON payload, publisher
//! confirms), but keeps a window of confirms outstanding instead of waiting for each: the
//! benchmark measures how fast handlers get through events, so the publisher must not be what
//! limits them, and it is the same publisher for every target.
//!
//! The floor handler declares its queue exactly as a Nameko service-pool handler with reliable
//! delivery does, consumes it with the same prefetch as the services, and for each event parses
//! the payload, counts it and acknowledges it, one event after the other: a naive loop with no
//! batching of acknowledgements, which a framework is free to beat.

use std::collections::VecDeque;
use std::io::Write;

use anyhow::{Context, Result, bail};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, PublisherConfirm};
use nameko_bench::{EVENT_TYPE, UNTIL_KEY, completes_batch, done_line};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::wire;

/// Confirms the publisher lets be outstanding before it waits for the oldest.
const CONFIRM_WINDOW: usize = 256;

/// A standalone event dispatcher on bare lapin.
pub(crate) struct EventPublisher {
    connection: Connection,
    channel: Channel,
}

impl EventPublisher {
    pub(crate) async fn connect(uri: &str) -> Result<Self> {
        let connection = wire::connect(uri, "nameko-bench event publisher").await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            connection,
            channel,
        })
    }

    /// Dispatches `count` events from `source`, each saying the batch ends when a handler's
    /// count reaches `until`, and returns once the broker has confirmed them all.
    pub(crate) async fn publish(&self, source: &str, count: u64, until: u64) -> Result<()> {
        let exchange = wire::event_exchange(source);
        let body = serde_json::to_vec(&json!({ UNTIL_KEY: until }))?;
        let mut outstanding = VecDeque::with_capacity(CONFIRM_WINDOW);
        for _ in 0..count {
            if outstanding.len() >= CONFIRM_WINDOW
                && let Some(oldest) = outstanding.pop_front()
            {
                confirmed(oldest).await?;
            }
            let confirm = self
                .channel
                .basic_publish(
                    exchange.as_str().into(),
                    EVENT_TYPE.into(),
                    BasicPublishOptions::default(),
                    &body,
                    wire::nameko_properties(),
                )
                .await
                .with_context(|| format!("cannot publish to `{exchange}`"))?;
            outstanding.push_back(confirm);
        }
        for confirm in outstanding {
            confirmed(confirm).await?;
        }
        Ok(())
    }

    pub(crate) async fn close(&self) -> Result<()> {
        self.connection.close(200, "bye".into()).await?;
        Ok(())
    }
}

async fn confirmed(confirm: PublisherConfirm) -> Result<()> {
    match confirm.await? {
        Confirmation::Ack(_) => Ok(()),
        Confirmation::Nack(_) => bail!("the broker refused an event"),
        Confirmation::NotRequested => bail!("the event channel is not confirming"),
    }
}

/// Declares the floor handler's queue and starts consuming it; the task handles events until
/// the connection ends.
pub(crate) async fn start_floor(
    connection: &Connection,
    source: &str,
    service: &str,
    prefetch: u16,
) -> Result<JoinHandle<Result<()>>> {
    let channel = connection.create_channel().await?;
    let exchange = wire::event_exchange(source);
    wire::declare_topic_exchange(&channel, &exchange).await?;
    let queue = wire::event_queue(source, service);
    wire::declare_bound_queue(
        &channel,
        &queue,
        FieldTable::default(),
        &exchange,
        EVENT_TYPE,
    )
    .await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut events = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot consume `{queue}`"))?;
    Ok(tokio::spawn(async move {
        let mut handled = 0_u64;
        while let Some(delivery) = events.next().await {
            let delivery = delivery.context("the event consumer failed")?;
            let payload: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
            handled += 1;
            if completes_batch(handled, &payload) {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{}", done_line(handled))?;
                stdout.flush()?;
            }
            delivery.acker.ack(BasicAckOptions::default()).await?;
        }
        Ok(())
    }))
}
