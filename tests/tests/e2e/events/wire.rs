//! What an event carries and how it travels: context data and the call id stack reach every
//! handler, bad messages never stop the service, and declarations and dispatched messages are
//! exactly Nameko's.

use std::collections::BTreeSet;

use nameko_amqp::{
    AMQPValue, Consumer, FieldTable, PublishOptions, Publisher, QueueSpec, Topology,
};
use nameko_core::testing::{entrypoint_hook, entrypoint_waiter};
use nameko_core::{ContainerState, ContextData, Service, Worker};
use nameko_events::{
    EventDispatcher, HandlerType, StandaloneDispatcher, event_exchange, event_handler, names,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::events::{
    EXPECT, emitter, ids, queue_state, received, recorder, run, stragglers, take,
};
use crate::support::{broker, broker_uri, cleanup, config, unique};

#[tokio::test]
async fn context_data_and_call_id_stack_reach_every_handler() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event) = (unique("src"), "thing");
    let (pool, bcast) = (unique("ctx_pool"), unique("ctx_bcast"));
    let (tx, mut inbox) = mpsc::unbounded_channel();

    let pool_container = run(
        Service::new(pool.as_str()).entrypoint(event_handler(
            &source,
            event,
            "handle",
            recorder("pool", &tx),
        )),
        &config,
    )
    .await;
    let mut broadcast = Vec::new();
    for who in ["bcast/1", "bcast/2"] {
        let handler = event_handler(&source, event, "handle", recorder(who, &tx))
            .handler_type(HandlerType::broadcast())
            .reliable_delivery(false);
        broadcast.push(run(Service::new(bcast.as_str()).entrypoint(handler), &config).await);
    }
    let emitter_container = run(emitter(&source), &config).await;

    let context: ContextData = json!({
        "user_id": "u-1",
        "language": "en-gb",
        "custom_key": "c",
        "call_id_stack": ["caller.method.0"],
    })
    .as_object()
    .unwrap()
    .clone();
    let emit_call_id = entrypoint_hook(&emitter_container, "emit")
        .unwrap()
        .context_data(context)
        .call(vec![json!(event), json!({"id": 1})], Default::default())
        .await
        .unwrap()
        .unwrap();
    let emit_call_id = emit_call_id.as_str().unwrap().to_owned();
    assert!(emit_call_id.starts_with(&format!("{source}.emit.")));

    let reports = take(&mut inbox, 3).await;
    let mut seen = BTreeSet::new();
    for report in reports {
        seen.insert(report.who.clone());
        assert_eq!(
            Value::Object(report.context.clone()),
            json!({"user_id": "u-1", "language": "en-gb", "custom_key": "c"}),
            "{}",
            report.who
        );
        assert_eq!(
            report.call_id_stack,
            vec![
                "caller.method.0".to_owned(),
                emit_call_id.clone(),
                report.call_id.clone()
            ],
            "{}",
            report.who
        );
        assert!(report.call_id.starts_with(&format!(
            "{}.handle.",
            if report.who == "pool" { &pool } else { &bcast }
        )));
    }
    assert_eq!(
        seen,
        BTreeSet::from([
            "pool".to_owned(),
            "bcast/1".to_owned(),
            "bcast/2".to_owned()
        ])
    );

    for container in broadcast
        .iter()
        .chain([&pool_container, &emitter_container])
    {
        container.stop().await;
    }
    cleanup(
        &uri,
        &[names::service_pool_queue(&source, event, &pool, "handle")],
        &[event_exchange(&source)],
    )
    .await;
}

#[tokio::test]
async fn bad_messages_never_stop_the_service() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event, service) = (unique("src"), "thing", unique("bad"));
    let (tx, mut inbox) = mpsc::unbounded_channel();

    #[derive(serde::Deserialize)]
    struct Order {
        id: u64,
    }
    let typed = {
        let tx = tx.clone();
        move |worker: Worker, order: Order| {
            let _ = tx.send(received("typed", &worker, json!({"id": order.id})));
            async {}
        }
    };
    let container = run(
        Service::new(service.as_str()).entrypoint(event_handler(&source, event, "handle", typed)),
        &config,
    )
    .await;
    let mut waiter = entrypoint_waiter(&container, "handle").unwrap();

    let connection = broker(&uri).await;
    let publisher = Publisher::new(&connection).await.unwrap();
    let exchange = event_exchange(&source);
    let send = |body: &'static [u8], content_type: &str| {
        let options = PublishOptions {
            content_type: content_type.to_owned(),
            ..PublishOptions::default()
        };
        let (publisher, exchange) = (publisher.clone(), exchange.clone());
        async move {
            publisher
                .publish(&exchange, event, body, options)
                .await
                .unwrap()
        }
    };
    send(b"not json", "application/json").await;
    send(b"(dp0\nS'id'\np1\nI1\ns.", "application/x-python-serialize").await;
    send(br#"{"id": 1}"#, "").await;
    send(
        br#"{"id": {"__type__": "mystery", "__value__": 1}}"#,
        "application/json",
    )
    .await;
    send(br#"{"id": "not a number"}"#, "application/json").await;
    send(br#"{"id": 7}"#, "application/json").await;

    let misfit = waiter.wait().await.unwrap();
    let error = misfit.result.as_ref().unwrap_err();
    assert_eq!(error.exc_type, "MalformedEvent");
    assert_eq!(
        misfit.context.args()["payload"],
        json!({"id": "not a number"})
    );
    let mut reports = take(&mut inbox, 1).await;
    reports.extend(stragglers(&mut inbox).await);
    assert_eq!(
        ids(&reports),
        vec![7],
        "only the good event reaches the handler"
    );

    let queue = names::service_pool_queue(&source, event, &service, "handle");
    assert_eq!(
        queue_state(&uri, &queue).await.map(|s| s.message_count),
        Some(0),
        "nothing is stuck"
    );
    assert_eq!(container.state(), ContainerState::Running);
    container.stop().await;
    assert!(container.wait().await.is_ok());
    cleanup(&uri, &[queue], &[exchange]).await;
}

#[tokio::test]
async fn declarations_are_nameko_s() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event, service) = (unique("src"), "thing", unique("decl"));
    let (tx, _inbox) = mpsc::unbounded_channel();
    let container = run(
        Service::new(service.as_str())
            .dependency("dispatch", EventDispatcher::new())
            .entrypoint(event_handler(&source, event, "pool", recorder("pool", &tx)))
            .entrypoint(
                event_handler(&source, event, "unreliable", recorder("u", &tx))
                    .reliable_delivery(false),
            )
            .entrypoint(
                event_handler(&source, event, "single", recorder("s", &tx))
                    .handler_type(HandlerType::Singleton),
            )
            .entrypoint(
                event_handler(&source, event, "fixed", recorder("f", &tx))
                    .handler_type(HandlerType::broadcast_with("id1")),
            )
            .entrypoint(
                event_handler(&source, event, "bcast", recorder("b", &tx))
                    .handler_type(HandlerType::broadcast_with("id2"))
                    .reliable_delivery(false),
            ),
        &config,
    )
    .await;

    // Another connection declares what Nameko declares: the broker answers 406 on any
    // difference in flags, and 405 for someone else's exclusive queue.
    let other = broker(&uri).await;
    let topology = Topology::new(&other).await.unwrap();
    topology
        .declare_event_exchange(&source, false)
        .await
        .expect("handlers declared the source's exchange as nameko does");
    topology
        .declare_event_exchange(&service, false)
        .await
        .expect("the dispatcher declared its own");
    let expected = [
        (
            names::service_pool_queue(&source, event, &service, "pool"),
            false,
        ),
        (
            names::service_pool_queue(&source, event, &service, "unreliable"),
            true,
        ),
        (names::singleton_queue(&source, event), false),
        (
            names::broadcast_queue(&source, event, &service, "fixed", "id1"),
            false,
        ),
    ];
    for (queue, auto_delete) in &expected {
        topology
            .declare_queue(&QueueSpec::durable(queue.clone()).auto_delete(*auto_delete))
            .await
            .unwrap_or_else(|e| panic!("{queue} has Nameko's flags: {e}"));
    }
    // Broadcast without reliable delivery: exclusive to the handler's connection.
    let exclusive = names::broadcast_queue(&source, event, &service, "bcast", "id2");
    let locked = Topology::new(&other)
        .await
        .unwrap()
        .declare_queue(
            &QueueSpec::durable(exclusive.clone())
                .exclusive(true)
                .auto_delete(true),
        )
        .await
        .unwrap_err();
    assert_eq!(locked.reply_code(), Some(405), "RESOURCE_LOCKED: {locked}");

    container.stop().await;
    for gone in [&expected[1].0, &exclusive] {
        assert_eq!(
            queue_state(&uri, gone).await,
            None,
            "{gone} went with its consumer"
        );
    }
    cleanup(
        &uri,
        &[
            expected[0].0.clone(),
            expected[2].0.clone(),
            expected[3].0.clone(),
        ],
        &[event_exchange(&source), event_exchange(&service)],
    )
    .await;
}

#[tokio::test]
async fn dispatched_messages_are_nameko_s() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let source = unique("src");
    let emitter_container = run(emitter(&source), &config).await;

    // A spy queue bound to every event of the source.
    let connection = broker(&uri).await;
    let spy = format!("spy-{source}");
    let spec = QueueSpec::durable(spy.clone())
        .exclusive(true)
        .auto_delete(true);
    let mut consumer = Consumer::start(&connection, &spec, 10).await.unwrap();
    Topology::new(&connection)
        .await
        .unwrap()
        .bind_queue(&spy, &event_exchange(&source), "#")
        .await
        .unwrap();

    let context: ContextData = json!({"user_id": "u-1", "language": "en-gb", "nothing": null})
        .as_object()
        .unwrap()
        .clone();
    let call_id = entrypoint_hook(&emitter_container, "emit")
        .unwrap()
        .context_data(context)
        .call(
            vec![json!("thing_happened"), json!({"p": 1})],
            Default::default(),
        )
        .await
        .unwrap()
        .unwrap();
    StandaloneDispatcher::new(&config)
        .unwrap()
        .dispatch(&source, "thing_happened", &json!({"p": 2}))
        .await
        .unwrap();

    let in_service = tokio::time::timeout(EXPECT, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(in_service.exchange(), event_exchange(&source));
    assert_eq!(in_service.routing_key(), "thing_happened");
    assert_eq!(in_service.body(), br#"{"p": 1}"#);
    let properties = in_service.properties();
    assert_eq!(in_service.content_type(), Some("application/json"));
    assert_eq!(in_service.content_encoding(), Some("utf-8"));
    assert_eq!(properties.delivery_mode(), &Some(2));
    assert_eq!(properties.priority(), &Some(0));
    assert_eq!(in_service.correlation_id(), None);
    assert_eq!(in_service.reply_to(), None);
    let mut expected = FieldTable::default();
    expected.insert("nameko.user_id".into(), AMQPValue::LongString("u-1".into()));
    expected.insert(
        "nameko.language".into(),
        AMQPValue::LongString("en-gb".into()),
    );
    expected.insert(
        "nameko.call_id_stack".into(),
        AMQPValue::FieldArray(vec![AMQPValue::LongString(call_id.as_str().unwrap().into())].into()),
    );
    assert_eq!(
        in_service.headers(),
        Some(&expected),
        "context as nameko.* headers, None dropped"
    );

    let standalone = tokio::time::timeout(EXPECT, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(standalone.body(), br#"{"p": 2}"#);
    assert_eq!(
        standalone.headers(),
        Some(&FieldTable::default()),
        "no headers at all"
    );
    assert_eq!(standalone.properties().delivery_mode(), &Some(2));

    emitter_container.stop().await;
    cleanup(&uri, &[], &[event_exchange(&source)]).await;
}
