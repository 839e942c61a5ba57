//! Real processes for the fault tests: `nameko-fault-service` instances to SIGKILL and SIGTERM,
//! their output, and `rabbitmqctl` to have the broker close connections.
//!
//! A [`ServiceProcess`] is a binary of this crate started with the test's config; every line it
//! prints is collected with its instance number ([`Output`]), and `ready` lines tell the test
//! when an instance serves. Without `rabbitmqctl` a test that needs it says so and returns,
//! except under `CI`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::support::faults::within;

/// `rabbitmqctl`, or `None` (after saying why) when it is not there and the run is not CI.
pub fn rabbitmqctl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("rabbitmqctl"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "rabbitmqctl is not on PATH; under CI the broker-side fault tests must run"
        );
        eprintln!(
            "skipping: rabbitmqctl is not on PATH, so the broker cannot be told to close connections"
        );
    }
    found
}

pub async fn rabbitmqctl_output(rabbitmqctl: &PathBuf, args: &[&str]) -> String {
    let output = Command::new(rabbitmqctl)
        .args(args)
        .output()
        .await
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The client ports of every connection the broker holds.
pub async fn broker_peer_ports(rabbitmqctl: &PathBuf) -> HashSet<u16> {
    rabbitmqctl_output(
        rabbitmqctl,
        &["-q", "--no-table-headers", "list_connections", "peer_port"],
    )
    .await
    .lines()
    .filter_map(|line| line.trim().parse().ok())
    .collect()
}

/// Has the broker close the connection whose client port is `port`.
pub async fn close_broker_connection(rabbitmqctl: &PathBuf, port: u16) {
    let listing = rabbitmqctl_output(
        rabbitmqctl,
        &[
            "-q",
            "--no-table-headers",
            "list_connections",
            "pid",
            "peer_port",
        ],
    )
    .await;
    let pid = listing
        .lines()
        .filter_map(|line| line.rsplit_once('\t'))
        .find(|(_, peer_port)| peer_port.trim() == port.to_string())
        .map(|(pid, _)| pid.trim().to_owned())
        .unwrap_or_else(|| panic!("the broker has no connection from port {port}: {listing}"));
    rabbitmqctl_output(
        rabbitmqctl,
        &["-q", "close_connection", &pid, "closed by a fault test"],
    )
    .await;
}

/// What a service process printed, line by line, tagged with its number.
pub type Lines = mpsc::UnboundedSender<(usize, String)>;

/// A `nameko-fault-service` process; killed if dropped.
pub struct ServiceProcess {
    pub number: usize,
    pub child: Child,
}

impl ServiceProcess {
    /// Starts instance `number` of `service` and waits until it serves.
    pub async fn start(
        number: usize,
        service: &str,
        source: &str,
        uri: &str,
        lines: &Lines,
        ready: &mut mpsc::UnboundedReceiver<usize>,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nameko-fault-service"))
            .args([service, source])
            .env("AMQP_URI", uri)
            .env("max_workers", "20")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("service process starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if lines.send((number, line)).is_err() {
                    return;
                }
            }
        });
        let process = Self { number, child };
        loop {
            let started = within(ready.recv()).await.expect("lines flow");
            if started == number {
                return process;
            }
        }
    }

    /// SIGKILL: the process acknowledges nothing more and its sockets close.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("kill");
        within(self.child.wait())
            .await
            .expect("killed process reaped");
    }

    /// SIGTERM: a graceful stop; returns the exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().expect("running") as i32;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM runs");
        assert!(status.success());
        within(self.child.wait()).await.expect("stopped").code()
    }
}

/// Every line the service processes printed, with the number of the instance that printed it.
#[derive(Clone, Default)]
pub struct Output {
    pub lines: Arc<Mutex<Vec<(usize, String)>>>,
    pub changed: Arc<tokio::sync::Notify>,
}

impl Output {
    /// Waits until `done` holds for the lines printed so far.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[(usize, String)]) -> bool,
    ) {
        let waiting = async {
            loop {
                let notified = self.changed.notified();
                if done(&self.lines.lock().unwrap()) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, waiting)
            .await
            .expect("timed out waiting for service output");
    }

    pub fn snapshot(&self) -> Vec<(usize, String)> {
        self.lines.lock().unwrap().clone()
    }
}

/// Routes service process output: `ready` lines to the returned receiver, every line to the
/// returned [`Output`].
pub fn collect_lines() -> (Lines, mpsc::UnboundedReceiver<usize>, Output) {
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<(usize, String)>();
    let (ready_tx, ready) = mpsc::unbounded_channel();
    let output = Output::default();
    let recorder = output.clone();
    tokio::spawn(async move {
        while let Some((number, line)) = lines.recv().await {
            if line.starts_with("ready ") {
                let _ = ready_tx.send(number);
            }
            recorder.lines.lock().unwrap().push((number, line));
            recorder.changed.notify_waiters();
        }
    });
    (lines_tx, ready, output)
}

pub fn count(lines: &[(usize, String)], number: Option<usize>, line: &str) -> usize {
    lines
        .iter()
        .filter(|(n, l)| l == line && number.is_none_or(|number| *n == number))
        .count()
}
