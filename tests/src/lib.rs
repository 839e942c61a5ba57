//! Broker-backed end-to-end tests for nameko-rs live in `tests/e2e/`, one binary with one module
//! per area; this library is empty on purpose.
