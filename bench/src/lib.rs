//! What every benchmark target agrees on: the method, event and route names and the line a
//! handler prints when it has handled the last event of a batch.
//!
//! The harness (`nameko-bench`), the nameko-rs target (`nameko-bench-service`), the framework-free
//! floor and the Python Nameko target (`bench/python/bench_service.py`) must use the same names,
//! or the same load generator would be measuring different work. The Rust side takes them from
//! here; the Python script repeats them and says so.
//!
//! Completion of an event batch is reported the same way by all three handlers: each event
//! carries `{"until": N}`, every handler counts the events it has handled since it started, and
//! the one that brings the count to `N` prints `done N` on stdout. The harness timestamps that
//! line as it reads it, so the time measured runs from the first publish to the handling of
//! the last event, whatever order the handlers finish in.

/// The RPC method every target serves: `echo(value)` returns `value`.
pub const ECHO_METHOD: &str = "echo";

/// The event type the harness dispatches.
pub const EVENT_TYPE: &str = "bench_event";

/// The event handler method, part of the handler's queue name.
pub const EVENT_METHOD: &str = "on_event";

/// The key of the event payload that says which count completes the batch.
pub const UNTIL_KEY: &str = "until";

/// What a handler prints, followed by a space and the count, when its count reaches `until`.
pub const DONE_PREFIX: &str = "done";

/// The HTTP rule every target serves, as Nameko spells it (the seed's `get_method`).
pub const HTTP_RULE: &str = "/get/<int:value>";

/// The HTTP handler method name.
pub const HTTP_METHOD: &str = "get_method";

/// The line a target prints on stdout once it is ready to serve, followed by `: <names>`.
pub const READY_PREFIX: &str = "starting services";

/// The config key (a `--define` of the nameko-rs target) naming the service under test, so that
/// every run uses fresh queue names.
pub const SERVICE_KEY: &str = "BENCH_SERVICE";

/// The config key naming the service the benchmarked events claim to come from.
pub const SOURCE_KEY: &str = "BENCH_SOURCE";

/// Whether `count` completes a batch whose payload said `until`.
#[must_use]
pub fn completes_batch(count: u64, payload: &serde_json::Value) -> bool {
    payload.get(UNTIL_KEY).and_then(serde_json::Value::as_u64) == Some(count)
}

/// The line a handler prints when `count` completes its batch.
#[must_use]
pub fn done_line(count: u64) -> String {
    format!("{DONE_PREFIX} {count}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_count_named_by_until_completes_a_batch() {
        assert!(completes_batch(3, &json!({"until": 3})));
        assert!(!completes_batch(2, &json!({"until": 3})));
        assert!(!completes_batch(3, &json!({"until": "3"})));
        assert!(!completes_batch(3, &json!(null)));
    }

    #[test]
    fn the_done_line_starts_with_the_prefix_the_harness_waits_for() {
        assert_eq!(done_line(12), "done 12");
        assert!(done_line(1).starts_with(DONE_PREFIX));
    }
}
