//! Nameko's `events` example: service `service_a` dispatches an event from its RPC method
//! `dispatching_method(payload)`; service `service_b` handles it in `handle_event` and prints
//! `service b received: <payload>`.
//!
//! It needs RabbitMQ. Run it with `cargo run -p nameko-cli -- run events`, then:
//!
//! ```text
//! $ cargo run -p nameko-cli -- call service_a.dispatching_method '["hello"]'
//! null
//! ```
//!
//! and the first terminal prints `service b received: hello`. An event can also be dispatched
//! straight from the command line, as if `service_a` had sent it:
//! `cargo run -p nameko-cli -- dispatch service_a event_type '"hello"'`.
//!
//! `handle_event` is a service-pool handler (Nameko's default): run several instances of
//! `service_b` and each event is handled by one of them. The Python original:
//!
//! ```python
//! class ServiceA:
//!     name = "service_a"
//!
//!     dispatch = EventDispatcher()
//!
//!     @rpc
//!     def dispatching_method(self, payload):
//!         self.dispatch("event_type", payload)
//!
//! class ServiceB:
//!     name = "service_b"
//!
//!     @event_handler("service_a", "event_type")
//!     def handle_event(self, payload):
//!         print("service b received:", payload)
//! ```

use nameko_core::{AnyService, Config, RemoteError, Service, Worker};
use nameko_events::{EventDispatcher, event_handler};
use nameko_rpc::rpc;
use serde_json::Value;

/// Both services: `service_a` and `service_b`.
pub fn services(config: &Config) -> [AnyService; 2] {
    [service_a(config).into(), service_b(config).into()]
}

/// `service_a`: `dispatching_method(payload)`, with an event dispatcher under `dispatch`.
pub fn service_a(_config: &Config) -> Service<ServiceA> {
    service_a_with(EventDispatcher::new())
}

/// `service_a` dispatching through `dispatch`: a real dispatcher, or a recording one.
pub fn service_a_with(dispatch: EventDispatcher) -> Service<ServiceA> {
    Service::with_state("service_a", |deps| ServiceA {
        dispatch: deps.add("dispatch", dispatch),
    })
    .entrypoint(rpc("dispatching_method", dispatching_method))
}

/// The state of `service_a`: Nameko's `dispatch = EventDispatcher()`.
#[derive(Debug)]
pub struct ServiceA {
    dispatch: EventDispatcher,
}

/// `service_b`: `handle_event` for `event_type` events from `service_a`.
pub fn service_b(_config: &Config) -> Service {
    Service::new("service_b").entrypoint(event_handler(
        "service_a",
        "event_type",
        "handle_event",
        handle_event,
    ))
}

/// Any JSON payload is dispatched as it is; the call returns once the broker has it.
async fn dispatching_method(worker: Worker<ServiceA>, payload: Value) -> Result<(), RemoteError> {
    let dispatch = &worker.service().dispatch;
    dispatch.dispatch(&worker, "event_type", &payload).await?;
    Ok(())
}

async fn handle_event(_worker: Worker, payload: Value) {
    // A string prints without quotes, as Python's `print` shows it.
    let shown = payload
        .as_str()
        .map_or_else(|| payload.to_string(), str::to_owned);
    println!("service b received: {shown}");
}

#[cfg(test)]
mod tests {
    use nameko_core::testing::worker_factory;

    use super::*;

    #[tokio::test]
    async fn dispatching_method_dispatches_its_payload() {
        let dispatch = EventDispatcher::recording();
        let worker = worker_factory(&service_a_with(dispatch.clone())).worker("dispatching_method");
        dispatching_method(worker, "hello".into()).await.unwrap();
        let events = dispatch.dispatched();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, "event_type");
        assert_eq!(events[0].payload, "hello");
    }

    #[test]
    fn the_services_declare_what_nameko_declares() {
        let a = service_a(&Config::new());
        assert_eq!(a.dependency_names().collect::<Vec<_>>(), ["dispatch"]);
        assert_eq!(
            a.entrypoint_names().collect::<Vec<_>>(),
            ["dispatching_method"]
        );
        let b = service_b(&Config::new());
        assert_eq!(b.entrypoint_names().collect::<Vec<_>>(), ["handle_event"]);
    }
}
