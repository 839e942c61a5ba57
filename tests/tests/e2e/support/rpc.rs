//! What the RPC tests build on: services and handlers used by several tests, clients, and the
//! waiting helpers, with the RPC tests' own patience.
//!
//! Waiting is always on an event (a handler reporting it started, a reply arriving) with a
//! timeout, never a sleep: [`within`] bounds every wait by [`WAIT`], and a [`Gate`] holds
//! handlers until the test lets them go, telling the test when each arrived.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use nameko_core::{Config, RemoteError, Service, ServiceContainer, Worker};
use nameko_rpc::{ClusterRpcClient, RpcError, RpcProxy};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

/// The state of a `service_x` that calls `service_y` through `y`.
pub struct ServiceX {
    pub y: RpcProxy,
}

impl ServiceX {
    /// Service `name`, calling service `y` through its `y` field.
    pub fn service(name: &str, y: &str) -> Service<ServiceX> {
        Service::with_state(name, |deps| ServiceX {
            y: deps.add("y", RpcProxy::new(y)),
        })
    }
}

pub const WAIT: Duration = Duration::from_secs(15);

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
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

pub fn remote(err: RpcError) -> RemoteError {
    match err {
        RpcError::Remote { error, .. } => error,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[derive(Deserialize)]
pub struct EchoArgs {
    pub a: Value,
    pub b: Option<Value>,
}

/// Python's `def echo(self, a, b=None): return {"a": a, "b": b}`.
pub async fn echo(_: Worker, args: EchoArgs) -> Result<Value, RemoteError> {
    Ok(json!({"a": args.a, "b": args.b}))
}

/// Python's `def fail(self): raise ValueError("bad", 7)`.
pub async fn fail(_: Worker, _: ()) -> Result<(), RemoteError> {
    Err(
        RemoteError::new("ValueError", "builtins.ValueError", "('bad', 7)")
            .with_args([json!("bad"), json!(7)]),
    )
}

/// Python's `def dispatch(self, payload): ...` without the event.
pub async fn dispatch(_: Worker, _payload: Value) {}

/// Returns what the worker knows about its caller.
pub async fn whoami(worker: Worker, _: ()) -> Result<Value, RemoteError> {
    Ok(json!({
        "user_id": worker.user_id(),
        "language": worker.language(),
        "custom_key": worker.data().get("custom_key"),
        "call_id_stack": worker.call_id_stack(),
    }))
}

pub async fn hello(_: Worker, name: String) -> Result<String, RemoteError> {
    Ok(format!("Hello, {name}!"))
}

/// A gate handlers wait at, and a channel on which they say they arrived.
#[derive(Clone)]
pub struct Gate {
    pub arrived: mpsc::UnboundedSender<String>,
    pub open: Arc<Semaphore>,
}

impl Gate {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (arrived, rx) = mpsc::unbounded_channel();
        (
            Self {
                arrived,
                open: Arc::new(Semaphore::new(0)),
            },
            rx,
        )
    }

    pub async fn pass(&self, tag: String) {
        let _ = self.arrived.send(tag);
        self.open.acquire().await.expect("gate open").forget();
    }

    pub fn release(&self, n: usize) {
        self.open.add_permits(n);
    }
}

/// A handler that reports `<instance>:<tag>` after passing the gate.
pub fn held(
    instance: &'static str,
    gate: Gate,
) -> impl Fn(
    Worker,
    String,
) -> std::pin::Pin<Box<dyn Future<Output = Result<String, RemoteError>> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |_: Worker, tag: String| {
        let gate = gate.clone();
        Box::pin(async move {
            gate.pass(tag.clone()).await;
            Ok(format!("{instance}:{tag}"))
        })
    }
}

/// Asserts that `seen["call_id_stack"]` holds one id per expected prefix, oldest first.
pub fn assert_call_id_stack(seen: &Value, prefixes: &[&str]) {
    let stack: Vec<&str> = seen["call_id_stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    assert_eq!(stack.len(), prefixes.len(), "{stack:?}");
    for (id, prefix) in stack.iter().zip(prefixes) {
        assert!(id.starts_with(prefix), "{id} does not start with {prefix}");
    }
}
