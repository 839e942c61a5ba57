//! The examples of Nameko's documentation, one module each, with the very service, method,
//! event and route names it uses, so Python Nameko peers can talk to them and share their
//! queues.
//!
//! The built-in `nameko` binary is [`cli`]: a [`Cli`] with every example registered under the
//! name the document runs it by (`nameko run timer`). Each example's module says what it shows
//! and how to run it.

pub mod advanced_http;
pub mod event_broadcast;
pub mod events;
pub mod helloworld;
pub mod http;
pub mod http_exceptions;
pub mod rpc;
pub mod timer;

use crate::Cli;

/// The `nameko` command with every example registered.
pub fn cli() -> Cli {
    Cli::new()
        .service("helloworld", helloworld::service)
        .services("rpc", rpc::services)
        .services("events", events::services)
        .service("event_broadcast", event_broadcast::service)
        .service("http", http::service)
        .service("advanced_http", advanced_http::service)
        .service("http_exceptions", http_exceptions::service)
        .service("timer", timer::service)
}
