//! `event_handler`: the entrypoint that runs a service method for every event of a type from a
//! source service; Nameko's `@event_handler(source_service, event_type, ...)`.
//!
//! At start it declares `<source>.events` (as Nameko does, unless `DECLARE_EVENT_EXCHANGES` is
//! `false`), declares its queue with the name and flags of its [`HandlerType`], binds it with the
//! event type as binding key (so `*` and `#` subscribe by pattern), and consumes it on a channel
//! of its own with `PREFETCH_COUNT` unacknowledged messages at most (by default `max_workers`).
//! The consumer loop never waits for a worker: every event becomes a worker that waits for a
//! slot in its own task.
//!
//! Per event: a message that cannot be read (not JSON, another content type, an unknown kombu
//! wrapper) is rejected without requeue and logged; it never reaches a worker and never stops
//! the service. Otherwise a worker runs with the headers as context data and the payload as its
//! one argument, `payload`; a payload that does not deserialize into the handler's type is that
//! worker's error (`MalformedEvent`). The message is settled after the worker, before the
//! dependencies' `worker_result` hooks, as Nameko's `handle_result` does it: see
//! [`redelivery`](crate::redelivery) for acks, bounded requeueing and parking.
//!
//! The consumer survives its connection ([`RecoveringConsumer`]): after a broker restart, a
//! network cut or missed heartbeats it reconnects with backoff and declares the exchange, the
//! queue and its binding again while the container keeps running; events it held come back
//! from the broker (an unreliable, auto-delete queue is declared afresh and loses what was
//! dispatched meanwhile, as Nameko's does). Only a refused declaration during a recovery ends
//! it, and kills the container loudly.
//!
//! Graceful stop: the consumer is cancelled, deliveries already received still get workers,
//! running workers finish and settle their messages, and the channel is closed after the
//! container's workers have drained; a delivery whose worker never started (or was killed) is
//! rejected with requeue for another instance.
//!
//! What belongs to one start of the container (its consumer, its queue's broadcast
//! identifier) is kept in a run record made at start, never in the builder's fields, so the
//! builder stays a plain declaration and a stop acts only on what its start made.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nameko_amqp::{
    Connection, ConnectionRole, Declarations, Deliveries, Delivery, ExchangeSpec,
    RecoveringConsumer, ServedQueue, Settle,
};
use nameko_core::{
    BoxError, Container, DirectCall, Entrypoint, EntrypointInfo, Extension, IntoWorkerResult,
    RemoteError, Worker, WorkerResult,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use crate::broker::{
    Publishing, auto_delete_event_exchanges, connection_config, declare_event_exchanges,
    prefetch_count,
};
use crate::consumers::{HandlerConsumers, SHARING_KEY};
use crate::error::{Error, MALFORMED_EVENT, MALFORMED_EVENT_PATH, Result};
use crate::handler_type::{BroadcastIdentifier, HandlerQueue, HandlerType};
use crate::message::{self, IncomingEvent};
use crate::names::event_exchange;
use crate::redelivery::{DEFAULT_MAX_REDELIVERIES, Settlement};

/// How long a graceful stop waits for a cancelled consumer to hand out what it had received.
const CONSUMER_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The name the payload goes by in the worker's arguments, and so in `sensitive_arguments`
/// paths (`"payload.password"`).
pub const PAYLOAD_ARGUMENT: &str = "payload";

/// An event handler entrypoint; build it with [`event_handler`].
pub struct EventHandler<S, H, P> {
    info: Arc<EntrypointInfo>,
    source_service: String,
    event_type: String,
    handler_type: HandlerType,
    reliable_delivery: bool,
    requeue_on_error: bool,
    max_redeliveries: u32,
    handler: H,
    /// What `start` made, taken by `stop`. A std mutex is enough: it is held only to put or
    /// take the run, never across an await.
    run: Mutex<Option<Run>>,
    _payload: PhantomData<fn(S, P)>,
}

/// One start of the handler: its consumer and how to tell when its loop has ended.
struct Run {
    /// The served queue: stopping it makes the end of its stream expected.
    served: ServedQueue,
    /// Closed when the consumer loop has ended.
    ended: watch::Receiver<()>,
}

/// Runs `handler` as the service method `method_name` for every `event_type` event
/// dispatched by `source_service`.
///
/// The handler is an `async fn(Worker, P)` where `P` is the payload's type (any
/// `DeserializeOwned`, or `serde_json::Value` to take whatever comes); it returns `()` or a
/// `Result`. By default the handler is a [`HandlerType::ServicePool`] with reliable delivery
/// and no requeue on error, as in Nameko.
///
/// ```
/// use nameko_core::{Service, Worker};
/// use nameko_events::{HandlerType, event_handler};
///
/// #[derive(serde::Deserialize)]
/// struct OrderCreated {
///     id: u64,
/// }
///
/// async fn send_receipt(_worker: Worker, order: OrderCreated) {
///     println!("receipt for order {}", order.id);
/// }
///
/// async fn refresh_cache(_worker: Worker, _payload: serde_json::Value) {}
///
/// let service = Service::new("mailer")
///     .entrypoint(event_handler("orders", "order_created", "send_receipt", send_receipt))
///     .entrypoint(
///         event_handler("orders", "order_created", "refresh_cache", refresh_cache)
///             .handler_type(HandlerType::broadcast())
///             .reliable_delivery(false),
///     );
/// # let _ = service;
/// ```
pub fn event_handler<S, H, F, P>(
    source_service: impl Into<String>,
    event_type: impl Into<String>,
    method_name: &str,
    handler: H,
) -> EventHandler<S, H, P>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>, P) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
    P: DeserializeOwned + Send + 'static,
{
    EventHandler {
        info: Arc::new(EntrypointInfo::new("event_handler", method_name)),
        source_service: source_service.into(),
        event_type: event_type.into(),
        handler_type: HandlerType::default(),
        reliable_delivery: true,
        requeue_on_error: false,
        max_redeliveries: DEFAULT_MAX_REDELIVERIES,
        handler,
        run: Mutex::default(),
        _payload: PhantomData,
    }
}

impl<S, H, P> EventHandler<S, H, P> {
    /// Who receives each event: one instance per service (the default), one handler overall,
    /// or every instance.
    #[must_use]
    pub fn handler_type(mut self, handler_type: HandlerType) -> Self {
        self.handler_type = handler_type;
        self
    }

    /// With reliable delivery (the default) the queue is durable and not auto-delete, so it
    /// keeps events while every handler is down; without, it is deleted when its last consumer
    /// goes and events sent meanwhile are lost.
    #[must_use]
    pub fn reliable_delivery(mut self, reliable: bool) -> Self {
        self.reliable_delivery = reliable;
        self
    }

    /// Whether a failed event is handled again (default: no, it is acked like a success).
    /// Unlike Nameko, redeliveries are bounded by [`Self::max_redeliveries`].
    #[must_use]
    pub fn requeue_on_error(mut self, requeue: bool) -> Self {
        self.requeue_on_error = requeue;
        self
    }

    /// With `requeue_on_error`, how many times a failed event is put back on its queue before
    /// it is parked in `dead.<queue>` (reliable delivery) or dropped; default
    /// [`DEFAULT_MAX_REDELIVERIES`]. 0 parks it after its first failure.
    #[must_use]
    pub fn max_redeliveries(mut self, max: u32) -> Self {
        self.max_redeliveries = max;
        self
    }

    /// `exc_type`s this handler is expected to fail with; they are logged as warnings.
    #[must_use]
    pub fn expected_exceptions<I, T>(mut self, exc_types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.info = Arc::new((*self.info).clone().with_expected_exceptions(exc_types));
        self
    }

    /// Parts of the payload never to log, as paths under `payload` (`"payload.password"`,
    /// `"payload.cards[0]"`).
    #[must_use]
    pub fn sensitive_arguments<I, T>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.info = Arc::new((*self.info).clone().with_sensitive_arguments(paths));
        self
    }

    /// The service whose events are handled.
    #[must_use]
    pub fn source_service(&self) -> &str {
        &self.source_service
    }

    /// The event type, which is also the binding key (`*` and `#` match by pattern).
    #[must_use]
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// Checks the options against each other; the container's setup calls this before any
    /// broker work, so a misconfigured handler stops its service from starting.
    pub fn validate(&self) -> Result<()> {
        if let HandlerType::Broadcast(BroadcastIdentifier::PerStart) = self.handler_type
            && self.reliable_delivery
        {
            return Err(Error::DefaultBroadcastIdentifierWithReliableDelivery {
                method: self.info.method_name().to_owned(),
            });
        }
        Ok(())
    }

    fn run(&self) -> MutexGuard<'_, Option<Run>> {
        self.run.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S, H, P> std::fmt::Debug for EventHandler<S, H, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHandler")
            .field("method", &self.info.method_name())
            .field("source_service", &self.source_service)
            .field("event_type", &self.event_type)
            .field("handler_type", &self.handler_type)
            .field("reliable_delivery", &self.reliable_delivery)
            .field("requeue_on_error", &self.requeue_on_error)
            .field("max_redeliveries", &self.max_redeliveries)
            .finish_non_exhaustive()
    }
}

impl<S, H, F, P> Extension for EventHandler<S, H, P>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>, P) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
    P: DeserializeOwned + Send + 'static,
{
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        self.validate()?;
        // Read every setting now, so a bad config fails the start before any queue exists.
        let config = container.config();
        connection_config(config)?;
        prefetch_count(config)?;
        if let HandlerType::Broadcast(identifier) = &self.handler_type {
            identifier.resolve(config)?;
        }
        container.shared_extension(SHARING_KEY, HandlerConsumers::default);
        Ok(())
    }

    async fn start(&self, container: &Container) -> Result<(), BoxError> {
        let config = container.config();
        let settings = connection_config(config)?;
        let queue = HandlerQueue::resolve(
            &self.handler_type,
            self.reliable_delivery,
            &self.source_service,
            &self.event_type,
            container.service_name(),
            self.info.method_name(),
            config,
        )?;
        let connection = Connection::shared(&settings, ConnectionRole::Consumer).await?;
        let exchange = event_exchange(&self.source_service);
        let mut declarations = Declarations::queue(queue.spec());
        if declare_event_exchanges(config) {
            declarations = declarations.exchange(ExchangeSpec {
                auto_delete: auto_delete_event_exchanges(config),
                ..ExchangeSpec::topic(&exchange)
            });
        }
        let declarations = declarations.bind(&exchange, &self.event_type);
        // Declares all of it, then consumes; and again after every recovery.
        let consumer =
            RecoveringConsumer::start(&connection, declarations, prefetch_count(config)?).await?;

        let consumers = container.shared_extension(SHARING_KEY, HandlerConsumers::default);
        let (served, deliveries) = ServedQueue::new(consumer);
        consumers.register(served.clone());
        let runtime = Arc::new(Runtime {
            info: self.info.clone(),
            handler: self.handler.clone(),
            source_service: self.source_service.clone(),
            event_type: self.event_type.clone(),
            settlement: Settlement {
                queue: queue.name.clone(),
                requeue_on_error: self.requeue_on_error,
                max_redeliveries: self.max_redeliveries,
                park: self.reliable_delivery,
                publishing: self.requeue_on_error.then(|| Publishing::new(settings)),
            },
            _payload: PhantomData,
        });
        let (ended_tx, ended) = watch::channel(());
        *self.run() = Some(Run {
            served: served.clone(),
            ended,
        });
        tracing::debug!(
            method = self.info.method_name(),
            queue = %queue.name,
            handler_type = self.handler_type.as_str(),
            "event handler consuming"
        );
        let task = format!(
            "event_handler `{}` consuming `{}`",
            self.info.method_name(),
            queue.name
        );
        let looping = container.clone();
        container.spawn_managed(task, async move {
            let _ended = ended_tx;
            runtime.consume(deliveries, &looping, &served).await
        });
        Ok(())
    }

    async fn stop(&self) {
        let taken = self.run().take();
        if let Some(mut run) = taken {
            run.served.stop_consuming().await;
            // Deliveries received before the cancel still become workers; wait until they
            // have, so the container's drain covers them.
            let drained =
                tokio::time::timeout(CONSUMER_DRAIN_TIMEOUT, run.ended.wait_for(|_| false));
            if drained.await.is_err() {
                tracing::warn!(
                    method = self.info.method_name(),
                    "event consumer did not end after its cancel; stopping anyway"
                );
            }
        }
    }
}

impl<S, H, F, P> Entrypoint for EventHandler<S, H, P>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>, P) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
    P: DeserializeOwned + Send + 'static,
{
    type State = S;

    fn info(&self) -> &Arc<EntrypointInfo> {
        &self.info
    }

    /// Handles a payload given directly: the first positional argument, or the keyword
    /// argument `payload`.
    async fn call(
        &self,
        container: &Container,
        call: DirectCall,
    ) -> Result<WorkerResult, BoxError> {
        let DirectCall {
            mut args,
            mut kwargs,
            context_data,
        } = call;
        let payload = match (args.len(), kwargs.remove(PAYLOAD_ARGUMENT)) {
            (1, None) => args.remove(0),
            (0, Some(payload)) => payload,
            _ => {
                return Err(format!(
                    "event handler `{}` takes one argument, the payload (positional or `payload=`)",
                    self.info.method_name()
                )
                .into());
            }
        };
        let handler = self.handler.clone();
        let (source_service, event_type) = (self.source_service.clone(), self.event_type.clone());
        let worker = container.run_worker(
            &self.info,
            context_data,
            worker_args(payload),
            move |worker| run_handler(handler, worker, source_service, event_type),
        );
        Ok(worker.await?)
    }
}

fn worker_args(payload: Value) -> Value {
    let mut args = serde_json::Map::new();
    args.insert(PAYLOAD_ARGUMENT.to_owned(), payload);
    Value::Object(args)
}

/// Runs the user's handler on the payload kept in the worker's arguments.
async fn run_handler<S, H, F, P>(
    handler: H,
    worker: Worker<S>,
    source_service: String,
    event_type: String,
) -> WorkerResult
where
    H: Fn(Worker<S>, P) -> F,
    F: Future,
    F::Output: IntoWorkerResult,
    P: DeserializeOwned,
{
    let payload = P::deserialize(&worker.args()[PAYLOAD_ARGUMENT]);
    match payload {
        Ok(payload) => handler(worker, payload).await.into_worker_result(),
        Err(error) => {
            // serde's text may quote a part of the payload, and this error is logged: with
            // `sensitive_arguments` declared, it is left out.
            let detail = if worker
                .context()
                .entrypoint()
                .sensitive_arguments()
                .is_empty()
            {
                error.to_string()
            } else {
                "details not shown for a sensitive argument".to_owned()
            };
            Err(RemoteError::new(
                MALFORMED_EVENT,
                MALFORMED_EVENT_PATH,
                format!(
                    "payload of event `{event_type}` from `{source_service}` does not fit the handler's payload type: {detail}"
                ),
            ))
        }
    }
}

/// What the consumer loop of one start needs.
struct Runtime<S, H, P> {
    info: Arc<EntrypointInfo>,
    handler: H,
    source_service: String,
    event_type: String,
    settlement: Settlement,
    _payload: PhantomData<fn(S, P)>,
}

impl<S, H, F, P> Runtime<S, H, P>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>, P) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: IntoWorkerResult,
    P: DeserializeOwned + Send + 'static,
{
    /// Hands every delivery to a worker until the consumer ends. A lost connection or a
    /// broker cancel is recovered inside the consumer; an end that cannot be recovered (the
    /// broker refused a declaration) is an error, which kills the container: it would otherwise
    /// silently stop receiving events.
    async fn consume(
        self: Arc<Self>,
        deliveries: Deliveries,
        container: &Container,
        served: &ServedQueue,
    ) -> std::result::Result<(), BoxError> {
        let outcome = deliveries
            .serve(|delivery| {
                self.clone().on_delivery(container, served, delivery);
                std::future::ready(())
            })
            .await;
        Ok(outcome?)
    }

    fn on_delivery(
        self: Arc<Self>,
        container: &Container,
        served: &ServedQueue,
        delivery: Delivery,
    ) {
        let queue = &self.settlement.queue;
        let IncomingEvent {
            payload,
            context,
            redeliveries,
        } = match message::read(&delivery) {
            Ok(event) => event,
            Err(why) => {
                tracing::warn!(
                    %queue,
                    routing_key = delivery.routing_key(),
                    error = %why,
                    "rejecting an event message that cannot be read"
                );
                served.settle(Arc::new(delivery), Settle::Discard);
                return;
            }
        };
        let delivery = Arc::new(delivery);
        let method = {
            let (handler, source_service, event_type) = (
                self.handler.clone(),
                self.source_service.clone(),
                self.event_type.clone(),
            );
            move |worker| run_handler(handler, worker, source_service, event_type)
        };
        let settle = {
            let (runtime, delivery) = (self.clone(), delivery.clone());
            move |_, result: WorkerResult| async move {
                runtime
                    .settlement
                    .settle(&delivery, redeliveries, &result)
                    .await;
                result
            }
        };
        let worker =
            container.run_worker_with(&self.info, context, worker_args(payload), method, settle);
        // One task per event, in which the worker runs (waiting there for its slot); an event
        // whose worker did not finish is requeued for another instance.
        served.spawn_worker(delivery, async move { worker.await.map(drop) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nameko_core::testing::entrypoint_hook;
    use nameko_core::{Config, ContainerError, Service, ServiceContainer};
    use serde_json::json;

    #[derive(serde::Deserialize)]
    struct Order {
        id: u64,
    }

    async fn handle(worker: Worker, order: Order) -> Result<u64, RemoteError> {
        assert_eq!(worker.args()["payload"]["id"], order.id);
        Ok(order.id * 2)
    }

    #[test]
    fn the_default_broadcast_identifier_needs_unreliable_delivery() {
        let bad = event_handler("src", "e", "m", handle).handler_type(HandlerType::broadcast());
        assert!(matches!(
            bad.validate(),
            Err(Error::DefaultBroadcastIdentifierWithReliableDelivery { .. })
        ));
        assert!(bad.reliable_delivery(false).validate().is_ok());
        let fixed =
            event_handler("src", "e", "m", handle).handler_type(HandlerType::broadcast_with("h"));
        assert!(fixed.validate().is_ok());
    }

    /// The configuration error comes from setup, before any broker I/O: the broker address
    /// here would refuse the connection.
    #[tokio::test]
    async fn a_misconfigured_broadcast_fails_the_start_before_touching_the_broker() {
        let service = Service::new("svc").entrypoint(
            event_handler("src", "e", "on_e", handle).handler_type(HandlerType::broadcast()),
        );
        let mut config = Config::new();
        config.set("AMQP_URI", "amqp://guest:guest@127.0.0.1:1/%2f");
        let container = ServiceContainer::new(service, config).unwrap();
        let error = container.start().await.unwrap_err();
        let ContainerError::Extension { hook, source, .. } = &error else {
            panic!("expected an extension error, found {error}");
        };
        assert_eq!(*hook, "set up");
        assert!(
            source.to_string().starts_with(
                "event handler `on_e` uses the default broadcast identifier, which changes at every start, with reliable delivery"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_hooked_handler_gets_its_payload_typed() {
        let service = Service::new("svc").entrypoint(
            event_handler("src", "e", "on_e", handle).sensitive_arguments(["payload.secret"]),
        );
        let container = ServiceContainer::new(service, Config::new()).unwrap();
        let hook = entrypoint_hook(&container, "on_e").unwrap();
        let result = hook
            .call(vec![json!({"id": 21})], Default::default())
            .await
            .unwrap();
        assert_eq!(result.unwrap(), json!(42));

        let mut kwargs = serde_json::Map::new();
        kwargs.insert("payload".into(), json!({"id": 2}));
        assert_eq!(hook.call(vec![], kwargs).await.unwrap().unwrap(), json!(4));

        let misfit = hook
            .call(vec![json!({"id": "x"})], Default::default())
            .await
            .unwrap();
        let error = misfit.unwrap_err();
        assert_eq!(error.exc_type, "MalformedEvent");
        assert!(
            error
                .value
                .starts_with("payload of event `e` from `src` does not fit"),
            "{}",
            error.value
        );
        // With `sensitive_arguments` declared, serde's text (which quotes the value) is left
        // out of this error, which the worker logs.
        assert!(
            error
                .value
                .ends_with("details not shown for a sensitive argument"),
            "{}",
            error.value
        );

        assert!(
            hook.call(vec![json!(1), json!(2)], Default::default())
                .await
                .is_err()
        );
    }
}
