//! `cargo xtask bench`: nameko-rs against a framework-free floor and against Python Nameko 2.14,
//! in one run, with one set of load generators.
//!
//! The measuring lives in the `nameko-bench` crate (`bench/`), which has the lapin and hyper
//! dependencies this crate keeps out; this command only provides what it needs from outside the
//! Rust toolchain, as `test-integration` does (a broker that answers, the Python venv with
//! nameko 2.14.1), builds it in release mode (debug builds would measure the compiler's
//! settings, not the design) and runs it. `nameko-bench` prints the table and writes
//! `target/bench/results.json`; it fails only when a figure could not be measured, since a
//! missed target is a result, shown in the table, not a broken tool. The benchmark is never
//! part of `cargo xtask test`: it takes minutes and its figures depend on the machine.

use anyhow::Result;

use crate::{broker, repo_root, step, venv};

/// Ensures a broker and the venv, builds `nameko-bench` in release mode and runs it.
pub(crate) fn run() -> Result<()> {
    let root = repo_root()?;
    eprintln!("==> broker");
    let uri = broker::ensure()?;
    eprintln!("==> python venv");
    let python = venv::ensure(&root)?;
    step::run(
        "build benchmarks",
        step::cargo().current_dir(&root).args([
            "build",
            "--release",
            "--package",
            "nameko-bench",
            "--bins",
        ]),
    )?;
    let out = root.join("target").join("bench").join("results.json");
    step::run(
        "benchmarks",
        step::cargo()
            .current_dir(&root)
            .env("AMQP_URI", &uri)
            .args(["run", "--quiet", "--release", "--package", "nameko-bench"])
            .args(["--bin", "nameko-bench", "--", "run", "--python"])
            .arg(&python)
            .arg("--out")
            .arg(&out),
    )
}
