//! The RPC floor: an echo service written straight on lapin, with no framework at all, doing
//! what a Nameko RPC service must do on the wire and nothing more.
//!
//! It declares and consumes `rpc-<service>` exactly as Nameko does (durable, bound to the
//! `nameko-rpc` topic exchange as `<service>.*`), with the same prefetch as the services it is
//! compared with. Each request gets its own task, which reads `args[0]`, publishes
//! `{"result": args[0], "error": null}` to `nameko-rpc` with the request's `reply_to` as routing
//! key and its `correlation_id`, waits for the broker's confirm and only then acknowledges the
//! request: Nameko's at-least-once order, so the floor does not win by skipping a guarantee the
//! framework has to keep. Replies are pipelined on one confirm-mode channel; nothing else
//! (no method table, no argument binding, no worker lifecycle, no context) is done.

use anyhow::{Context, Result, anyhow};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::wire::{self, RPC_EXCHANGE};

/// Declares the floor's request queue and starts consuming it; the task serves until the
/// connection ends.
pub(crate) async fn start(
    connection: &Connection,
    service: &str,
    prefetch: u16,
) -> Result<JoinHandle<Result<()>>> {
    let consuming = connection.create_channel().await?;
    wire::declare_topic_exchange(&consuming, RPC_EXCHANGE).await?;
    let queue = wire::rpc_queue(service);
    wire::declare_bound_queue(
        &consuming,
        &queue,
        FieldTable::default(),
        RPC_EXCHANGE,
        &format!("{service}.*"),
    )
    .await?;
    consuming
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut requests = consuming
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot consume `{queue}`"))?;
    let replying = connection.create_channel().await?;
    replying
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    Ok(tokio::spawn(async move {
        while let Some(delivery) = requests.next().await {
            let delivery = delivery.context("the request consumer failed")?;
            let replying = replying.clone();
            tokio::spawn(async move {
                if let Err(error) = answer(&replying, delivery).await {
                    eprintln!("rpc floor: {error:#}");
                }
            });
        }
        Ok(())
    }))
}

/// Replies to one request, then acknowledges it once the reply is confirmed.
async fn answer(replying: &Channel, delivery: lapin::message::Delivery) -> Result<()> {
    let request: Value = serde_json::from_slice(&delivery.data).context("request is not JSON")?;
    let body = serde_json::to_vec(&json!({"result": request["args"][0], "error": null}))?;
    let reply_to = delivery
        .properties
        .reply_to()
        .clone()
        .ok_or_else(|| anyhow!("a request without reply_to"))?;
    let mut properties = wire::nameko_properties().with_headers(FieldTable::default());
    if let Some(correlation_id) = delivery.properties.correlation_id() {
        properties = properties.with_correlation_id(correlation_id.clone());
    }
    let confirmation = replying
        .basic_publish(
            RPC_EXCHANGE.into(),
            reply_to,
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?
        .await?;
    if !matches!(confirmation, Confirmation::Ack(_)) {
        return Err(anyhow!("the broker did not confirm a reply"));
    }
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}
