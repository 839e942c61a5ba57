//! Faults: what a service does when production breaks its broker connection or kills its
//! process, and a bounded load test with instances killed and restarted.
//!
//! The network faults go through a `FaultProxy` (`proxy.rs`) between the code under test and
//! the broker: cut connections, stalls, blackholes, a broker that is down. The broker itself closes
//! connections through `rabbitmqctl close_connection`. A real service process
//! (`nameko-fault-service`, a binary of this crate) is SIGKILLed mid-call and stopped with
//! SIGTERM under load. Every test checks that each call or event was answered or reported as
//! an error, none answered twice, and that no consumer or connection was left behind.
//!
//! Delivery is at least once, as in Nameko: a request whose worker finished but whose
//! acknowledgement was lost with the connection runs again, and the caller drops the second
//! reply. Where a test cannot rule that out it says so and bounds it; where it can (nothing in
//! flight during the fault) it asserts exactly one execution.
//!
//! Waiting is on events (a handler reporting it started, a reply, a connection count) with a
//! timeout; the few handlers that block their thread do it on purpose, to show that nothing
//! else starves.
//!
//! One module per kind of fault; what the tests share (recording and gated services, waiting on
//! the broker, service processes) is in `support/faults.rs` and `support/processes.rs`.

mod connections;
mod network;
mod processes;
