//! Faults: what a service does when production breaks its broker connection or kills its
//! process, and a bounded load test with instances killed and restarted.
//!
//! The network faults go through a [`FaultProxy`] between the code under test and the broker:
//! cut connections, stalls, blackholes, a broker that is down. The broker itself closes
//! connections through `rabbitmqctl close_connection`. A real service process
//! (`nameko-fault-service`, a binary of this crate) is SIGKILLed mid-call and stopped with
//! SIGTERM under load. Every test checks that each call or event was answered or reported as
//! an error, none answered twice, and that no consumer or connection was left behind.
//!
//! Delivery is at least once, as in Nameko: a request whose worker finished but whose
//! acknowledgement was lost with the connection runs again, and the caller drops the second
//! reply. Where a test cannot rule that out it says so and bounds it; where it can (nothing in
//! flight during the fault) it asserts exactly one execution.
//!
//! Waiting is on events (a handler reporting it started, a reply, a connection count) with a
//! timeout; the few handlers that block their thread do it on purpose, to show that nothing
//! else starves.

use std::collections::{HashMap, HashSet};
use std::future::IntoFuture;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nameko_amqp::{
    AmqpSettings, Connection, ConnectionConfig, ConnectionRole, QueueSpec, Topology,
};
use nameko_core::{
    Config, ContainerState, RemoteError, Service, ServiceContainer, Worker, WorkerEvent,
};
use nameko_events::{EventDispatcher, StandaloneDispatcher, event_handler, names};
use nameko_rpc::{ClusterRpcClient, RpcError, rpc};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::proxy::FaultProxy;
use crate::support::{broker_uri, config, unique};

const WAIT: Duration = Duration::from_secs(20);
/// Reconnect attempts into a blackhole give up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

async fn within<F: IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("timed out waiting")
}

async fn start(service: impl Into<nameko_core::AnyService>, config: &Config) -> ServiceContainer {
    let container = ServiceContainer::new(service, config.clone()).expect("valid service");
    within(container.start()).await.expect("service starts");
    container
}

async fn client(config: &Config) -> ClusterRpcClient {
    within(ClusterRpcClient::connect(config))
        .await
        .expect("client connects")
}

/// A connection of the test's own, straight to the broker, to look at queues.
async fn inspector(uri: &str) -> Topology {
    let connection = Connection::connect(&ConnectionConfig::parse(uri).expect("broker uri"))
        .await
        .expect("inspector connects");
    Topology::new(&connection).await.expect("inspector channel")
}

/// Waits until `queue` has exactly `consumers` consumers.
async fn wait_for_consumers(inspector: &Topology, queue: &str, consumers: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = inspector.inspect_queue(queue).await.expect("inspect queue");
        let found = state.map(|state| state.consumer_count);
        if found == Some(consumers) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {consumers} consumers on `{queue}`, found {found:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// Waits until `queue` holds no message ready for delivery: everything was handed to a
/// consumer.
async fn wait_until_delivered(inspector: &Topology, queue: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = inspector.inspect_queue(queue).await.expect("inspect queue");
        if state.is_some_and(|state| state.message_count == 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{queue}` still holds messages: {state:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// Waits until the service has settled everything its next `count` workers took, so that a
/// fault injected afterwards cannot send any of it back: a worker ends after its request's
/// acknowledgement was written, and a round trip on the service's consuming connection (shared
/// by everything in this runtime with the same settings) proves the broker has read it.
async fn settle(
    workers: &mut broadcast::Receiver<Arc<WorkerEvent>>,
    count: usize,
    config: &Config,
) {
    for _ in 0..count {
        within(workers.recv()).await.expect("worker events");
    }
    let consuming = shared_connection(config, ConnectionRole::Consumer).await;
    let channel = within(consuming.create_channel())
        .await
        .expect("round trip");
    let _ = channel.close(200, "OK".into()).await;
}

async fn delete_queues(inspector: &Topology, queues: &[String]) {
    for queue in queues {
        let _ = inspector.delete_queue(queue).await;
    }
}

/// How often each tag was handled.
#[derive(Clone, Default)]
struct Executions(Arc<Mutex<HashMap<String, usize>>>);

impl Executions {
    fn record(&self, tag: &str) {
        *self.0.lock().unwrap().entry(tag.to_owned()).or_default() += 1;
    }

    fn of(&self, tag: &str) -> usize {
        self.0.lock().unwrap().get(tag).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
}

/// `work(tag)`: records the execution and returns the tag.
fn recorded(
    executions: &Executions,
) -> impl Fn(Worker, String) -> std::future::Ready<Result<String, RemoteError>> + Clone + use<> {
    let executions = executions.clone();
    move |_: Worker, tag: String| {
        executions.record(&tag);
        std::future::ready(Ok(tag))
    }
}

/// A gate handlers wait at, reporting on `arrived` when they get there.
#[derive(Clone)]
struct Gate {
    arrived: mpsc::UnboundedSender<String>,
    open: Arc<Semaphore>,
}

impl Gate {
    fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (arrived, rx) = mpsc::unbounded_channel();
        let open = Arc::new(Semaphore::new(0));
        (Self { arrived, open }, rx)
    }

    fn release(&self, permits: usize) {
        self.open.add_permits(permits);
    }
}

/// `work(tag)`: records the execution, waits at the gate, returns the tag.
fn gated(
    gate: &Gate,
    executions: &Executions,
) -> impl Fn(
    Worker,
    String,
) -> std::pin::Pin<Box<dyn Future<Output = Result<String, RemoteError>> + Send>>
+ Clone
+ use<> {
    let (gate, executions) = (gate.clone(), executions.clone());
    move |_: Worker, tag: String| {
        let (gate, executions) = (gate.clone(), executions.clone());
        Box::pin(async move {
            executions.record(&tag);
            let _ = gate.arrived.send(tag.clone());
            gate.open.acquire().await.expect("gate open").forget();
            Ok(tag)
        })
    }
}

async fn calls(client: &ClusterRpcClient, service: &str, tags: &[String]) {
    for tag in tags {
        let answer: String = within(client.call(service, "work", (tag.clone(),)))
            .await
            .unwrap_or_else(|e| panic!("call `{tag}` failed: {e}"));
        assert_eq!(&answer, tag);
    }
}

/// Calls made right after a fault: a request written into a connection that had just died
/// (before the client noticed) is reported as a publish failure, since the broker may or may
/// not have it; a caller tries again, as this does, once. Returns how many calls needed that.
async fn calls_after_a_fault(client: &ClusterRpcClient, service: &str, tags: &[String]) -> usize {
    let mut retried = 0;
    for tag in tags {
        let answer = match within(client.call::<String>(service, "work", (tag.clone(),))).await {
            Err(RpcError::Publish { source, .. }) if source.is_connection_failure() => {
                retried += 1;
                within(client.call::<String>(service, "work", (tag.clone(),))).await
            }
            answer => answer,
        };
        assert_eq!(
            &answer.unwrap_or_else(|e| panic!("call `{tag}` failed: {e}")),
            tag
        );
    }
    assert!(
        retried <= 1,
        "only a call racing the fault may lose its request"
    );
    retried
}

fn tags(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Network faults through the proxy.

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
    proxy.wait_for_open(2, WAIT).await;
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

/// The broker's own tool closes the service's connections (as an operator, or a broker
/// shutting down, does): the service reconnects and serves on, and the broker holds no
/// connection of the old ones.
#[tokio::test]
async fn connections_the_broker_closes_are_reopened() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let Some(rabbitmqctl) = rabbitmqctl() else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let config_service = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &[]);
    let name = unique("faults_forced");
    let executions = Executions::default();
    let (events_tx, mut events) = mpsc::unbounded_channel::<String>();
    let on_job = move |_: Worker, payload: serde_json::Value| {
        let events_tx = events_tx.clone();
        async move {
            let _ = events_tx.send(payload["id"].as_str().unwrap_or_default().to_owned());
        }
    };
    let source = unique("faults_src");
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("work", recorded(&executions)))
            .entrypoint(event_handler(source.as_str(), "job", "on_job", on_job)),
        &config_service,
    )
    .await;
    let direct = config(&uri, &[]);
    let client = client(&direct).await;
    let dispatcher = StandaloneDispatcher::new(&direct).unwrap();
    let mut workers = service.container().subscribe_workers();
    calls(&client, &name, &tags("before", 2)).await;
    settle(&mut workers, 2, &config_service).await;
    proxy.wait_for_open(2, WAIT).await;

    let closed = proxy.upstream_ports();
    for port in &closed {
        close_broker_connection(&rabbitmqctl, *port).await;
    }
    // The consumer reconnects at once; the publisher when it next has something to send.
    let reopened = async {
        while proxy.linked_connections() < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within(reopened).await;
    assert_eq!(service.state(), ContainerState::Running);

    calls(&client, &name, &tags("after", 2)).await;
    within(dispatcher.dispatch(&source, "job", &json!({"id": "after"})))
        .await
        .unwrap();
    assert_eq!(within(events.recv()).await.unwrap(), "after");
    assert_eq!(executions.total(), 4, "each call handled once");

    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    let event_queue = names::service_pool_queue(&source, "job", &name, "on_job");
    wait_for_consumers(&inspector, &queue, 1).await;
    wait_for_consumers(&inspector, &event_queue, 1).await;
    proxy.wait_for_open(2, WAIT).await;
    let open = broker_peer_ports(&rabbitmqctl).await;
    for port in closed {
        assert!(
            !open.contains(&port),
            "the broker still holds connection :{port}"
        );
    }
    let queues = rabbitmqctl_output(
        &rabbitmqctl,
        &["-q", "--no-table-headers", "list_queues", "name"],
    )
    .await
    .lines()
    .map(str::trim)
    .filter(|queue| queue.contains(name.as_str()))
    .map(str::to_owned)
    .collect::<HashSet<_>>();
    assert_eq!(
        queues,
        HashSet::from([queue.clone(), event_queue.clone()]),
        "recovery declared the same queues again, and no others"
    );
    client.stop().await;
    within(service.stop()).await;
    delete_queues(&inspector, &[queue, event_queue]).await;
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

/// The shared connection of `role` that everything with the settings of `config` uses in this
/// runtime (the services' and clients' alike).
async fn shared_connection(config: &Config, role: ConnectionRole) -> Connection {
    let settings = AmqpSettings::from_config(config).unwrap();
    within(Connection::shared(settings.connection(), role))
        .await
        .expect("the shared connection")
}

/// Handlers that hog their thread (blocking, as CPU-bound code does) for several heartbeat
/// intervals. With one of the runtime's two threads blocked, other calls are answered
/// meanwhile. With both blocked, nothing else runs, but the connection's heartbeats do (on the
/// broker runtime): the broker keeps the connection, no request is handed out again, and each
/// blocked call finishes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_hogging_their_threads_starve_neither_heartbeats_nor_other_calls() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &["HEARTBEAT=1"]);
    let name = unique("faults_hog");
    let hogging = Arc::new(AtomicUsize::new(0));
    let hogs = Executions::default();
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let hog = {
        let (hogging, hogs) = (hogging.clone(), hogs.clone());
        move |_: Worker, (tag, seconds): (String, u64)| {
            let (hogging, hogs, started_tx) = (hogging.clone(), hogs.clone(), started_tx.clone());
            async move {
                hogs.record(&tag);
                hogging.fetch_add(1, Ordering::SeqCst);
                let _ = started_tx.send(());
                // Blocking on purpose: this is the misbehaving handler under test.
                std::thread::sleep(Duration::from_secs(seconds));
                hogging.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(tag)
            }
        }
    };
    let executions = Executions::default();
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("hog", hog))
            .entrypoint(rpc("work", recorded(&executions))),
        &config,
    )
    .await;
    let client = client(&config).await;
    calls(&client, &name, &tags("before", 1)).await;
    let consuming = shared_connection(&config, ConnectionRole::Consumer).await;
    let publishing = shared_connection(&config, ConnectionRole::Publisher).await;

    // Five seconds: the broker drops a connection after two missed one-second heartbeats.
    let hogged = within(client.call_async::<String>(&name, "hog", ("alone", 5)))
        .await
        .unwrap();
    within(started.recv()).await.unwrap();
    calls(&client, &name, &tags("meanwhile", 3)).await;
    assert_eq!(
        hogging.load(Ordering::SeqCst),
        1,
        "the other calls were answered while the handler hogged its thread"
    );
    assert_eq!(within(hogged).await.unwrap(), "alone");

    let first = within(client.call_async::<String>(&name, "hog", ("first", 5)))
        .await
        .unwrap();
    let second = within(client.call_async::<String>(&name, "hog", ("second", 5)))
        .await
        .unwrap();
    assert_eq!(within(first).await.unwrap(), "first");
    assert_eq!(within(second).await.unwrap(), "second");

    calls(&client, &name, &tags("after", 1)).await;
    for (role, before) in [
        (ConnectionRole::Consumer, &consuming),
        (ConnectionRole::Publisher, &publishing),
    ] {
        let now = shared_connection(&config, role).await;
        assert!(
            now.same_connection(before),
            "the {role} connection survived"
        );
    }
    for tag in ["alone", "first", "second"] {
        assert_eq!(
            hogs.of(tag),
            1,
            "`{tag}` ran once: nothing was handed out again"
        );
    }
    assert_eq!(executions.total(), 5);
    assert_eq!(service.state(), ContainerState::Running);
    client.stop().await;
    within(service.stop()).await;
    let inspector = inspector(&uri).await;
    delete_queues(&inspector, &[format!("rpc-{name}")]).await;
}

// ---------------------------------------------------------------------------------------------
// Real processes: SIGKILL and SIGTERM.

/// `rabbitmqctl`, or `None` (after saying why) when it is not there and the run is not CI.
fn rabbitmqctl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("rabbitmqctl"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "rabbitmqctl is not on PATH; under CI the broker-side fault tests must run"
        );
        eprintln!(
            "skipping: rabbitmqctl is not on PATH, so the broker cannot be told to close connections"
        );
    }
    found
}

async fn rabbitmqctl_output(rabbitmqctl: &PathBuf, args: &[&str]) -> String {
    let output = Command::new(rabbitmqctl)
        .args(args)
        .output()
        .await
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The client ports of every connection the broker holds.
async fn broker_peer_ports(rabbitmqctl: &PathBuf) -> HashSet<u16> {
    rabbitmqctl_output(
        rabbitmqctl,
        &["-q", "--no-table-headers", "list_connections", "peer_port"],
    )
    .await
    .lines()
    .filter_map(|line| line.trim().parse().ok())
    .collect()
}

/// Has the broker close the connection whose client port is `port`.
async fn close_broker_connection(rabbitmqctl: &PathBuf, port: u16) {
    let listing = rabbitmqctl_output(
        rabbitmqctl,
        &[
            "-q",
            "--no-table-headers",
            "list_connections",
            "pid",
            "peer_port",
        ],
    )
    .await;
    let pid = listing
        .lines()
        .filter_map(|line| line.rsplit_once('\t'))
        .find(|(_, peer_port)| peer_port.trim() == port.to_string())
        .map(|(pid, _)| pid.trim().to_owned())
        .unwrap_or_else(|| panic!("the broker has no connection from port {port}: {listing}"));
    rabbitmqctl_output(
        rabbitmqctl,
        &["-q", "close_connection", &pid, "closed by a fault test"],
    )
    .await;
}

/// What a service process printed, line by line, tagged with its number.
type Lines = mpsc::UnboundedSender<(usize, String)>;

/// A `nameko-fault-service` process; killed if dropped.
struct ServiceProcess {
    number: usize,
    child: Child,
}

impl ServiceProcess {
    /// Starts instance `number` of `service` and waits until it serves.
    async fn start(
        number: usize,
        service: &str,
        source: &str,
        uri: &str,
        lines: &Lines,
        ready: &mut mpsc::UnboundedReceiver<usize>,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nameko-fault-service"))
            .args([service, source])
            .env("AMQP_URI", uri)
            .env("max_workers", "20")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("service process starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if lines.send((number, line)).is_err() {
                    return;
                }
            }
        });
        let process = Self { number, child };
        loop {
            let started = within(ready.recv()).await.expect("lines flow");
            if started == number {
                return process;
            }
        }
    }

    /// SIGKILL: the process acknowledges nothing more and its sockets close.
    async fn kill(mut self) {
        self.child.start_kill().expect("kill");
        within(self.child.wait())
            .await
            .expect("killed process reaped");
    }

    /// SIGTERM: a graceful stop; returns the exit code.
    async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().expect("running") as i32;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM runs");
        assert!(status.success());
        within(self.child.wait()).await.expect("stopped").code()
    }
}

/// Every line the service processes printed, with the number of the instance that printed it.
#[derive(Clone, Default)]
struct Output {
    lines: Arc<Mutex<Vec<(usize, String)>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Output {
    /// Waits until `done` holds for the lines printed so far.
    async fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&[(usize, String)]) -> bool) {
        let waiting = async {
            loop {
                let notified = self.changed.notified();
                if done(&self.lines.lock().unwrap()) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, waiting)
            .await
            .expect("timed out waiting for service output");
    }

    fn snapshot(&self) -> Vec<(usize, String)> {
        self.lines.lock().unwrap().clone()
    }
}

/// Routes service process output: `ready` lines to the returned receiver, every line to the
/// returned [`Output`].
fn collect_lines() -> (Lines, mpsc::UnboundedReceiver<usize>, Output) {
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<(usize, String)>();
    let (ready_tx, ready) = mpsc::unbounded_channel();
    let output = Output::default();
    let recorder = output.clone();
    tokio::spawn(async move {
        while let Some((number, line)) = lines.recv().await {
            if line.starts_with("ready ") {
                let _ = ready_tx.send(number);
            }
            recorder.lines.lock().unwrap().push((number, line));
            recorder.changed.notify_waiters();
        }
    });
    (lines_tx, ready, output)
}

fn count(lines: &[(usize, String)], number: Option<usize>, line: &str) -> usize {
    lines
        .iter()
        .filter(|(n, l)| l == line && number.is_none_or(|number| *n == number))
        .count()
}

/// An instance SIGKILLed while it runs a call and handles an event: both come back from the
/// broker to the other instance, the caller gets exactly one answer, from the survivor, and
/// the event is handled to the end once.
#[tokio::test]
async fn an_instance_killed_mid_call_hands_its_work_to_another() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let (name, source) = (unique("faults_sigkill"), unique("faults_src"));
    let (lines, mut ready, output) = collect_lines();
    let doomed = ServiceProcess::start(1, &name, &source, &uri, &lines, &mut ready).await;

    let client = client(&config(&uri, &[])).await;
    let call = within(client.call_async::<String>(&name, "work", ("k1", 1500)))
        .await
        .unwrap();
    let dispatcher = StandaloneDispatcher::from_uri(&uri).unwrap();
    within(dispatcher.dispatch(&source, "job", &json!({"id": "e1", "millis": 1500})))
        .await
        .unwrap();
    output
        .wait_for(WAIT, |lines| {
            count(lines, Some(1), "start k1") == 1 && count(lines, Some(1), "event-start e1") == 1
        })
        .await;

    let survivor = ServiceProcess::start(2, &name, &source, &uri, &lines, &mut ready).await;
    doomed.kill().await;

    let answer = within(call).await.unwrap();
    let survivor_pid = survivor.child.id().expect("running");
    assert_eq!(answer, format!("{survivor_pid}:k1"));
    output
        .wait_for(WAIT, |lines| count(lines, Some(2), "event-done e1") == 1)
        .await;
    {
        let lines = output.snapshot();
        assert_eq!(count(&lines, Some(1), "done k1"), 0, "killed mid-call");
        assert_eq!(
            count(&lines, Some(1), "event-done e1"),
            0,
            "killed mid-event"
        );
        assert_eq!(count(&lines, None, "done k1"), 1);
        assert_eq!(count(&lines, None, "event-done e1"), 1);
    }

    // The dead instance's consumers are gone with its connection.
    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    let event_queue = names::service_pool_queue(&source, "job", &name, "on_job");
    wait_for_consumers(&inspector, &queue, 1).await;
    wait_for_consumers(&inspector, &event_queue, 1).await;

    assert_eq!(survivor.terminate().await, Some(0), "a graceful stop");
    output
        .wait_for(WAIT, |lines| count(lines, Some(2), "stopped") == 1)
        .await;
    wait_for_consumers(&inspector, &queue, 0).await;
    client.stop().await;
    delete_queues(&inspector, &[queue, event_queue]).await;
}

// ---------------------------------------------------------------------------------------------
// Load with instances killed and restarted.

/// How many calls and events the load test sends: `NAMEKO_LOAD` or 5,000. Four in five are RPC
/// calls, the rest events.
fn load_size() -> usize {
    std::env::var("NAMEKO_LOAD")
        .ok()
        .and_then(|size| size.parse().ok())
        .unwrap_or(5_000)
}

/// Calls and events from several clients while service instances are killed (SIGKILL) and
/// stopped (SIGTERM) and new ones started: every call is answered once, every event handled,
/// none lost. Events may be handled twice only when an instance was killed between handling
/// one and acknowledging it (at-least-once); each such duplicate must involve a killed
/// instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_instances_killed_and_restarted_loses_nothing() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let total = load_size();
    let (call_count, event_count) = (total - total / 5, total / 5);
    let (name, source) = (unique("faults_load"), unique("faults_src"));
    let (lines, mut ready, output) = collect_lines();
    let began = Instant::now();

    let mut instances = Vec::new();
    for number in 1..=3 {
        instances
            .push(ServiceProcess::start(number, &name, &source, &uri, &lines, &mut ready).await);
    }
    let mut next_number = 4;

    const CLIENTS: usize = 4;
    const IN_FLIGHT: usize = 32;
    let config = config(&uri, &[]);
    let answered = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for client_number in 0..CLIENTS {
        let client = client(&config)
            .await
            .with_timeout(Some(Duration::from_secs(120)));
        let (name, answered) = (name.clone(), answered.clone());
        senders.spawn(async move {
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut calls = tokio::task::JoinSet::new();
            let mut errors = Vec::new();
            for i in (client_number..call_count).step_by(CLIENTS) {
                let permit = slots.clone().acquire_owned().await.unwrap();
                let (client, name, answered) = (client.clone(), name.clone(), answered.clone());
                calls.spawn(async move {
                    let tag = format!("c{i}");
                    let millis = (i % 7) as u64;
                    let outcome = client
                        .call::<String>(&name, "work", (tag.clone(), millis))
                        .await;
                    drop(permit);
                    match outcome {
                        Ok(answer) if answer.ends_with(&format!(":{tag}")) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        }
                        Ok(answer) => Err(format!("`{tag}` answered `{answer}`")),
                        Err(error) => Err(format!("`{tag}` failed: {error}")),
                    }
                });
            }
            while let Some(outcome) = calls.join_next().await {
                if let Err(error) = outcome.expect("call task") {
                    errors.push(error);
                }
            }
            client.stop().await;
            errors
        });
    }
    let dispatcher = Arc::new(StandaloneDispatcher::new(&config).unwrap());
    let dispatching = {
        let (dispatcher, source) = (dispatcher.clone(), source.clone());
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut sends = tokio::task::JoinSet::new();
            for i in 0..event_count {
                let permit = slots.clone().acquire_owned().await.unwrap();
                let (dispatcher, source) = (dispatcher.clone(), source.clone());
                sends.spawn(async move {
                    let payload = json!({"id": format!("e{i}"), "millis": i % 5});
                    let sent = dispatcher.dispatch(&source, "job", &payload).await;
                    drop(permit);
                    sent.map_err(|error| format!("event e{i}: {error}"))
                });
            }
            let mut errors = Vec::new();
            while let Some(sent) = sends.join_next().await {
                if let Err(error) = sent.expect("dispatch task") {
                    errors.push(error);
                }
            }
            errors
        })
    };

    // Chaos while the load runs: replace one instance at a time, alternately killing it and
    // stopping it gracefully, until the calls are answered.
    let mut killed = HashSet::new();
    let (mut kills, mut stops) = (0usize, 0usize);
    let mut round = 0usize;
    while answered.load(Ordering::Relaxed) < call_count && !senders.is_empty() {
        let progress = answered.load(Ordering::Relaxed);
        let moved = async {
            while answered.load(Ordering::Relaxed) < (progress + call_count / 12).min(call_count) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(120), moved)
            .await
            .is_err()
        {
            panic!(
                "no progress for two minutes: {} of {call_count} calls answered",
                answered.load(Ordering::Relaxed)
            );
        }
        if answered.load(Ordering::Relaxed) >= call_count {
            break;
        }
        let victim = instances.remove(0);
        let number = victim.number;
        if round.is_multiple_of(2) {
            victim.kill().await;
            killed.insert(number);
            kills += 1;
        } else {
            assert_eq!(
                victim.terminate().await,
                Some(0),
                "instance {number} stops gracefully"
            );
            stops += 1;
        }
        round += 1;
        instances.push(
            ServiceProcess::start(next_number, &name, &source, &uri, &lines, &mut ready).await,
        );
        next_number += 1;
    }

    let mut call_errors = Vec::new();
    while let Some(errors) = senders.join_next().await {
        call_errors.extend(errors.expect("client task"));
    }
    let event_errors = within(dispatching).await.expect("dispatch task");
    let answered = answered.load(Ordering::Relaxed);

    // Every event that was dispatched gets handled, however long the last ones take.
    output
        .wait_for(Duration::from_secs(120), |lines| {
            let handled: HashSet<&str> = lines
                .iter()
                .filter_map(|(_, line)| line.strip_prefix("event-done "))
                .collect();
            handled.len() >= event_count
        })
        .await;
    let elapsed = began.elapsed();

    let lines = output.snapshot();
    let mut handled: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut executions: HashMap<&str, usize> = HashMap::new();
    for (number, line) in &lines {
        if let Some(id) = line.strip_prefix("event-done ") {
            handled.entry(id).or_default().push(*number);
        } else if let Some(tag) = line.strip_prefix("done ") {
            *executions.entry(tag).or_default() += 1;
        }
    }
    let event_duplicates: Vec<_> = handled.iter().filter(|(_, by)| by.len() > 1).collect();
    let rpc_reruns: usize = executions.values().map(|runs| runs - 1).sum();
    let lost_events = (0..event_count)
        .filter(|i| !handled.contains_key(format!("e{i}").as_str()))
        .count();
    eprintln!(
        "load: {total} sent ({call_count} calls, {event_count} events) in {elapsed:.1?} with \
         {kills} instances killed and {stops} stopped; {answered} calls answered, {} call \
         errors, {rpc_reruns} requests run again after a kill; {} events handled, {} dispatch \
         errors, {} handled twice, {lost_events} lost",
        call_errors.len(),
        handled.len(),
        event_errors.len(),
        event_duplicates.len(),
    );

    assert!(
        call_errors.is_empty(),
        "call errors: {:?}",
        &call_errors[..call_errors.len().min(5)]
    );
    assert!(
        event_errors.is_empty(),
        "dispatch errors: {:?}",
        &event_errors[..event_errors.len().min(5)]
    );
    assert_eq!(answered, call_count, "every call answered");
    assert_eq!(lost_events, 0, "every event handled");
    for (id, by) in &event_duplicates {
        assert!(
            by.iter().any(|number| killed.contains(number)),
            "event {id} handled twice ({by:?}) without an instance being killed"
        );
    }
    assert!(
        kills + stops >= 1,
        "the load outlasted at least one replacement"
    );

    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    let event_queue = names::service_pool_queue(&source, "job", &name, "on_job");
    wait_for_consumers(&inspector, &queue, instances.len() as u32).await;
    for instance in instances {
        assert_eq!(instance.terminate().await, Some(0));
    }
    wait_for_consumers(&inspector, &queue, 0).await;
    let left = inspector
        .inspect_queue(&event_queue)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.message_count, 0, "no event left behind");
    delete_queues(&inspector, &[queue, event_queue]).await;
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
