//! Where the CPU goes during a measurement: the target, the broker, the load generator, and
//! everything else on the machine, per operation.
//!
//! On a two-core machine the target, the broker and the load generator compete for the same
//! cores, so a throughput figure alone cannot say whether a target is slow or merely makes the
//! broker work harder (more frames, more channels). Reading each process's CPU time from
//! `/proc` before and after a measurement window answers that for free, and the machine-wide
//! busy time shows when something else was running and the figures are suspect. Times are read
//! in clock ticks (`USER_HZ`, 100 per second on Linux), so they are meaningful over windows of
//! seconds, which is what the workloads last. Off Linux every figure is simply absent.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::latency::Window;

/// Linux reports process and machine CPU times in these ticks per second.
const TICKS_PER_SECOND: u64 = 100;

/// Which processes to account for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meter {
    target: u32,
    broker: Option<u32>,
}

/// CPU times read at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    target: Option<Duration>,
    broker: Option<Duration>,
    client: Option<Duration>,
    machine: Option<Duration>,
}

/// CPU time per operation over a window, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PerOperation {
    pub(crate) target: Option<f64>,
    pub(crate) broker: Option<f64>,
    pub(crate) client: Option<f64>,
    /// Everything else the machine did, which should be close to nothing.
    pub(crate) others: Option<f64>,
}

impl Meter {
    /// Accounts for `target` and, when it runs on this machine, the RabbitMQ node.
    pub(crate) fn new(target: u32) -> Self {
        Self {
            target,
            broker: broker_pid(),
        }
    }

    /// Readings at the opening and at the close of `window`, taken by a task of their own so
    /// that they land on time whatever the load generator is doing.
    pub(crate) fn over(self, window: Window) -> JoinHandle<(Reading, Reading)> {
        tokio::spawn(async move {
            tokio::time::sleep_until(window.from.into()).await;
            let opening = self.read();
            tokio::time::sleep_until(window.until.into()).await;
            (opening, self.read())
        })
    }

    pub(crate) fn read(&self) -> Reading {
        Reading {
            target: process_cpu(&self.target.to_string()),
            broker: self.broker.and_then(|pid| process_cpu(&pid.to_string())),
            client: process_cpu("self"),
            machine: machine_busy(),
        }
    }
}

impl Reading {
    /// The CPU spent between `self` and `later`, per operation of the `operations` done.
    pub(crate) fn per_operation(&self, later: &Reading, operations: u64) -> PerOperation {
        let per_op = |before: Option<Duration>, after: Option<Duration>| {
            let spent = after?.checked_sub(before?)?;
            (operations > 0).then(|| spent.as_secs_f64() * 1e6 / operations as f64)
        };
        let target = per_op(self.target, later.target);
        let broker = per_op(self.broker, later.broker);
        let client = per_op(self.client, later.client);
        let others = per_op(self.machine, later.machine).map(|machine| {
            machine - target.unwrap_or(0.0) - broker.unwrap_or(0.0) - client.unwrap_or(0.0)
        });
        PerOperation {
            target,
            broker,
            client,
            others: others.map(|others| others.max(0.0)),
        }
    }
}

impl std::fmt::Display for PerOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show =
            |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"));
        write!(
            f,
            "CPU µs per operation: target {}, broker {}, load generator {}, others {}",
            show(self.target),
            show(self.broker),
            show(self.client),
            show(self.others)
        )
    }
}

fn ticks(count: u64) -> Duration {
    Duration::from_millis(count * 1_000 / TICKS_PER_SECOND)
}

/// User plus system time of a process (all its threads, living and ended), from
/// `/proc/<pid>/stat`.
fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    process_ticks(&stat).map(ticks)
}

fn process_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may contain spaces; fields are counted after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is the first after the name; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// How many cores' worth of CPU the machine spends over `period`, measured now: anything well
/// above zero before a run means other work shares the machine.
pub(crate) async fn cores_busy(period: Duration) -> Option<f64> {
    let before = machine_busy()?;
    tokio::time::sleep(period).await;
    let spent = machine_busy()?.checked_sub(before)?;
    Some(spent.as_secs_f64() / period.as_secs_f64())
}

/// Busy time of all cores together, from the first line of `/proc/stat`.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    machine_ticks(&stat).map(ticks)
}

fn machine_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .map(|value| value.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait; guest
    // time is already counted in user.
    let field = |index: usize| values.get(index).copied().unwrap_or(0);
    Some(field(0) + field(1) + field(2) + field(5) + field(6) + field(7))
}

/// The process id of a RabbitMQ node on this machine (the Erlang VM, `beam.smp`).
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "beam.smp")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time_after_a_name_with_spaces() {
        let stat = "4242 (tokio runtime) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 3";
        assert_eq!(process_ticks(stat), Some(175));
        assert_eq!(process_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 30 2 3 1 0 0\ncpu0 50 2 25 500 15 1 1 0 0 0\n";
        assert_eq!(machine_ticks(stat), Some(161));
    }

    #[test]
    fn cpu_is_shared_out_per_operation() {
        let reading = |target, broker, client, machine| Reading {
            target: Some(Duration::from_millis(target)),
            broker: Some(Duration::from_millis(broker)),
            client: Some(Duration::from_millis(client)),
            machine: Some(Duration::from_millis(machine)),
        };
        let before = reading(100, 1_000, 50, 5_000);
        let after = reading(300, 1_500, 150, 5_900);
        let per_op = before.per_operation(&after, 1_000);
        assert_eq!(per_op.target, Some(200.0));
        assert_eq!(per_op.broker, Some(500.0));
        assert_eq!(per_op.client, Some(100.0));
        assert_eq!(per_op.others, Some(100.0));
        assert_eq!(before.per_operation(&after, 0).target, None);
    }
}
