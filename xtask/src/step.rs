//! A named step of a pipeline: one external command that must succeed.
//!
//! Every step prints its name and the exact command line before it runs, and a failure names the
//! step, so a long log always says which stage broke and how to rerun it by hand. Commands inherit
//! stdout and stderr: cargo's own diagnostics are the useful part of a failure.

use std::{
    ffi::OsStr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::broker;

/// The cargo that runs this xtask (cargo sets `CARGO` for `cargo run`), so nested commands use the
/// same toolchain; plain `cargo` from PATH otherwise.
pub(crate) fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(program)
}

/// Prints `==> name: command`, runs the command and fails with the step's name unless it exits
/// successfully.
pub(crate) fn run(name: &str, command: &mut Command) -> Result<()> {
    let shown = display(command);
    eprintln!("==> {name}: {shown}");
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("step `{name}` failed: could not start `{shown}`"))?;
    if !status.success() {
        bail!("step `{name}` failed: `{shown}` ended with {status}");
    }
    eprintln!("==> {name}: ok in {}", format_elapsed(started.elapsed()));
    Ok(())
}

/// The command as a shell line, with the environment it sets first. AMQP_URI is shown with its
/// password masked because logs of CI runs are often public.
pub(crate) fn display(command: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in command.get_envs() {
        let value = value.map(OsStr::to_string_lossy).unwrap_or_default();
        let value = if key == "AMQP_URI" {
            broker::mask_password(&value)
        } else {
            value.into_owned()
        };
        parts.push(format!("{}={value}", key.to_string_lossy()));
    }
    let program = command.get_program().to_string_lossy();
    // `CARGO` is an absolute path into the toolchain; `cargo` is what a reader would type.
    let program = match command.get_program().to_str() {
        Some(path) if path.ends_with("/cargo") || path.ends_with("\\cargo.exe") => "cargo".into(),
        _ => program,
    };
    parts.push(program.into_owned());
    parts.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}

/// `12.3s` below a minute, `4m 05.0s` above.
pub(crate) fn format_elapsed(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let minutes = (seconds / 60.0).floor();
        format!("{minutes}m {:04.1}s", seconds - minutes * 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_masks_the_broker_password_and_shortens_cargo() {
        let mut command = Command::new("/home/user/.cargo/bin/cargo");
        command
            .args(["test", "-p", "nameko-tests"])
            .env("AMQP_URI", "amqp://guest:secret@localhost:5672/");
        assert_eq!(
            display(&command),
            "AMQP_URI=amqp://guest:***@localhost:5672/ cargo test -p nameko-tests"
        );
    }

    #[test]
    fn elapsed_time_reads_as_seconds_or_minutes() {
        assert_eq!(format_elapsed(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_elapsed(Duration::from_millis(245_000)), "4m 05.0s");
    }

    #[cfg(unix)]
    #[test]
    fn a_failing_step_names_itself() {
        let error = run("always fails", &mut Command::new("false")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("step `always fails` failed: `false` ended with"),
            "{error}"
        );
    }
}
