//! A target under test as a child process: started, watched line by line, measured, killed.
//!
//! Every target (the floor, the nameko-rs service, the Python Nameko service) runs in a process
//! of its own, as a deployed service would, so it never shares a runtime or an allocator with
//! the load generator, and its memory can be read from `/proc`. Targets talk back on stdout
//! only (`starting services: ...` once ready, `done N` at the end of an event batch), and each
//! line is timestamped the moment it is read, so a figure measured against a line is not skewed
//! by when the harness got round to looking. Stderr is drained all the time (a full pipe would
//! stall the target) and its last lines are kept to explain a failure.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nameko_bench::READY_PREFIX;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a target may take to print `starting services`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many stderr lines are kept for error messages.
const STDERR_TAIL: usize = 20;

/// One line of a target's stdout and when the harness read it.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) text: String,
    pub(crate) at: Instant,
}

/// A running target process.
pub(crate) struct Target {
    label: String,
    child: Child,
    spawned: Instant,
    stdout: mpsc::UnboundedReceiver<Line>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Target {
    /// Starts `command`; the clock for [`Target::ready`] starts just before the spawn.
    pub(crate) fn spawn(label: &str, mut command: Command) -> Result<Self> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start the {label} target"))?;
        let (lines, stdout) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(out, move |text| {
                let _ = lines.send(Line {
                    text,
                    at: Instant::now(),
                });
            }));
        }
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        if let Some(err) = child.stderr.take() {
            let tail = Arc::clone(&stderr);
            tokio::spawn(read_lines(err, move |text| {
                let mut tail = tail.lock().unwrap_or_else(|poison| poison.into_inner());
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(text);
            }));
        }
        Ok(Self {
            label: label.to_owned(),
            child,
            spawned,
            stdout,
            stderr,
        })
    }

    /// Waits for `starting services` and returns the time from spawn to that line.
    pub(crate) async fn ready(&mut self) -> Result<Duration> {
        let line = self
            .wait_for(
                "`starting services`",
                |text| text.starts_with(READY_PREFIX),
                START_TIMEOUT,
            )
            .await?;
        Ok(line.at - self.spawned)
    }

    /// The first stdout line from now on that `matches` accepts; `what` names it in errors.
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        matches: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<Line> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stdout.recv()).await {
                Ok(Some(line)) if matches(&line.text) => return Ok(line),
                Ok(Some(_)) => {}
                Ok(None) => {
                    let status = self.child.wait().await.ok();
                    bail!(
                        "the {} target exited ({}) before printing {what}{}",
                        self.label,
                        status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string()),
                        self.stderr_tail()
                    );
                }
                Err(_) => bail!(
                    "the {} target printed no {what} within {timeout:?}{}",
                    self.label,
                    self.stderr_tail()
                ),
            }
        }
    }

    /// The process id, while the process runs.
    pub(crate) fn pid(&self) -> Result<u32> {
        self.child
            .id()
            .with_context(|| format!("the {} target has exited", self.label))
    }

    /// Resident memory (`VmRSS`) in bytes.
    pub(crate) fn resident_memory(&self) -> Result<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        vm_rss(&status).with_context(|| format!("no VmRSS line in /proc/{pid}/status"))
    }

    /// Kills the process and waits for it to go. Queues it declared are left to the caller.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    fn stderr_tail(&self) -> String {
        let tail = self
            .stderr
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if tail.is_empty() {
            String::new()
        } else {
            let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
            format!("; its stderr ended with:\n{}", lines.join("\n"))
        }
    }
}

async fn read_lines(stream: impl AsyncRead + Unpin, mut each: impl FnMut(String)) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        each(line);
    }
}

/// The `VmRSS` figure of a `/proc/<pid>/status` text, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_in_bytes() {
        let status = "Name:\tnameko\nVmPeak:\t   20000 kB\nVmRSS:\t    9876 kB\nThreads:\t3\n";
        assert_eq!(vm_rss(status), Some(9876 * 1024));
        assert_eq!(vm_rss("Name:\tx\n"), None);
    }
}
