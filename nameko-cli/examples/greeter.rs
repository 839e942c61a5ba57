//! A binary of your own: one service with an RPC method, state read from config, and a
//! dependency provider that makes a value per worker, behind the same `run`, `call`, `dispatch`
//! and `show-config` commands as `nameko`.
//!
//! ```text
//! $ cargo run -p nameko-cli --example greeter -- run greeter --define GREETING=Howdy
//! starting services: greeter
//! $ cargo run -p nameko-cli -- call greeter.hello '["Matt"]'
//! "Howdy, Matt! (greeting 1)"
//! ```
//!
//! The greeting is plain state, read from config when the service is built: no provider is
//! needed for a value that never changes. `Ledger` is the shape of Nameko's per-worker
//! `get_dependency(worker_ctx)` (a database session per call): a handler asks it for this
//! worker's `Entry` with the worker in hand, the provider keeps the entry by call id, and its
//! `worker_teardown` hook commits it when the worker ends, whatever the handler did.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use nameko_cli::Cli;
use nameko_core::{
    Config, DependencyProvider, Extension, RemoteError, Service, Worker, WorkerContext,
};
use nameko_rpc::rpc;

/// The greeter's state: Nameko's class attributes.
struct Greeter {
    greeting: String,
    ledger: Ledger,
}

/// A provider that hands each worker an entry of its own and commits it at teardown.
#[derive(Clone, Default)]
struct Ledger {
    inner: Arc<Mutex<LedgerState>>,
}

#[derive(Default)]
struct LedgerState {
    /// Entries of workers still running, by call id.
    open: HashMap<String, Entry>,
    /// Names greeted by finished workers, in order.
    committed: Vec<String>,
}

/// One worker's entry.
#[derive(Clone, Debug, Default)]
struct Entry {
    names: Vec<String>,
}

impl Ledger {
    fn state(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `name` in `worker`'s entry (made on first use) and says how many greetings the
    /// ledger holds, this one included.
    fn record(&self, worker: &WorkerContext, name: &str) -> usize {
        let mut state = self.state();
        let entry = state.open.entry(worker.call_id().to_owned()).or_default();
        entry.names.push(name.to_owned());
        state.committed.len() + state.open.values().map(|e| e.names.len()).sum::<usize>()
    }
}

#[cfg(test)]
impl Ledger {
    /// The names greeted by finished workers.
    fn committed(&self) -> Vec<String> {
        self.state().committed.clone()
    }

    /// Entries of workers still running.
    fn open_entries(&self) -> usize {
        self.state().open.len()
    }
}

impl Extension for Ledger {}

impl DependencyProvider for Ledger {
    async fn worker_teardown(&self, worker: &WorkerContext) {
        let mut state = self.state();
        if let Some(entry) = state.open.remove(worker.call_id()) {
            state.committed.extend(entry.names);
        }
    }
}

async fn hello(worker: Worker<Greeter>, name: String) -> Result<String, RemoteError> {
    let greeter = worker.service();
    let count = greeter.ledger.record(&worker, &name);
    Ok(format!("{}, {name}! (greeting {count})", greeter.greeting))
}

fn greeter(config: &Config) -> Result<Service<Greeter>, nameko_core::ConfigError> {
    let greeting = config
        .get_as::<String>("GREETING", "a greeting")?
        .unwrap_or_else(|| "Hello".to_owned());
    Ok(greeter_with(greeting, Ledger::default()))
}

fn greeter_with(greeting: String, ledger: Ledger) -> Service<Greeter> {
    Service::with_state("greeter", |deps| Greeter {
        greeting,
        ledger: deps.add("ledger", ledger),
    })
    .entrypoint(rpc("hello", hello))
}

#[tokio::main]
async fn main() -> ExitCode {
    Cli::new()
        .service("greeter", |config| {
            greeter(config).unwrap_or_else(|error| {
                // `run` reports the same key again when it reads the config; fall back here.
                tracing::warn!(%error, "GREETING is not a string; greeting with `Hello`");
                greeter_with("Hello".to_owned(), Ledger::default())
            })
        })
        .run()
        .await
}

#[cfg(test)]
mod tests {
    use nameko_core::ServiceContainer;
    use nameko_core::testing::{entrypoint_hook, worker_factory};
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn hello_uses_the_configured_greeting() {
        let mut config = Config::new();
        config.set("GREETING", "Howdy");
        let worker = worker_factory(&greeter(&config).unwrap()).worker("hello");
        assert_eq!(
            hello(worker, "Matt".to_owned()).await.unwrap(),
            "Howdy, Matt! (greeting 1)"
        );
    }

    #[test]
    fn a_greeting_that_is_not_text_is_refused() {
        let mut config = Config::new();
        config.set("GREETING", json!(["not", "text"]));
        assert!(greeter(&config).is_err());
    }

    #[tokio::test]
    async fn each_worker_gets_its_own_entry_committed_at_teardown() {
        let ledger = Ledger::default();
        let service = greeter_with("Hi".to_owned(), ledger.clone());
        let container = ServiceContainer::new(service, Config::new()).unwrap();
        let hook = entrypoint_hook(&container, "hello").unwrap();
        // Not started: the rpc entrypoint runs its worker directly, with the provider's hooks.
        let first = hook.call(vec![json!("Ann")], Default::default()).await;
        let second = hook.call(vec![json!("Bob")], Default::default()).await;
        assert_eq!(first.unwrap().unwrap(), json!("Hi, Ann! (greeting 1)"));
        assert_eq!(second.unwrap().unwrap(), json!("Hi, Bob! (greeting 2)"));
        assert_eq!(ledger.committed(), ["Ann", "Bob"]);
        assert_eq!(ledger.open_entries(), 0, "teardown closed every entry");
    }
}
