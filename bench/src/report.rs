//! The report: one row per comparison (workload, nameko-rs, baseline, ratio, target, met), as a
//! table on stdout and as JSON for tools.
//!
//! Every target is a ratio against a baseline measured in the same run, except the footprint,
//! whose targets are absolute (15 MB, 200 ms) and whose Python figure is shown beside it. A
//! ratio is always written as the quotient it is (`rs/floor`, `python/rs`) so that "lower is
//! better" and "higher is better" rows read without a legend. A figure that could not be
//! measured leaves its row without a verdict rather than failing or passing it.

use serde_json::{Value, json};
use std::fmt::Write as _;

use crate::cpu::PerOperation;
use crate::harness::{Kind, Measured, Workload, megabytes, millis};

/// What a row's figure must satisfy.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    /// The ratio must be at most this.
    RatioAtMost(f64),
    /// The ratio must be at least this.
    RatioAtLeast(f64),
    /// nameko-rs's own figure must be at most this (in the row's unit).
    AtMost(f64),
    /// Shown for information only.
    None,
}

/// Which way a row's ratio is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quotient {
    RsOverBaseline,
    BaselineOverRs,
}

/// One comparison.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    workload: String,
    unit: &'static str,
    nameko_rs: Option<f64>,
    baseline: &'static str,
    baseline_value: Option<f64>,
    quotient: Quotient,
    goal: Goal,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let (rs, baseline) = (self.nameko_rs?, self.baseline_value?);
        let ratio = match self.quotient {
            Quotient::RsOverBaseline => rs / baseline,
            Quotient::BaselineOverRs => baseline / rs,
        };
        ratio.is_finite().then_some(ratio)
    }

    fn ratio_name(&self) -> String {
        match self.quotient {
            Quotient::RsOverBaseline => format!("rs/{}", self.baseline),
            Quotient::BaselineOverRs => format!("{}/rs", self.baseline),
        }
    }

    /// `Some(true)` met, `Some(false)` missed, `None` no goal or not measured.
    pub(crate) fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::RatioAtMost(limit) => self.ratio().map(|ratio| ratio <= limit),
            Goal::RatioAtLeast(limit) => self.ratio().map(|ratio| ratio >= limit),
            Goal::AtMost(limit) => self.nameko_rs.map(|value| value <= limit),
            Goal::None => None,
        }
    }

    pub(crate) fn has_goal(&self) -> bool {
        self.goal != Goal::None
    }

    fn target_text(&self) -> String {
        match self.goal {
            Goal::RatioAtMost(limit) => format!("{} <= {limit}", self.ratio_name()),
            Goal::RatioAtLeast(limit) => format!("{} >= {limit}", self.ratio_name()),
            Goal::AtMost(limit) => format!("rs <= {limit} {}", self.unit),
            Goal::None => "-".to_owned(),
        }
    }

    /// The ratio to two decimals, or three where two would round it across its limit (a
    /// missed 0.796 must not read as 0.80 against a limit of 0.8).
    fn shown_ratio(&self, ratio: f64) -> String {
        let two = format!("{ratio:.2}");
        let limit = match self.goal {
            Goal::RatioAtMost(limit) | Goal::RatioAtLeast(limit) => limit,
            Goal::AtMost(_) | Goal::None => return two,
        };
        let rounded: f64 = two.parse().unwrap_or(ratio);
        let crosses = match self.goal {
            Goal::RatioAtMost(_) => (ratio <= limit) != (rounded <= limit),
            _ => (ratio >= limit) != (rounded >= limit),
        };
        if crosses { format!("{ratio:.3}") } else { two }
    }

    fn verdict(&self) -> &'static str {
        match (self.has_goal(), self.met()) {
            (false, _) => "-",
            (true, Some(true)) => "yes",
            (true, Some(false)) => "NO",
            (true, None) => "n/a",
        }
    }
}

/// A figure of one target's measurements.
type Figure = fn(&Measured) -> Option<f64>;

/// The rows of a run, from each target's measurements and the broker alone's median
/// round trip (see `RpcClient::loopback`).
pub(crate) fn rows(
    measured: &[(Kind, Measured)],
    broker_alone: Option<f64>,
    concurrency: usize,
) -> Vec<Row> {
    use Goal::{AtMost, None as Info, RatioAtLeast as Least, RatioAtMost as Most};
    use Kind::{Floor, Python};
    use Quotient::{BaselineOverRs as Base, RsOverBaseline as Rs};

    let median: Figure = |m| m.median_latency(Workload::RpcSequential);
    let p99: Figure = |m| m.p99_latency(Workload::RpcSequential);
    let in_flight: Figure = |m| m.rate(Workload::RpcInFlight);
    let events: Figure = |m| m.rate(Workload::Events);
    let http: Figure = |m| m.rate(Workload::Http);
    let http_p99: Figure = |m| m.p99_latency(Workload::Http);
    let memory: Figure = |m| m.idle_memory.map(megabytes);
    let start: Figure = |m| m.start_to_ready().map(millis);
    let rpc_in_flight = format!("rpc {concurrency} in flight");
    let http_load = format!("http {concurrency} connections");

    // The targets of the benchmark's specification, one comparison per line.
    #[rustfmt::skip]
    let specs: [(&str, &'static str, Figure, Kind, Quotient, Goal); 15] = [
        ("rpc one at a time, median", "ms", median, Floor, Rs, Most(1.3)),
        ("rpc one at a time, median", "ms", median, Python, Base, Least(2.0)),
        ("rpc one at a time, p99", "ms", p99, Floor, Rs, Info),
        ("rpc one at a time, p99", "ms", p99, Python, Base, Info),
        (&rpc_in_flight, "calls/s", in_flight, Floor, Rs, Least(0.8)),
        (&rpc_in_flight, "calls/s", in_flight, Python, Rs, Least(5.0)),
        ("events end to end", "events/s", events, Floor, Rs, Least(0.8)),
        ("events end to end", "events/s", events, Python, Rs, Least(2.5)),
        (&http_load, "req/s", http, Floor, Rs, Least(0.8)),
        (&http_load, "req/s", http, Python, Rs, Least(25.0)),
        ("http p99", "ms", http_p99, Floor, Rs, Info),
        ("http p99", "ms", http_p99, Python, Base, Info),
        ("idle memory", "MB", memory, Python, Base, AtMost(15.0)),
        ("idle memory", "MB", memory, Floor, Rs, Info),
        ("start to ready", "ms", start, Python, Base, AtMost(200.0)),
    ];

    let of = |kind: Kind, figure: Figure| {
        measured
            .iter()
            .find(|(candidate, _)| *candidate == kind)
            .and_then(|(_, measured)| figure(measured))
    };
    let mut rows: Vec<Row> = specs
        .into_iter()
        .map(|(workload, unit, figure, baseline, quotient, goal)| Row {
            workload: workload.to_owned(),
            unit,
            nameko_rs: of(Kind::NamekoRs, figure),
            baseline: if baseline == Floor && workload.starts_with("http") {
                "hyper"
            } else {
                baseline.label()
            },
            baseline_value: of(baseline, figure),
            quotient,
            goal,
        })
        .collect();
    // Beside the two sequential-median comparisons: the broker alone, the bound no framework
    // gets under.
    rows.insert(
        2,
        Row {
            workload: "rpc one at a time, median".to_owned(),
            unit: "ms",
            nameko_rs: of(Kind::NamekoRs, median),
            baseline: BROKER_ALONE,
            baseline_value: broker_alone,
            quotient: Rs,
            goal: Info,
        },
    );
    rows
}

/// The baseline name of the broker alone: the neutral client's request sent to its own reply
/// queue, one trip through the broker and back with no service, which no call through a
/// service can beat.
pub(crate) const BROKER_ALONE: &str = "broker";

/// Formats a figure for the table: latencies to the microsecond, rates as whole numbers.
fn figure(value: Option<f64>, unit: &str) -> String {
    match value {
        None => "n/a".to_owned(),
        Some(value) => match unit {
            "ms" if value < 10.0 => format!("{value:.3} ms"),
            "ms" => format!("{value:.0} ms"),
            "MB" => format!("{value:.1} MB"),
            _ => format!("{value:.0} {unit}"),
        },
    }
}

/// The table, with the workload named once per group of rows.
pub(crate) fn table(rows: &[Row]) -> String {
    let header = [
        "workload",
        "nameko-rs",
        "baseline",
        "ratio",
        "target",
        "met",
    ];
    let mut cells: Vec<[String; 6]> = Vec::with_capacity(rows.len());
    let mut previous = "";
    for row in rows {
        let workload = if row.workload == previous {
            String::new()
        } else {
            row.workload.clone()
        };
        previous = &row.workload;
        cells.push([
            workload,
            figure(row.nameko_rs, row.unit),
            format!("{} {}", row.baseline, figure(row.baseline_value, row.unit)),
            row.ratio().map_or_else(
                || format!("{} n/a", row.ratio_name()),
                |ratio| format!("{} {}", row.ratio_name(), row.shown_ratio(ratio)),
            ),
            row.target_text(),
            row.verdict().to_owned(),
        ]);
    }
    let mut widths = header.map(str::len);
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "| {} |", padded.join(" | "));
    };
    line(&header.map(str::to_owned));
    line(&widths.map(|width| "-".repeat(width)));
    for row in &cells {
        line(row);
    }
    out
}

/// The whole run as JSON: the rows as the table shows them, then every target's raw figures.
pub(crate) fn json(rows: &[Row], measured: &[(Kind, Measured)], settings: Value) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "workload": row.workload,
                "unit": row.unit,
                "nameko_rs": row.nameko_rs,
                "baseline": row.baseline,
                "baseline_value": row.baseline_value,
                "ratio": row.ratio(),
                "ratio_of": row.ratio_name(),
                "target": row.target_text(),
                "met": row.met().filter(|_| row.has_goal()),
            })
        })
        .collect();
    let targets: serde_json::Map<String, Value> = measured
        .iter()
        .map(|(kind, measured)| (kind.label().to_owned(), raw(measured)))
        .collect();
    json!({
        "settings": settings,
        "rows": rows,
        "targets": targets,
    })
}

fn raw(measured: &Measured) -> Value {
    let cpu = |cpu: PerOperation| {
        json!({
            "target": cpu.target,
            "broker": cpu.broker,
            "load_generator": cpu.client,
            "others": cpu.others,
        })
    };
    let workloads: serde_json::Map<String, Value> = Workload::ALL
        .into_iter()
        .map(|workload| {
            let rounds: Vec<Value> = measured
                .samples(workload)
                .map(|sample| {
                    json!({
                        "per_second": sample.per_second,
                        "median_ms": sample.latency.map(|latency| millis(latency.median)),
                        "p99_ms": sample.latency.map(|latency| millis(latency.p99)),
                        "operations_timed": sample.latency.map(|latency| latency.count),
                        "cpu_us_per_operation": cpu(sample.cpu),
                    })
                })
                .collect();
            let figures = json!({
                "per_second": measured.rate(workload),
                "median_ms": measured.median_latency(workload),
                "p99_ms": measured.p99_latency(workload),
                "cpu_us_per_operation": cpu(measured.cpu(workload)),
                "rounds": rounds,
            });
            (workload.key().to_owned(), figures)
        })
        .collect();
    let starts: Vec<f64> = measured.start_samples.iter().copied().map(millis).collect();
    json!({
        "workloads": workloads,
        "idle_memory_bytes": measured.idle_memory,
        "memory_after_workloads_bytes": measured.loaded_memory,
        "start_to_ready_ms": starts,
        "errors": measured.errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Sample;
    use crate::latency::Summary;
    use std::time::Duration;

    fn measured(median_ms: u64, calls: f64, memory: Option<u64>) -> Measured {
        let sample = |per_second, latency| Sample {
            per_second,
            latency,
            cpu: PerOperation::default(),
        };
        Measured {
            samples: vec![
                (
                    Workload::RpcSequential,
                    sample(
                        1_000.0 / median_ms as f64,
                        Some(Summary {
                            count: 100,
                            median: Duration::from_millis(median_ms),
                            p99: Duration::from_millis(median_ms * 2),
                        }),
                    ),
                ),
                (Workload::RpcInFlight, sample(calls, None)),
            ],
            idle_memory: memory,
            start_samples: vec![Duration::from_millis(150)],
            ..Measured::default()
        }
    }

    fn find<'a>(rows: &'a [Row], workload: &str, baseline: &str) -> &'a Row {
        rows.iter()
            .find(|row| row.workload == workload && row.baseline == baseline)
            .unwrap()
    }

    #[test]
    fn ratios_run_the_way_their_targets_are_stated() {
        let rows = rows(
            &[
                (Kind::Floor, measured(10, 10_000.0, None)),
                (Kind::NamekoRs, measured(12, 9_000.0, Some(10 << 20))),
                (Kind::Python, measured(30, 1_000.0, Some(60 << 20))),
            ],
            Some(6.0),
            64,
        );
        let floor = find(&rows, "rpc one at a time, median", "floor");
        assert!((floor.ratio().unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(floor.met(), Some(true));
        let python = find(&rows, "rpc one at a time, median", "python");
        assert!((python.ratio().unwrap() - 2.5).abs() < 1e-9);
        assert_eq!(python.met(), Some(true));
        let in_flight = find(&rows, "rpc 64 in flight", "floor");
        assert!((in_flight.ratio().unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(find(&rows, "rpc 64 in flight", "python").met(), Some(true));
        assert_eq!(find(&rows, "idle memory", "python").met(), Some(true));
        assert_eq!(find(&rows, "start to ready", "python").met(), Some(true));
        // The broker alone is shown for scale, with no verdict.
        let broker = find(&rows, "rpc one at a time, median", BROKER_ALONE);
        assert!((broker.ratio().unwrap() - 2.0).abs() < 1e-9);
        assert!(!broker.has_goal());
    }

    #[test]
    fn a_missed_target_says_no_and_a_missing_figure_says_nothing() {
        let rows = rows(
            &[
                (Kind::Floor, measured(10, 10_000.0, None)),
                (Kind::NamekoRs, measured(14, 7_000.0, Some(20 << 20))),
            ],
            None,
            64,
        );
        assert_eq!(
            find(&rows, "rpc one at a time, median", "floor").met(),
            Some(false)
        );
        assert_eq!(find(&rows, "rpc 64 in flight", "floor").met(), Some(false));
        assert_eq!(find(&rows, "idle memory", "python").met(), Some(false));
        let python = find(&rows, "rpc one at a time, median", "python");
        assert_eq!(python.met(), None);
        assert!(table(&rows).contains("| NO "));
        assert!(table(&rows).contains("python n/a"));
    }

    #[test]
    fn a_ratio_just_short_of_its_limit_does_not_round_up_to_it() {
        let mut rows = rows(
            &[
                (Kind::Floor, measured(10, 10_000.0, None)),
                (Kind::NamekoRs, measured(10, 7_960.0, None)),
            ],
            None,
            64,
        );
        rows.retain(|row| row.workload == "rpc 64 in flight" && row.baseline == "floor");
        assert!(table(&rows).contains("rs/floor 0.796"), "{}", table(&rows));
        assert_eq!(rows[0].shown_ratio(0.812), "0.81");
    }

    #[test]
    fn http_rows_compare_with_bare_hyper() {
        let rows = rows(&[], None, 64);
        assert!(
            rows.iter()
                .any(|row| row.workload == "http 64 connections" && row.baseline == "hyper")
        );
    }
}
