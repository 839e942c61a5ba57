//! `cargo xtask bench`: the benchmark entry point.
//!
//! There are no benchmarks yet. The command fails instead of succeeding quietly, so that nothing
//! (a script, CI, a reader of a log) can mistake "no benchmarks ran" for "benchmarks passed".

use anyhow::{Result, bail};

/// Reports that benchmarks do not exist yet, as an error.
pub(crate) fn run() -> Result<()> {
    bail!("benchmarks are not implemented yet: `cargo xtask bench` has nothing to run")
}
