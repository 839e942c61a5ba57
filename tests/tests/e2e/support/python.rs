//! Python Nameko peers: the interpreter, the scripts in `tests/python/`, and a running script's
//! output read line by line.
//!
//! Peers run with the interpreter in `NAMEKO_PYTHON` (set by `cargo xtask test-integration` to a
//! venv with nameko 2.14.1); without it a test says so and returns, except under `CI`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Python interpreter with nameko 2.14.1, or `None` (after saying why) outside CI.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("NAMEKO_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "NAMEKO_PYTHON is not set; run the suite through `cargo xtask test-integration`"
                );
            }
            eprintln!(
                "skipping: NAMEKO_PYTHON is not set; `cargo xtask test-integration` creates the venv"
            );
            None
        }
    }
}

/// The path of a script in `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// A running Python process; killed when dropped.
pub struct PythonProcess {
    pub child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl PythonProcess {
    /// Starts `python script args...` with `AMQP_URI` set, stdout piped.
    pub fn spawn(python: &PathBuf, script_name: &str, uri: &str, args: &[&str]) -> Self {
        let mut child = Command::new(python)
            .arg("-u")
            .arg(script(script_name))
            .args(args)
            .env("AMQP_URI", uri)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python starts");
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line the script prints, within `timeout`.
    pub async fn next_line(&mut self, timeout: Duration) -> String {
        tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .expect("python printed a line in time")
            .expect("reading python output")
            .expect("python ended before printing the expected line")
    }

    /// Waits for a line equal to `expected`, skipping others.
    pub async fn wait_for_line(&mut self, expected: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = self.next_line(left).await;
            if line.trim() == expected {
                return;
            }
        }
    }

    /// Waits for the process to exit and returns its status code.
    pub async fn finish(mut self, timeout: Duration) -> i32 {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("python finished in time")
            .expect("waiting for python");
        status.code().unwrap_or(-1)
    }
}
