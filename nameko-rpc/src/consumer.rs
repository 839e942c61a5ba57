//! The RPC consumer: one queue and one consumer per service, shared by all its `rpc` methods.
//!
//! Requests for every method of service `svc` arrive on `rpc-svc` (bound with `svc.*`). The
//! consumer reads a request, decides what it is, and never waits on a worker: it either answers
//! at once without a worker, as Nameko does for `MethodNotFound`, `MalformedRequest` and
//! `IncorrectSignature`, or starts a task for the call in which the worker
//! ([`Container::run_worker_with`]) waits for a `max_workers` slot, runs and replies. The consumer loop
//! therefore keeps reading (and heartbeats keep flowing) however busy the workers are; prefetch
//! bounds how many requests wait.
//!
//! The reply is published in the worker's result handling, before `worker_result` and teardown
//! hooks run, on the request's own channel, and the request is acknowledged after it on that
//! channel, so the broker routes the reply before it forgets the request (at-least-once; see
//! [`crate::responder`]). If the connection was lost before both were written, the broker gives
//! the request back and the service keeps serving: the request is handled again, here or by
//! another instance, and a caller that got a reply already drops the second one. If the reply
//! could not be sent for another reason, the request is requeued and the container is killed, as
//! Nameko kills a container whose result handling fails: a service that cannot answer should not
//! keep taking requests.
//!
//! The consumer survives its connection ([`RecoveringConsumer`]): after a broker restart, a
//! network cut or missed heartbeats it reconnects with backoff and declares the exchange, the
//! queue and its binding again, while the container stays running; requests it held come back
//! from the broker. Only a refused declaration (406, someone declared `rpc-<service>` with other
//! flags meanwhile) ends it, and kills the container loudly.
//!
//! Bad input never takes the service down. Each case has one outcome:
//!
//! | request | outcome |
//! |---|---|
//! | no `reply_to` | no reply is possible: logged, rejected without requeue (dropped, or dead-lettered if the queue has a dead-letter exchange), no worker |
//! | no `content_type` | read as JSON, like any JSON request |
//! | a `content_type` other than JSON | `MalformedRequest` reply, acknowledged |
//! | a body that is not JSON, or names an unknown kombu `__type__` | `MalformedRequest` reply, acknowledged |
//! | `NaN` / `Infinity` in the body | read as `null` |
//! | kombu `{"__type__", "__value__"}` wrappers | unwrapped into their string form (ISO dates, decimal digits, uuid text) |
//! | a body that is not an object, or `args` not a list, or `kwargs` not an object | `MalformedRequest` reply, acknowledged |
//! | no `args` or no `kwargs` | `MalformedRequest("Message missing `args` or `kwargs`")`, as Nameko |
//! | unknown method | `MethodNotFound(<method>)` reply, acknowledged |
//! | arguments that do not bind | `IncorrectSignature(<Python-like text>)` reply, acknowledged |
//!
//! Stopping follows Nameko: when the last `rpc` entrypoint stops, consumption is cancelled;
//! requests already received but not started are requeued for another instance; running workers
//! finish, reply and acknowledge; the channel closes only after that. Requests whose worker was
//! aborted (the container stopping before it got a slot, or being killed) are requeued too.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use nameko_amqp::{
    Connection, ConnectionRole, Declarations, Delivery, ExchangeSpec, QueueSpec,
    RecoveringConsumer, ServedQueue, Settle, Topology,
};
use nameko_core::{
    BoxError, Container, ContainerError, Extension, RemoteError, SharedExtension, WorkerResult,
};
use serde_json::{Map, Value};

use crate::broker::{connection_config, prefetch_count, rpc_exchange};
use crate::entrypoint::{BoundCall, RpcMethod};
use crate::error::RpcError;
use crate::names::{method_of, request_binding, request_queue};
use crate::responder::Responder;

/// Nameko's text for a body without `args` or `kwargs`.
const MISSING_ARGS_OR_KWARGS: &str = "Message missing `args` or `kwargs`";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single insert, remove or read, so a panic elsewhere cannot
    // leave the data half-edited; a poisoned lock is safe to keep using.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shared consumer of a service's `rpc` entrypoints.
#[derive(Debug, Clone)]
pub(crate) struct RpcConsumer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Method name to handler; a std mutex is enough as it is never held across an await.
    methods: Mutex<HashMap<String, Arc<RpcMethod>>>,
    /// Methods whose entrypoint has not stopped yet; when none is left, consumption stops.
    active: Mutex<HashSet<String>>,
    /// Set in `setup`.
    broker: OnceLock<Broker>,
    /// The served queue, from start on: stopping it requeues requests received afterwards, and
    /// its tracked tasks (workers, answers without a worker) are drained before it closes.
    served: OnceLock<ServedQueue>,
}

#[derive(Debug)]
struct Broker {
    container: Container,
    queue: String,
    /// What the consumer declares at start and after every recovery.
    declarations: Declarations,
    consuming: Connection,
    responder: Responder,
}

impl RpcConsumer {
    /// The consumer of this container, created on first use.
    pub(crate) fn of(container: &Container) -> Arc<Self> {
        container.shared_extension("nameko_rpc::RpcConsumer", || Self {
            inner: Arc::new(Inner {
                methods: Mutex::new(HashMap::new()),
                active: Mutex::new(HashSet::new()),
                broker: OnceLock::new(),
                served: OnceLock::new(),
            }),
        })
    }

    /// Adds a method; each name may be registered once.
    pub(crate) fn register(&self, service: &str, method: RpcMethod) -> Result<(), RpcError> {
        let name = method.info.method_name().to_owned();
        let mut methods = lock(&self.inner.methods);
        if methods.contains_key(&name) {
            return Err(RpcError::DuplicateMethod {
                service: service.to_owned(),
                method: name,
            });
        }
        lock(&self.inner.active).insert(name.clone());
        methods.insert(name, Arc::new(method));
        Ok(())
    }

    /// Called by each entrypoint's `stop`; the last one stops consumption. Methods stay in the
    /// table, so requests already received still find their handler.
    pub(crate) async fn entrypoint_stopped(&self, method: &str) {
        let last = {
            let mut active = lock(&self.inner.active);
            active.remove(method);
            active.is_empty()
        };
        if last {
            self.inner.stop_consuming().await;
        }
    }
}

impl Extension for RpcConsumer {
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let config = container.config();
        let settings = connection_config(config)?;
        let exchange = rpc_exchange(config)?;
        // Replies go out on the requests' channels: the consumer needs no publishing connection.
        let consuming = Connection::shared(&settings, ConnectionRole::Consumer).await?;
        let queue = request_queue(container.service_name());
        let declarations = Declarations::queue(QueueSpec::durable(&queue))
            .exchange(ExchangeSpec::topic(&exchange))
            .bind(&exchange, request_binding(container.service_name()));

        let topology = Topology::new(&consuming).await?;
        declarations.declare(&topology).await?;
        let responder = Responder::new(exchange);
        let _ = self.inner.broker.set(Broker {
            container: container.clone(),
            queue,
            declarations,
            consuming,
            responder,
        });
        Ok(())
    }

    async fn start(&self, container: &Container) -> Result<(), BoxError> {
        let broker = self.inner.broker()?;
        let prefetch = prefetch_count(container.config())?;
        let consumer =
            RecoveringConsumer::start(&broker.consuming, broker.declarations.clone(), prefetch)
                .await?;
        let (served, deliveries) = ServedQueue::new(consumer);
        if self.inner.served.set(served.clone()).is_err() {
            return Err("the rpc consumer was started twice".into());
        }
        tracing::debug!(queue = %broker.queue, prefetch, "consuming rpc requests");
        let inner = self.inner.clone();
        container.spawn_managed(format!("rpc consumer of `{}`", broker.queue), async move {
            deliveries
                .serve(|delivery| {
                    inner.handle(&served, delivery);
                    std::future::ready(())
                })
                .await
                .map_err(BoxError::from)
        });
        Ok(())
    }

    async fn stop(&self) {
        // Entrypoints stopped consumption already; this runs after every worker finished.
        if let Some(served) = self.inner.served.get() {
            served.stop_consuming().await;
            served.drain().await;
            served.close().await;
        }
    }

    async fn kill(&self) {
        // Closing the channel hands every unacknowledged request back to the broker.
        if let Some(served) = self.inner.served.get() {
            served.kill().await;
        }
    }
}

impl SharedExtension for RpcConsumer {}

impl Inner {
    fn broker(&self) -> Result<&Broker, BoxError> {
        self.broker
            .get()
            .ok_or_else(|| "the rpc consumer was started before it was set up".into())
    }

    async fn stop_consuming(&self) {
        if let Some(served) = self.served.get() {
            served.stop_consuming().await;
        }
    }

    /// Decides what to do with one request. Never waits: replies and workers run in tasks.
    fn handle(self: &Arc<Self>, served: &ServedQueue, delivery: Delivery) {
        let delivery = Arc::new(delivery);
        if served.is_stopping() {
            settle(served, delivery, Settle::Requeue, "the service is stopping");
            return;
        }
        let Some(reply_to) = delivery
            .reply_to()
            .filter(|reply_to| !reply_to.is_empty())
            .map(str::to_owned)
        else {
            tracing::warn!(
                routing_key = delivery.routing_key(),
                correlation_id = delivery.correlation_id(),
                "rpc request without reply_to: no reply can be sent; rejecting it without requeue"
            );
            settle(served, delivery, Settle::Discard, "it has no reply_to");
            return;
        };
        match self.prepare(&delivery) {
            Ok((method, bound)) => self.spawn_worker(served, delivery, reply_to, &method, bound),
            Err(error) => {
                tracing::warn!(
                    routing_key = delivery.routing_key(),
                    correlation_id = delivery.correlation_id(),
                    %error,
                    "rpc request refused without a worker"
                );
                let inner = self.clone();
                served.spawn(async move {
                    inner.respond(&delivery, &reply_to, &Err(error)).await;
                });
            }
        }
    }

    /// Reads the request and binds its arguments: Nameko's checks, in Nameko's order.
    fn prepare(&self, delivery: &Delivery) -> Result<(Arc<RpcMethod>, BoundCall), RemoteError> {
        if let Some(content_type) = delivery.content_type()
            && !content_type.is_empty()
            && !content_type.starts_with(nameko_amqp::json::CONTENT_TYPE)
        {
            return Err(RemoteError::malformed_request(format!(
                "unsupported content type `{content_type}`: expected `{}`",
                nameko_amqp::json::CONTENT_TYPE
            )));
        }
        let body = nameko_amqp::json::decode(delivery.body()).map_err(|error| {
            RemoteError::malformed_request(format!("cannot decode the request body: {error}"))
        })?;

        let method_name = method_of(delivery.routing_key());
        let method = lock(&self.methods)
            .get(method_name)
            .cloned()
            .ok_or_else(|| RemoteError::method_not_found(method_name))?;

        let (args, kwargs) = request_arguments(body)?;
        let bound = (method.bind)(args, kwargs).map_err(RemoteError::incorrect_signature)?;
        Ok((method, bound))
    }

    fn spawn_worker(
        self: &Arc<Self>,
        served: &ServedQueue,
        delivery: Arc<Delivery>,
        reply_to: String,
        method: &RpcMethod,
        bound: BoundCall,
    ) {
        let Some(broker) = self.broker.get() else {
            settle(
                served,
                delivery,
                Settle::Requeue,
                "the consumer is not set up",
            );
            return;
        };
        let inner = self.clone();
        let answered = delivery.clone();
        let worker = broker.container.run_worker_with(
            &method.info,
            delivery.context_data(),
            bound.logged,
            bound.run,
            move |_context, result| async move {
                inner.respond(&answered, &reply_to, &result).await;
                result
            },
        );
        // One task per request, in which the worker runs (waiting there for its slot). A
        // worker that never replied has its request given back, so another instance (or this
        // one, later) handles it.
        served.spawn_worker(delivery, async move { worker.await.map(drop) });
    }

    /// Publishes the reply, then acknowledges the request.
    async fn respond(&self, delivery: &Delivery, reply_to: &str, result: &WorkerResult) {
        let Some(broker) = self.broker.get() else {
            return;
        };
        let Err(error) = broker.responder.reply(delivery, reply_to, result).await else {
            return;
        };
        if error.is_connection_failure()
            || matches!(error, nameko_amqp::Error::AlreadySettled { .. })
        {
            // The channel went with its connection: the broker has the request back already.
            tracing::warn!(
                %error,
                correlation_id = delivery.correlation_id(),
                "the connection was lost before the rpc reply and acknowledgement were sent; the broker delivers the request again"
            );
            return;
        }
        tracing::error!(
            %error,
            correlation_id = delivery.correlation_id(),
            "sending an rpc reply failed; requeueing the request"
        );
        let _ = delivery.reject(true).await;
        broker.container.fail(ContainerError::TaskFailed {
            service: broker.container.service_name().to_owned(),
            task: "rpc reply".to_owned(),
            source: Arc::new(Box::new(error)),
        });
    }
}

/// Settles a request without a worker, in a task of the served queue.
fn settle(served: &ServedQueue, delivery: Arc<Delivery>, how: Settle, why: &str) {
    tracing::debug!(
        routing_key = delivery.routing_key(),
        correlation_id = delivery.correlation_id(),
        settle = ?how,
        why,
        "rejecting rpc request"
    );
    served.settle(delivery, how);
}

/// The `args` list and `kwargs` object of a request body, or the `MalformedRequest` it is.
pub(crate) fn request_arguments(
    body: Value,
) -> Result<(Vec<Value>, Map<String, Value>), RemoteError> {
    let Value::Object(mut body) = body else {
        return Err(RemoteError::malformed_request(format!(
            "expected the request body to be an object with `args` and `kwargs`, found {}",
            kind(&body)
        )));
    };
    let (Some(args), Some(kwargs)) = (body.remove("args"), body.remove("kwargs")) else {
        return Err(RemoteError::malformed_request(MISSING_ARGS_OR_KWARGS));
    };
    let args = match args {
        Value::Array(args) => args,
        other => {
            return Err(RemoteError::malformed_request(format!(
                "expected `args` to be a list, found {}",
                kind(&other)
            )));
        }
    };
    let kwargs = match kwargs {
        Value::Object(kwargs) => kwargs,
        other => {
            return Err(RemoteError::malformed_request(format!(
                "expected `kwargs` to be an object, found {}",
                kind(&other)
            )));
        }
    };
    Ok((args, kwargs))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nameko_core::MALFORMED_REQUEST;
    use serde_json::json;

    #[test]
    fn request_bodies_are_checked_like_nameko() {
        let (args, kwargs) =
            request_arguments(json!({"args": [1], "kwargs": {"b": [1, "x"]}, "extra": 1})).unwrap();
        assert_eq!(args, vec![json!(1)]);
        assert_eq!(kwargs["b"], json!([1, "x"]));

        let missing = request_arguments(json!({"args": []})).unwrap_err();
        assert_eq!(
            missing,
            RemoteError::malformed_request(MISSING_ARGS_OR_KWARGS)
        );
        let list = request_arguments(json!([1, 2])).unwrap_err();
        assert_eq!(list.exc_path, MALFORMED_REQUEST);
        assert!(list.value.contains("found a list"), "{}", list.value);
        let args = request_arguments(json!({"args": "ab", "kwargs": {}})).unwrap_err();
        assert!(
            args.value.contains("`args` to be a list, found a string"),
            "{}",
            args.value
        );
        let kwargs = request_arguments(json!({"args": [], "kwargs": []})).unwrap_err();
        assert!(
            kwargs.value.contains("`kwargs` to be an object"),
            "{}",
            kwargs.value
        );
    }
}
