//! Logging for the command: `tracing` events to stderr, filtered by `RUST_LOG`.
//!
//! Stderr, because stdout belongs to what a command prints on purpose (the `starting services:`
//! line a script waits for, the JSON result of `call`, the YAML of `show-config`). Without
//! `RUST_LOG`, `run` logs at `info` and the one-shot commands (`call`, `dispatch`) at `warn`, so
//! a call in a shell pipeline prints its result and nothing else unless something is wrong.
//! lapin is held to `error` by default: its warnings (a returned message, say) repeat what
//! nameko-rs itself reports with more context. A user's binary that installed its own
//! subscriber keeps it: initialising twice is not an error here.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How much a command logs when `RUST_LOG` is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verbosity {
    /// Long-running commands: what starts, stops and fails.
    Info,
    /// One-shot commands: only what went wrong.
    Warn,
}

/// The filter used when `RUST_LOG` is not set.
fn default_filter(verbosity: Verbosity) -> &'static str {
    match verbosity {
        Verbosity::Info => "info,lapin=error",
        Verbosity::Warn => "warn,lapin=error",
    }
}

/// Installs the subscriber, unless one is installed already.
pub(crate) fn init(verbosity: Verbosity) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(default_filter(verbosity)),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filters_parse() {
        for verbosity in [Verbosity::Info, Verbosity::Warn] {
            let filter = default_filter(verbosity);
            assert!(EnvFilter::try_new(filter).is_ok(), "{filter}");
        }
    }
}
