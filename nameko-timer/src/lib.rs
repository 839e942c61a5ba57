//! The `timer` entrypoint for nameko-rs: run a service method every interval.
//!
//! Depends only on `nameko-core`; a timer-only service needs no broker. Ticks never overlap, keep
//! a fixed phase (no drift), skip due points a long tick overran (see `schedule.rs` for why this
//! differs from Python Nameko's catch-up burst), survive failing ticks, and a graceful stop waits
//! for the tick that is running.
//!
//! ```no_run
//! use std::time::Duration;
//! use nameko_core::{Config, Service, ServiceRunner, Worker};
//! use nameko_timer::timer;
//!
//! async fn ping(_: Worker) {
//!     println!("pong");
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut runner = ServiceRunner::new(Config::new());
//! runner.add_service(Service::new("service").entrypoint(timer(Duration::from_secs(1), "ping", ping)))?;
//! runner.start().await?;
//! runner.run_until_signal().await?;
//! # Ok(())
//! # }
//! ```

mod schedule;
mod timer;

pub use timer::{Timer, timer};
