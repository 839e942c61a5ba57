//! `nameko-bench drive`: one workload against a target that is already running, for as long as
//! asked, to profile the target (`perf record -p <pid>`, `perf stat -p <pid>`) under exactly
//! the load the comparison puts on it.
//!
//! It reuses the comparison's load generators unchanged, so what a profile shows is what the
//! table measured. Events are left out: their measurement needs the handler's `done` line,
//! which only a target started by the harness reports to it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cpu::Meter;
use crate::harness::millis;
use crate::http_load;
use crate::latency::{Throughput, Window};
use crate::rpc_client::RpcClient;

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
    let (what, measured) = match (&args.rpc, args.http) {
        (Some(service), None) => {
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
        (None, Some(address)) => {
            let window = Window::after(Duration::ZERO, duration);
            (
                "requests",
                http_load::run(address, args.concurrency, window).await?,
            )
        }
        _ => bail!("give exactly one of --rpc SERVICE and --http HOST:PORT"),
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
