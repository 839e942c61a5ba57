//! Shared test plumbing: the broker address, unique names, cleaning up, and, one file per
//! concern, what the tests of each area build on.
//!
//! A test that needs the broker calls [`broker_uri`]: when no broker answers it says so and the
//! test returns early, except under `CI`, where a missing broker is a failure, never a skip.
//! Python peers run from `python.rs`. The RPC tests' services and clients are in `rpc.rs`, their
//! raw broker access in `raw.rs` and the golden messages in `golden.rs`; the fault tests'
//! services in `faults.rs` and their real processes in `processes.rs`; the event tests'
//! reporting handlers in `events.rs`. Each area keeps its own patience (`WAIT`, `EXPECT`), as it
//! had before the helpers moved here, so a test's timeouts are what they were.

#![allow(dead_code, reason = "each test module uses a different part")]

use std::time::Duration;

use nameko_amqp::{Connection, ConnectionConfig, Topology};
use nameko_core::Config;

pub mod events;
pub mod faults;
pub mod golden;
pub mod processes;
mod python;
pub mod raw;
pub mod rpc;

pub use python::{PythonProcess, python};

/// The broker URI to test against, or `None` (after saying why) when no broker answers and the
/// run is not under CI.
pub async fn broker_uri() -> Option<String> {
    let uri = std::env::var("AMQP_URI")
        .unwrap_or_else(|_| "amqp://guest:guest@localhost:5672/%2f".to_owned());
    let connect = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(conn)) => {
            let _ = conn.close(200, "probe done".into()).await;
            Some(uri)
        }
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "connect timed out".to_owned(),
            };
            if std::env::var_os("CI").is_some() {
                panic!(
                    "no AMQP broker at AMQP_URI ({why}); under CI a missing broker is a failure"
                );
            }
            eprintln!(
                "skipping: no AMQP broker answers ({why}); run `cargo xtask test-integration`, which finds or starts one"
            );
            None
        }
    }
}

/// A config pointing at the test broker, with extra `KEY=VALUE` definitions.
pub fn config(uri: &str, defines: &[&str]) -> Config {
    let mut config = Config::new();
    config.set("AMQP_URI", uri);
    for d in defines {
        config.define(d).expect("valid test define");
    }
    config
}

/// A name no other test uses: `<prefix>_<8 hex chars>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub async fn broker(uri: &str) -> Connection {
    let settings = ConnectionConfig::parse(uri).expect("a valid test uri");
    Connection::connect(&settings)
        .await
        .expect("the test broker answers")
}

/// Deletes what a test left behind: reliable queues outlive their handlers by design.
pub async fn cleanup(uri: &str, queues: &[String], exchanges: &[String]) {
    let topology = Topology::new(&broker(uri).await).await.expect("a channel");
    for queue in queues {
        let _ = topology.delete_queue(queue).await;
    }
    for exchange in exchanges {
        let _ = topology.delete_exchange(exchange).await;
    }
}
