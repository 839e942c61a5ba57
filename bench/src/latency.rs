//! Latency samples and their summary (median, 99th percentile), and throughput over a window.
//!
//! Every sample is kept, in nanoseconds, rather than folded into a histogram as it arrives: a
//! run of a few seconds yields at most a few hundred thousand samples, sorting them once costs
//! nothing next to the run, and exact nearest-rank percentiles leave no binning error to
//! argue about when two close figures are compared.

use std::time::{Duration, Instant};

/// The latencies recorded during one measurement.
#[derive(Debug, Default, Clone)]
pub(crate) struct Latencies {
    nanos: Vec<u64>,
}

/// What the report shows of a set of latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) median: Duration,
    pub(crate) p99: Duration,
}

/// A measurement window: operations are counted when they complete within it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) from: Instant,
    pub(crate) until: Instant,
}

impl Window {
    /// The window that opens after `warmup` from now and lasts `duration`.
    pub(crate) fn after(warmup: Duration, duration: Duration) -> Self {
        let from = Instant::now() + warmup;
        Self {
            from,
            until: from + duration,
        }
    }

    pub(crate) fn duration(&self) -> Duration {
        self.until - self.from
    }

    pub(crate) fn contains(&self, moment: Instant) -> bool {
        moment >= self.from && moment < self.until
    }
}

/// Operations completed within a measurement window, and how long each took.
#[derive(Debug)]
pub(crate) struct Throughput {
    pub(crate) completed: u64,
    pub(crate) window: Duration,
    pub(crate) latencies: Latencies,
}

impl Throughput {
    pub(crate) fn empty(window: Duration) -> Self {
        Self {
            completed: 0,
            window,
            latencies: Latencies::default(),
        }
    }

    pub(crate) fn add(&mut self, completed: u64, latencies: Latencies) {
        self.completed += completed;
        self.latencies.extend(latencies);
    }

    pub(crate) fn per_second(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }
}

impl Latencies {
    pub(crate) fn record(&mut self, latency: Duration) {
        self.nanos
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    pub(crate) fn extend(&mut self, other: Latencies) {
        self.nanos.extend(other.nanos);
    }

    pub(crate) fn count(&self) -> u64 {
        self.nanos.len() as u64
    }

    /// Median and 99th percentile by nearest rank; `None` without samples.
    pub(crate) fn summary(mut self) -> Option<Summary> {
        if self.nanos.is_empty() {
            return None;
        }
        self.nanos.sort_unstable();
        Some(Summary {
            count: self.nanos.len(),
            median: Duration::from_nanos(nearest_rank(&self.nanos, 0.50)),
            p99: Duration::from_nanos(nearest_rank(&self.nanos, 0.99)),
        })
    }
}

/// The smallest sample with at least `quantile` of all samples at or below it.
fn nearest_rank(sorted: &[u64], quantile: f64) -> u64 {
    // The rank is computed in floating point and clamped, so it cannot leave the slice.
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: impl IntoIterator<Item = u64>) -> Latencies {
        let mut latencies = Latencies::default();
        for value in values {
            latencies.record(Duration::from_millis(value));
        }
        latencies
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let summary = millis((1..=100).rev()).summary().unwrap();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.median, Duration::from_millis(50));
        assert_eq!(summary.p99, Duration::from_millis(99));

        let summary = millis([7]).summary().unwrap();
        assert_eq!(summary.median, Duration::from_millis(7));
        assert_eq!(summary.p99, Duration::from_millis(7));
    }

    #[test]
    fn a_slow_tail_shows_in_the_p99_and_not_in_the_median() {
        let mut latencies = millis(std::iter::repeat_n(1, 98));
        latencies.extend(millis([40, 50]));
        let summary = latencies.summary().unwrap();
        assert_eq!(summary.median, Duration::from_millis(1));
        assert_eq!(summary.p99, Duration::from_millis(40));
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Latencies::default().summary(), None);
    }
}
