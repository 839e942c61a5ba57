//! What the fault tests build on: services that record or hold their work, clients that call
//! through a fault, and waiting on what the broker reports, with the fault tests' own patience.
//!
//! Each handler records its executions by tag ([`Executions`]), so a test can assert that every
//! call ran once, or bound how often one ran again; a [`Gate`] holds handlers until the test
//! injects its fault. A test waits on the broker's word (consumer counts, ready messages, a
//! round trip on a connection) rather than on time.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nameko_amqp::{AmqpSettings, Connection, ConnectionConfig, ConnectionRole, Topology};
use nameko_core::{Config, RemoteError, ServiceContainer, Worker, WorkerEvent};
use nameko_rpc::{ClusterRpcClient, RpcError};
use tokio::sync::{Semaphore, broadcast, mpsc};

pub const WAIT: Duration = Duration::from_secs(20);

/// Reconnect attempts into a blackhole give up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn within<F: IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("timed out waiting")
}

pub async fn start(
    service: impl Into<nameko_core::AnyService>,
    config: &Config,
) -> ServiceContainer {
    let container = ServiceContainer::new(service, config.clone()).expect("valid service");
    within(container.start()).await.expect("service starts");
    container
}

pub async fn client(config: &Config) -> ClusterRpcClient {
    within(ClusterRpcClient::connect(config))
        .await
        .expect("client connects")
}

/// A connection of the test's own, straight to the broker, to look at queues.
pub async fn inspector(uri: &str) -> Topology {
    let connection = Connection::connect(&ConnectionConfig::parse(uri).expect("broker uri"))
        .await
        .expect("inspector connects");
    Topology::new(&connection).await.expect("inspector channel")
}

/// Waits until `queue` has exactly `consumers` consumers.
pub async fn wait_for_consumers(inspector: &Topology, queue: &str, consumers: u32) {
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
pub async fn wait_until_delivered(inspector: &Topology, queue: &str) {
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
pub async fn settle(
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

pub async fn delete_queues(inspector: &Topology, queues: &[String]) {
    for queue in queues {
        let _ = inspector.delete_queue(queue).await;
    }
}

/// How often each tag was handled.
#[derive(Clone, Default)]
pub struct Executions(pub Arc<Mutex<HashMap<String, usize>>>);

impl Executions {
    pub fn record(&self, tag: &str) {
        *self.0.lock().unwrap().entry(tag.to_owned()).or_default() += 1;
    }

    pub fn of(&self, tag: &str) -> usize {
        self.0.lock().unwrap().get(tag).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
}

/// `work(tag)`: records the execution and returns the tag.
pub fn recorded(
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
pub struct Gate {
    pub arrived: mpsc::UnboundedSender<String>,
    pub open: Arc<Semaphore>,
}

impl Gate {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (arrived, rx) = mpsc::unbounded_channel();
        let open = Arc::new(Semaphore::new(0));
        (Self { arrived, open }, rx)
    }

    pub fn release(&self, permits: usize) {
        self.open.add_permits(permits);
    }
}

/// `work(tag)`: records the execution, waits at the gate, returns the tag.
pub fn gated(
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

pub async fn calls(client: &ClusterRpcClient, service: &str, tags: &[String]) {
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
pub async fn calls_after_a_fault(
    client: &ClusterRpcClient,
    service: &str,
    tags: &[String],
) -> usize {
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

pub fn tags(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// The shared connection of `role` that everything with the settings of `config` uses in this
/// runtime (the services' and clients' alike).
pub async fn shared_connection(config: &Config, role: ConnectionRole) -> Connection {
    let settings = AmqpSettings::from_config(config).unwrap();
    within(Connection::shared(settings.connection(), role))
        .await
        .expect("the shared connection")
}
