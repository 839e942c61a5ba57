//! `nameko-bench`: measures nameko-rs against a framework-free floor and against Python Nameko
//! 2.14, side by side in one run, with the same load generators for all three.
//!
//! `cargo xtask bench` builds this in release mode, makes sure a broker answers and the Python
//! venv exists, and runs `nameko-bench run`. Each target is a process of its own (this binary's
//! `floor` subcommand, `nameko-bench-service`, `bench/python/bench_service.py`), driven by the
//! neutral lapin RPC client and event publisher and the hyper load generator in this binary, in
//! interleaved rounds (see `harness`) so that ratios hold up on a shared machine.
//! The report is a table on stdout and JSON in `target/bench/results.json`; progress and
//! errors go to stderr. The exit status is non-zero only when a figure could not be measured:
//! a missed target is a finding, reported in the table, not a failure of the tool.

mod cpu;
mod drive;
mod events;
mod floor;
mod harness;
mod http_floor;
mod http_load;
mod latency;
mod report;
mod rpc_client;
mod rpc_floor;
mod target;
mod wire;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::harness::{Kind, Settings};

/// Benchmarks of nameko-rs against a framework-free floor and Python Nameko
#[derive(Debug, Parser)]
#[command(name = "nameko-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every workload against every target and report
    Run(RunArgs),
    /// Serve the framework-free floor (started by `run`)
    Floor(floor::FloorArgs),
    /// Drive one workload against a running target, to profile it
    Drive(drive::DriveArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The broker
    #[arg(
        long,
        env = "AMQP_URI",
        default_value = "amqp://guest:guest@localhost:5672"
    )]
    amqp_uri: String,
    /// A python with nameko 2.14.1; the Python target is skipped without one
    #[arg(long, env = "NAMEKO_PYTHON")]
    python: Option<PathBuf>,
    /// Where to write the results as JSON
    #[arg(long, default_value_os_t = default_out())]
    out: PathBuf,
    /// Calls in flight, HTTP connections, and each target's max_workers and prefetch
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds one round of one workload lasts on one target
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Seconds of load before each throughput round starts counting
    #[arg(long, default_value_t = 0.5)]
    warmup_seconds: f64,
    /// Rounds per workload; every figure is the median over them
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Starts of each service the start-to-ready figure is the median of
    #[arg(long, default_value_t = 3)]
    starts: usize,
}

/// How long the machine is watched before the run to see whether something else is running.
const BUSY_SAMPLE: Duration = Duration::from_secs(1);

/// Cores in use before the run above which the figures are flagged as noisy (an idle RabbitMQ
/// node and the harness itself stay well below it).
const BUSY_WARNING: f64 = 0.3;

fn default_out() -> PathBuf {
    workspace_root()
        .join("target")
        .join("bench")
        .join("results.json")
}

/// The workspace root, from this crate's manifest directory.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run(args) => run(args).await,
        Command::Floor(args) => floor::run(args).await.map(|()| true),
        Command::Drive(args) => drive::run(args).await.map(|()| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn cores() -> Option<usize> {
    std::thread::available_parallelism().map(usize::from).ok()
}

/// Runs the comparison; `Ok(false)` when some figure could not be measured.
async fn run(args: RunArgs) -> Result<bool> {
    let own = std::env::current_exe().context("cannot find this executable")?;
    let dir = own.parent().context("this executable has no directory")?;
    let settings = Settings {
        amqp_uri: args.amqp_uri,
        python: args.python,
        script: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("python")
            .join("bench_service.py"),
        service_exe: dir.join(format!(
            "nameko-bench-service{}",
            std::env::consts::EXE_SUFFIX
        )),
        floor_exe: own.clone(),
        concurrency: args.concurrency,
        warmup: Duration::try_from_secs_f64(args.warmup_seconds)
            .context("--warmup-seconds must be a non-negative number")?,
        duration: Duration::try_from_secs_f64(args.seconds)
            .ok()
            .filter(|duration| !duration.is_zero())
            .context("--seconds must be a positive number")?,
        rounds: args.rounds.max(1),
        start_samples: args.starts.max(1),
    };

    let busy_before = cpu::cores_busy(BUSY_SAMPLE).await;
    eprintln!(
        "machine: {} cores, {} cores busy before the run",
        cores().map_or_else(|| "?".to_owned(), |cores| cores.to_string()),
        busy_before.map_or_else(|| "unknown".to_owned(), |busy| format!("{busy:.2}"))
    );
    if let Some(busy) = busy_before.filter(|busy| *busy >= BUSY_WARNING) {
        eprintln!(
            "warning: the machine is busy ({busy:.2} cores in use before the run); figures will \
             be noisy, ratios less so"
        );
    }
    let outcome = harness::run(&settings).await?;
    let measured = &outcome.targets;
    let broker_alone = outcome.broker_alone_median();
    let rows = report::rows(measured, broker_alone, settings.concurrency);
    println!();
    print!("{}", report::table(&rows));
    if broker_alone.is_some() {
        println!(
            "\n{}: the same request sent to the client's own reply queue, one trip through the \
             broker and back with no service; no call through a service can be faster",
            report::BROKER_ALONE
        );
    }

    let goals: Vec<_> = rows.iter().filter(|row| row.has_goal()).collect();
    let met = goals.iter().filter(|row| row.met() == Some(true)).count();
    let missed = goals.iter().filter(|row| row.met() == Some(false)).count();
    let unknown = goals.len() - met - missed;
    println!(
        "\n{met} of {} targets met, {missed} missed, {unknown} not measured",
        goals.len()
    );

    let results = report::json(
        &rows,
        measured,
        json!({
            "concurrency": settings.concurrency,
            "seconds": settings.duration.as_secs_f64(),
            "rounds": settings.rounds,
            "warmup_seconds": settings.warmup.as_secs_f64(),
            "start_samples": settings.start_samples,
            "cores": cores(),
            "cores_busy_before": busy_before,
        }),
    );
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("results written to {}", args.out.display());

    let errors: usize = measured
        .iter()
        .map(|(_, measured)| measured.errors.len())
        .sum();
    if errors > 0 {
        eprintln!("{errors} measurement(s) failed; the errors are listed above");
    }
    let python_skipped = settings.python.is_none();
    if python_skipped {
        eprintln!(
            "the {} target was not measured: give --python or NAMEKO_PYTHON",
            Kind::Python.label()
        );
    }
    Ok(errors == 0)
}
