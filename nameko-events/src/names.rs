//! Wire names of events: exchanges, handler queues, the dead-event queue and the redelivery
//! header.
//!
//! A Rust and a Python handler of the same service share work only if they declare the very
//! same queue, so the formats here are Nameko's to the character (`nameko/events.py`), and the
//! broker refuses a second declaration with different flags. Everything this crate adds on top
//! of Nameko (the redelivery counter, the dead-event queue) is named so that it can never
//! collide with a name Nameko generates: Nameko's queues all start with `evt-` or `rpc`.

/// The exchange a service's events are published to: `<source_service>.events`.
///
/// ```
/// assert_eq!(nameko_events::event_exchange("orders"), "orders.events");
/// ```
#[must_use]
pub fn event_exchange(source_service: &str) -> String {
    nameko_amqp::event_exchange_name(source_service)
}

/// The queue of a `SERVICE_POOL` handler, shared by every instance of the service:
/// `evt-<source>-<event_type>--<service>.<method>`.
#[must_use]
pub fn service_pool_queue(
    source_service: &str,
    event_type: &str,
    service_name: &str,
    method_name: &str,
) -> String {
    format!("evt-{source_service}-{event_type}--{service_name}.{method_name}")
}

/// The queue of a `SINGLETON` handler, shared by every listening service:
/// `evt-<source>-<event_type>`.
#[must_use]
pub fn singleton_queue(source_service: &str, event_type: &str) -> String {
    format!("evt-{source_service}-{event_type}")
}

/// The queue of a `BROADCAST` handler, one per instance:
/// `evt-<source>-<event_type>--<service>.<method>-<broadcast_identifier>`.
#[must_use]
pub fn broadcast_queue(
    source_service: &str,
    event_type: &str,
    service_name: &str,
    method_name: &str,
    broadcast_identifier: &str,
) -> String {
    format!(
        "evt-{source_service}-{event_type}--{service_name}.{method_name}-{broadcast_identifier}"
    )
}

/// Where an event that failed on every allowed attempt is parked: `dead.<queue>`.
///
/// A prefix rather than a suffix: `<queue>.dead` could be the singleton queue of an event type
/// ending in `.dead`, while no Nameko queue starts with `dead.`.
///
/// ```
/// assert_eq!(nameko_events::dead_event_queue("evt-a-b--c.d"), "dead.evt-a-b--c.d");
/// ```
#[must_use]
pub fn dead_event_queue(queue: &str) -> String {
    format!("dead.{queue}")
}

/// The header that counts how many times a failed event was put back on its queue.
///
/// It is read and removed before the headers become context data, so it never travels on to
/// the calls and events a handler makes (the leak nameko-amqp-retry#29 describes). It has no
/// `nameko.` prefix because it describes the message, not the call.
pub const REDELIVERIES_HEADER: &str = "x-nameko-redeliveries";

#[cfg(test)]
mod tests {
    use super::*;

    /// The names Nameko 2.14 declared in the reference's live probe.
    #[test]
    fn queue_names_are_nameko_s() {
        assert_eq!(
            service_pool_queue("probesvc", "thing_happened", "probeother", "on_pool"),
            "evt-probesvc-thing_happened--probeother.on_pool"
        );
        assert_eq!(
            singleton_queue("probesvc", "thing_happened"),
            "evt-probesvc-thing_happened"
        );
        assert_eq!(
            broadcast_queue(
                "probesvc",
                "thing_happened",
                "probeother",
                "on_bcast",
                "ab12"
            ),
            "evt-probesvc-thing_happened--probeother.on_bcast-ab12"
        );
        assert_eq!(
            service_pool_queue("golden", "thing_happened", "golden_other", "handle"),
            "evt-golden-thing_happened--golden_other.handle",
            "the queue left behind in the captured fixtures"
        );
        assert_eq!(event_exchange("golden"), "golden.events");
    }

    #[test]
    fn dead_event_queues_cannot_be_nameko_queues() {
        let dead = dead_event_queue(&singleton_queue("src", "thing"));
        assert!(!dead.starts_with("evt-") && !dead.starts_with("rpc"));
        assert_ne!(dead, singleton_queue("src", "thing.dead"));
    }
}
