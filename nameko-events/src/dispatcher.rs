//! `EventDispatcher`: the dependency that lets a service method dispatch events (Nameko injects
//! a `dispatch(event_type, event_data)` callable), a field of the service's state; [`Dispatch`]
//! is one bound to a worker's context. [`EventDispatcher::recording`] is its test double.
//!
//! The message is Nameko's exactly (reference §3.2): published to `<service>.events` with the
//! event type as routing key, the payload as raw JSON written as Python writes it, persistent,
//! priority 0, no correlation id or reply-to, not mandatory, and the worker's context data as
//! `nameko.*` headers, so `call_id_stack` and user data reach every handler. A dispatch returns
//! once the broker has confirmed the message; whether anyone listens is not checked, as in
//! Nameko.
//!
//! The event exchange is declared when the service sets up (unless `DECLARE_EVENT_EXCHANGES` is
//! `false`) and again, followed by one retry, if a publish fails because the exchange does not
//! exist: an auto-delete exchange can vanish with its last binding. A publish that fails because
//! the connection was lost is an error to the caller, not retried (the broker may have the event
//! already); the next dispatch reconnects.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use nameko_amqp::{FieldTable, PublishOptions};
use nameko_core::{
    BoxError, Config, Container, ContextData, DependencyProvider, Extension, WorkerContext,
};
use serde::Serialize;
use serde_json::Value;

use crate::broker::{
    Publishing, auto_delete_event_exchanges, connection_config, declare_event_exchanges,
};
use crate::error::{Error, Result};
use crate::names::event_exchange;

/// Writes a payload as Python's `json.dumps` would, refusing what Python receivers would drop.
pub(crate) fn encode_payload<T: Serialize + ?Sized>(
    event_type: &str,
    payload: &T,
) -> Result<Vec<u8>> {
    let value = serde_json::to_value(payload).map_err(|source| Error::Serialize {
        event_type: event_type.to_owned(),
        source,
    })?;
    let body = nameko_amqp::json::encode(&value);
    // kombu unwraps every object with exactly the keys `__type__` and `__value__` and drops
    // the message when it does not know the type; check with the same decoder, but only when
    // the marker occurs at all.
    if body.windows(8).any(|w| w == b"__type__") {
        nameko_amqp::json::decode(&body).map_err(|source| Error::KombuWrapper {
            event_type: event_type.to_owned(),
            source,
        })?;
    }
    Ok(body)
}

/// Publishes events with confirms, declaring each source's exchange once and again after a
/// channel failure. Shared by the in-service and the standalone dispatcher.
#[derive(Debug)]
pub(crate) struct EventSender {
    publishing: Publishing,
    /// `DECLARE_EVENT_EXCHANGES`: unless `false`, exchanges are declared before use.
    declare: bool,
    /// `AUTO_DELETE_EVENT_EXCHANGES`: how exchanges are declared.
    auto_delete: bool,
    /// Exchanges declared on the current channel. A std mutex is enough: it is held only to
    /// read or edit the set, never across an await.
    declared: Mutex<HashSet<String>>,
}

impl EventSender {
    pub(crate) fn new(config: &Config) -> Result<Self> {
        Ok(Self {
            publishing: Publishing::new(connection_config(config)?),
            declare: declare_event_exchanges(config),
            auto_delete: auto_delete_event_exchanges(config),
            declared: Mutex::default(),
        })
    }

    fn declared(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.declared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Declares `<source>.events` unless declaring is turned off or it was declared already.
    pub(crate) async fn declare_exchange(&self, source_service: &str) -> Result<()> {
        if !self.declare || self.declared().contains(source_service) {
            return Ok(());
        }
        let topology = self.publishing.topology().await?;
        topology
            .declare_event_exchange(source_service, self.auto_delete)
            .await?;
        self.declared().insert(source_service.to_owned());
        Ok(())
    }

    /// Publishes one event and waits for the broker's confirm.
    pub(crate) async fn send(
        &self,
        source_service: &str,
        event_type: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<()> {
        self.declare_exchange(source_service).await?;
        let exchange = event_exchange(source_service);
        // Nameko's publisher defaults: persistent, priority 0, JSON, not mandatory.
        let options = PublishOptions {
            headers,
            ..PublishOptions::default()
        };
        let failure = match self
            .publishing
            .publish_once(&exchange, event_type, body, options.clone())
            .await?
        {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        tracing::warn!(
            %exchange,
            event_type,
            error = %failure,
            "the event exchange does not exist; declaring it again and retrying once"
        );
        self.declared().remove(source_service);
        self.declare_exchange(source_service).await?;
        self.publishing
            .publish_once(&exchange, event_type, body, options)
            .await?
            .map_err(Error::from)
    }
}

/// Where a dispatcher's events go.
enum Route {
    /// To the broker, once the container has set the dispatcher up: the source service and the
    /// sender.
    Broker(OnceLock<(Arc<str>, Arc<EventSender>)>),
    /// Into a list, for tests.
    Recording(Mutex<Vec<DispatchedEvent>>),
}

/// A dependency provider for dispatching events from a service (Nameko's `EventDispatcher`); a
/// cheap-clone handle whose clones share their set-up.
///
/// ```ignore
/// Service::with_state("orders", |deps| Orders {
///     dispatch: deps.add("dispatch", EventDispatcher::new()),
/// })
/// // in a handler:
/// worker.service().dispatch.dispatch(&worker, "order_created", &payload).await?;
/// ```
#[derive(Clone)]
pub struct EventDispatcher {
    route: Arc<Route>,
}

impl Default for EventDispatcher {
    fn default() -> Self {
        Self {
            route: Arc::new(Route::Broker(OnceLock::new())),
        }
    }
}

/// One event a [recording](EventDispatcher::recording) dispatcher took.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchedEvent {
    /// The event type (the routing key).
    pub event_type: String,
    /// The payload, as JSON.
    pub payload: Value,
    /// The context data of the worker that dispatched it (what would travel as headers).
    pub context_data: ContextData,
}

impl EventDispatcher {
    /// A dispatcher for the service it is registered on.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A test double that keeps every event it is asked to dispatch, checking payloads as the
    /// real one does, without a broker; read them with [`EventDispatcher::dispatched`].
    #[must_use]
    pub fn recording() -> Self {
        Self {
            route: Arc::new(Route::Recording(Mutex::default())),
        }
    }

    /// The events a recording dispatcher took, in order (none for a real one).
    pub fn dispatched(&self) -> Vec<DispatchedEvent> {
        match &*self.route {
            Route::Recording(events) => events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            Route::Broker(_) => Vec::new(),
        }
    }

    /// A dispatcher that sends `worker`'s context with every event, as headers.
    pub fn bind(&self, worker: &WorkerContext) -> Dispatch {
        Dispatch {
            route: self.route.clone(),
            context: worker.context_data(),
        }
    }

    /// Dispatches `payload` as an event of `event_type` on behalf of `worker` (Nameko's
    /// `self.dispatch(event_type, payload)`), once the broker confirmed it.
    pub async fn dispatch<T: Serialize + ?Sized>(
        &self,
        worker: &WorkerContext,
        event_type: &str,
        payload: &T,
    ) -> Result<()> {
        self.bind(worker).dispatch(event_type, payload).await
    }
}

impl fmt::Debug for EventDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("EventDispatcher");
        match &*self.route {
            Route::Broker(sender) => {
                debug.field("source_service", &sender.get().map(|(source, _)| source))
            }
            Route::Recording(_) => debug.field("recording", &true),
        };
        debug.finish()
    }
}

impl Extension for EventDispatcher {
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let Route::Broker(slot) = &*self.route else {
            return Ok(());
        };
        let sender = EventSender::new(container.config())?;
        let source = container.service_name_arc();
        sender.declare_exchange(&source).await?;
        let _ = slot.set((source, Arc::new(sender)));
        Ok(())
    }
}

impl DependencyProvider for EventDispatcher {}

/// An [`EventDispatcher`] bound to one worker's context.
#[derive(Clone)]
pub struct Dispatch {
    route: Arc<Route>,
    context: ContextData,
}

impl Dispatch {
    /// Dispatches `payload` as an event of `event_type`, once the broker confirmed it.
    pub async fn dispatch<T: Serialize + ?Sized>(
        &self,
        event_type: &str,
        payload: &T,
    ) -> Result<()> {
        let body = encode_payload(event_type, payload)?;
        match &*self.route {
            Route::Broker(sender) => {
                let (source, sender) = sender.get().ok_or(Error::NotStarted {
                    what: "the event dispatcher",
                })?;
                let headers = nameko_amqp::headers::encode_context(&self.context);
                sender.send(source, event_type, &body, headers).await
            }
            Route::Recording(events) => {
                let payload = serde_json::to_value(payload).map_err(|source| Error::Serialize {
                    event_type: event_type.to_owned(),
                    source,
                })?;
                events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(DispatchedEvent {
                        event_type: event_type.to_owned(),
                        payload,
                        context_data: self.context.clone(),
                    });
                Ok(())
            }
        }
    }

    /// The service the events come from, once set up.
    #[must_use]
    pub fn source_service(&self) -> Option<&str> {
        match &*self.route {
            Route::Broker(sender) => sender.get().map(|(source, _)| &**source),
            Route::Recording(_) => None,
        }
    }
}

impl fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatch")
            .field("source_service", &self.source_service())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_are_written_as_python_writes_them() {
        assert_eq!(
            encode_payload("e", &json!({"p": 1})).unwrap(),
            br#"{"p": 1}"#
        );
        assert_eq!(encode_payload("e", "caf\u{e9}").unwrap(), br#""caf\u00e9""#);
        assert_eq!(encode_payload("e", &[1.0, 2.5]).unwrap(), b"[1.0, 2.5]");
    }

    #[test]
    fn payloads_python_would_drop_are_refused() {
        let kept = json!({"at": {"__type__": "datetime", "__value__": "2024-01-02T03:04:05"}});
        assert!(encode_payload("e", &kept).is_ok());
        let mentioned = json!({"__type__": "anything", "other": 1});
        assert!(
            encode_payload("e", &mentioned).is_ok(),
            "not exactly the two keys"
        );
        let dropped = json!([{"__type__": "mystery", "__value__": 1}]);
        let error = encode_payload("order_created", &dropped).unwrap_err();
        assert!(matches!(error, Error::KombuWrapper { .. }));
        assert!(
            error
                .to_string()
                .starts_with("payload of event `order_created` would be dropped")
        );
    }

    #[test]
    fn unserializable_payloads_are_errors() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), "tuple keys");
        let error = encode_payload("e", &map).unwrap_err();
        assert!(matches!(error, Error::Serialize { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_dispatcher_not_set_up_says_so() {
        let dispatcher = EventDispatcher::new();
        let context = WorkerContext::new(
            "svc".into(),
            Arc::new(nameko_core::EntrypointInfo::new("test", "m")),
            Default::default(),
            serde_json::Value::Null,
            10,
        );
        let error = dispatcher.dispatch(&context, "e", &1).await.unwrap_err();
        assert!(error.to_string().contains("not set up"), "{error}");
    }

    #[tokio::test]
    async fn a_recording_dispatcher_keeps_events_with_their_context() {
        let dispatcher = EventDispatcher::recording();
        let mut data = ContextData::new();
        data.insert("user_id".into(), serde_json::json!("u1"));
        let context = WorkerContext::new(
            "svc".into(),
            Arc::new(nameko_core::EntrypointInfo::new("test", "m")),
            data,
            serde_json::Value::Null,
            10,
        );
        dispatcher
            .clone()
            .dispatch(&context, "order_created", &json!({"id": 7}))
            .await
            .unwrap();
        let dropped = json!([{"__type__": "mystery", "__value__": 1}]);
        assert!(dispatcher.dispatch(&context, "e", &dropped).await.is_err());
        let events = dispatcher.dispatched();
        assert_eq!(events.len(), 1, "a clone records into the same list");
        assert_eq!(events[0].event_type, "order_created");
        assert_eq!(events[0].payload, json!({"id": 7}));
        assert_eq!(events[0].context_data.get("user_id"), Some(&json!("u1")));
        assert_eq!(
            events[0].context_data.get("call_id_stack"),
            Some(&json!([context.call_id()]))
        );
    }
}
