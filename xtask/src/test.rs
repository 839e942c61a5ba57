//! `cargo xtask test`: the whole pipeline that decides whether the tree is good.
//!
//! The steps run cheapest and most local first (formatting, lints, unit and in-process tests,
//! docs) and the broker-backed suite last, so a typo is reported in seconds rather than after a
//! broker has been started. The first failing step stops the run: later steps would only repeat
//! the same breakage in a longer log. `.ci/run` calls exactly this, so CI and a developer's machine
//! run the same thing.

use std::{path::Path, time::Instant};

use anyhow::Result;

use crate::{step, test_integration};

/// Runs every step in order and prints the total elapsed time, whether the run passed or not.
pub(crate) fn run(root: &Path) -> Result<()> {
    let started = Instant::now();
    let outcome = run_steps(root);
    let elapsed = step::format_elapsed(started.elapsed());
    match &outcome {
        Ok(()) => eprintln!("==> all steps passed in {elapsed}"),
        Err(_) => eprintln!("==> stopped after {elapsed}"),
    }
    outcome
}

fn run_steps(root: &Path) -> Result<()> {
    step::run(
        "fmt",
        step::cargo()
            .current_dir(root)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    step::run(
        "clippy",
        step::cargo().current_dir(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // nameko-tests needs a broker and the Python venv; everything else must pass without either.
    step::run(
        "unit and in-process tests",
        step::cargo()
            .current_dir(root)
            .args(["test", "--workspace", "--exclude", "nameko-tests"]),
    )?;
    step::run(
        "doc",
        step::cargo()
            .current_dir(root)
            .env("RUSTDOCFLAGS", "-Dwarnings")
            .args(["doc", "--workspace", "--no-deps"]),
    )?;
    test_integration::run(root, &[])
}
