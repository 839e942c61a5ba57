//! `EventDispatcher`: the dependency that lets a service method dispatch events, and
//! [`Dispatch`], the handle it injects (Nameko injects a `dispatch(event_type, event_data)`
//! callable).
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
use std::sync::{Arc, Mutex, PoisonError};

use nameko_amqp::{FieldTable, PublishOptions};
use nameko_core::{BoxError, Config, Container, DependencyProvider, Extension, WorkerContext};
use serde::Serialize;

use crate::broker::{Publishing, connection_config};
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
            declare: config.declare_event_exchanges(),
            auto_delete: config.auto_delete_event_exchanges(),
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

/// Dispatches events from a service's workers: Nameko's `EventDispatcher()`.
///
/// Register it as a dependency and reach its [`Dispatch`] handle from a handler:
///
/// ```no_run
/// use nameko_core::{RemoteError, Service, Worker};
/// use nameko_events::{Dispatch, EventDispatcher};
///
/// async fn create_order(worker: Worker, id: u64) -> Result<(), RemoteError> {
///     let dispatch = worker.dependency::<Dispatch>("dispatch")?;
///     dispatch.dispatch("order_created", &serde_json::json!({"id": id})).await?;
///     Ok(())
/// }
///
/// let service = Service::new("orders").dependency("dispatch", EventDispatcher::new());
/// # let _ = (service, create_order);
/// ```
///
/// One dispatcher value serves every container built from clones of its `Service`; it
/// publishes with the broker settings of the container that was set up last.
#[derive(Default)]
pub struct EventDispatcher {
    /// Set at setup. A std mutex is enough: it is held only to store or copy the `Arc`.
    sender: Mutex<Option<(Arc<str>, Arc<EventSender>)>>,
}

impl EventDispatcher {
    /// A dispatcher for the service it is registered on.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for EventDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("EventDispatcher")
            .field("source_service", &state.as_ref().map(|(source, _)| source))
            .finish()
    }
}

impl Extension for EventDispatcher {
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let sender = EventSender::new(container.config())?;
        let source = container.service_name_arc();
        sender.declare_exchange(&source).await?;
        *self.sender.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((source, Arc::new(sender)));
        Ok(())
    }
}

impl DependencyProvider for EventDispatcher {
    type Dependency = Dispatch;

    async fn get_dependency(&self, worker: &WorkerContext) -> Result<Dispatch, BoxError> {
        let (source, sender) = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(Error::NotStarted {
                what: "the event dispatcher",
            })?;
        Ok(Dispatch {
            source,
            sender,
            headers: nameko_amqp::headers::encode_context(&worker.context_data()),
        })
    }
}

/// What an [`EventDispatcher`] injects: dispatches events as this service, carrying the
/// worker's context. Cheap to clone.
#[derive(Clone)]
pub struct Dispatch {
    source: Arc<str>,
    sender: Arc<EventSender>,
    /// The worker's context data as `nameko.*` headers, made once per worker as Nameko does.
    headers: FieldTable,
}

impl Dispatch {
    /// Dispatches `payload` as an event of `event_type` and waits until the broker has
    /// confirmed it.
    pub async fn dispatch<T: Serialize + ?Sized>(
        &self,
        event_type: &str,
        payload: &T,
    ) -> Result<()> {
        let body = encode_payload(event_type, payload)?;
        self.sender
            .send(&self.source, event_type, &body, self.headers.clone())
            .await
    }

    /// The service the events are dispatched as.
    #[must_use]
    pub fn source_service(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatch")
            .field("source_service", &self.source)
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
        let error = dispatcher.get_dependency(&context).await.unwrap_err();
        assert!(error.to_string().contains("not set up"), "{error}");
    }
}
