//! Nameko's hello world: service `greeting_service` with the RPC method `hello(name)`, which
//! returns `"Hello, <name>!"`.
//!
//! It needs RabbitMQ (`AMQP_URI`, default `amqp://guest:guest@localhost`). Run it with
//! `cargo run -p nameko-cli -- run helloworld`, then call it from another terminal:
//!
//! ```text
//! $ cargo run -p nameko-cli -- call greeting_service.hello '["Matt"]'
//! "Hello, Matt!"
//! ```
//!
//! A Python client calls it as it would call the Python original
//! (`cluster_rpc.greeting_service.hello(name="Matt")`), and a Python `greeting_service` can run
//! alongside: the two share the queue `rpc-greeting_service`.
//!
//! ```python
//! class GreetingService:
//!     name = "greeting_service"
//!
//!     @rpc
//!     def hello(self, name):
//!         return "Hello, {}!".format(name)
//! ```

use nameko_core::{Config, RemoteError, Service, Worker};
use nameko_rpc::rpc;

/// The service: `hello(name)`.
pub fn service(_config: &Config) -> Service {
    Service::new("greeting_service").entrypoint(rpc("hello", hello))
}

/// A single parameter binds one argument, given by position or by keyword.
async fn hello(_worker: Worker, name: String) -> Result<String, RemoteError> {
    Ok(format!("Hello, {name}!"))
}

#[cfg(test)]
mod tests {
    use nameko_core::testing::worker_factory;

    use super::*;

    #[tokio::test]
    async fn hello_greets_by_name() {
        let worker = worker_factory(&service(&Config::new())).worker("hello");
        assert_eq!(
            hello(worker, "Matt".to_owned()).await.unwrap(),
            "Hello, Matt!"
        );
    }
}
