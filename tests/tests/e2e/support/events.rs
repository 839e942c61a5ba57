//! What the event tests build on: handlers that report every event to the test, the waiting
//! helpers, and services that dispatch.
//!
//! Handlers report to the test through channels; a test waits for the reports it expects
//! ([`take`], [`take_until`], each bounded by [`EXPECT`]), and checks that nothing else arrives
//! by listening briefly after a positive signal ([`stragglers`], for [`QUIET`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nameko_amqp::Topology;
use nameko_core::testing::dummy;
use nameko_core::{
    Config, ContextData, DirectCall, Entrypoint, EntrypointInfo, Extension, RemoteError, Service,
    ServiceContainer, Worker,
};
use nameko_events::{EventDispatcher, StandaloneDispatcher};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::broker;

/// How long a test waits for something it expects.
pub const EXPECT: Duration = Duration::from_secs(20);

/// How long a test listens, after its sentinel arrived, for something that must not come.
pub const QUIET: Duration = Duration::from_millis(300);

/// One event as a handler saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Which handler instance: a label given by the test.
    pub who: String,
    pub payload: Value,
    pub context: ContextData,
    pub call_id: String,
    pub call_id_stack: Vec<String>,
}

pub type Inbox = mpsc::UnboundedReceiver<Received>;

pub type Outbox = mpsc::UnboundedSender<Received>;

pub type Reply<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub fn received(who: &str, worker: &Worker, payload: Value) -> Received {
    Received {
        who: who.to_owned(),
        payload,
        context: worker.data().clone(),
        call_id: worker.call_id().to_owned(),
        call_id_stack: worker.call_id_stack().to_vec(),
    }
}

/// A handler that reports every event to `tx`, labelled `who`.
pub fn recorder(
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
pub fn failing(
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
pub async fn take(inbox: &mut Inbox, n: usize) -> Vec<Received> {
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
pub async fn take_until(
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
pub async fn stragglers(inbox: &mut Inbox) -> Vec<Received> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + QUIET;
    while let Ok(Some(report)) = tokio::time::timeout_at(deadline, inbox.recv()).await {
        got.push(report);
    }
    got
}

pub async fn run(service: impl Into<nameko_core::AnyService>, config: &Config) -> ServiceContainer {
    let container = ServiceContainer::new(service, config.clone()).expect("a valid service");
    container.start().await.expect("the service starts");
    container
}

pub async fn queue_state(uri: &str, queue: &str) -> Option<nameko_amqp::QueueState> {
    let topology = Topology::new(&broker(uri).await).await.expect("a channel");
    topology
        .inspect_queue(queue)
        .await
        .expect("inspecting a queue")
}

pub fn ids(reports: &[Received]) -> Vec<i64> {
    let mut ids: Vec<i64> = reports
        .iter()
        .filter_map(|r| r.payload["id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids
}

pub fn by_who(reports: &[Received]) -> BTreeMap<String, Vec<i64>> {
    let mut map: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for report in reports {
        map.entry(report.who.clone())
            .or_default()
            .push(report.payload["id"].as_i64().unwrap_or(-1));
    }
    map.values_mut().for_each(|v| v.sort_unstable());
    map
}

pub async fn dispatch_ids(
    dispatcher: &StandaloneDispatcher,
    source: &str,
    event_type: &str,
    n: i64,
) {
    for id in 0..n {
        dispatcher
            .dispatch(source, event_type, &json!({"id": id}))
            .await
            .expect("dispatch confirmed");
    }
}

/// A service that dispatches, from a hooked worker, whatever event it is called with.
pub fn emitter(name: &str) -> Service<Emitter> {
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
pub struct Emitter {
    pub dispatch: EventDispatcher,
}

/// An entrypoint that does nothing but open a gate when its container stops its entrypoints;
/// added after an event handler, it opens once that handler has stopped consuming.
pub struct OpenOnStop {
    pub info: Arc<EntrypointInfo>,
    pub gate: Arc<tokio::sync::Semaphore>,
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
