//! `nameko-bench drive`: one workload against a target that is already running, for as long as
//! asked, to profile the target (`perf record -p <pid>`, `perf stat -p <pid>`) under exactly
//! the load the comparison puts on it.
//!
//! It reuses the comparison's load generators unchanged, so what a profile shows is what the
//! table measured. Events are published for as long as asked, but not timed to their handling:
//! that needs the handler's `done` line, which only a target started by the harness reports to
//! it; the rate printed is the publisher's, which a handler that keeps up matches.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cpu::Meter;
use crate::events::EventPublisher;
use crate::harness::millis;
use crate::http_load;
use crate::latency::{Throughput, Window};
use crate::rpc_client::RpcClient;

/// Events dispatched between checks of the clock.
const EVENT_BATCH: u64 = 1_000;

/// What to drive.
#[derive(Debug, clap::Args)]
pub(crate) struct DriveArgs {
    /// The broker
    #[arg(
        long,
        env = "AMQP_URI",
        default_value = "amqp://guest:guest@localhost:5672"
    )]
    amqp_uri: String,
    /// Call `<SERVICE>.echo` with `--concurrency` calls in flight
    #[arg(long, value_name = "SERVICE")]
    rpc: Option<String>,
    /// With --rpc: one call at a time instead
    #[arg(long)]
    sequential: bool,
    /// Send `GET /get/42` to this address over `--concurrency` connections
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<SocketAddr>,
    /// Dispatch events as this source service, to a handler of the benchmark's event type
    #[arg(long, value_name = "SOURCE")]
    events: Option<String>,
    /// Calls in flight or HTTP connections
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to drive
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The target's process id, to report its CPU per operation
    #[arg(long)]
    pid: Option<u32>,
}

pub(crate) async fn run(args: DriveArgs) -> Result<()> {
    let duration = Duration::try_from_secs_f64(args.seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .context("--seconds must be a positive number")?;
    let meter = args.pid.map(Meter::new);
    let opening = meter.map(|meter| meter.read());
    let (what, measured) = match (&args.rpc, args.http, &args.events) {
        (None, None, Some(source)) => {
            let publisher = EventPublisher::connect(&args.amqp_uri).await?;
            let started = Instant::now();
            let mut completed = 0;
            while started.elapsed() < duration {
                // A batch no handler completes: the handlers never print `done`.
                publisher.publish(source, EVENT_BATCH, u64::MAX).await?;
                completed += EVENT_BATCH;
            }
            let window = started.elapsed();
            let _ = publisher.close().await;
            let rate = completed as f64 / window.as_secs_f64();
            println!("{completed} events dispatched, {rate:.0}/s");
            if let (Some(meter), Some(opening)) = (meter, opening) {
                println!("{}", opening.per_operation(&meter.read(), completed));
            }
            return Ok(());
        }
        (Some(service), None, None) => {
            let client = RpcClient::connect(&args.amqp_uri).await?;
            let measured = if args.sequential {
                client
                    .sequential(service, duration)
                    .await
                    .map(|latencies| Throughput {
                        completed: latencies.count(),
                        window: duration,
                        latencies,
                    })
            } else {
                client
                    .in_flight(
                        service,
                        args.concurrency,
                        Window::after(Duration::ZERO, duration),
                    )
                    .await
            };
            let _ = client.close().await;
            ("calls", measured?)
        }
        (None, Some(address), None) => {
            let window = Window::after(Duration::ZERO, duration);
            (
                "requests",
                http_load::run(address, args.concurrency, window).await?,
            )
        }
        _ => bail!("give exactly one of --rpc SERVICE, --http HOST:PORT and --events SOURCE"),
    };
    let rate = measured.per_second();
    let completed = measured.completed;
    if let Some(summary) = measured.latencies.summary() {
        println!(
            "{completed} {what}, {rate:.0}/s, median {:.3} ms, p99 {:.3} ms",
            millis(summary.median),
            millis(summary.p99)
        );
    }
    if let (Some(meter), Some(opening)) = (meter, opening) {
        println!("{}", opening.per_operation(&meter.read(), completed));
    }
    Ok(())
}
