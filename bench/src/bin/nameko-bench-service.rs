//! `nameko-bench-service`: the nameko-rs target of every benchmark, one service with an `rpc`, an
//! `event_handler` and an `http` entrypoint, run through the same `nameko run` command line users
//! get from `nameko_cli::Cli`.
//!
//! It is one process with all three entrypoints, rather than one binary per workload, because
//! that is also what the footprint figures describe (an idle service with rpc, events and http
//! entrypoints) and because its start-up then includes everything a real service's does: config,
//! logging, the broker connection, declarations, consumers and the HTTP listener. The harness
//! runs it as
//!
//! ```text
//! nameko-bench-service run bench --define AMQP_URI=... --define max_workers=64 \
//!     --define WEB_SERVER_ADDRESS=127.0.0.1:PORT --define BENCH_SERVICE=... --define BENCH_SOURCE=...
//! ```
//!
//! and waits for `starting services: <name>`. The handlers do the least work each workload
//! allows, the same as the floor's and the Python target's: `echo` returns its argument, the
//! event handler counts (see `nameko_bench::done_line`), `get_method` is the seed's.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use nameko_bench::{
    ECHO_METHOD, EVENT_METHOD, EVENT_TYPE, HTTP_METHOD, HTTP_RULE, SERVICE_KEY, SOURCE_KEY,
    completes_batch, done_line,
};
use nameko_cli::Cli;
use nameko_core::{Config, RemoteError, Service, Worker};
use nameko_events::event_handler;
use nameko_http::{Request, http};
use nameko_rpc::rpc;
use serde_json::Value;

/// Events handled since the process started; a batch is complete when this reaches the
/// batch's `until`. Relaxed is enough: only the count itself is shared.
static HANDLED: AtomicU64 = AtomicU64::new(0);

#[tokio::main]
async fn main() -> ExitCode {
    Cli::new().service("bench", service).run().await
}

/// The service under test, named by the `BENCH_SERVICE` and `BENCH_SOURCE` config keys.
fn service(config: &Config) -> Service {
    let text = |key: &str, default: &str| {
        config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let name = text(SERVICE_KEY, "bench_service");
    let source = text(SOURCE_KEY, "bench_source");
    Service::new(name)
        .entrypoint(rpc(ECHO_METHOD, echo))
        .entrypoint(event_handler(source, EVENT_TYPE, EVENT_METHOD, on_event))
        .entrypoint(http("GET", HTTP_RULE, HTTP_METHOD, get_method))
}

/// `echo(value)`: the value back, the least an RPC can do.
async fn echo(_worker: Worker, value: Value) -> Result<Value, RemoteError> {
    Ok(value)
}

/// Counts the event and reports the end of a batch on stdout.
async fn on_event(_worker: Worker, payload: Value) {
    let count = HANDLED.fetch_add(1, Ordering::Relaxed) + 1;
    if completes_batch(count, &payload) {
        // Only the harness reads this; if it has gone away there is nobody left to tell.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", done_line(count)).and_then(|()| stdout.flush());
    }
}

/// The seed's `GET /get/<int:value>`: `{"value": 42}` as text.
async fn get_method(_worker: Worker, request: Request) -> String {
    let value = request.path_values().get_int("value").unwrap_or_default();
    format!("{{\"value\": {value}}}")
}
