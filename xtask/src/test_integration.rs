//! `cargo xtask test-integration`: the broker-backed and Python interop tests in `nameko-tests`.
//!
//! Those tests need two things from outside the Rust toolchain: an AMQP broker and a Python with
//! nameko 2.14.1 installed. This command provides both (or stops and says how to provide them)
//! and hands them to the tests through `AMQP_URI` and `NAMEKO_PYTHON`, so the tests themselves
//! never discover, install or start anything.

use std::path::Path;

use anyhow::Result;

use crate::{broker, step, venv};

/// Ensures a broker and the interop venv, then runs `cargo test -p nameko-tests <extra>`.
pub(crate) fn run(root: &Path, extra: &[String]) -> Result<()> {
    eprintln!("==> broker");
    let uri = broker::ensure()?;
    eprintln!("==> interop venv");
    let python = venv::ensure(root)?;
    step::run(
        "integration tests",
        step::cargo()
            .current_dir(root)
            .env("AMQP_URI", &uri)
            .env("NAMEKO_PYTHON", &python)
            .args(["test", "-p", "nameko-tests"])
            .args(extra),
    )
}
