//! The `nameko` command for nameko-rs: run services, call them, dispatch events, show the
//! configuration; and the examples of Nameko's documentation, ready to run.
//!
//! This crate sits at the top of the workspace and is the only one that combines every
//! extension (`nameko-rpc`, `nameko-events`, `nameko-http`, `nameko-timer`); it adds no runtime
//! behaviour of its own. The built-in binary runs the examples of Nameko's documentation
//! (`nameko-cli/src/examples/`, one file each):
//!
//! ```text
//! $ cargo run -p nameko-cli -- run timer
//! starting services: service
//! pong
//! ```
//!
//! A binary of your own gets the same commands and options for its own services with [`Cli`]:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use std::time::Duration;
//!
//! use nameko_cli::Cli;
//! use nameko_core::{Service, Worker};
//! use nameko_timer::timer;
//!
//! async fn report(_: Worker) {
//!     println!("all is well");
//! }
//!
//! #[tokio::main]
//! async fn main() -> ExitCode {
//!     Cli::new()
//!         .service("monitor", |_config| {
//!             Service::new("monitor")
//!                 .entrypoint(timer(Duration::from_secs(10), "report", report))
//!         })
//!         .run()
//!         .await
//! }
//! ```
//!
//! Commands: `run NAME[:SERVICE]...`, `call SERVICE.METHOD [JSON]`,
//! `dispatch SOURCE_SERVICE EVENT_TYPE [JSON]`, `show-config`; each takes `--config FILE`,
//! `--define KEY=VALUE` (repeatable) and `--broker URI`. `--help` on any command says where the
//! broker address comes from when several sources name one.

mod args;
mod call;
mod cli;
mod config;
pub mod config_file;
mod dispatch;
mod error;
// Public for the built-in binary, which registers them; they are sample services, not API.
#[doc(hidden)]
pub mod examples;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod logging;
#[cfg(test)]
mod readme;
mod run;

pub use cli::Cli;
pub use error::CliError;

/// The README's Rust code blocks, compiled (and run, unless marked `no_run`) as doc tests, so the
/// walkthrough never shows code that does not build.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
