//! `nameko-bench floor`: the three framework-free baselines in one process, started and
//! announced the way a service is.
//!
//! The floor stands where a service would: its own process, one AMQP connection (as a
//! nameko-rs process shares one), the same queues and prefetch, and the same
//! `starting services` line once it consumes and listens, so the harness treats it exactly as
//! it treats the nameko-rs and Python targets.

use std::io::Write;

use anyhow::{Context, Result, bail};
use nameko_bench::READY_PREFIX;

use crate::{events, http_floor, rpc_floor, wire};

/// Where the floor serves.
#[derive(Debug, clap::Args)]
pub(crate) struct FloorArgs {
    /// The broker
    #[arg(long, env = "AMQP_URI")]
    amqp_uri: String,
    /// The service name: the floor consumes `rpc-<service>` and its event handler's queue
    #[arg(long)]
    service: String,
    /// The service whose events the floor handles
    #[arg(long)]
    source: String,
    /// The HTTP address, `host:port`
    #[arg(long)]
    http: String,
    /// Unacknowledged deliveries per consumer, as `max_workers` is for the services
    #[arg(long, default_value_t = 64)]
    prefetch: u16,
}

/// Serves until killed; returns only when a part of the floor fails.
pub(crate) async fn run(args: FloorArgs) -> Result<()> {
    let connection = wire::connect(&args.amqp_uri, "nameko-bench floor").await?;
    let mut rpc = rpc_floor::start(&connection, &args.service, args.prefetch).await?;
    let mut events =
        events::start_floor(&connection, &args.source, &args.service, args.prefetch).await?;
    let mut http = http_floor::start(&args.http).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{READY_PREFIX}: floor")?;
        stdout.flush()?;
    }
    let (part, ended) = tokio::select! {
        ended = &mut rpc => ("rpc", ended),
        ended = &mut events => ("events", ended),
        ended = &mut http => ("http", ended),
    };
    ended
        .with_context(|| format!("the {part} floor panicked"))?
        .with_context(|| format!("the {part} floor failed"))?;
    bail!("the {part} floor stopped")
}
