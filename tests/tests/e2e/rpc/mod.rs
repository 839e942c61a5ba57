//! RPC against a real broker: the `rpc` entrypoint, `RpcProxy` and the standalone clients, the
//! exact messages they send and accept, and what happens to bad input, slow workers, dead
//! instances and stopping services.
//!
//! Every test uses its own service names (and, where it watches raw traffic, its own RPC
//! exchange), so tests run in parallel on one broker without seeing each other. Waiting is always
//! on an event (a handler reporting it started, a reply arriving) with a timeout, never a sleep.
//!
//! One module per topic; what the tests share (services, clients, raw broker access, the golden
//! messages) is in `support/rpc.rs`, `support/raw.rs` and `support/golden.rs`.

mod arguments;
mod calls;
mod instances;
mod wire;
