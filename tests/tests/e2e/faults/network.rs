//! Network faults through the [`FaultProxy`]: cut connections, stalls, blackholes, a queue
//! declared otherwise meanwhile, a reply queue lost, and dispatching again after a cut.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nameko_amqp::QueueSpec;
use nameko_core::{ContainerState, RemoteError, Service, Worker};
use nameko_events::{EventDispatcher, StandaloneDispatcher, event_handler, names};
use nameko_rpc::{RpcError, rpc};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::proxy::FaultProxy;
use crate::support::faults::{
    CONNECT_TIMEOUT, Executions, Gate, WAIT, calls, calls_after_a_fault, client, delete_queues,
    gated, inspector, recorded, settle, start, tags, wait_for_consumers, wait_until_delivered,
    within,
};
use crate::support::{broker_uri, config, unique};

/// A network cut while idle: every consumer and publisher reconnects by itself, the queue and
/// its binding are there again, and nothing is handled twice or left behind.
#[tokio::test]
async fn a_network_cut_is_recovered_without_loss_duplicates_or_leaks() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let config = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &["HEARTBEAT=2"]);
    let name = unique("faults_cut");
    let executions = Executions::default();
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("work", recorded(&executions))),
        &config,
    )
    .await;
    // Client and service share the test's two connections: one consuming, one publishing.
    let client = client(&config).await;
    proxy.wait_for_open(2, WAIT).await;
    let mut workers = service.container().subscribe_workers();
    let before = tags("before", 5);
    calls(&client, &name, &before).await;
    settle(&mut workers, before.len(), &config).await;

    proxy.drop_connections();
    assert_eq!(service.state(), ContainerState::Running);

    let after = tags("after", 5);
    calls_after_a_fault(&client, &name, &after).await;
    // Through the proxy a request written into a dead connection never reaches the broker, so
    // even a retried call ran once.
    for tag in before.iter().chain(&after) {
        assert_eq!(executions.of(tag), 1, "`{tag}` handled once");
    }
    assert_eq!(executions.total(), 10);

    // One consumer on the request queue, one on the reply queue, two connections: nothing
    // doubled, nothing leaked.
    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    wait_for_consumers(&inspector, &queue, 1).await;
    wait_for_consumers(&inspector, client.reply_queue(), 1).await;
    proxy.wait_for_open(2, WAIT).await;
    assert_eq!(
        proxy.linked_connections(),
        4,
        "one reconnect per connection"
    );
    assert_eq!(service.state(), ContainerState::Running);

    client.stop().await;
    drop(client);
    within(service.stop()).await;
    assert_eq!(service.state(), ContainerState::Stopped);
    proxy.wait_for_open(0, WAIT).await;
    delete_queues(&inspector, &[queue]).await;
}

/// A call whose worker is running when the network is cut: the worker's reply goes out on the
/// reconnected publisher, the request (whose acknowledgement was lost) runs once more, and the
/// caller, whose reply queue survived, gets exactly one answer.
#[tokio::test]
async fn a_call_in_flight_during_a_cut_gets_exactly_one_answer() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let config = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &["HEARTBEAT=2"]);
    let name = unique("faults_inflight");
    let executions = Executions::default();
    let (gate, mut arrived) = Gate::new();
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("work", gated(&gate, &executions))),
        &config,
    )
    .await;
    let client = client(&config).await;
    let call = within(client.call_async::<String>(&name, "work", ("inflight",)))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "inflight");

    proxy.drop_connections();
    gate.release(2);
    assert_eq!(within(call).await.unwrap(), "inflight");

    // The request ran again only if its acknowledgement was lost with the connection, and
    // then on the recovered consumer; the second reply was dropped by the client.
    let ran = executions.of("inflight");
    assert!((1..=2).contains(&ran), "ran {ran} times");
    gate.release(10);
    calls(&client, &name, &tags("after", 3)).await;

    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    wait_for_consumers(&inspector, &queue, 1).await;
    wait_for_consumers(&inspector, client.reply_queue(), 1).await;
    proxy.wait_for_open(2, WAIT).await;
    client.stop().await;
    within(service.stop()).await;
    delete_queues(&inspector, &[queue]).await;
}

/// A blackhole: the sockets stay open but nothing gets through. Missed heartbeats reveal it,
/// reconnect attempts into the blackhole time out, and once it heals the service serves the
/// calls that waited in its queue, each once.
#[tokio::test]
async fn a_blackhole_is_found_by_heartbeats_and_recovered() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let config_service = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &["HEARTBEAT=1"]);
    let name = unique("faults_blackhole");
    let executions = Executions::default();
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("work", recorded(&executions))),
        &config_service,
    )
    .await;
    // The client talks to the broker directly: only the service is cut off.
    let client = client(&config(&uri, &[])).await;
    let mut workers = service.container().subscribe_workers();
    calls(&client, &name, &tags("before", 3)).await;
    settle(&mut workers, 3, &config_service).await;
    let linked = proxy.linked_connections();

    proxy.blackhole();
    let waiting = within(client.call_async::<String>(&name, "work", ("waited",)))
        .await
        .unwrap();
    // Only a service that noticed its connection is dead tries to open another.
    let noticed = async {
        while proxy.linked_connections() == linked {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within(noticed).await;
    assert_eq!(service.state(), ContainerState::Running);

    proxy.heal();
    assert_eq!(within(waiting).await.unwrap(), "waited");
    assert_eq!(executions.of("waited"), 1);
    calls(&client, &name, &tags("after", 3)).await;
    assert_eq!(executions.total(), 7, "each call handled once");

    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    wait_for_consumers(&inspector, &queue, 1).await;
    // The service only consumes (its replies go out on the requests' channel).
    proxy.wait_for_open(1, WAIT).await;
    client.stop().await;
    within(service.stop()).await;
    proxy.wait_for_open(0, WAIT).await;
    delete_queues(&inspector, &[queue]).await;
}

/// A stall shorter than the heartbeat timeout: bytes wait and then flow, nothing reconnects.
#[tokio::test]
async fn a_short_stall_delays_but_breaks_nothing() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let config_service = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &["HEARTBEAT=10"]);
    let name = unique("faults_stall");
    let executions = Executions::default();
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("work", recorded(&executions))),
        &config_service,
    )
    .await;
    let client = client(&config(&uri, &[])).await;
    calls(&client, &name, &tags("before", 2)).await;
    let linked = proxy.linked_connections();

    proxy.stall();
    let stalled = within(client.call_async::<String>(&name, "work", ("stalled",)))
        .await
        .unwrap();
    // The broker has handed the request on; it waits in the stalled connection.
    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    wait_until_delivered(&inspector, &queue).await;
    assert_eq!(executions.of("stalled"), 0);

    proxy.heal();
    assert_eq!(within(stalled).await.unwrap(), "stalled");
    assert_eq!(executions.of("stalled"), 1);
    assert_eq!(proxy.linked_connections(), linked, "nothing reconnected");
    client.stop().await;
    within(service.stop()).await;
    delete_queues(&inspector, &[queue]).await;
}

/// Publishing into a blackhole: the request and the event are never confirmed, and once the
/// heartbeats tell the connection is dead, both are errors to their callers, never silence.
/// After the blackhole heals, calls and dispatches work again without restarting anything.
#[tokio::test]
async fn publishing_into_a_blackhole_is_an_error_and_works_again_after() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let proxied = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &["HEARTBEAT=1"]);
    let direct = config(&uri, &[]);
    let (name, source) = (unique("faults_publish"), unique("faults_src"));
    let executions = Executions::default();
    let (events_tx, mut events) = mpsc::unbounded_channel::<String>();
    let on_job = move |_: Worker, payload: serde_json::Value| {
        let events_tx = events_tx.clone();
        async move {
            let _ = events_tx.send(payload["id"].as_str().unwrap_or_default().to_owned());
        }
    };
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("work", recorded(&executions)))
            .entrypoint(event_handler(source.as_str(), "job", "on_job", on_job)),
        &direct,
    )
    .await;
    let client = client(&proxied).await.with_timeout(Some(WAIT));
    let dispatcher = StandaloneDispatcher::new(&proxied).unwrap();
    calls(&client, &name, &tags("before", 1)).await;
    within(dispatcher.dispatch(&source, "job", &json!({"id": "before"})))
        .await
        .unwrap();
    assert_eq!(within(events.recv()).await.unwrap(), "before");

    proxy.blackhole();
    let lost = json!({"id": "lost"});
    let (call, dispatched) = tokio::join!(
        within(client.call::<String>(&name, "work", ("lost",))),
        within(dispatcher.dispatch(&source, "job", &lost)),
    );
    match call {
        Err(RpcError::Publish { source, .. }) => {
            assert!(source.is_connection_failure(), "{source}");
        }
        other => panic!("expected a publish failure, found {other:?}"),
    }
    match dispatched {
        Err(nameko_events::Error::Publish(failure)) => {
            assert!(failure.is_connection_failure(), "{failure}");
        }
        other => panic!("expected a publish failure, found {other:?}"),
    }

    proxy.heal();
    calls(&client, &name, &tags("after", 1)).await;
    within(dispatcher.dispatch(&source, "job", &json!({"id": "after"})))
        .await
        .unwrap();
    assert_eq!(within(events.recv()).await.unwrap(), "after");
    assert_eq!(
        executions.of("lost"),
        0,
        "an unconfirmed request never arrived"
    );
    assert!(
        events.try_recv().is_err(),
        "an unconfirmed event never arrived"
    );
    assert_eq!(executions.total(), 2);

    client.stop().await;
    within(service.stop()).await;
    let inspector = inspector(&uri).await;
    delete_queues(
        &inspector,
        &[
            format!("rpc-{name}"),
            names::service_pool_queue(&source, "job", &name, "on_job"),
        ],
    )
    .await;
}

/// Someone declared the service's queue with other flags while the service could not reach
/// the broker: recovery cannot declare it as before, and that must be loud, not a service that
/// quietly stopped consuming.
#[tokio::test]
async fn a_refused_declaration_during_recovery_kills_the_container() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let config_service = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &[]);
    let name = unique("faults_refused");
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("work", recorded(&Executions::default()))),
        &config_service,
    )
    .await;
    proxy.go_down();

    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    inspector.delete_queue(&queue).await.unwrap();
    inspector
        .declare_queue(&QueueSpec::durable(&queue).with_expires(Duration::from_secs(60)))
        .await
        .unwrap();
    proxy.heal();

    let error = within(service.wait()).await.unwrap_err();
    assert_eq!(service.state(), ContainerState::Killed);
    assert!(error.to_string().contains("PRECONDITION_FAILED"), "{error}");
    delete_queues(&inspector, &[queue]).await;
}

/// The reply queue of a client vanishes while a call waits (deleted here; expired after a long
/// disconnect in production): the call fails at once, as in Nameko 3, and the client serves
/// new calls on its queue declared again.
#[tokio::test]
async fn a_reply_queue_lost_with_calls_waiting_fails_them_at_once() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("faults_replyq");
    let executions = Executions::default();
    let (gate, mut arrived) = Gate::new();
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("work", gated(&gate, &executions))),
        &config,
    )
    .await;
    let client = client(&config).await.with_timeout(None);
    let waiting = within(client.call_async::<String>(&name, "work", ("orphan",)))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "orphan");

    let inspector = inspector(&uri).await;
    inspector.delete_queue(client.reply_queue()).await.unwrap();
    let started = Instant::now();
    match within(waiting).await {
        Err(RpcError::ReplyQueueLost { queue, .. }) => assert_eq!(queue, client.reply_queue()),
        other => panic!("expected the reply queue to be reported lost, found {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "at once");

    // The late reply reaches the queue declared again and is dropped; new calls work.
    gate.release(10);
    calls(&client, &name, &tags("after", 2)).await;
    wait_for_consumers(&inspector, client.reply_queue(), 1).await;
    client.stop().await;
    within(service.stop()).await;
    delete_queues(&inspector, &[format!("rpc-{name}")]).await;
}

/// A dispatch from inside a handler, through a cut: the in-service `EventDispatcher` reconnects
/// on its next dispatch too.
#[tokio::test]
async fn an_event_dispatcher_dispatches_again_after_a_cut() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let config_service = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &[]);
    let (name, listener) = (unique("faults_dispatch"), unique("faults_listener"));
    struct Announcer {
        dispatch: EventDispatcher,
    }
    async fn announce(worker: Worker<Announcer>, tag: String) -> Result<String, RemoteError> {
        let dispatch = &worker.service().dispatch;
        dispatch
            .dispatch(&worker, "announced", &json!({"tag": tag}))
            .await?;
        Ok(tag)
    }
    let service = start(
        Service::with_state(name.as_str(), |deps| Announcer {
            dispatch: deps.add("dispatch", EventDispatcher::new()),
        })
        .entrypoint(rpc("announce", announce)),
        &config_service,
    )
    .await;
    let (heard_tx, mut heard) = mpsc::unbounded_channel::<String>();
    let on_announced = move |_: Worker, payload: serde_json::Value| {
        let heard_tx = heard_tx.clone();
        async move {
            let _ = heard_tx.send(payload["tag"].as_str().unwrap_or_default().to_owned());
        }
    };
    let direct = config(&uri, &[]);
    let listening = start(
        Service::new(listener.as_str()).entrypoint(event_handler(
            name.as_str(),
            "announced",
            "on_announced",
            on_announced,
        )),
        &direct,
    )
    .await;
    let client = client(&direct).await;
    let mut workers = service.container().subscribe_workers();
    let first: String = within(client.call(&name, "announce", ("first",)))
        .await
        .unwrap();
    assert_eq!(first, "first");
    assert_eq!(within(heard.recv()).await.unwrap(), "first");
    settle(&mut workers, 1, &config_service).await;

    proxy.drop_connections();
    let second: String = within(client.call(&name, "announce", ("second",)))
        .await
        .unwrap();
    assert_eq!(second, "second");
    assert_eq!(within(heard.recv()).await.unwrap(), "second");
    assert!(heard.try_recv().is_err(), "each event once");

    client.stop().await;
    within(service.stop()).await;
    within(listening.stop()).await;
    let inspector = inspector(&uri).await;
    delete_queues(
        &inspector,
        &[
            format!("rpc-{name}"),
            names::service_pool_queue(&name, "announced", &listener, "on_announced"),
        ],
    )
    .await;
}

/// The service's connection cut at random moments while 64 calls are in flight, again and
/// again. A reply goes out on its request's channel before the acknowledgement, so the broker
/// never forgets a request whose reply it did not route: a call whose acknowledgement won and
/// whose reply was lost would wait forever. Counted: every call is answered with its own
/// value; requests whose acknowledgement was lost ran again, and nothing is left queued.
#[tokio::test]
async fn cuts_under_load_never_acknowledge_a_request_without_its_reply() {
    const IN_FLIGHT: usize = 64;
    const CUTS: usize = 6;
    /// Calls answered between two cuts, so each cut meets work in flight.
    const BETWEEN_CUTS: usize = 150;
    let Some(uri) = broker_uri().await else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let service_config = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &["HEARTBEAT=2"]);
    let name = unique("faults_load_cut");
    let executions = Executions::default();
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("work", recorded(&executions))),
        &service_config,
    )
    .await;
    // The caller is not behind the proxy: its requests and its reply queue outlive every cut.
    let client = Arc::new(client(&config(&uri, &[])).await);
    let mut random = Jitter::seeded();
    let seed = random.0;

    let answered = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let load = async {
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut calls = JoinSet::new();
        let mut issued = 0;
        let mut outcomes = Vec::new();
        while !done.load(Ordering::Acquire) {
            let permit = permits.clone().acquire_owned().await.expect("permits");
            let tag = format!("load-{issued}");
            issued += 1;
            let (client, name) = (client.clone(), name.clone());
            calls.spawn(async move {
                let answer = tokio::time::timeout(
                    WAIT,
                    client.call::<String>(&name, "work", (tag.clone(),)),
                )
                .await;
                drop(permit);
                (tag, answer)
            });
            while let Some(finished) = calls.try_join_next() {
                outcomes.push(finished.expect("call task"));
                answered.fetch_add(1, Ordering::AcqRel);
            }
        }
        while let Some(finished) = calls.join_next().await {
            outcomes.push(finished.expect("call task"));
        }
        outcomes
    };
    let cutter = async {
        for _ in 0..CUTS {
            let target = answered.load(Ordering::Acquire) + BETWEEN_CUTS;
            within(async {
                while answered.load(Ordering::Acquire) < target {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            tokio::time::sleep(Duration::from_millis(random.below(20))).await;
            proxy.drop_connections();
        }
        let target = answered.load(Ordering::Acquire) + BETWEEN_CUTS;
        within(async {
            while answered.load(Ordering::Acquire) < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        done.store(true, Ordering::Release);
    };
    let (outcomes, ()) = tokio::join!(load, cutter);

    let lost: Vec<_> = outcomes
        .iter()
        .filter(|(tag, answer)| !matches!(answer, Ok(Ok(value)) if value == tag))
        .map(|(tag, answer)| format!("{tag}: {answer:?}"))
        .take(5)
        .collect();
    assert!(
        lost.is_empty(),
        "every call is answered with its own value (seed {seed}); of {} calls, wrong or missing: {lost:?}",
        outcomes.len()
    );
    for (tag, _) in &outcomes {
        assert!(executions.of(tag) >= 1, "`{tag}` ran");
    }
    assert!(
        proxy.linked_connections() > CUTS,
        "each cut was followed by a reconnect: {} links",
        proxy.linked_connections()
    );
    let ran_again = executions.total() - outcomes.len();
    eprintln!(
        "{} calls, {CUTS} cuts, {ran_again} requests ran again after a lost acknowledgement",
        outcomes.len()
    );

    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    let state = inspector.inspect_queue(&queue).await.expect("inspect");
    assert_eq!(
        state.map(|state| state.message_count),
        Some(0),
        "nothing left queued"
    );
    assert_eq!(service.state(), ContainerState::Running);
    client.stop().await;
    within(service.stop()).await;
    delete_queues(&inspector, &[queue]).await;
}

/// Small random delays for fault timing; the seed is printed when a test fails.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| u64::from(since.subsec_nanos()));
        Self(nanos | 1)
    }

    /// A number below `bound` (xorshift64).
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}
