//! The harness: every workload against every target with the same load generators, in one run,
//! interleaved so that the ratios survive a noisy machine.
//!
//! Absolute figures drift on a shared two-core machine (other work comes and goes within
//! seconds), and what the targets are about is the ratio between nameko-rs and a baseline. So
//! all three targets run side by side (an idle target costs next to nothing) and every workload
//! is measured in rounds, each round visiting floor, nameko-rs and Python in turn with short
//! measurements; a figure is the median over rounds. A burst of outside load then spoils one
//! round of every target rather than the whole measurement of one. Each round of sequential RPC
//! also times the broker alone (the neutral client's request sent straight back to itself), the
//! bound under every target's sequential latency on this machine.
//!
//! Every target gets fresh names (a uuid per run), so runs never meet each other or the tests,
//! and everything the targets declared on the broker is deleted at the end. A workload that
//! fails is recorded as an error for that target, which then sits out the rest of that
//! workload's rounds; the run goes on, so one broken target still leaves the others' figures.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nameko_bench::{SERVICE_KEY, SOURCE_KEY, done_line};
use tokio::process::Command;
use uuid::Uuid;

use crate::cpu::{Meter, PerOperation};
use crate::events::EventPublisher;
use crate::http_load;
use crate::latency::{Summary, Throughput, Window};
use crate::rpc_client::RpcClient;
use crate::target::Target;
use crate::wire::{self, Leftovers};

/// Sequential calls made to each target before its first sequential measurement.
const RPC_WARMUP_CALLS: usize = 300;

/// Events in the batch that warms up a handler and estimates its rate.
const EVENT_WARMUP: u64 = 2_000;

/// A measured batch is sized to take about one measurement duration at the warm-up rate,
/// within these bounds.
const EVENT_BATCH_MIN: u64 = 2_000;
const EVENT_BATCH_MAX: u64 = 100_000;

/// How long a handler may take to report the end of a batch.
const EVENT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a started service sits idle before its memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// How the run is set up.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) amqp_uri: String,
    /// A python with nameko 2.14.1; without it the Python target is reported as not measured.
    pub(crate) python: Option<PathBuf>,
    /// `bench/python/bench_service.py`.
    pub(crate) script: PathBuf,
    /// The nameko-rs target binary.
    pub(crate) service_exe: PathBuf,
    /// This binary, which serves the floor as a subcommand.
    pub(crate) floor_exe: PathBuf,
    /// Calls in flight, HTTP connections, and every target's `max_workers` and prefetch.
    pub(crate) concurrency: usize,
    pub(crate) warmup: Duration,
    /// How long one round of one workload lasts on one target.
    pub(crate) duration: Duration,
    /// Rounds per workload; figures are medians over them.
    pub(crate) rounds: usize,
    /// How many starts the start-to-ready figure is the median of.
    pub(crate) start_samples: usize,
}

/// The three targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Floor,
    NamekoRs,
    Python,
}

impl Kind {
    pub(crate) const ALL: [Self; 3] = [Self::Floor, Self::NamekoRs, Self::Python];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::NamekoRs => "nameko-rs",
            Self::Python => "python",
        }
    }

    /// The part of generated names that says which target declared them.
    fn tag(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::NamekoRs => "rs",
            Self::Python => "py",
        }
    }
}

/// The measured workloads, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    RpcSequential,
    RpcInFlight,
    Events,
    Http,
}

impl Workload {
    pub(crate) const ALL: [Self; 4] = [
        Self::RpcSequential,
        Self::RpcInFlight,
        Self::Events,
        Self::Http,
    ];

    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::RpcSequential => "rpc_sequential",
            Self::RpcInFlight => "rpc_in_flight",
            Self::Events => "events",
            Self::Http => "http",
        }
    }
}

/// One round of one workload on one target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Operations completed per second.
    pub(crate) per_second: f64,
    /// How long each operation took, where the workload times them one by one.
    pub(crate) latency: Option<Summary>,
    pub(crate) cpu: PerOperation,
}

/// Everything measured of one target.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    /// Every round of every workload that succeeded.
    pub(crate) samples: Vec<(Workload, Sample)>,
    pub(crate) idle_memory: Option<u64>,
    /// Resident memory after every workload has run, for comparison with the idle figure.
    pub(crate) loaded_memory: Option<u64>,
    pub(crate) start_samples: Vec<Duration>,
    pub(crate) errors: Vec<String>,
}

impl Measured {
    pub(crate) fn samples(&self, workload: Workload) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |(candidate, _)| *candidate == workload)
            .map(|(_, sample)| sample)
    }

    /// The median rate over rounds.
    pub(crate) fn rate(&self, workload: Workload) -> Option<f64> {
        median(self.samples(workload).map(|sample| sample.per_second))
    }

    /// The median over rounds of each round's median latency.
    pub(crate) fn median_latency(&self, workload: Workload) -> Option<f64> {
        median(
            self.samples(workload)
                .filter_map(|sample| sample.latency)
                .map(|latency| millis(latency.median)),
        )
    }

    /// The median over rounds of each round's 99th percentile latency.
    pub(crate) fn p99_latency(&self, workload: Workload) -> Option<f64> {
        median(
            self.samples(workload)
                .filter_map(|sample| sample.latency)
                .map(|latency| millis(latency.p99)),
        )
    }

    /// The median start-to-ready time.
    pub(crate) fn start_to_ready(&self) -> Option<Duration> {
        let mut samples = self.start_samples.clone();
        samples.sort_unstable();
        samples.get(samples.len() / 2).copied()
    }

    /// The median over rounds of each part of the CPU per operation.
    pub(crate) fn cpu(&self, workload: Workload) -> PerOperation {
        let part = |pick: fn(&PerOperation) -> Option<f64>| {
            median(
                self.samples(workload)
                    .filter_map(|sample| pick(&sample.cpu)),
            )
        };
        PerOperation {
            target: part(|cpu| cpu.target),
            broker: part(|cpu| cpu.broker),
            client: part(|cpu| cpu.client),
            others: part(|cpu| cpu.others),
        }
    }
}

/// The middle value (the mean of the two middle ones for an even count); `None` for none.
pub(crate) fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.filter(|value| value.is_finite()).collect();
    values.sort_unstable_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        len if len % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

/// The names one target's run uses, unique per run so runs never meet each other or the tests.
struct Names {
    service: String,
    source: String,
}

impl Names {
    fn new(kind: Kind) -> Self {
        let run = Uuid::new_v4().simple().to_string();
        let run = &run[..12];
        Self {
            service: format!("bench_{}_{run}", kind.tag()),
            source: format!("bench_source_{}_{run}", kind.tag()),
        }
    }

    /// The durable entities the target declares and leaves behind.
    fn leftovers(&self) -> Leftovers {
        let mut leftovers = Leftovers::default();
        leftovers.queue(wire::rpc_queue(&self.service));
        leftovers.queue(wire::event_queue(&self.source, &self.service));
        leftovers.exchange(wire::event_exchange(&self.source));
        leftovers
    }
}

/// One target for the length of the run.
struct Run {
    kind: Kind,
    names: Names,
    address: SocketAddr,
    /// `None` once it failed to start.
    target: Option<Target>,
    meter: Option<Meter>,
    measured: Measured,
    /// Workloads this target failed, which it sits out from then on.
    failed: Vec<Workload>,
    /// Events its handler has counted so far.
    handled: u64,
    /// Events per measured batch, from its warm-up rate.
    batch: u64,
}

impl Run {
    fn label(&self) -> &'static str {
        self.kind.label()
    }
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) targets: Vec<(Kind, Measured)>,
    /// Round trips of the neutral client through the broker and straight back, with no
    /// service at all, one set per round of the sequential RPC workload: the bound under every
    /// target's sequential latency on this machine.
    pub(crate) broker_alone: Vec<Summary>,
}

impl Results {
    /// The median over rounds of the broker alone's median latency.
    pub(crate) fn broker_alone_median(&self) -> Option<f64> {
        median(
            self.broker_alone
                .iter()
                .map(|latency| millis(latency.median)),
        )
    }
}

/// Measures every target.
pub(crate) async fn run(settings: &Settings) -> Result<Results> {
    let admin = wire::connect(&settings.amqp_uri, "nameko-bench cleanup").await?;
    let mut runs = Vec::with_capacity(Kind::ALL.len());
    for kind in Kind::ALL {
        runs.push(start(kind, settings).await);
    }
    let mut broker_alone = Vec::new();
    let outcome = measure(settings, &mut runs, &mut broker_alone).await;
    let mut results = Vec::with_capacity(runs.len());
    for mut run in runs {
        if let Some(target) = run.target.take() {
            target.stop().await;
        }
        for failure in run.names.leftovers().remove(&admin).await {
            eprintln!("warning: could not delete {failure}");
        }
        results.push((run.kind, run.measured));
    }
    let _ = admin.close(200, "bye".into()).await;
    outcome?;
    Ok(Results {
        targets: results,
        broker_alone,
    })
}

/// Starts a target `start_samples` times to time its start-up, keeps the last one running and
/// reads its memory once it has been idle for a moment.
async fn start(kind: Kind, settings: &Settings) -> Run {
    let mut run = Run {
        kind,
        names: Names::new(kind),
        address: SocketAddr::from(([127, 0, 0, 1], 0)),
        target: None,
        meter: None,
        measured: Measured::default(),
        failed: Vec::new(),
        handled: 0,
        batch: EVENT_BATCH_MIN,
    };
    if let Err(error) = start_into(&mut run, settings).await {
        run.measured.errors.push(format!("start: {error:#}"));
        eprintln!("{}: {error:#}", run.label());
    }
    run
}

async fn start_into(run: &mut Run, settings: &Settings) -> Result<()> {
    let label = run.label();
    let starts = if run.kind == Kind::Floor {
        1
    } else {
        settings.start_samples
    };
    for start in 1..=starts {
        run.address = free_address()?;
        let mut target =
            Target::spawn(label, command(run.kind, settings, &run.names, run.address)?)?;
        let ready = match target.ready().await {
            Ok(ready) => ready,
            Err(error) => {
                target.stop().await;
                return Err(error);
            }
        };
        run.measured.start_samples.push(ready);
        if start == starts {
            run.target = Some(target);
        } else {
            target.stop().await;
        }
    }
    let Some(target) = &run.target else {
        return Ok(());
    };
    tokio::time::sleep(IDLE_SETTLE).await;
    let memory = target.resident_memory()?;
    run.measured.idle_memory = Some(memory);
    run.meter = Some(Meter::new(target.pid()?));
    eprintln!(
        "{label}: start to ready {:.0} ms (median of {}), idle resident memory {:.1} MB",
        run.measured.start_to_ready().map_or(f64::NAN, millis),
        run.measured.start_samples.len(),
        megabytes(memory)
    );
    Ok(())
}

/// Every workload, round after round, visiting each running target in turn; each round of
/// sequential RPC also times the broker alone.
async fn measure(
    settings: &Settings,
    runs: &mut [Run],
    broker_alone: &mut Vec<Summary>,
) -> Result<()> {
    let client = RpcClient::connect(&settings.amqp_uri).await?;
    let publisher = EventPublisher::connect(&settings.amqp_uri).await?;
    for workload in Workload::ALL {
        for round in 0..settings.rounds {
            for run in runs.iter_mut() {
                if run.target.is_none() || run.failed.contains(&workload) {
                    continue;
                }
                let sample = match workload {
                    Workload::RpcSequential => {
                        rpc_sequential(settings, &client, run, round == 0).await
                    }
                    Workload::RpcInFlight => rpc_in_flight(settings, &client, run).await,
                    Workload::Events => events(settings, &publisher, run, round == 0).await,
                    Workload::Http => http(settings, run).await,
                };
                match sample {
                    Ok(sample) => {
                        report(run.label(), workload, settings, &sample);
                        run.measured.samples.push((workload, sample));
                    }
                    Err(error) => {
                        eprintln!("{}: {}: {error:#}", run.label(), workload.key());
                        run.measured
                            .errors
                            .push(format!("{}: {error:#}", workload.key()));
                        run.failed.push(workload);
                    }
                }
            }
            if workload == Workload::RpcSequential {
                // Shown for scale only: a failure is reported and the run goes on without it.
                let alone = match client.sequential_loopback(settings.duration).await {
                    Ok(alone) => alone,
                    Err(error) => {
                        eprintln!("broker alone: {error:#}");
                        continue;
                    }
                };
                if let Some(latency) = alone.summary() {
                    eprintln!(
                        "broker alone: one trip through the broker and back, median {:.3} ms, p99 {:.3} ms",
                        millis(latency.median),
                        millis(latency.p99)
                    );
                    broker_alone.push(latency);
                }
            }
        }
    }
    for run in runs.iter_mut() {
        if let Some(target) = &run.target {
            match target.resident_memory() {
                Ok(memory) => run.measured.loaded_memory = Some(memory),
                Err(error) => run.measured.errors.push(format!("memory: {error:#}")),
            }
        }
    }
    let _ = publisher.close().await;
    client.close().await.context("cannot close the rpc client")
}

/// Prints one round's figure as progress.
fn report(label: &str, workload: Workload, settings: &Settings, sample: &Sample) {
    let latency = sample.latency.map_or_else(String::new, |latency| {
        format!(
            ", median {:.3} ms, p99 {:.3} ms",
            millis(latency.median),
            millis(latency.p99)
        )
    });
    let what = match workload {
        Workload::RpcSequential => "rpc one at a time: calls/s".to_owned(),
        Workload::RpcInFlight => format!("rpc {} in flight: calls/s", settings.concurrency),
        Workload::Events => "events: events/s".to_owned(),
        Workload::Http => format!("http {} connections: requests/s", settings.concurrency),
    };
    eprintln!(
        "{label}: {what} {:.0}{latency}; {}",
        sample.per_second, sample.cpu
    );
}

/// The command that starts `kind` with `names`, serving HTTP on `address`.
fn command(kind: Kind, settings: &Settings, names: &Names, address: SocketAddr) -> Result<Command> {
    let concurrency = settings.concurrency.to_string();
    let command = match kind {
        Kind::Floor => {
            let mut command = Command::new(&settings.floor_exe);
            command
                .arg("floor")
                .args(["--amqp-uri", &settings.amqp_uri])
                .args(["--service", &names.service])
                .args(["--source", &names.source])
                .args(["--http", &address.to_string()])
                .args(["--prefetch", &concurrency]);
            command
        }
        Kind::NamekoRs => {
            let mut command = Command::new(&settings.service_exe);
            command.args(["run", "bench"]);
            for definition in [
                format!("AMQP_URI={}", settings.amqp_uri),
                format!("max_workers={concurrency}"),
                format!("WEB_SERVER_ADDRESS={address}"),
                format!("{SERVICE_KEY}={}", names.service),
                format!("{SOURCE_KEY}={}", names.source),
            ] {
                command.arg("--define").arg(definition);
            }
            command
        }
        Kind::Python => {
            let python = settings
                .python
                .as_ref()
                .context("no python with nameko 2.14.1 was given (--python or NAMEKO_PYTHON)")?;
            let mut command = Command::new(python);
            command
                .arg(&settings.script)
                .args([&names.service, &names.source])
                .arg(address.to_string())
                .arg(&concurrency)
                .env("AMQP_URI", &settings.amqp_uri);
            command
        }
    };
    Ok(command)
}

/// The meter of a started run.
fn meter(run: &Run) -> Result<Meter> {
    run.meter
        .with_context(|| format!("the {} target is not running", run.label()))
}

/// Round trips one at a time for one duration, after a warm-up in the first round.
async fn rpc_sequential(
    settings: &Settings,
    client: &RpcClient,
    run: &Run,
    first: bool,
) -> Result<Sample> {
    let meter = meter(run)?;
    if first {
        client.warm_up(&run.names.service, RPC_WARMUP_CALLS).await?;
    }
    let opening = meter.read();
    let started = Instant::now();
    let latencies = client
        .sequential(&run.names.service, settings.duration)
        .await?;
    let elapsed = started.elapsed();
    let calls = latencies.count();
    Ok(Sample {
        per_second: calls as f64 / elapsed.as_secs_f64(),
        cpu: opening.per_operation(&meter.read(), calls),
        latency: latencies.summary(),
    })
}

/// `concurrency` calls in flight on the one neutral client.
async fn rpc_in_flight(
    settings: &Settings,
    client: &std::sync::Arc<RpcClient>,
    run: &Run,
) -> Result<Sample> {
    let window = Window::after(settings.warmup, settings.duration);
    let readings = meter(run)?.over(window);
    let throughput = client
        .in_flight(&run.names.service, settings.concurrency, window)
        .await?;
    sample(throughput, readings.await?)
}

/// Events per second from the first publish to the handling of the last event of a batch.
async fn events(
    settings: &Settings,
    publisher: &EventPublisher,
    run: &mut Run,
    first: bool,
) -> Result<Sample> {
    let meter = meter(run)?;
    if first {
        let warmup = batch(publisher, run, EVENT_WARMUP).await?;
        let warm_rate = EVENT_WARMUP as f64 / warmup.as_secs_f64();
        // Saturating float-to-int conversion, then bounded: a batch of about one duration.
        run.batch = ((warm_rate * settings.duration.as_secs_f64()) as u64)
            .clamp(EVENT_BATCH_MIN, EVENT_BATCH_MAX);
    }
    let count = run.batch;
    let opening = meter.read();
    let took = batch(publisher, run, count).await?;
    Ok(Sample {
        per_second: count as f64 / took.as_secs_f64(),
        latency: None,
        cpu: opening.per_operation(&meter.read(), count),
    })
}

/// Publishes `count` events and waits for the handler to report the last one handled.
async fn batch(publisher: &EventPublisher, run: &mut Run, count: u64) -> Result<Duration> {
    let until = run.handled + count;
    let expected = done_line(until);
    let target = run
        .target
        .as_mut()
        .with_context(|| format!("the {} target is not running", run.kind.label()))?;
    let started = Instant::now();
    publisher.publish(&run.names.source, count, until).await?;
    let done = target
        .wait_for(
            &format!("`{expected}`"),
            |text| text == expected,
            EVENT_TIMEOUT,
        )
        .await?;
    run.handled = until;
    Ok(done.at - started)
}

/// `concurrency` keep-alive connections sending `GET /get/42`.
async fn http(settings: &Settings, run: &Run) -> Result<Sample> {
    let window = Window::after(settings.warmup, settings.duration);
    let readings = meter(run)?.over(window);
    let throughput = http_load::run(run.address, settings.concurrency, window).await?;
    sample(throughput, readings.await?)
}

fn sample(
    throughput: Throughput,
    (opening, closing): (crate::cpu::Reading, crate::cpu::Reading),
) -> Result<Sample> {
    Ok(Sample {
        per_second: throughput.per_second(),
        cpu: opening.per_operation(&closing, throughput.completed),
        latency: throughput.latencies.summary(),
    })
}

/// A loopback address nothing listens on at the moment.
fn free_address() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?)
}

pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

pub(crate) fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.5));
        assert_eq!(median([f64::NAN, 5.0].into_iter()), Some(5.0));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn figures_are_medians_over_rounds() {
        let sample = |per_second, median_ms| Sample {
            per_second,
            latency: Some(Summary {
                count: 10,
                median: Duration::from_millis(median_ms),
                p99: Duration::from_millis(median_ms * 3),
            }),
            cpu: PerOperation {
                target: Some(per_second / 100.0),
                ..PerOperation::default()
            },
        };
        let measured = Measured {
            samples: vec![
                (Workload::RpcInFlight, sample(900.0, 9)),
                (Workload::RpcInFlight, sample(100.0, 1)),
                (Workload::RpcInFlight, sample(1_000.0, 2)),
                (Workload::Http, sample(5.0, 5)),
            ],
            ..Measured::default()
        };
        assert_eq!(measured.rate(Workload::RpcInFlight), Some(900.0));
        assert_eq!(measured.median_latency(Workload::RpcInFlight), Some(2.0));
        assert_eq!(measured.p99_latency(Workload::RpcInFlight), Some(6.0));
        assert_eq!(measured.cpu(Workload::RpcInFlight).target, Some(9.0));
        assert_eq!(measured.rate(Workload::Events), None);
    }
}
