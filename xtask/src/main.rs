//! `cargo xtask`: the project's own automation, written in Rust so that it runs wherever cargo
//! runs and needs nothing else installed to start.
//!
//! This follows matklad's xtask pattern (as rust-analyzer uses it): `.cargo/config.toml` aliases
//! `cargo xtask` to `cargo run --package xtask --`, every external tool is driven through plain
//! `std::process::Command`, and the dependency list stays at anyhow so the first run is quick.
//! Each subcommand lives in its own module; the tidy checks are `#[test]`s in `tidy.rs`, so a plain
//! `cargo test` enforces them without going through this binary.

mod bench;
mod broker;
mod step;
mod test;
mod test_integration;
#[cfg(test)]
mod tidy;
mod venv;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, bail};

/// What `cargo xtask`, `cargo xtask help` and an unknown command print.
const HELP: &str = "\
Usage: cargo xtask <command> [-- <args>]

Commands:
  test              the full pipeline: fmt, clippy, unit and in-process tests, docs, then
                    test-integration; stops at the first failing step
  test-integration  make sure an AMQP broker answers and the Python interop venv exists, then run
                    `cargo test -p nameko-tests` (arguments after `--` are passed to cargo test)
  bench             benchmarks against the lapin floor, bare hyper and Python Nameko
  help              print this message

Environment:
  AMQP_URI       the broker to test against (default amqp://guest:guest@localhost:5672)
  NAMEKO_PYTHON  a python that has nameko 2.14.1 installed, used instead of target/interop-venv
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = std::env::args_os()
        .skip(1)
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| anyhow::anyhow!("expected UTF-8 arguments, found {arg:?}"))
        })
        .collect::<Result<Vec<String>>>()?;
    let Some((command, rest)) = args.split_first() else {
        print!("{HELP}");
        return Ok(());
    };
    match command.as_str() {
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        "test" => {
            no_arguments(command, rest)?;
            test::run(&repo_root()?)
        }
        "test-integration" => test_integration::run(&repo_root()?, after_dash_dash(command, rest)?),
        "bench" => {
            no_arguments(command, rest)?;
            bench::run()
        }
        other => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn repo_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("expected the xtask crate to sit inside the workspace root, found no parent")
}

fn no_arguments(command: &str, rest: &[String]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => bail!("`cargo xtask {command}` takes no arguments, found `{arg}`"),
    }
}

/// Arguments meant for another tool must follow `--`, so a typo in an xtask flag is an error
/// instead of something cargo test silently reads as a test-name filter.
fn after_dash_dash<'a>(command: &str, rest: &'a [String]) -> Result<&'a [String]> {
    match rest.split_first() {
        None => Ok(rest),
        Some((first, passed_on)) if first == "--" => Ok(passed_on),
        Some((first, _)) => bail!(
            "`cargo xtask {command}` takes arguments for cargo test only after `--`, found `{first}`"
        ),
    }
}
