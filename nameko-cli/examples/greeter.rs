//! A binary of your own: one service with an RPC method and a dependency provider, behind the
//! same `run`, `call`, `dispatch` and `show-config` commands as `nameko`.
//!
//! ```text
//! $ cargo run -p nameko-cli --example greeter -- run greeter --define GREETING=Howdy
//! starting services: greeter
//! $ cargo run -p nameko-cli -- call greeter.hello '["Matt"]'
//! "Howdy, Matt!"
//! ```

use std::process::ExitCode;
use std::sync::OnceLock;

use nameko_cli::Cli;
use nameko_core::{
    BoxError, Config, Container, DependencyProvider, Extension, RemoteError, Service, Worker,
    WorkerContext,
};
use nameko_rpc::rpc;

/// A dependency provider: reads `GREETING` from the config when the service is set up, and
/// hands it to every worker.
#[derive(Default)]
struct Greeting {
    text: OnceLock<String>,
}

impl Extension for Greeting {
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let text = container
            .config()
            .get_as::<String>("GREETING", "a greeting")?
            .unwrap_or_else(|| "Hello".to_owned());
        let _ = self.text.set(text);
        Ok(())
    }
}

impl DependencyProvider for Greeting {
    type Dependency = String;

    async fn get_dependency(&self, _worker: &WorkerContext) -> Result<String, BoxError> {
        self.text
            .get()
            .cloned()
            .ok_or_else(|| "the greeting is read at setup".into())
    }
}

/// An RPC method: `hello(name)`, with the greeting injected.
async fn hello(worker: Worker, name: String) -> Result<String, RemoteError> {
    let greeting = worker.dependency::<String>("greeting")?;
    Ok(format!("{greeting}, {name}!"))
}

/// The service, built from the effective config (`--config`, `--define`, `AMQP_URI`).
fn greeter(_config: &Config) -> Service {
    Service::new("greeter")
        .dependency("greeting", Greeting::default())
        .entrypoint(rpc("hello", hello))
}

#[tokio::main]
async fn main() -> ExitCode {
    Cli::new().service("greeter", greeter).run().await
}

#[cfg(test)]
mod tests {
    use nameko_core::testing::worker_factory;

    use super::*;

    #[tokio::test]
    async fn hello_uses_the_injected_greeting() {
        let worker = worker_factory(&greeter(&Config::new()))
            .replace("greeting", "Howdy".to_owned())
            .unwrap()
            .worker("hello");
        assert_eq!(
            hello(worker, "Matt".to_owned()).await.unwrap(),
            "Howdy, Matt!"
        );
    }
}
