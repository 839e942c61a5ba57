//! The wire names of Nameko RPC: queues, routing keys, reply queues and the standalone caller's
//! identity.
//!
//! They live in one place because a Python peer finds a Rust service (and a Rust reply queue)
//! only by these exact strings, and because RabbitMQ refuses a queue declared twice with other
//! flags: every name and argument here is what Python Nameko declares (reference §1.1).

use std::time::Duration;

/// How long an unused reply queue lives before the broker deletes it (`x-expires`, 5 minutes).
pub const REPLY_QUEUE_EXPIRES: Duration = Duration::from_millis(300_000);

/// The caller name standalone clients use in their reply queue and `call_id_stack` entries
/// (Nameko 3's; Nameko 2 said `standalone_rpc_proxy`).
pub const STANDALONE_CALLER: &str = "standalone_rpc_client";

/// The request queue of a service: `rpc-<service>`.
pub fn request_queue(service: &str) -> String {
    format!("rpc-{service}")
}

/// The binding key of a service's request queue: `<service>.*`, so one queue receives every
/// method of the service.
pub fn request_binding(service: &str) -> String {
    format!("{service}.*")
}

/// The routing key of a request: `<service>.<method>`.
pub fn routing_key(service: &str, method: &str) -> String {
    format!("{service}.{method}")
}

/// The method a request's routing key names: its last dotted segment, as Nameko reads it.
pub fn method_of(routing_key: &str) -> &str {
    routing_key.rsplit('.').next().unwrap_or(routing_key)
}

/// The reply queue of a caller: `rpc.reply-<caller>-<uuid>`, bound with the bare uuid, which is
/// also what requests carry in `reply_to`.
pub fn reply_queue(caller: &str, reply_id: &str) -> String {
    format!("rpc.reply-{caller}-{reply_id}")
}

/// A standalone client's `call_id_stack` entry for one call, in Nameko 3's shape:
/// `standalone_rpc_client.<client-uuid>.<call-uuid>`.
pub fn standalone_call_id(client_id: &str, call_id: &str) -> String {
    format!("{STANDALONE_CALLER}.{client_id}.{call_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_python_nameko() {
        assert_eq!(request_queue("golden"), "rpc-golden");
        assert_eq!(request_binding("golden"), "golden.*");
        assert_eq!(routing_key("golden", "echo"), "golden.echo");
        assert_eq!(
            reply_queue("golden", "1d38c260-4796-4a77-9d0d-3557a61e5ec4"),
            "rpc.reply-golden-1d38c260-4796-4a77-9d0d-3557a61e5ec4"
        );
        assert_eq!(REPLY_QUEUE_EXPIRES.as_millis(), 300_000);
        assert_eq!(standalone_call_id("c", "d"), "standalone_rpc_client.c.d");
    }

    #[test]
    fn the_method_is_the_last_segment() {
        assert_eq!(method_of("golden.echo"), "echo");
        assert_eq!(method_of("a.b.c"), "c");
        assert_eq!(method_of("nodot"), "nodot");
        assert_eq!(method_of(""), "");
    }
}
