//! Nameko's `event_broadcast` example: service `listener` handles `ping` events from
//! `monitor` in every running instance (a broadcast handler) and prints `pong from listener`.
//!
//! It needs RabbitMQ. Run it with `cargo run -p nameko-cli -- run event_broadcast`, in as many
//! terminals as you like, then dispatch one event as `monitor`:
//!
//! ```text
//! $ cargo run -p nameko-cli -- dispatch monitor ping '"ping"'
//! ```
//!
//! and every instance prints `pong from listener`. Without reliable delivery each instance's
//! queue lives only as long as the instance: events sent while none runs are not kept. The
//! Python original:
//!
//! ```python
//! class ListenerService:
//!     name = "listener"
//!
//!     @event_handler(
//!         "monitor", "ping", handler_type=BROADCAST, reliable_delivery=False
//!     )
//!     def ping(self, payload):
//!         # all running services will respond
//!         print("pong from {}".format(self.name))
//! ```

use nameko_core::{Config, Service, Worker};
use nameko_events::{HandlerType, event_handler};
use serde_json::Value;

/// The service: `ping` for every `ping` event from `monitor`, in every instance.
pub fn service(_config: &Config) -> Service {
    Service::new("listener").entrypoint(
        event_handler("monitor", "ping", "ping", ping)
            .handler_type(HandlerType::broadcast())
            .reliable_delivery(false),
    )
}

async fn ping(worker: Worker, _payload: Value) {
    println!("pong from {}", worker.service_name());
}
