//! Nameko's timer example: service `service`, whose method `ping` runs every second and prints
//! `pong`.
//!
//! Run it with `cargo run -p nameko-cli -- run timer`; it needs no broker. As in Nameko, a timer
//! is not cluster-aware: every running instance prints its own `pong`.
//!
//! ```python
//! class Service:
//!     name = "service"
//!
//!     @timer(interval=1)
//!     def ping(self):
//!         print("pong")
//! ```

use std::time::Duration;

use nameko_core::{Config, Service, Worker};
use nameko_timer::timer;

/// The service: `ping` every second.
pub fn service(_config: &Config) -> Service {
    Service::new("service").entrypoint(timer(Duration::from_secs(1), "ping", ping))
}

/// Prints `pong`; stdout is line-buffered, so each one is seen as it happens.
async fn ping(_worker: Worker) {
    println!("pong");
}

#[cfg(test)]
mod tests {
    use nameko_core::ServiceContainer;
    use nameko_core::testing::entrypoint_hook;

    use super::*;

    #[tokio::test]
    async fn ping_runs_as_a_timer_tick() {
        let container = ServiceContainer::new(service(&Config::new()), Config::new()).unwrap();
        container.start().await.unwrap();
        let result = entrypoint_hook(&container, "ping")
            .unwrap()
            .call(Vec::new(), Default::default())
            .await
            .unwrap();
        assert_eq!(result, Ok(serde_json::Value::Null));
        container.stop().await;
    }
}
