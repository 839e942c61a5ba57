//! RPC against a real broker: the `rpc` entrypoint, `RpcProxy` and the standalone clients, the
//! exact messages they send and accept, and what happens to bad input, slow workers, dead
//! instances and stopping services.
//!
//! Every test uses its own service names (and, where it watches raw traffic, its own RPC
//! exchange), so tests run in parallel on one broker without seeing each other. Waiting is always
//! on an event (a handler reporting it started, a reply arriving) with a timeout, never a sleep.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use nameko_amqp::{
    Connection, ConnectionConfig, Consumer, Delivery, PublishOptions, Publisher, QueueSpec,
    Topology,
};
use nameko_core::testing::entrypoint_hook;
use nameko_core::{
    Config, ContainerState, ContextData, RemoteError, Service, ServiceContainer, Worker,
};
use nameko_rpc::{Args, ClusterRpcClient, RpcError, RpcProxy, ServiceRpcClient, rpc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::support::{broker_uri, config, unique};

/// The state of a `service_x` that calls `service_y` through `y`.
struct ServiceX {
    y: RpcProxy,
}

impl ServiceX {
    /// Service `name`, calling service `y` through its `y` field.
    fn service(name: &str, y: &str) -> Service<ServiceX> {
        Service::with_state(name, |deps| ServiceX {
            y: deps.add("y", RpcProxy::new(y)),
        })
    }
}

const WAIT: Duration = Duration::from_secs(15);

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
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

fn remote(err: RpcError) -> RemoteError {
    match err {
        RpcError::Remote { error, .. } => error,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers used by several tests.

#[derive(Deserialize)]
struct EchoArgs {
    a: Value,
    b: Option<Value>,
}

/// Python's `def echo(self, a, b=None): return {"a": a, "b": b}`.
async fn echo(_: Worker, args: EchoArgs) -> Result<Value, RemoteError> {
    Ok(json!({"a": args.a, "b": args.b}))
}

/// Python's `def fail(self): raise ValueError("bad", 7)`.
async fn fail(_: Worker, _: ()) -> Result<(), RemoteError> {
    Err(
        RemoteError::new("ValueError", "builtins.ValueError", "('bad', 7)")
            .with_args([json!("bad"), json!(7)]),
    )
}

/// Python's `def dispatch(self, payload): ...` without the event.
async fn dispatch(_: Worker, _payload: Value) {}

/// Returns what the worker knows about its caller.
async fn whoami(worker: Worker, _: ()) -> Result<Value, RemoteError> {
    Ok(json!({
        "user_id": worker.user_id(),
        "language": worker.language(),
        "custom_key": worker.data().get("custom_key"),
        "call_id_stack": worker.call_id_stack(),
    }))
}

async fn hello(_: Worker, name: String) -> Result<String, RemoteError> {
    Ok(format!("Hello, {name}!"))
}

/// A gate handlers wait at, and a channel on which they say they arrived.
#[derive(Clone)]
struct Gate {
    arrived: mpsc::UnboundedSender<String>,
    open: Arc<Semaphore>,
}

impl Gate {
    fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (arrived, rx) = mpsc::unbounded_channel();
        (
            Self {
                arrived,
                open: Arc::new(Semaphore::new(0)),
            },
            rx,
        )
    }

    async fn pass(&self, tag: String) {
        let _ = self.arrived.send(tag);
        self.open.acquire().await.expect("gate open").forget();
    }

    fn release(&self, n: usize) {
        self.open.add_permits(n);
    }
}

/// A handler that reports `<instance>:<tag>` after passing the gate.
fn held(
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

// ---------------------------------------------------------------------------------------------
// Raw broker access, to send what no well-behaved client sends and to watch what goes over the
// wire.

struct Raw {
    connection: Connection,
    publisher: Publisher,
    topology: Topology,
    exchange: String,
}

impl Raw {
    async fn new(uri: &str, exchange: &str) -> Self {
        let settings = ConnectionConfig::parse(uri).expect("uri");
        let connection = within(Connection::connect(&settings))
            .await
            .expect("connect");
        let publisher = Publisher::new(&connection).await.expect("publisher");
        let topology = Topology::new(&connection).await.expect("topology");
        topology
            .declare_rpc_exchange(exchange)
            .await
            .expect("exchange");
        Self {
            connection,
            publisher,
            topology,
            exchange: exchange.to_owned(),
        }
    }

    /// A temporary queue bound to the exchange with `binding`.
    async fn listen(&self, binding: &str) -> Consumer {
        let name = unique("spy");
        let spec = QueueSpec::durable(&name).exclusive(true).auto_delete(true);
        let consumer = Consumer::start(&self.connection, &spec, 0)
            .await
            .expect("consume");
        self.topology
            .bind_queue(&name, &self.exchange, binding)
            .await
            .expect("bind");
        consumer
    }

    async fn publish(&self, routing_key: &str, body: &[u8], options: PublishOptions) {
        self.publisher
            .publish(&self.exchange, routing_key, body, options)
            .await
            .expect("raw publish");
    }
}

/// Deletes the request queues of these services: they are durable, as Nameko declares them, and
/// would otherwise stay on the broker after the test.
pub(crate) async fn delete_rpc_queues(uri: &str, services: &[&str]) {
    let raw = Raw::new(uri, "nameko-rpc").await;
    for service in services {
        raw.topology
            .delete_queue(&format!("rpc-{service}"))
            .await
            .expect("delete the test's rpc queue");
    }
}

async fn next(consumer: &mut Consumer) -> Delivery {
    let delivery = within(consumer.next())
        .await
        .expect("consumer open")
        .expect("delivery");
    delivery.ack().await.expect("ack");
    delivery
}

fn text(delivery: &Delivery) -> String {
    String::from_utf8(delivery.body().to_vec()).expect("utf-8 body")
}

fn golden() -> Vec<Value> {
    serde_json::from_str(include_str!(
        "../../../nameko-rpc/tests/fixtures/python-nameko-2.14.1/messages.json"
    ))
    .expect("fixture json")
}

/// The golden request and reply bodies of a captured step (requests carry `reply_to`).
fn golden_pair(step: &str) -> (Value, String) {
    let messages = golden();
    let of_step: Vec<&Value> = messages
        .iter()
        .filter(|m| m["step"].as_str().unwrap().starts_with(step))
        .collect();
    let request = of_step
        .iter()
        .find(|m| m["properties"].get("reply_to").is_some())
        .copied()
        .cloned()
        .unwrap();
    let reply = of_step
        .iter()
        .find(|m| m["properties"].get("reply_to").is_none() && m["exchange"] == "nameko-rpc")
        .unwrap();
    (request, reply["body"].as_str().unwrap().to_owned())
}

/// Python's request headers for a fixture request, as py-amqp writes them.
fn python_headers(request: &Value) -> FieldTable {
    let mut headers = FieldTable::default();
    for (key, value) in request["properties"]["application_headers"]
        .as_object()
        .unwrap()
    {
        let value = match value {
            Value::String(s) => AMQPValue::LongString(s.as_str().into()),
            Value::Array(items) => AMQPValue::FieldArray(
                items
                    .iter()
                    .map(|i| AMQPValue::LongString(i.as_str().unwrap().into()))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            other => panic!("unexpected header {other}"),
        };
        headers.insert(key.as_str().into(), value);
    }
    headers
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn positional_and_keyword_arguments_bind_alike() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_args");
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("echo", echo))
            .entrypoint(rpc("hello", hello)),
        &config,
    )
    .await;
    let client = client(&config).await;

    let both: Value = within(client.call(
        &name,
        "echo",
        Args::new(vec![json!(1)]).kwarg("b", json!([1, "x"])),
    ))
    .await
    .unwrap();
    assert_eq!(both, json!({"a": 1, "b": [1, "x"]}));
    let positional: Value = within(client.call(&name, "echo", (1, 2))).await.unwrap();
    assert_eq!(positional, json!({"a": 1, "b": 2}));
    let keyword: Value = within(client.call(&name, "echo", json!({"a": "k"})))
        .await
        .unwrap();
    assert_eq!(keyword, json!({"a": "k", "b": null}));

    let greeting: String = within(client.call(&name, "hello", ("Matt",)))
        .await
        .unwrap();
    assert_eq!(greeting, "Hello, Matt!");
    let by_name: String = within(client.call(&name, "hello", json!({"name": "Matt"})))
        .await
        .unwrap();
    assert_eq!(by_name, "Hello, Matt!");

    let single = ServiceRpcClient::connect(name.as_str(), &config)
        .await
        .unwrap();
    let greeting: String = within(single.call("hello", "Ann")).await.unwrap();
    assert_eq!(greeting, "Hello, Ann!");

    client.stop().await;
    single.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn bad_requests_get_nameko_errors_without_a_worker() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_bad_calls");
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("echo", echo))
            .entrypoint(rpc("fail", fail).expected_exceptions(["ValueError"])),
        &config,
    )
    .await;
    let mut workers = service.container().subscribe_workers();
    let client = client(&config).await;

    let missing = remote(
        within(client.call::<Value>(&name, "nope", ()))
            .await
            .unwrap_err(),
    );
    assert_eq!(missing, RemoteError::method_not_found("nope"));

    let signature = remote(
        within(client.call::<Value>(&name, "echo", ()))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        signature,
        RemoteError::incorrect_signature("echo() missing 1 required positional argument: 'a'")
    );
    let extra = remote(
        within(client.call::<Value>(&name, "echo", (1, 2, 3)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        extra.value,
        "echo() takes from 1 to 2 positional arguments but 3 were given"
    );
    let unexpected = remote(
        within(client.call::<Value>(&name, "echo", json!({"a": 1, "zz": 2})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        unexpected.value,
        "echo() got an unexpected keyword argument 'zz'"
    );
    let twice = remote(
        within(client.call::<Value>(
            &name,
            "echo",
            Args::new(vec![json!(1)]).kwarg("a", json!(2)),
        ))
        .await
        .unwrap_err(),
    );
    assert_eq!(twice.value, "echo() got multiple values for argument 'a'");
    assert!(
        workers.try_recv().is_err(),
        "MethodNotFound and IncorrectSignature run no worker"
    );

    let value_error = within(client.call::<Value>(&name, "fail", ()))
        .await
        .unwrap_err();
    assert_eq!(value_error.exc_type(), Some("ValueError"));
    let value_error = remote(value_error);
    assert_eq!(value_error.exc_path, "builtins.ValueError");
    assert_eq!(value_error.exc_args, vec![json!("bad"), json!("7")]);
    assert_eq!(value_error.value, "('bad', 7)");

    // The service keeps serving.
    let ok: Value = within(client.call(&name, "echo", (5,))).await.unwrap();
    assert_eq!(ok, json!({"a": 5, "b": null}));
    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn bad_input_never_takes_the_service_down() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let exchange = unique("rpc_exchange");
    let config = config(&uri, &[&format!("rpc_exchange={exchange}")]);
    let name = unique("rpc_robust");
    let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    let recorded = seen.clone();
    let record = move |_: Worker, value: Value| {
        let recorded = recorded.clone();
        async move {
            recorded.lock().unwrap().push(value.clone());
            Ok::<_, RemoteError>(value)
        }
    };
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("record", record)),
        &config,
    )
    .await;
    let raw = Raw::new(&uri, &exchange).await;
    let reply_key = uuid::Uuid::new_v4().to_string();
    let mut replies = raw.listen(&reply_key).await;
    let key = format!("{name}.record");
    let request = |correlation_id: &str| PublishOptions {
        correlation_id: Some(correlation_id.to_owned()),
        reply_to: Some(reply_key.clone()),
        ..PublishOptions::default()
    };

    // 1. No reply_to: no reply is possible, so it is rejected without requeue and never run.
    raw.publish(
        &key,
        br#"{"args": ["no reply_to"], "kwargs": {}}"#,
        PublishOptions::default(),
    )
    .await;

    // 2. No content_type: read as JSON and answered normally.
    raw.publish(
        &key,
        br#"{"args": ["no content type"], "kwargs": {}}"#,
        PublishOptions {
            content_type: String::new(),
            content_encoding: String::new(),
            ..request("no-content-type")
        },
    )
    .await;
    let reply = next(&mut replies).await;
    assert_eq!(reply.correlation_id(), Some("no-content-type"));
    assert_eq!(
        text(&reply),
        r#"{"result": "no content type", "error": null}"#
    );

    // 3. A body that is not JSON, 4. not an object, 5. without kwargs, 6. args not a list,
    // 7. an unknown kombu type, 8. pickle: MalformedRequest replies.
    let malformed: [(&str, &[u8], &str); 6] = [
        ("not-json", b"{not json", "cannot decode the request body"),
        ("a-list", b"[1, 2]", "found a list"),
        (
            "no-kwargs",
            br#"{"args": []}"#,
            "Message missing `args` or `kwargs`",
        ),
        (
            "args-string",
            br#"{"args": "ab", "kwargs": {}}"#,
            "`args` to be a list",
        ),
        (
            "unknown-kombu-type",
            br#"{"args": [{"__type__": "pickle", "__value__": "x"}], "kwargs": {}}"#,
            "unknown kombu type",
        ),
        ("pickle", b"\x80\x04K\x01.", "unsupported content type"),
    ];
    for (id, body, expected) in malformed {
        let mut options = request(id);
        if id == "pickle" {
            options.content_type = "application/x-python-serialize".into();
            options.content_encoding = "binary".into();
        }
        raw.publish(&key, body, options).await;
        let reply = next(&mut replies).await;
        assert_eq!(reply.correlation_id(), Some(id));
        let reply: Value = serde_json::from_slice(reply.body()).unwrap();
        assert_eq!(reply["result"], Value::Null, "{id}");
        assert_eq!(reply["error"]["exc_type"], "MalformedRequest", "{id}");
        assert_eq!(
            reply["error"]["exc_path"], "nameko.exceptions.MalformedRequest",
            "{id}"
        );
        let value = reply["error"]["value"].as_str().unwrap();
        assert!(value.contains(expected), "{id}: {value}");
    }

    // 9. kombu's typed wrappers arrive unwrapped; 10. NaN arrives as null.
    raw.publish(
        &key,
        br#"{"args": [{"when": {"__type__": "datetime", "__value__": "2024-01-02T03:04:05"}, "n": NaN}], "kwargs": {}}"#,
        request("kombu"),
    )
    .await;
    let reply = next(&mut replies).await;
    assert_eq!(reply.correlation_id(), Some("kombu"));
    assert_eq!(
        text(&reply),
        r#"{"result": {"when": "2024-01-02T03:04:05", "n": null}, "error": null}"#
    );

    // The service still answers a good call, and the request without reply_to was never run.
    let client = client(&config).await;
    let ok: String = within(client.call(&name, "record", ("still here",)))
        .await
        .unwrap();
    assert_eq!(ok, "still here");
    assert_eq!(service.state(), ContainerState::Running);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.contains(&json!("no reply_to")), "{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
    client.stop().await;
    within(service.stop()).await;
    // Once the service is gone nothing is left in its queue: the request without reply_to was
    // dropped, not requeued (which would loop it forever).
    let queue = raw
        .topology
        .inspect_queue(&format!("rpc-{name}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queue.message_count, 0, "nothing requeued or left behind");
    delete_rpc_queues(&uri, &[&name]).await;
    raw.topology.delete_exchange(&exchange).await.unwrap();
}

#[tokio::test]
async fn rust_messages_match_the_golden_messages() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let exchange = unique("rpc_exchange");
    let config = config(&uri, &[&format!("rpc_exchange={exchange}")]);
    let name = unique("golden");
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("echo", echo)),
        &config,
    )
    .await;
    let raw = Raw::new(&uri, &exchange).await;
    let mut spy = raw.listen("#").await;

    let mut context = ContextData::new();
    context.insert("user_id".into(), json!("u-1"));
    context.insert("language".into(), json!("en-gb"));
    context.insert("custom_key".into(), json!("c"));
    let client = client(&config).await.with_context_data(context);
    let result: Value = within(client.call(
        &name,
        "echo",
        Args::new(vec![json!(1)]).kwarg("b", json!([1, "x"])),
    ))
    .await
    .unwrap();
    assert_eq!(result, json!({"a": 1, "b": [1, "x"]}));

    let (golden_request, golden_reply) = golden_pair("rpc call with positional and keyword args");
    let request = next(&mut spy).await;
    assert_eq!(request.exchange(), exchange);
    assert_eq!(request.routing_key(), format!("{name}.echo"));
    assert_eq!(text(&request), golden_request["body"].as_str().unwrap());
    let props = request.properties();
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        props.content_encoding().as_ref().map(|s| s.as_str()),
        Some("utf-8")
    );
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(props.priority(), &Some(0));
    let correlation_id = request.correlation_id().unwrap().to_owned();
    uuid::Uuid::parse_str(&correlation_id).expect("correlation id is a uuid");
    let reply_to = request.reply_to().unwrap().to_owned();
    uuid::Uuid::parse_str(&reply_to).expect("reply_to is a bare uuid");
    assert!(client.reply_queue().ends_with(&reply_to));
    assert_eq!(
        client.reply_queue(),
        format!("rpc.reply-standalone_rpc_client-{reply_to}")
    );
    let headers = request.headers().unwrap().inner();
    assert_eq!(headers.len(), 4, "{headers:?}");
    for key in ["nameko.user_id", "nameko.language", "nameko.custom_key"] {
        assert!(
            matches!(headers.get(key), Some(AMQPValue::LongString(_))),
            "{key}"
        );
    }
    let Some(AMQPValue::FieldArray(stack)) = headers.get("nameko.call_id_stack") else {
        panic!("call_id_stack is a field array: {headers:?}");
    };
    let [AMQPValue::LongString(entry)] = stack.as_slice() else {
        panic!("one entry of long string: {stack:?}");
    };
    let entry = String::from_utf8_lossy(entry.as_bytes()).into_owned();
    let parts: Vec<&str> = entry.split('.').collect();
    assert_eq!(parts[0], "standalone_rpc_client", "{entry}");
    assert_eq!(parts.len(), 3, "{entry}");
    uuid::Uuid::parse_str(parts[1]).unwrap();
    uuid::Uuid::parse_str(parts[2]).unwrap();

    let reply = next(&mut spy).await;
    assert_eq!(reply.exchange(), exchange);
    assert_eq!(reply.routing_key(), reply_to);
    assert_eq!(text(&reply), golden_reply);
    assert_eq!(reply.correlation_id(), Some(correlation_id.as_str()));
    assert_eq!(
        reply.headers(),
        Some(&FieldTable::default()),
        "replies carry no context"
    );
    assert_eq!(reply.reply_to(), None);
    let props = reply.properties();
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        props.content_encoding().as_ref().map(|s| s.as_str()),
        Some("utf-8")
    );
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(props.priority(), &Some(0));

    // Each call of a standalone client has a fresh call id with the same client id.
    let _: Value = within(client.call(&name, "echo", (2,))).await.unwrap();
    let again = next(&mut spy).await;
    let Some(AMQPValue::FieldArray(stack)) =
        again.headers().unwrap().inner().get("nameko.call_id_stack")
    else {
        panic!("call_id_stack");
    };
    let AMQPValue::LongString(second) = &stack.as_slice()[0] else {
        panic!()
    };
    let second = String::from_utf8_lossy(second.as_bytes()).into_owned();
    assert_ne!(second, entry);
    assert_eq!(second.split('.').nth(1), Some(parts[1]));
    let _ = next(&mut spy).await;

    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
    raw.topology.delete_exchange(&exchange).await.unwrap();
}

#[tokio::test]
async fn rust_answers_the_golden_python_requests_byte_for_byte() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("golden");
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("echo", echo))
            .entrypoint(rpc("fail", fail))
            .entrypoint(rpc("dispatch", dispatch)),
        &config,
    )
    .await;
    let raw = Raw::new(&uri, "nameko-rpc").await;
    let reply_key = uuid::Uuid::new_v4().to_string();
    let mut replies = raw.listen(&reply_key).await;

    for step in [
        "rpc call with positional and keyword args",
        "rpc call whose handler raises",
        "rpc call to a method that does not exist",
        "rpc call with a missing argument",
        "rpc call whose handler dispatches an event",
    ] {
        let (request, expected_reply) = golden_pair(step);
        let routing_key = request["routing_key"]
            .as_str()
            .unwrap()
            .replacen("golden", &name, 1);
        let correlation_id = request["properties"]["correlation_id"].as_str().unwrap();
        let options = PublishOptions {
            mandatory: true,
            headers: python_headers(&request),
            correlation_id: Some(correlation_id.to_owned()),
            reply_to: Some(reply_key.clone()),
            ..PublishOptions::default()
        };
        raw.publish(
            &routing_key,
            request["body"].as_str().unwrap().as_bytes(),
            options,
        )
        .await;
        let reply = next(&mut replies).await;
        assert_eq!(reply.correlation_id(), Some(correlation_id), "{step}");
        assert_eq!(text(&reply), expected_reply, "{step}");
    }
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn context_data_and_call_id_stack_reach_the_handler() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_context");
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("whoami", whoami)),
        &config,
    )
    .await;
    let mut context = ContextData::new();
    context.insert("user_id".into(), json!("u-1"));
    context.insert("language".into(), json!("en-gb"));
    context.insert("custom_key".into(), json!("c"));
    let client = client(&config).await.with_context_data(context);

    let seen: Value = within(client.call(&name, "whoami", ())).await.unwrap();
    assert_eq!(seen["user_id"], "u-1");
    assert_eq!(seen["language"], "en-gb");
    assert_eq!(seen["custom_key"], "c");
    assert_call_id_stack(
        &seen,
        &["standalone_rpc_client.", &format!("{name}.whoami.")],
    );
    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn rpc_proxy_calls_another_service_with_the_workers_context() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let x = unique("service_x");
    let y = unique("service_y");

    async fn append_identifier(worker: Worker, value: String) -> Result<Value, RemoteError> {
        Ok(json!({
            "value": format!("{value}-y"),
            "user_id": worker.user_id(),
            "call_id_stack": worker.call_id_stack(),
        }))
    }
    async fn remote_method(worker: Worker<ServiceX>, value: String) -> anyhow::Result<Value> {
        let y = worker.service().y.bind(&worker);
        let mut answer: Value = y.call("append_identifier", (value,)).await?;
        let appended = format!("{}-x", answer["value"].as_str().unwrap_or_default());
        answer["value"] = json!(appended);
        Ok(answer)
    }
    async fn concurrent(
        worker: Worker<ServiceX>,
        values: Vec<String>,
    ) -> anyhow::Result<Vec<String>> {
        let y = worker.service().y.bind(&worker);
        let mut calls = Vec::new();
        for value in &values {
            calls.push(y.call_async::<Value>("append_identifier", (value,)).await?);
        }
        let mut out = Vec::new();
        for call in calls.into_iter().rev() {
            out.push(call.await?["value"].as_str().unwrap_or_default().to_owned());
        }
        Ok(out)
    }

    let service_y = start(
        Service::new(y.as_str()).entrypoint(rpc("append_identifier", append_identifier)),
        &config,
    )
    .await;
    let service_x = start(
        ServiceX::service(&x, &y)
            .entrypoint(rpc("remote_method", remote_method))
            .entrypoint(rpc("concurrent", concurrent)),
        &config,
    )
    .await;
    let mut context = ContextData::new();
    context.insert("user_id".into(), json!("u-9"));
    let client = client(&config).await.with_context_data(context);

    let answer: Value = within(client.call(&x, "remote_method", ("value",)))
        .await
        .unwrap();
    assert_eq!(answer["value"], "value-y-x");
    assert_eq!(answer["user_id"], "u-9");
    assert_call_id_stack(
        &answer,
        &[
            "standalone_rpc_client.",
            &format!("{x}.remote_method."),
            &format!("{y}.append_identifier."),
        ],
    );

    let many: Vec<String> = within(client.call(&x, "concurrent", (vec!["a", "b", "c"],)))
        .await
        .unwrap();
    assert_eq!(many, ["c-y", "b-y", "a-y"]);

    // One reply queue serves every proxy of the container, and it is declared as Nameko does.
    let raw = Raw::new(&uri, "nameko-rpc").await;
    assert_eq!(
        raw.topology
            .inspect_queue(&format!("rpc-{x}"))
            .await
            .unwrap()
            .map(|q| q.consumer_count),
        Some(1)
    );

    client.stop().await;
    within(service_x.stop()).await;
    within(service_y.stop()).await;
    delete_rpc_queues(&uri, &[&x, &y]).await;
}

#[tokio::test]
async fn remote_errors_propagate_through_a_proxy_with_their_type() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let x = unique("service_x");
    let y = unique("service_y");
    let nowhere = unique("nowhere");

    async fn raises(_: Worker, _: ()) -> Result<(), RemoteError> {
        Err(RemoteError::new("Boom", "service_y.Boom", "bang"))
    }
    struct Callers {
        y: RpcProxy,
        nowhere: RpcProxy,
    }
    async fn via_anyhow(worker: Worker<Callers>, _: ()) -> anyhow::Result<()> {
        let y = &worker.service().y;
        y.call::<()>(&worker, "raises", ()).await?;
        Ok(())
    }
    async fn via_remote_error(worker: Worker<Callers>, _: ()) -> Result<(), RemoteError> {
        let y = &worker.service().y;
        y.call::<()>(&worker, "raises", ()).await?;
        Ok(())
    }
    async fn unknown(worker: Worker<Callers>, _: ()) -> Result<(), RemoteError> {
        let nowhere = &worker.service().nowhere;
        nowhere.call::<()>(&worker, "anything", ()).await?;
        Ok(())
    }

    let service_y = start(
        Service::new(y.as_str()).entrypoint(rpc("raises", raises)),
        &config,
    )
    .await;
    let service_x = start(
        Service::with_state(x.as_str(), |deps| Callers {
            y: deps.add("y", RpcProxy::new(y.as_str())),
            nowhere: deps.add("nowhere", RpcProxy::new(nowhere.as_str())),
        })
        .entrypoint(rpc("via_anyhow", via_anyhow))
        .entrypoint(rpc("via_remote_error", via_remote_error))
        .entrypoint(rpc("unknown", unknown)),
        &config,
    )
    .await;
    let client = client(&config).await;
    for method in ["via_anyhow", "via_remote_error"] {
        let err = remote(within(client.call::<()>(&x, method, ())).await.unwrap_err());
        assert_eq!(
            err,
            RemoteError::new("Boom", "service_y.Boom", "bang"),
            "{method}"
        );
    }
    let err = remote(
        within(client.call::<()>(&x, "unknown", ()))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.exc_type, "UnknownService");
    assert_eq!(err.exc_path, "nameko.exceptions.UnknownService");
    assert_eq!(err.value, format!("Unknown service `{nowhere}`"));

    client.stop().await;
    within(service_x.stop()).await;
    within(service_y.stop()).await;
    delete_rpc_queues(&uri, &[&x, &y]).await;
}

#[tokio::test]
async fn unknown_service_fails_fast_instead_of_hanging() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let client = client(&config).await;
    let nowhere = unique("nowhere");
    let started = tokio::time::Instant::now();
    let err = within(client.call::<Value>(&nowhere, "method", ()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::UnknownService { service, .. } if *service == nowhere),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = within(client.call_async::<Value>(&nowhere, "method", ()))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::UnknownService { .. }), "{err:?}");
    client.stop().await;
}

#[tokio::test]
async fn a_call_times_out_and_its_late_reply_is_dropped() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_slow");
    let (gate, mut arrived) = Gate::new();
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("slow", held("a", gate.clone()))),
        &config,
    )
    .await;
    let client = client(&config)
        .await
        .with_timeout(Some(Duration::from_millis(300)));

    let err = within(client.call::<String>(&name, "slow", ("late",)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::Timeout { timeout, .. } if *timeout == Duration::from_millis(300)),
        "{err:?}"
    );
    let remote_form = nameko_core::IntoRemoteError::into_remote_error(err);
    assert_eq!(remote_form.exc_type, "RpcTimeout");
    assert_eq!(within(arrived.recv()).await.unwrap(), "late");

    // The late reply goes to the same reply queue and is dropped; the next call is unaffected.
    let patient = client.clone().with_timeout(Some(WAIT));
    let next = patient
        .call_async::<String>(&name, "slow", ("next",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "next");
    gate.release(2);
    assert_eq!(within(next).await.unwrap(), "a:next");

    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn call_async_results_come_back_in_any_order() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_async");
    let (gate, mut arrived) = Gate::new();
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("held", held("a", gate.clone())))
            .entrypoint(rpc("hello", hello)),
        &config,
    )
    .await;
    let client = client(&config).await;

    let slow = client
        .call_async::<String>(&name, "held", ("slow",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "slow");
    let fast = client
        .call_async::<String>(&name, "hello", ("fast",))
        .await
        .unwrap();
    let other = client
        .call_async::<String>(&name, "hello", ("other",))
        .await
        .unwrap();
    // The later calls finish while the first is still held.
    assert_eq!(within(other.result()).await.unwrap(), "Hello, other!");
    assert_eq!(within(fast).await.unwrap(), "Hello, fast!");
    gate.release(1);
    assert_eq!(within(slow).await.unwrap(), "a:slow");

    // Many calls in flight on one client from many tasks.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = client.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let greeting: String = client.call(&name, "hello", (i.to_string(),)).await.unwrap();
            assert_eq!(greeting, format!("Hello, {i}!"));
        }));
    }
    for task in tasks {
        within(task).await.unwrap();
    }

    client.stop().await;
    let err = client
        .call::<String>(&name, "hello", ("x",))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Stopped), "{err:?}");
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn instances_share_the_queue_round_robin_each_request_handled_once() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_pool");
    let handled = Arc::new(Mutex::new(HashMap::<String, Vec<String>>::new()));
    let instance = |label: &'static str| {
        let handled = handled.clone();
        move |_: Worker, tag: String| {
            let handled = handled.clone();
            async move {
                handled
                    .lock()
                    .unwrap()
                    .entry(label.to_owned())
                    .or_default()
                    .push(tag.clone());
                Ok::<_, RemoteError>(label.to_owned())
            }
        }
    };
    let a = start(
        Service::new(name.as_str()).entrypoint(rpc("work", instance("a"))),
        &config,
    )
    .await;
    let b = start(
        Service::new(name.as_str()).entrypoint(rpc("work", instance("b"))),
        &config,
    )
    .await;
    let client = client(&config).await;

    let mut answered = Vec::new();
    for i in 0..10 {
        let by: String = within(client.call(&name, "work", (i.to_string(),)))
            .await
            .unwrap();
        answered.push(by);
    }
    let handled = handled.lock().unwrap().clone();
    let a_count = handled.get("a").map_or(0, Vec::len);
    let b_count = handled.get("b").map_or(0, Vec::len);
    assert_eq!(
        a_count + b_count,
        10,
        "each request handled exactly once: {handled:?}"
    );
    assert!(
        a_count >= 1 && b_count >= 1,
        "both instances served: {handled:?}"
    );
    let mut tags: Vec<String> = handled.values().flatten().cloned().collect();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 10);
    assert_eq!(answered.iter().filter(|by| *by == "a").count(), a_count);

    client.stop().await;
    within(a.stop()).await;
    within(b.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn a_request_survives_the_death_of_its_instance() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_at_least_once");
    let (gate, mut arrived) = Gate::new();
    let doomed = start(
        Service::new(name.as_str()).entrypoint(rpc("work", held("doomed", gate.clone()))),
        &config,
    )
    .await;
    let client = client(&config).await;
    let call = client
        .call_async::<String>(&name, "work", ("job",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "job");

    let (survivor_gate, mut survivor_arrived) = Gate::new();
    survivor_gate.release(1);
    let survivor = start(
        Service::new(name.as_str()).entrypoint(rpc("work", held("survivor", survivor_gate))),
        &config,
    )
    .await;
    within(doomed.kill()).await;
    assert_eq!(doomed.state(), ContainerState::Killed);

    assert_eq!(within(survivor_arrived.recv()).await.unwrap(), "job");
    assert_eq!(within(call).await.unwrap(), "survivor:job");
    client.stop().await;
    within(survivor.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn max_workers_bounds_concurrent_handlers_without_stalling_the_consumer() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    // Prefetch above max_workers, so only the worker pool can hold the extra requests back.
    let config = config(&uri, &["max_workers=2", "PREFETCH_COUNT=10"]);
    let name = unique("rpc_bounded");
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (gate, mut arrived) = Gate::new();
    let handler = {
        let (running, most, gate) = (running.clone(), most.clone(), gate.clone());
        move |_: Worker, tag: String| {
            let (running, most, gate) = (running.clone(), most.clone(), gate.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                gate.pass(tag.clone()).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(tag)
            }
        }
    };
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("work", handler))
            .entrypoint(rpc("hello", hello)),
        &config,
    )
    .await;
    let client = client(&config).await;
    let mut calls = Vec::new();
    for i in 0..5 {
        calls.push(
            client
                .call_async::<String>(&name, "work", (i.to_string(),))
                .await
                .unwrap(),
        );
    }
    within(arrived.recv()).await.unwrap();
    within(arrived.recv()).await.unwrap();

    // Every request has reached the service (none waits in the queue) while two run.
    let raw = Raw::new(&uri, "nameko-rpc").await;
    wait_until_handed_out(&raw, &name).await;
    assert_eq!(running.load(Ordering::SeqCst), 2);
    assert!(arrived.try_recv().is_err(), "a third handler started");

    // Release one at a time: a new handler starts only when one finishes.
    for _ in 0..3 {
        gate.release(1);
        within(arrived.recv()).await.unwrap();
        assert!(most.load(Ordering::SeqCst) <= 2);
    }
    gate.release(2);
    let mut results = Vec::new();
    for call in calls {
        results.push(within(call).await.unwrap());
    }
    results.sort();
    assert_eq!(results, ["0", "1", "2", "3", "4"]);
    assert_eq!(most.load(Ordering::SeqCst), 2);

    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn graceful_stop_finishes_running_work_and_hands_back_the_rest() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &["max_workers=1", "PREFETCH_COUNT=5"]);
    let name = unique("rpc_stop");
    let (gate, mut arrived) = Gate::new();
    let first = start(
        Service::new(name.as_str()).entrypoint(rpc("work", held("first", gate.clone()))),
        &config,
    )
    .await;
    let client = client(&config).await;
    let running = client
        .call_async::<String>(&name, "work", ("running",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "running");
    let waiting = client
        .call_async::<String>(&name, "work", ("waiting",))
        .await
        .unwrap();

    // Wait until the second request sits with the first instance (prefetched, no worker slot).
    let raw = Raw::new(&uri, "nameko-rpc").await;
    wait_until_handed_out(&raw, &name).await;

    let stopping = tokio::spawn({
        let first = first.clone();
        async move { first.stop().await }
    });
    // The running worker finishes and its reply goes out during the stop.
    gate.release(1);
    assert_eq!(within(running).await.unwrap(), "first:running");
    within(stopping).await.unwrap();
    assert_eq!(first.state(), ContainerState::Stopped);

    // The request that never got a worker went back to the queue for the next instance.
    let (next_gate, mut next_arrived) = Gate::new();
    next_gate.release(1);
    let second = start(
        Service::new(name.as_str()).entrypoint(rpc("work", held("second", next_gate))),
        &config,
    )
    .await;
    assert_eq!(within(next_arrived.recv()).await.unwrap(), "waiting");
    assert_eq!(within(waiting).await.unwrap(), "second:waiting");
    client.stop().await;
    within(second.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn one_queue_and_consumer_serve_every_method_declared_like_nameko() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_topology");
    let service = start(
        Service::new(name.as_str())
            .dependency("self_proxy", RpcProxy::new(name.as_str()))
            .entrypoint(rpc("echo", echo))
            .entrypoint(rpc("hello", hello))
            .entrypoint(rpc("whoami", whoami)),
        &config,
    )
    .await;
    let raw = Raw::new(&uri, "nameko-rpc").await;
    let queue = raw
        .topology
        .inspect_queue(&format!("rpc-{name}"))
        .await
        .unwrap()
        .expect("rpc queue exists");
    assert_eq!(queue.consumer_count, 1);
    // Redeclaring with Nameko's exact flags succeeds; the broker would refuse anything else.
    raw.topology
        .declare_queue(&QueueSpec::durable(format!("rpc-{name}")))
        .await
        .expect("rpc queue declared as Nameko declares it");

    let client = client(&config).await;
    let reply_queue = client.reply_queue().to_owned();
    raw.topology
        .declare_queue(
            &QueueSpec::durable(&reply_queue).with_expires(Duration::from_millis(300_000)),
        )
        .await
        .expect("reply queue declared as Nameko declares it");
    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn entrypoint_hook_binds_arguments_like_the_wire() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_hook");
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("echo", echo)),
        &config,
    )
    .await;
    let hook = entrypoint_hook(&service, "echo").unwrap();
    let result = within(hook.call(vec![json!(1)], json!({"b": 2}).as_object().unwrap().clone()))
        .await
        .unwrap();
    assert_eq!(result.unwrap(), json!({"a": 1, "b": 2}));
    let wrong = within(hook.call(vec![], Default::default())).await.unwrap();
    assert_eq!(
        wrong.unwrap_err(),
        RemoteError::incorrect_signature("echo() missing 1 required positional argument: 'a'")
    );
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn a_stopping_service_still_receives_replies_for_its_running_workers() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let x = unique("service_x");
    let y = unique("service_y");
    let (gate, mut arrived) = Gate::new();
    let service_y = start(
        Service::new(y.as_str()).entrypoint(rpc("slow", held("y", gate.clone()))),
        &config,
    )
    .await;
    async fn relay(worker: Worker<ServiceX>, tag: String) -> anyhow::Result<String> {
        let answer: String = worker.service().y.call(&worker, "slow", (tag,)).await?;
        Ok(format!("x:{answer}"))
    }
    let service_x = start(
        ServiceX::service(&x, &y).entrypoint(rpc("relay", relay)),
        &config,
    )
    .await;
    let client = client(&config).await;
    let call = client
        .call_async::<String>(&x, "relay", ("job",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "job");

    // x stops while its worker waits for y: its reply listener must outlive the worker.
    let stopping = tokio::spawn({
        let service_x = service_x.clone();
        async move { service_x.stop().await }
    });
    gate.release(1);
    assert_eq!(within(call).await.unwrap(), "x:y:job");
    within(stopping).await.unwrap();
    assert_eq!(service_x.state(), ContainerState::Stopped);

    client.stop().await;
    within(service_y.stop()).await;
    delete_rpc_queues(&uri, &[&x, &y]).await;
}

/// Waits until every request in `rpc-<service>` has been handed to a consumer.
async fn wait_until_handed_out(raw: &Raw, service: &str) {
    within(async {
        loop {
            let queue = raw
                .topology
                .inspect_queue(&format!("rpc-{service}"))
                .await
                .unwrap()
                .unwrap();
            if queue.message_count == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// Asserts that `seen["call_id_stack"]` holds one id per expected prefix, oldest first.
fn assert_call_id_stack(seen: &Value, prefixes: &[&str]) {
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
