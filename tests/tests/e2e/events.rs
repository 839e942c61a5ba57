//! Events against a real broker: handler types across instances and services, reliable and
//! unreliable delivery across restarts, bounded requeueing, context propagation, bad messages,
//! graceful stop and the exact declarations and messages Nameko uses.
//!
//! Handlers report to the test through channels; a test waits for the reports it expects, and
//! checks that nothing else arrives by waiting briefly after a positive signal (a sentinel
//! event that must arrive last on every queue involved).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nameko_amqp::{
    AMQPValue, Connection, ConnectionConfig, Consumer, FieldTable, PublishOptions, Publisher,
    QueueSpec, Topology,
};
use nameko_core::testing::{dummy, entrypoint_hook, entrypoint_waiter};
use nameko_core::{
    Config, ContainerState, ContextData, DirectCall, Entrypoint, EntrypointInfo, Extension,
    RemoteError, Service, ServiceContainer, Worker,
};
use nameko_events::{
    BroadcastIdentifier, EventDispatcher, HandlerType, StandaloneDispatcher, dead_event_queue,
    event_exchange, event_handler, names,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{broker_uri, config, unique};

/// How long a test waits for something it expects.
pub(crate) const EXPECT: Duration = Duration::from_secs(20);
/// How long a test listens, after its sentinel arrived, for something that must not come.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// One event as a handler saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Which handler instance: a label given by the test.
    pub(crate) who: String,
    pub(crate) payload: Value,
    pub(crate) context: ContextData,
    pub(crate) call_id: String,
    pub(crate) call_id_stack: Vec<String>,
}

pub(crate) type Inbox = mpsc::UnboundedReceiver<Received>;
pub(crate) type Outbox = mpsc::UnboundedSender<Received>;
type Reply<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn received(who: &str, worker: &Worker, payload: Value) -> Received {
    Received {
        who: who.to_owned(),
        payload,
        context: worker.data().clone(),
        call_id: worker.call_id().to_owned(),
        call_id_stack: worker.call_id_stack().to_vec(),
    }
}

/// A handler that reports every event to `tx`, labelled `who`.
pub(crate) fn recorder(
    who: &str,
    tx: &Outbox,
) -> impl Fn(Worker, Value) -> Reply<()> + Clone + Send + Sync + 'static {
    let (who, tx) = (who.to_owned(), tx.clone());
    move |worker, payload| {
        let _ = tx.send(received(&who, &worker, payload));
        Box::pin(async {})
    }
}

/// A handler that reports every event and fails those whose payload has `"fail": true`.
fn failing(
    who: &str,
    tx: &Outbox,
) -> impl Fn(Worker, Value) -> Reply<Result<(), RemoteError>> + Clone + Send + Sync + 'static {
    let (who, tx) = (who.to_owned(), tx.clone());
    move |worker, payload| {
        let fail = payload["fail"] == true;
        let _ = tx.send(received(&who, &worker, payload));
        Box::pin(async move {
            if fail {
                Err(RemoteError::new("Boom", "tests.Boom", "asked to fail"))
            } else {
                Ok(())
            }
        })
    }
}

/// Receives `n` reports, failing the test with what arrived if they do not come in time.
pub(crate) async fn take(inbox: &mut Inbox, n: usize) -> Vec<Received> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout(EXPECT, inbox.recv()).await {
            Ok(Some(report)) => got.push(report),
            _ => panic!("expected {n} events, got {}: {got:#?}", got.len()),
        }
    }
    got
}

/// Receives reports until `done` says the ones seen so far are complete.
pub(crate) async fn take_until(
    inbox: &mut Inbox,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    let mut got = Vec::new();
    while !done(&got) {
        match tokio::time::timeout(EXPECT, inbox.recv()).await {
            Ok(Some(report)) => got.push(report),
            _ => panic!("events stopped before the expected ones arrived: {got:#?}"),
        }
    }
    got
}

/// Whatever else arrives within [`QUIET`].
pub(crate) async fn stragglers(inbox: &mut Inbox) -> Vec<Received> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + QUIET;
    while let Ok(Some(report)) = tokio::time::timeout_at(deadline, inbox.recv()).await {
        got.push(report);
    }
    got
}

pub(crate) async fn run(
    service: impl Into<nameko_core::AnyService>,
    config: &Config,
) -> ServiceContainer {
    let container = ServiceContainer::new(service, config.clone()).expect("a valid service");
    container.start().await.expect("the service starts");
    container
}

pub(crate) async fn broker(uri: &str) -> Connection {
    let settings = ConnectionConfig::parse(uri).expect("a valid test uri");
    Connection::connect(&settings)
        .await
        .expect("the test broker answers")
}

/// Deletes what a test left behind: reliable queues outlive their handlers by design.
pub(crate) async fn cleanup(uri: &str, queues: &[String], exchanges: &[String]) {
    let topology = Topology::new(&broker(uri).await).await.expect("a channel");
    for queue in queues {
        let _ = topology.delete_queue(queue).await;
    }
    for exchange in exchanges {
        let _ = topology.delete_exchange(exchange).await;
    }
}

async fn queue_state(uri: &str, queue: &str) -> Option<nameko_amqp::QueueState> {
    let topology = Topology::new(&broker(uri).await).await.expect("a channel");
    topology
        .inspect_queue(queue)
        .await
        .expect("inspecting a queue")
}

fn ids(reports: &[Received]) -> Vec<i64> {
    let mut ids: Vec<i64> = reports
        .iter()
        .filter_map(|r| r.payload["id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids
}

fn by_who(reports: &[Received]) -> BTreeMap<String, Vec<i64>> {
    let mut map: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for report in reports {
        map.entry(report.who.clone())
            .or_default()
            .push(report.payload["id"].as_i64().unwrap_or(-1));
    }
    map.values_mut().for_each(|v| v.sort_unstable());
    map
}

async fn dispatch_ids(dispatcher: &StandaloneDispatcher, source: &str, event_type: &str, n: i64) {
    for id in 0..n {
        dispatcher
            .dispatch(source, event_type, &json!({"id": id}))
            .await
            .expect("dispatch confirmed");
    }
}

/// A service that dispatches, from a hooked worker, whatever event it is called with.
pub(crate) fn emitter(name: &str) -> Service<Emitter> {
    async fn emit(worker: Worker<Emitter>, call: DirectCall) -> Result<String, RemoteError> {
        let event_type = call.args[0].as_str().unwrap_or_default().to_owned();
        let dispatch = &worker.service().dispatch;
        dispatch
            .dispatch(&worker, &event_type, &call.args[1])
            .await?;
        Ok(worker.call_id().to_owned())
    }
    Service::with_state(name, |deps| Emitter {
        dispatch: deps.add("dispatch", EventDispatcher::new()),
    })
    .entrypoint(dummy("emit", emit))
}

/// The state of [`emitter`].
pub(crate) struct Emitter {
    dispatch: EventDispatcher,
}

#[tokio::test]
async fn service_pool_gives_each_event_to_one_instance_per_service_and_method() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event) = (unique("src"), "thing");
    let (a, b) = (unique("pool_a"), unique("pool_b"));
    let (tx, mut inbox) = mpsc::unbounded_channel();

    let service_a = |instance: &str| {
        Service::new(a.as_str())
            .entrypoint(event_handler(
                &source,
                event,
                "first",
                recorder(&format!("a.first/{instance}"), &tx),
            ))
            .entrypoint(event_handler(
                &source,
                event,
                "second",
                recorder(&format!("a.second/{instance}"), &tx),
            ))
    };
    let service_b = |instance: &str| {
        Service::new(b.as_str()).entrypoint(event_handler(
            &source,
            event,
            "handle",
            recorder(&format!("b.handle/{instance}"), &tx),
        ))
    };
    let mut containers = Vec::new();
    for instance in ["1", "2"] {
        containers.push(run(service_a(instance), &config).await);
        containers.push(run(service_b(instance), &config).await);
    }

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 6).await;
    let mut reports = take(&mut inbox, 3 * 6).await;
    dispatcher
        .dispatch(&source, event, &json!({"id": 99}))
        .await
        .unwrap();
    reports.extend(
        take_until(&mut inbox, |got| {
            got.iter().filter(|r| r.payload["id"] == 99).count() == 3
        })
        .await,
    );
    reports.extend(stragglers(&mut inbox).await);

    let mut per_pool: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for report in &reports {
        let pool = report.who.split('/').next().unwrap();
        per_pool
            .entry(pool)
            .or_default()
            .push(report.payload["id"].as_i64().unwrap());
    }
    for ids in per_pool.values_mut() {
        ids.sort_unstable();
    }
    let each = vec![0, 1, 2, 3, 4, 5, 99];
    assert_eq!(
        per_pool,
        BTreeMap::from([
            ("a.first", each.clone()),
            ("a.second", each.clone()),
            ("b.handle", each)
        ]),
        "every (service, method) handles every event exactly once"
    );

    for container in &containers {
        container.stop().await;
    }
    cleanup(
        &uri,
        &[
            names::service_pool_queue(&source, event, &a, "first"),
            names::service_pool_queue(&source, event, &a, "second"),
            names::service_pool_queue(&source, event, &b, "handle"),
        ],
        &[event_exchange(&source)],
    )
    .await;
}

#[tokio::test]
async fn singleton_gives_each_event_to_exactly_one_handler_of_all_services() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event) = (unique("src"), "thing");
    let (tx, mut inbox) = mpsc::unbounded_channel();

    let mut containers = Vec::new();
    for service in [unique("single_a"), unique("single_b")] {
        for instance in ["1", "2"] {
            let handler = event_handler(
                &source,
                event,
                "handle",
                recorder(&format!("{service}/{instance}"), &tx),
            )
            .handler_type(HandlerType::Singleton);
            containers.push(run(Service::new(service.as_str()).entrypoint(handler), &config).await);
        }
    }

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 8).await;
    let mut reports = take(&mut inbox, 8).await;
    dispatcher
        .dispatch(&source, event, &json!({"id": 99}))
        .await
        .unwrap();
    reports.extend(take_until(&mut inbox, |got| got.iter().any(|r| r.payload["id"] == 99)).await);
    reports.extend(stragglers(&mut inbox).await);
    assert_eq!(
        ids(&reports),
        vec![0, 1, 2, 3, 4, 5, 6, 7, 99],
        "each event handled once overall"
    );

    for container in &containers {
        container.stop().await;
    }
    cleanup(
        &uri,
        &[names::singleton_queue(&source, event)],
        &[event_exchange(&source)],
    )
    .await;
}

#[tokio::test]
async fn broadcast_gives_each_event_to_every_instance() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event) = (unique("src"), "thing");
    let (tx, mut inbox) = mpsc::unbounded_channel();

    let mut containers = Vec::new();
    let mut everyone = Vec::new();
    for service in [unique("bcast_a"), unique("bcast_b")] {
        for instance in ["1", "2"] {
            let who = format!("{service}/{instance}");
            let handler = event_handler(&source, event, "handle", recorder(&who, &tx))
                .handler_type(HandlerType::broadcast())
                .reliable_delivery(false);
            containers.push(run(Service::new(service.as_str()).entrypoint(handler), &config).await);
            everyone.push(who);
        }
    }

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 3).await;
    let mut reports = take(&mut inbox, 4 * 3).await;
    reports.extend(stragglers(&mut inbox).await);
    let expected: BTreeMap<String, Vec<i64>> = everyone
        .iter()
        .map(|who| (who.clone(), vec![0, 1, 2]))
        .collect();
    assert_eq!(
        by_who(&reports),
        expected,
        "every instance handles every event once"
    );

    for container in &containers {
        container.stop().await;
    }
    cleanup(&uri, &[], &[event_exchange(&source)]).await;
}

#[tokio::test]
async fn broadcast_with_stable_identifiers_keeps_events_while_an_instance_is_down() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let (source, event, service) = (unique("src"), "thing", unique("bcast"));
    let (tx, mut inbox) = mpsc::unbounded_channel();
    let instance = |who: &str, identifier: BroadcastIdentifier| {
        Service::new(service.as_str()).entrypoint(
            event_handler(&source, event, "handle", recorder(who, &tx))
                .handler_type(HandlerType::Broadcast(identifier)),
        )
    };
    let one_config = config(&uri, &["NODE_ID=node-one"]);
    let two_config = config(&uri, &[]);
    let one = run(
        instance("one", BroadcastIdentifier::Config("NODE_ID".into())),
        &one_config,
    )
    .await;
    let two = run(
        instance("two", BroadcastIdentifier::Fixed("node-two".into())),
        &two_config,
    )
    .await;

    one.stop().await;
    let dispatcher = StandaloneDispatcher::new(&two_config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 2).await;
    let while_down = take(&mut inbox, 2).await;
    assert_eq!(
        by_who(&while_down),
        BTreeMap::from([("two".to_owned(), vec![0, 1])])
    );

    let again = run(
        instance("one again", BroadcastIdentifier::Config("NODE_ID".into())),
        &one_config,
    )
    .await;
    let caught_up = take(&mut inbox, 2).await;
    assert_eq!(
        by_who(&caught_up),
        BTreeMap::from([("one again".to_owned(), vec![0, 1])])
    );

    again.stop().await;
    two.stop().await;
    cleanup(
        &uri,
        &[
            names::broadcast_queue(&source, event, &service, "handle", "node-one"),
            names::broadcast_queue(&source, event, &service, "handle", "node-two"),
        ],
        &[event_exchange(&source)],
    )
    .await;
}

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

/// An entrypoint that does nothing but open a gate when its container stops its entrypoints;
/// added after an event handler, it opens once that handler has stopped consuming.
struct OpenOnStop {
    info: Arc<EntrypointInfo>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Extension for OpenOnStop {
    async fn stop(&self) {
        self.gate.add_permits(1);
    }
}

impl Entrypoint for OpenOnStop {
    type State = ();

    fn info(&self) -> &Arc<EntrypointInfo> {
        &self.info
    }
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
