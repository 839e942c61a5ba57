//! Delivery: reliable and unreliable handlers across restarts, bounded requeueing on error,
//! failed events without requeueing, and a graceful stop that finishes running handlers and
//! requeues the events not started.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nameko_amqp::{AMQPValue, Consumer, QueueSpec};
use nameko_core::testing::{entrypoint_hook, entrypoint_waiter};
use nameko_core::{ContainerState, ContextData, EntrypointInfo, RemoteError, Service, Worker};
use nameko_events::{
    HandlerType, StandaloneDispatcher, dead_event_queue, event_exchange, event_handler, names,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::events::{
    EXPECT, OpenOnStop, Reply, by_who, dispatch_ids, emitter, failing, ids, queue_state, received,
    recorder, run, stragglers, take,
};
use crate::support::{broker, broker_uri, cleanup, config, unique};

#[tokio::test]
async fn reliable_delivery_keeps_events_while_the_handler_is_down() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event, service) = (unique("src"), "thing", unique("reliable"));
    let (tx, mut inbox) = mpsc::unbounded_channel();
    let make = |who: &str| {
        Service::new(service.as_str()).entrypoint(event_handler(
            &source,
            event,
            "handle",
            recorder(who, &tx),
        ))
    };

    let first = run(make("first"), &config).await;
    first.stop().await;
    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 3).await;
    let queue = names::service_pool_queue(&source, event, &service, "handle");
    assert_eq!(
        queue_state(&uri, &queue).await.map(|s| s.message_count),
        Some(3)
    );

    let second = run(make("second"), &config).await;
    let reports = take(&mut inbox, 3).await;
    assert_eq!(
        by_who(&reports),
        BTreeMap::from([("second".to_owned(), vec![0, 1, 2])])
    );

    second.stop().await;
    cleanup(&uri, &[queue], &[event_exchange(&source)]).await;
}

#[tokio::test]
async fn unreliable_delivery_loses_events_while_the_handler_is_down() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event, service) = (unique("src"), "thing", unique("unreliable"));
    let (tx, mut inbox) = mpsc::unbounded_channel();
    let make = |who: &str| {
        Service::new(service.as_str()).entrypoint(
            event_handler(&source, event, "handle", recorder(who, &tx)).reliable_delivery(false),
        )
    };
    let queue = names::service_pool_queue(&source, event, &service, "handle");

    let first = run(make("first"), &config).await;
    assert!(queue_state(&uri, &queue).await.is_some());
    first.stop().await;
    assert_eq!(
        queue_state(&uri, &queue).await,
        None,
        "the auto-delete queue went with its consumer"
    );

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatcher
        .dispatch(&source, event, &json!({"id": 1}))
        .await
        .unwrap();
    let second = run(make("second"), &config).await;
    dispatcher
        .dispatch(&source, event, &json!({"id": 2}))
        .await
        .unwrap();
    let mut reports = take(&mut inbox, 1).await;
    reports.extend(stragglers(&mut inbox).await);
    assert_eq!(
        by_who(&reports),
        BTreeMap::from([("second".to_owned(), vec![2])]),
        "event 1 was lost"
    );

    second.stop().await;
    cleanup(&uri, &[], &[event_exchange(&source)]).await;
}

#[tokio::test]
async fn requeue_on_error_is_bounded_and_parks_the_event() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event, service) = (unique("src"), "thing", unique("requeue"));
    let (tx, mut inbox) = mpsc::unbounded_channel();
    let handler = event_handler(&source, event, "handle", failing("h", &tx))
        .requeue_on_error(true)
        .max_redeliveries(2);
    let container = run(Service::new(service.as_str()).entrypoint(handler), &config).await;
    let queue = names::service_pool_queue(&source, event, &service, "handle");
    let dead = dead_event_queue(&queue);

    let emitter_container = run(emitter(&source), &config).await;
    let mut context = ContextData::new();
    context.insert("user_id".into(), json!("u-1"));
    entrypoint_hook(&emitter_container, "emit")
        .unwrap()
        .context_data(context)
        .call(
            vec![json!(event), json!({"id": 1, "fail": true})],
            Default::default(),
        )
        .await
        .unwrap()
        .unwrap();

    let attempts = take(&mut inbox, 3).await;
    for attempt in &attempts {
        assert_eq!(attempt.payload, json!({"id": 1, "fail": true}));
        assert_eq!(
            attempt.context.keys().collect::<Vec<_>>(),
            vec!["user_id"],
            "the redelivery counter never becomes context data"
        );
    }

    let connection = broker(&uri).await;
    let mut parked = Consumer::start(&connection, &QueueSpec::durable(dead.clone()), 1)
        .await
        .unwrap();
    let message = tokio::time::timeout(EXPECT, parked.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(message.body(), br#"{"id": 1, "fail": true}"#);
    let headers = message.headers().unwrap().inner();
    assert_eq!(
        headers.get(names::REDELIVERIES_HEADER),
        Some(&AMQPValue::LongLongInt(2))
    );
    assert_eq!(
        headers.get("nameko.user_id"),
        Some(&AMQPValue::LongString("u-1".into()))
    );
    message.ack().await.unwrap();

    // A succeeding event after it: it must be the next thing the handler sees.
    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatcher
        .dispatch(&source, event, &json!({"id": 2}))
        .await
        .unwrap();
    let mut after = take(&mut inbox, 1).await;
    after.extend(stragglers(&mut inbox).await);
    assert_eq!(
        ids(&after),
        vec![2],
        "no fourth attempt of the failed event"
    );
    assert_eq!(
        queue_state(&uri, &queue).await.map(|s| s.message_count),
        Some(0)
    );
    assert_eq!(container.state(), ContainerState::Running);

    container.stop().await;
    emitter_container.stop().await;
    drop(parked);
    cleanup(&uri, &[queue, dead], &[event_exchange(&source)]).await;
}

#[tokio::test]
async fn requeue_on_error_retries_until_success_and_drops_unreliable_events_at_the_bound() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event, service) = (unique("src"), "thing", unique("retry"));
    let (tx, mut inbox) = mpsc::unbounded_channel();

    // Fails on its first attempt only.
    let once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fail_once = {
        let (tx, once) = (tx.clone(), once.clone());
        move |worker: Worker, payload: Value| {
            let _ = tx.send(received("once", &worker, payload));
            let failed_before = once.swap(true, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if failed_before {
                    Ok(())
                } else {
                    Err(RemoteError::new(
                        "Boom",
                        "tests.Boom",
                        "first attempt fails",
                    ))
                }
            }) as Reply<Result<(), RemoteError>>
        }
    };
    let container = run(
        Service::new(service.as_str())
            .entrypoint(event_handler(&source, event, "once", fail_once).requeue_on_error(true))
            // An exclusive queue: copies of failed events reach it from the publishing
            // connection.
            .entrypoint(
                event_handler(&source, event, "always", failing("always", &tx))
                    .handler_type(HandlerType::broadcast_with("only"))
                    .requeue_on_error(true)
                    .max_redeliveries(1)
                    .reliable_delivery(false),
            ),
        &config,
    )
    .await;

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatcher
        .dispatch(&source, event, &json!({"id": 1, "fail": true}))
        .await
        .unwrap();
    let reports = take(&mut inbox, 4).await;
    let mut per_handler = by_who(&reports);
    assert_eq!(
        per_handler.remove("once"),
        Some(vec![1, 1]),
        "failed once, then succeeded"
    );
    assert_eq!(
        per_handler.remove("always"),
        Some(vec![1, 1]),
        "one redelivery, then dropped"
    );

    dispatcher
        .dispatch(&source, event, &json!({"id": 2}))
        .await
        .unwrap();
    let mut after = take(&mut inbox, 2).await;
    after.extend(stragglers(&mut inbox).await);
    assert_eq!(ids(&after), vec![2, 2], "nothing of event 1 came back");
    let always = names::broadcast_queue(&source, event, &service, "always", "only");
    assert_eq!(
        queue_state(&uri, &dead_event_queue(&always)).await,
        None,
        "unreliable events are not parked"
    );

    container.stop().await;
    cleanup(
        &uri,
        &[names::service_pool_queue(&source, event, &service, "once")],
        &[event_exchange(&source)],
    )
    .await;
}

#[tokio::test]
async fn without_requeue_a_failed_event_is_acked_once() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event, service) = (unique("src"), "thing", unique("noretry"));
    let (tx, mut inbox) = mpsc::unbounded_channel();
    let container = run(
        Service::new(service.as_str()).entrypoint(event_handler(
            &source,
            event,
            "handle",
            failing("h", &tx),
        )),
        &config,
    )
    .await;
    let mut waiter = entrypoint_waiter(&container, "handle").unwrap();

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatcher
        .dispatch(&source, event, &json!({"id": 1, "fail": true}))
        .await
        .unwrap();
    let failed = waiter.wait().await.unwrap();
    assert_eq!(failed.result.as_ref().unwrap_err().exc_type, "Boom");
    dispatcher
        .dispatch(&source, event, &json!({"id": 2}))
        .await
        .unwrap();
    let mut reports = take(&mut inbox, 2).await;
    reports.extend(stragglers(&mut inbox).await);
    assert_eq!(ids(&reports), vec![1, 2]);

    let queue = names::service_pool_queue(&source, event, &service, "handle");
    assert_eq!(
        queue_state(&uri, &queue).await.map(|s| s.message_count),
        Some(0)
    );
    container.stop().await;
    cleanup(&uri, &[queue], &[event_exchange(&source)]).await;
}

#[tokio::test]
async fn graceful_stop_finishes_running_handlers_and_requeues_unstarted_events() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &["max_workers=1", "PREFETCH_COUNT=5"]);
    let (source, event, service) = (unique("src"), "thing", unique("graceful"));
    let (tx, mut inbox) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let slow = {
        let (tx, gate) = (tx.clone(), gate.clone());
        move |worker: Worker, payload: Value| {
            let _ = tx.send(received("slow", &worker, payload));
            let gate = gate.clone();
            async move {
                let _permit = gate.acquire().await;
            }
        }
    };
    let container = run(
        Service::new(service.as_str())
            .entrypoint(event_handler(&source, event, "handle", slow))
            .entrypoint(OpenOnStop {
                info: Arc::new(EntrypointInfo::new("test", "open_on_stop")),
                gate,
            }),
        &config,
    )
    .await;
    let mut waiter = entrypoint_waiter(&container, "handle").unwrap();
    let queue = names::service_pool_queue(&source, event, &service, "handle");

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 2).await;
    let started = take(&mut inbox, 1).await;
    assert_eq!(ids(&started), vec![0]);
    // Both events are with the consumer once none is ready in the queue: the first runs,
    // the second waits for the only worker slot.
    let deadline = tokio::time::Instant::now() + EXPECT;
    while queue_state(&uri, &queue).await.map(|s| s.message_count) != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer never took both events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The gate opens when the container stops its entrypoints, after the handler cancelled
    // its consumer: the running event can finish, the waiting one must never start.
    tokio::time::timeout(EXPECT, container.stop())
        .await
        .expect("the stop finishes");
    let finished = waiter.wait().await.unwrap();
    assert!(finished.result.is_ok());
    assert_eq!(container.state(), ContainerState::Stopped);
    assert!(
        stragglers(&mut inbox).await.is_empty(),
        "the second event never started"
    );

    assert_eq!(
        queue_state(&uri, &queue).await.map(|s| s.message_count),
        Some(1),
        "the running event was acked, the waiting one went back to the queue"
    );
    cleanup(&uri, &[queue], &[event_exchange(&source)]).await;
}
