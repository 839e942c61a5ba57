//! Broker-backed tests of nameko-amqp: confirms, returns, prefetch, cancel, declarations and
//! the shared-connection registry, against a real RabbitMQ.
//!
//! They connect to `AMQP_URI` (default `amqp://guest:guest@127.0.0.1:5672/%2f`). Without a
//! broker each test says so and passes, unless `CI` is set, where a missing broker is a
//! failure. Every test names its queues and exchanges with a fresh uuid and deletes them, so
//! tests never see each other.

use std::time::Duration;

use nameko_amqp::{
    AMQPValue, Connection, ConnectionConfig, ConnectionRole, Consumer, Delivery, ExchangeSpec,
    FieldTable, PublishError, PublishOptions, Publisher, QueueSpec, Topology,
};
use tokio::time::timeout;

const DEFAULT_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// How long to wait for something that should happen.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

fn broker_config() -> ConnectionConfig {
    let uri = std::env::var("AMQP_URI").unwrap_or_else(|_| DEFAULT_URI.to_owned());
    ConnectionConfig::parse(&uri).expect("AMQP_URI is not a valid amqp uri")
}

/// A private connection to the test broker, or `None` (after saying why) when there is none
/// and `CI` is unset.
async fn broker() -> Option<Connection> {
    let config = broker_config();
    let reason = match timeout(PATIENCE, Connection::connect(&config)).await {
        Ok(Ok(connection)) => return Some(connection),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {PATIENCE:?}"),
    };
    if std::env::var_os("CI").is_some() {
        panic!(
            "CI is set but no RabbitMQ answers at {} ({reason}); start one or set AMQP_URI",
            config.uri()
        );
    }
    eprintln!(
        "skipping: no RabbitMQ at {} ({reason}); set AMQP_URI to run broker tests",
        config.uri()
    );
    None
}

fn unique(prefix: &str) -> String {
    format!(
        "nameko-amqp-test-{prefix}-{}",
        uuid::Uuid::new_v4().simple()
    )
}

async fn next_delivery(consumer: &mut Consumer) -> Delivery {
    timeout(PATIENCE, consumer.next())
        .await
        .expect("no delivery arrived in time")
        .expect("consumer ended")
        .expect("consumer failed")
}

/// How a temporary queue is declared: durable like Nameko's, plus an idle expiry so that a
/// test which fails before its cleanup leaves nothing behind for long.
fn scratch(name: &str) -> QueueSpec {
    QueueSpec::durable(name).with_expires(Duration::from_secs(60))
}

/// A temporary queue, for messages published through the default exchange or a binding.
async fn scratch_queue(topology: &Topology, prefix: &str) -> String {
    let name = unique(prefix);
    topology
        .declare_queue(&scratch(&name))
        .await
        .expect("declare scratch queue");
    name
}

#[tokio::test]
async fn publish_is_confirmed_and_carries_nameko_properties() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let queue = scratch_queue(&topology, "props").await;
    let publisher = Publisher::new(&connection).await.unwrap();

    let mut headers = FieldTable::default();
    headers.insert(
        "nameko.call_id_stack".into(),
        AMQPValue::FieldArray(vec![AMQPValue::LongString("svc.m.1".into())].into()),
    );
    let options = PublishOptions {
        headers,
        correlation_id: Some("corr-1".into()),
        reply_to: Some("reply-key".into()),
        ..PublishOptions::default()
    };
    publisher
        .publish("", &queue, br#"{"args": [], "kwargs": {}}"#, options)
        .await
        .unwrap();

    let mut consumer = Consumer::start(&connection, &scratch(&queue), 1)
        .await
        .unwrap();
    let delivery = next_delivery(&mut consumer).await;
    assert_eq!(delivery.body(), br#"{"args": [], "kwargs": {}}"#);
    assert_eq!(delivery.routing_key(), queue);
    assert_eq!(delivery.content_type(), Some("application/json"));
    assert_eq!(delivery.content_encoding(), Some("utf-8"));
    assert_eq!(delivery.correlation_id(), Some("corr-1"));
    assert_eq!(delivery.reply_to(), Some("reply-key"));
    assert_eq!(delivery.properties().delivery_mode(), &Some(2));
    assert_eq!(delivery.properties().priority(), &Some(0));
    assert_eq!(
        serde_json::Value::Object(delivery.context_data()),
        serde_json::json!({"call_id_stack": ["svc.m.1"]})
    );
    delivery.ack().await.unwrap();

    consumer.close().await.unwrap();
    topology.delete_queue(&queue).await.unwrap();
}

#[tokio::test]
async fn mandatory_publish_without_a_queue_is_unroutable() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let exchange = unique("rpc");
    topology.declare_rpc_exchange(&exchange).await.unwrap();
    let publisher = Publisher::new(&connection).await.unwrap();

    let mandatory = PublishOptions {
        mandatory: true,
        ..PublishOptions::default()
    };
    let error = publisher
        .publish(&exchange, "nobody.home", b"{}", mandatory.clone())
        .await
        .unwrap_err();
    match &error {
        PublishError::Unroutable {
            exchange: returned_exchange,
            routing_key,
        } => {
            assert_eq!(returned_exchange, &exchange);
            assert_eq!(routing_key, "nobody.home");
        }
        other => panic!("expected Unroutable, got {other:?}"),
    }

    // Without `mandatory` the broker drops it silently and confirms.
    publisher
        .publish(&exchange, "nobody.home", b"{}", PublishOptions::default())
        .await
        .unwrap();

    // Once a queue is bound the same mandatory publish goes through.
    let queue = scratch_queue(&topology, "bound").await;
    topology
        .bind_queue(&queue, &exchange, "nobody.*")
        .await
        .unwrap();
    publisher
        .publish(&exchange, "nobody.home", b"{}", mandatory)
        .await
        .unwrap();
    assert!(publisher.is_open());

    topology.delete_queue(&queue).await.unwrap();
    topology.delete_exchange(&exchange).await.unwrap();
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_fails_and_the_publisher_recovers() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let queue = scratch_queue(&topology, "recover").await;
    let publisher = Publisher::with_max_in_flight(&connection, 1).await.unwrap();

    let error = publisher
        .publish(&unique("missing"), "any", b"{}", PublishOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, PublishError::Failed { .. }), "{error:?}");
    assert_eq!(error.reply_code(), Some(404), "{error}");

    // The broker closed that channel; the next publish gets a fresh one.
    publisher
        .publish("", &queue, b"{}", PublishOptions::default())
        .await
        .unwrap();
    let state = topology.inspect_queue(&queue).await.unwrap().unwrap();
    assert_eq!(state.message_count, 1);
    topology.delete_queue(&queue).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_are_all_confirmed() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let queue = scratch_queue(&topology, "many").await;
    let publisher = Publisher::new(&connection).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..200u32 {
        let publisher = publisher.clone();
        let queue = queue.clone();
        tasks.spawn(async move {
            let body = format!("{{\"n\": {index}}}");
            publisher
                .publish("", &queue, body.as_bytes(), PublishOptions::default())
                .await
        });
    }
    let mut confirmed = 0;
    while let Some(outcome) = timeout(PATIENCE, tasks.join_next())
        .await
        .expect("publishes did not finish in time")
    {
        outcome.unwrap().unwrap();
        confirmed += 1;
    }
    assert_eq!(confirmed, 200);

    let state = topology.inspect_queue(&queue).await.unwrap().unwrap();
    assert_eq!(state.message_count, 200);
    topology.delete_queue(&queue).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_routed_and_unroutable_publishes_get_their_own_outcome() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let exchange = unique("mixed");
    topology.declare_rpc_exchange(&exchange).await.unwrap();
    let queue = scratch_queue(&topology, "mixed").await;
    topology
        .bind_queue(&queue, &exchange, "known.*")
        .await
        .unwrap();
    let publisher = Publisher::new(&connection).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..200u32 {
        let publisher = publisher.clone();
        let exchange = exchange.clone();
        tasks.spawn(async move {
            let routed = index % 2 == 0;
            let routing_key = if routed {
                "known.method"
            } else {
                "unknown.method"
            };
            let options = PublishOptions {
                mandatory: true,
                ..PublishOptions::default()
            };
            let outcome = publisher
                .publish(&exchange, routing_key, b"{}", options)
                .await;
            (routed, outcome)
        });
    }
    let mut routed_ok = 0;
    let mut unroutable = 0;
    while let Some(outcome) = timeout(PATIENCE, tasks.join_next())
        .await
        .expect("publishes did not finish in time")
    {
        match outcome.unwrap() {
            (true, Ok(())) => routed_ok += 1,
            (false, Err(PublishError::Unroutable { .. })) => unroutable += 1,
            (routed, other) => panic!("routed={routed} got {other:?}"),
        }
    }
    assert_eq!((routed_ok, unroutable), (100, 100));

    topology.delete_queue(&queue).await.unwrap();
    topology.delete_exchange(&exchange).await.unwrap();
}

#[tokio::test]
async fn consumer_prefetch_bounds_unacknowledged_deliveries() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let queue = scratch_queue(&topology, "prefetch").await;
    let publisher = Publisher::new(&connection).await.unwrap();
    for index in 0..5 {
        let body = index.to_string();
        publisher
            .publish("", &queue, body.as_bytes(), PublishOptions::default())
            .await
            .unwrap();
    }

    let mut consumer = Consumer::start(&connection, &scratch(&queue), 2)
        .await
        .unwrap();
    let first = next_delivery(&mut consumer).await;
    let second = next_delivery(&mut consumer).await;
    assert_eq!((first.body(), second.body()), (&b"0"[..], &b"1"[..]));
    assert!(
        timeout(QUIET, consumer.next()).await.is_err(),
        "a third delivery arrived while two were unacknowledged"
    );
    let state = topology.inspect_queue(&queue).await.unwrap().unwrap();
    assert_eq!(state.message_count, 3, "the broker should hold back three");

    first.ack().await.unwrap();
    let third = next_delivery(&mut consumer).await;
    assert_eq!(third.body(), b"2");

    second.ack().await.unwrap();
    third.ack().await.unwrap();
    consumer.close().await.unwrap();
    topology.delete_queue(&queue).await.unwrap();
}

#[tokio::test]
async fn cancel_stops_deliveries_but_in_flight_ones_can_be_acked() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let queue = scratch_queue(&topology, "cancel").await;
    let publisher = Publisher::new(&connection).await.unwrap();
    for body in [b"a", b"b", b"c"] {
        publisher
            .publish("", &queue, body, PublishOptions::default())
            .await
            .unwrap();
    }

    let mut consumer = Consumer::start(&connection, &scratch(&queue), 1)
        .await
        .unwrap();
    let in_flight = next_delivery(&mut consumer).await;
    assert_eq!(in_flight.body(), b"a");

    let handle = consumer.handle();
    handle.cancel().await.unwrap();
    let after_cancel = timeout(PATIENCE, consumer.next())
        .await
        .expect("the stream did not end after cancel");
    assert!(after_cancel.is_none(), "got a delivery after cancel");
    assert!(handle.is_open(), "cancel must keep the channel open");

    in_flight.ack().await.unwrap();
    let state = topology.inspect_queue(&queue).await.unwrap().unwrap();
    assert_eq!(state.consumer_count, 0);
    assert_eq!(
        state.message_count, 2,
        "the acked message is gone, the rest wait"
    );

    // Settling twice is an error, not a panic or a silent success.
    assert!(in_flight.ack().await.is_err());
    handle.close().await.unwrap();
    handle.close().await.unwrap();
    topology.delete_queue(&queue).await.unwrap();
}

#[tokio::test]
async fn closing_a_consumer_requeues_what_it_did_not_ack() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let queue = scratch_queue(&topology, "requeue").await;
    let publisher = Publisher::new(&connection).await.unwrap();
    publisher
        .publish("", &queue, b"x", PublishOptions::default())
        .await
        .unwrap();

    let mut consumer = Consumer::start(&connection, &scratch(&queue), 1)
        .await
        .unwrap();
    let unacked = next_delivery(&mut consumer).await;
    consumer.close().await.unwrap();
    assert!(
        unacked.ack().await.is_err(),
        "ack on a closed channel must fail"
    );

    let mut again = Consumer::start(&connection, &scratch(&queue), 1)
        .await
        .unwrap();
    let redelivered = next_delivery(&mut again).await;
    assert_eq!(redelivered.body(), b"x");
    assert!(redelivered.redelivered());
    redelivered.reject(false).await.unwrap();

    again.close().await.unwrap();
    topology.delete_queue(&queue).await.unwrap();
}

#[tokio::test]
async fn reply_queue_redeclares_with_the_same_32_bit_expiry() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let name = unique("rpc.reply");
    let spec = QueueSpec::durable(&name).with_expires(Duration::from_millis(300_000));

    topology.declare_queue(&spec).await.unwrap();
    topology.declare_queue(&spec).await.unwrap();

    // The broker compares the argument: another expiry is refused.
    let other_expiry = QueueSpec::durable(&name).with_expires(Duration::from_millis(200_000));
    let error = topology.declare_queue(&other_expiry).await.unwrap_err();
    assert_eq!(error.reply_code(), Some(406), "{error}");

    // The refused declaration closed the channel; the topology reopens one.
    topology.declare_queue(&spec).await.unwrap();
    topology.delete_queue(&name).await.unwrap();
}

#[tokio::test]
async fn declared_flags_are_what_the_broker_holds() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();

    // The RPC exchange is a durable topic exchange: redeclaring it so passes, while a direct
    // or transient twin is refused.
    let rpc = unique("rpc-exchange");
    topology.declare_rpc_exchange(&rpc).await.unwrap();
    topology
        .declare_exchange(&ExchangeSpec::topic(&rpc))
        .await
        .unwrap();
    for mismatch in [
        ExchangeSpec {
            kind: nameko_amqp::lapin::ExchangeKind::Direct,
            ..ExchangeSpec::topic(&rpc)
        },
        ExchangeSpec {
            durable: false,
            ..ExchangeSpec::topic(&rpc)
        },
        ExchangeSpec {
            auto_delete: true,
            ..ExchangeSpec::topic(&rpc)
        },
    ] {
        let error = topology.declare_exchange(&mismatch).await.unwrap_err();
        assert_eq!(error.reply_code(), Some(406), "{mismatch:?}: {error}");
    }
    topology.delete_exchange(&rpc).await.unwrap();

    // Event exchanges are `<service>.events`, auto-delete as asked.
    let service = unique("svc");
    let events = topology
        .declare_event_exchange(&service, true)
        .await
        .unwrap();
    assert_eq!(events, format!("{service}.events"));
    let error = topology
        .declare_exchange(&ExchangeSpec::topic(&events))
        .await
        .unwrap_err();
    assert_eq!(
        error.reply_code(),
        Some(406),
        "auto_delete should have been set: {error}"
    );
    topology
        .declare_event_exchange(&service, true)
        .await
        .unwrap();
    topology.delete_exchange(&events).await.unwrap();

    // A service queue is durable, not exclusive, not auto-delete, without arguments.
    let queue = unique("rpc-svc");
    let spec = QueueSpec::durable(&queue);
    topology.declare_queue(&spec).await.unwrap();
    for mismatch in [
        QueueSpec {
            durable: false,
            ..spec.clone()
        },
        spec.clone().auto_delete(true),
        spec.clone().with_expires(Duration::from_secs(1)),
    ] {
        let error = topology.declare_queue(&mismatch).await.unwrap_err();
        assert_eq!(error.reply_code(), Some(406), "{mismatch:?}: {error}");
    }
    let state = topology.inspect_queue(&queue).await.unwrap().unwrap();
    assert_eq!((state.message_count, state.consumer_count), (0, 0));
    topology.delete_queue(&queue).await.unwrap();
    assert_eq!(topology.inspect_queue(&queue).await.unwrap(), None);
}

#[tokio::test]
async fn shared_connections_are_one_per_role() {
    if broker().await.is_none() {
        return;
    }
    // A name of its own keeps this test's registry entries apart from other tests'.
    let config = broker_config().with_name(unique("registry"));

    let consumer_a = Connection::shared(&config, ConnectionRole::Consumer)
        .await
        .unwrap();
    let consumer_b = Connection::shared(&config, ConnectionRole::Consumer)
        .await
        .unwrap();
    let publisher = Connection::shared(&config, ConnectionRole::Publisher)
        .await
        .unwrap();
    assert!(consumer_a.same_connection(&consumer_b));
    assert!(!consumer_a.same_connection(&publisher));
    assert_eq!(consumer_a.role(), Some(ConnectionRole::Consumer));
    assert_eq!(consumer_a.negotiated_heartbeat(), 60);

    // Concurrent first requests still open a single connection.
    let fresh = config.clone().with_heartbeat(30);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let fresh = fresh.clone();
        tasks.spawn(async move { Connection::shared(&fresh, ConnectionRole::Consumer).await });
    }
    let mut opened = Vec::new();
    while let Some(connection) = tasks.join_next().await {
        opened.push(connection.unwrap().unwrap());
    }
    assert!(opened.iter().all(|c| c.same_connection(&opened[0])));
    assert!(!opened[0].same_connection(&consumer_a));
    assert_eq!(opened[0].negotiated_heartbeat(), 30);

    // A closed connection is replaced on the next request.
    consumer_a.close().await.unwrap();
    assert!(!consumer_b.is_open());
    let replacement = Connection::shared(&config, ConnectionRole::Consumer)
        .await
        .unwrap();
    assert!(replacement.is_open());
    assert!(!replacement.same_connection(&consumer_a));
    assert!(
        publisher.is_open(),
        "the publishing connection is unaffected"
    );

    // Once nobody holds it, the next request opens a new one.
    drop((consumer_a, consumer_b, replacement, opened));
    let reopened = Connection::shared(&config, ConnectionRole::Consumer)
        .await
        .unwrap();
    assert!(reopened.is_open());
    reopened.close().await.unwrap();
    publisher.close().await.unwrap();
}

/// Acknowledgements are folded into `basic.ack multiple` where that is safe: whatever the order
/// deliveries are settled in, a delivery still held is never acknowledged with the others, and
/// a rejection in the middle of acknowledgements keeps its message.
#[tokio::test]
async fn folded_acknowledgements_never_take_an_unsettled_or_rejected_delivery_along() {
    let Some(connection) = broker().await else {
        return;
    };
    let topology = Topology::new(&connection).await.unwrap();
    let queue = scratch_queue(&topology, "fold").await;
    let publisher = Publisher::new(&connection).await.unwrap();
    for index in 0..40 {
        publisher
            .publish(
                "",
                &queue,
                index.to_string().as_bytes(),
                PublishOptions::default(),
            )
            .await
            .unwrap();
    }

    let mut consumer = Consumer::start(&connection, &scratch(&queue), 40)
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for _ in 0..40 {
        deliveries.push(next_delivery(&mut consumer).await);
    }
    // Held: number 5. Rejected back to the queue: number 20. The rest are acknowledged all at
    // once and out of order, so that many wait for the sender together and get folded.
    let held = deliveries.remove(5);
    let rejected = deliveries.remove(19);
    assert_eq!((held.body(), rejected.body()), (&b"5"[..], &b"20"[..]));
    let mut settling = tokio::task::JoinSet::new();
    for delivery in deliveries.into_iter().rev() {
        settling.spawn(async move { delivery.ack().await });
    }
    settling.spawn(async move { rejected.reject(true).await });
    while let Some(settled) = settling.join_next().await {
        settled.unwrap().unwrap();
    }
    // Closing the channel gives back what was not acknowledged: the held one, and the
    // rejected one, which went back at once.
    consumer.close().await.unwrap();
    drop(held);

    let mut again = Consumer::start(&connection, &scratch(&queue), 10)
        .await
        .unwrap();
    let mut back = vec![
        next_delivery(&mut again).await,
        next_delivery(&mut again).await,
    ];
    back.sort_by_key(|delivery| delivery.body().len());
    assert_eq!((back[0].body(), back[1].body()), (&b"5"[..], &b"20"[..]));
    assert!(
        timeout(QUIET, again.next()).await.is_err(),
        "an acknowledged message came back"
    );
    for delivery in &back {
        delivery.ack().await.unwrap();
    }
    again.close().await.unwrap();
    let state = topology.inspect_queue(&queue).await.unwrap().unwrap();
    assert_eq!(state.message_count, 0);
    topology.delete_queue(&queue).await.unwrap();
}

/// A served scratch queue holding `bodies`, its control handle and its stream.
async fn served_queue(
    connection: &Connection,
    prefix: &str,
    bodies: &[&[u8]],
) -> (String, nameko_amqp::ServedQueue, nameko_amqp::Deliveries) {
    let topology = Topology::new(connection).await.expect("topology");
    let queue = scratch_queue(&topology, prefix).await;
    let publisher = Publisher::new(connection).await.expect("publisher");
    for body in bodies {
        publisher
            .publish("", &queue, body, PublishOptions::default())
            .await
            .expect("publish");
    }
    let consumer = nameko_amqp::RecoveringConsumer::start(
        connection,
        nameko_amqp::Declarations::queue(scratch(&queue)),
        10,
    )
    .await
    .expect("consumer");
    let (served, deliveries) = nameko_amqp::ServedQueue::new(consumer);
    (queue, served, deliveries)
}

/// The bodies left on `queue`, taken off it with a plain consumer.
async fn left_on(connection: &Connection, queue: &str, expected: usize) -> Vec<Vec<u8>> {
    let mut consumer = Consumer::start(connection, &scratch(queue), 10)
        .await
        .expect("consumer");
    let mut bodies = Vec::new();
    for _ in 0..expected {
        let delivery = next_delivery(&mut consumer).await;
        bodies.push(delivery.body().to_vec());
        delivery.ack().await.expect("ack");
    }
    assert!(
        timeout(QUIET, consumer.next()).await.is_err(),
        "nothing more is left"
    );
    consumer.close().await.expect("close");
    bodies
}

#[tokio::test]
async fn a_served_worker_that_does_not_finish_has_its_delivery_requeued() {
    let Some(connection) = broker().await else {
        return;
    };
    let (queue, served, deliveries) =
        served_queue(&connection, "served-requeue", &[b"done", b"aborted"]).await;
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let serving = {
        let served = served.clone();
        tokio::spawn(deliveries.serve(move |delivery| {
            let delivery = std::sync::Arc::new(delivery);
            let aborted = delivery.body() == b"aborted";
            let settled = delivery.clone();
            served.spawn_worker(delivery, async move {
                if aborted {
                    return Err("the worker was not started");
                }
                settled.ack().await.map_err(|_| "ack failed")
            });
            let _ = seen_tx.send(());
            std::future::ready(())
        }))
    };
    for _ in 0..2 {
        timeout(PATIENCE, seen.recv()).await.unwrap().unwrap();
    }
    served.stop_consuming().await;
    served.drain().await;
    served.close().await;
    let ended = timeout(PATIENCE, serving).await.unwrap().unwrap();
    assert!(
        ended.is_ok(),
        "a stop we asked for ends the loop cleanly: {ended:?}"
    );
    assert_eq!(left_on(&connection, &queue, 1).await, [b"aborted".to_vec()]);
}

#[tokio::test]
async fn a_served_queue_drains_its_workers_before_it_closes() {
    let Some(connection) = broker().await else {
        return;
    };
    let (queue, served, deliveries) = served_queue(&connection, "served-drain", &[b"slow"]).await;
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let serving = {
        let served = served.clone();
        tokio::spawn(deliveries.serve(move |delivery| {
            let delivery = std::sync::Arc::new(delivery);
            let settled = delivery.clone();
            served.spawn_worker(delivery, async move {
                // Still at work when the stop begins.
                tokio::time::sleep(QUIET).await;
                settled.ack().await.map_err(|_| "ack failed")
            });
            let _ = seen_tx.send(());
            std::future::ready(())
        }))
    };
    timeout(PATIENCE, seen.recv()).await.unwrap().unwrap();
    served.stop_consuming().await;
    served.drain().await;
    served.close().await;
    assert!(timeout(PATIENCE, serving).await.unwrap().unwrap().is_ok());
    assert!(
        left_on(&connection, &queue, 0).await.is_empty(),
        "the worker acknowledged before the channel closed"
    );
}

#[tokio::test]
async fn a_served_queue_killed_mid_work_gives_its_deliveries_back() {
    let Some(connection) = broker().await else {
        return;
    };
    let (queue, served, deliveries) = served_queue(&connection, "served-kill", &[b"held"]).await;
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let serving = {
        let served = served.clone();
        tokio::spawn(deliveries.serve(move |delivery| {
            let delivery = std::sync::Arc::new(delivery);
            served.spawn_worker(delivery, std::future::pending::<Result<(), &str>>());
            let _ = seen_tx.send(());
            std::future::ready(())
        }))
    };
    timeout(PATIENCE, seen.recv()).await.unwrap().unwrap();
    served.kill().await;
    assert!(timeout(PATIENCE, serving).await.unwrap().unwrap().is_ok());
    assert_eq!(left_on(&connection, &queue, 1).await, [b"held".to_vec()]);
}
