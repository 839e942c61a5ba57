//! Broker-backed end-to-end tests: one test binary, one module per area, as ripgrep does, so the
//! workspace links one binary instead of one per file.
//!
//! Every test uses unique service, queue and exchange names, so tests never see each other and
//! can run in parallel against one broker. The broker is found at `AMQP_URI` (default
//! `amqp://guest:guest@localhost:5672`); `cargo xtask test-integration` makes sure one answers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_docs,
    reason = "a test binary: failures are loud on purpose and nothing is public API"
)]

mod proxy;
mod support;

mod cli;
mod connections;
mod events;
mod faults;
mod interop_events;
mod interop_rpc;
mod logs;
mod rpc;
mod tls;
