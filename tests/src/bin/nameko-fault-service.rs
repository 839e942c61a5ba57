//! `nameko-fault-service`: a real service process for the fault tests, which SIGKILL it mid-call,
//! stop it with SIGTERM under load, and start it again, things only a separate process can
//! show (a killed process acknowledges nothing and its sockets close at once).
//!
//! Run with `nameko-fault-service <service> <event-source>` and `AMQP_URI` (plus, optionally,
//! `HEARTBEAT`, `max_workers`, `PREFETCH_COUNT`) in the environment. The service has
//!
//! - `rpc` method `work(tag, millis)`: waits `millis` milliseconds and returns `"<pid>:<tag>"`;
//! - `event_handler(<event-source>, "job", "on_job")` with a payload `{"id": ..., "millis": ...}`:
//!   waits `millis` milliseconds.
//!
//! It reports on stdout, one line each: `ready <pid>` once serving, `start <tag>` and
//! `done <tag>` around each call, `event-start <id>` and `event-done <id>` around each event,
//! `stopped` after a graceful stop. A `done` line is written out before the reply is sent and
//! the request acknowledged, so a test reading them never misses work that was acknowledged.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use nameko_core::{Config, RemoteError, Service, ServiceRunner, Worker};
use nameko_events::event_handler;
use nameko_rpc::rpc;
use serde::Deserialize;

#[derive(Deserialize)]
struct Work {
    tag: String,
    millis: u64,
}

#[derive(Deserialize)]
struct Job {
    id: String,
    millis: u64,
}

/// Writes one line to stdout and flushes it, off the runtime's threads, before returning: once
/// this returns, the line survives a SIGKILL in the pipe's buffer.
async fn report(line: String) {
    let written = tokio::task::spawn_blocking(move || {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}").and_then(|()| stdout.flush())
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        // Nobody reads any more: the test that started this process is gone.
        std::process::exit(3);
    }
}

async fn work(_: Worker, work: Work) -> Result<String, RemoteError> {
    report(format!("start {}", work.tag)).await;
    tokio::time::sleep(Duration::from_millis(work.millis)).await;
    report(format!("done {}", work.tag)).await;
    Ok(format!("{}:{}", std::process::id(), work.tag))
}

async fn on_job(_: Worker, job: Job) {
    report(format!("event-start {}", job.id)).await;
    tokio::time::sleep(Duration::from_millis(job.millis)).await;
    report(format!("event-done {}", job.id)).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let (Some(service), Some(source)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: nameko-fault-service <service> <event-source>");
    };
    let mut config = Config::new();
    for key in ["AMQP_URI", "HEARTBEAT", "max_workers", "PREFETCH_COUNT"] {
        if let Ok(value) = std::env::var(key) {
            config
                .define(&format!("{key}={value}"))
                .with_context(|| format!("reading {key}"))?;
        }
    }
    let service = Service::new(service)
        .entrypoint(rpc("work", work))
        .entrypoint(event_handler(source, "job", "on_job", on_job));
    let mut runner = ServiceRunner::new(config);
    runner.add_service(service)?;
    runner.start().await?;
    report(format!("ready {}", std::process::id())).await;
    runner.run_until_signal().await?;
    report("stopped".to_owned()).await;
    Ok(())
}
