//! Events against a real broker: handler types across instances and services, reliable and
//! unreliable delivery across restarts, bounded requeueing, context propagation, bad messages,
//! graceful stop and the exact declarations and messages Nameko uses.
//!
//! Handlers report to the test through channels; a test waits for the reports it expects, and
//! checks that nothing else arrives by waiting briefly after a positive signal (a sentinel
//! event that must arrive last on every queue involved).
//!
//! One module per topic; the reporting handlers and waiting helpers the tests share are in
//! `support/events.rs`.

mod delivery;
mod handler_types;
mod wire;
