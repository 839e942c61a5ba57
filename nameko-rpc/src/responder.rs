//! The responder: a worker's result as the reply message Python Nameko sends.
//!
//! A reply goes to the RPC exchange with the request's `reply_to` as routing key (never to a
//! queue by name), carries the request's `correlation_id`, no context headers (an empty table),
//! and the body `{"result": ..., "error": null}` or `{"result": null, "error": {exc_type,
//! exc_path, exc_args, value}}`, in exactly that key order and Python's `json.dumps` spacing.
//!
//! The reply is published on the request's own consumer channel, and the request acknowledged
//! after it on that channel ([`Delivery::publish_then_ack`]). The broker handles a channel's
//! frames in order, so it never forgets a request without having routed its reply first, and no
//! publisher-confirm round trip stands between a worker's result and its acknowledgement. A
//! connection lost in between loses both; the request comes back and is answered again, and a
//! caller that has its reply already drops the second one (at-least-once, as before).

//! A result that Python could not read is replaced before it is sent: kombu turns every object
//! whose keys are exactly `__type__` and `__value__` back into a typed value and drops the whole
//! message when the type is unknown, which would leave the caller waiting forever. Such a result
//! becomes an `UnserializableValueError` instead.

use nameko_amqp::{Delivery, FieldTable, PublishOptions};
use nameko_core::{RemoteError, WorkerResult};
use serde_json::{Map, Value};

/// The `__type__` names kombu's JSON decoder understands.
const KOMBU_TYPES: [&str; 7] = [
    "datetime", "date", "time", "decimal", "uuid", "bytes", "base64",
];

/// Sends replies to the RPC exchange on the requests' own channels.
#[derive(Debug, Clone)]
pub(crate) struct Responder {
    exchange: String,
}

impl Responder {
    pub(crate) fn new(exchange: String) -> Self {
        Self { exchange }
    }

    /// Sends the reply to `request`, then acknowledges it; returns once both are written.
    pub(crate) async fn reply(
        &self,
        request: &Delivery,
        reply_to: &str,
        result: &WorkerResult,
    ) -> nameko_amqp::Result<()> {
        let body = reply_body(result);
        let options = PublishOptions {
            mandatory: false,
            headers: FieldTable::default(),
            correlation_id: request.correlation_id().map(str::to_owned),
            ..PublishOptions::default()
        };
        request
            .publish_then_ack(&self.exchange, reply_to, &body, options)
            .await
    }
}

/// The reply body for a worker's result, byte for byte as Python Nameko writes it.
pub(crate) fn reply_body(result: &WorkerResult) -> Vec<u8> {
    let mut body = Map::new();
    match result {
        Ok(value) if has_foreign_kombu_wrapper(value) => {
            let error = RemoteError::unserializable_value(value);
            body.insert("result".into(), Value::Null);
            body.insert("error".into(), error_value(&error));
        }
        Ok(value) => {
            body.insert("result".into(), value.clone());
            body.insert("error".into(), Value::Null);
        }
        Err(error) => {
            body.insert("result".into(), Value::Null);
            body.insert("error".into(), error_value(error));
        }
    }
    nameko_amqp::json::encode(&Value::Object(body))
}

fn error_value(error: &RemoteError) -> Value {
    let mut object = Map::new();
    object.insert("exc_type".into(), Value::String(error.exc_type.clone()));
    object.insert("exc_path".into(), Value::String(error.exc_path.clone()));
    object.insert("exc_args".into(), Value::Array(error.exc_args.clone()));
    object.insert("value".into(), Value::String(error.value.clone()));
    Value::Object(object)
}

/// Whether `value` holds an object that kombu would read as a typed value it does not know
/// (exactly the keys `__type__` and `__value__`, with a type name outside kombu's list).
pub(crate) fn has_foreign_kombu_wrapper(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(has_foreign_kombu_wrapper),
        Value::Object(object) => {
            let wrapper = object.len() == 2 && object.contains_key("__value__");
            if wrapper
                && let Some(type_name) = object.get("__type__")
                && !type_name
                    .as_str()
                    .is_some_and(|name| KOMBU_TYPES.contains(&name))
            {
                return true;
            }
            object.values().any(has_foreign_kombu_wrapper)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture_body(step: &str, exchange_routing_is_reply: bool) -> String {
        let fixtures: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/python-nameko-2.14.1/messages.json"
        ))
        .unwrap();
        fixtures
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["step"].as_str().unwrap().starts_with(step))
            .find(|m| m["properties"].get("reply_to").is_none() == exchange_routing_is_reply)
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .unwrap()
    }

    fn body(result: WorkerResult) -> String {
        String::from_utf8(reply_body(&result)).unwrap()
    }

    #[test]
    fn replies_match_the_golden_messages() {
        assert_eq!(
            body(Ok(json!({"a": 1, "b": [1, "x"]}))),
            fixture_body("rpc call with positional and keyword args", true)
        );
        let value_error = RemoteError::new("ValueError", "builtins.ValueError", "('bad', 7)")
            .with_args([json!("bad"), json!(7)]);
        assert_eq!(
            body(Err(value_error)),
            fixture_body("rpc call whose handler raises", true)
        );
        assert_eq!(
            body(Err(RemoteError::method_not_found("no_such_method"))),
            fixture_body("rpc call to a method that does not exist", true)
        );
        assert_eq!(
            body(Err(RemoteError::incorrect_signature(
                "echo() missing 1 required positional argument: 'a'"
            ))),
            fixture_body("rpc call with a missing argument", true)
        );
        assert_eq!(
            body(Ok(Value::Null)),
            fixture_body("rpc call whose handler dispatches an event", true)
        );
    }

    #[test]
    fn results_kombu_cannot_read_become_unserializable_value_errors() {
        let sent = body(Ok(
            json!({"nested": [{"__type__": "pickle", "__value__": "x"}]}),
        ));
        let reply: Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(reply["result"], Value::Null);
        assert_eq!(reply["error"]["exc_type"], "UnserializableValueError");

        // Known kombu types and look-alikes with other keys are left alone.
        for fine in [
            json!({"__type__": "decimal", "__value__": "1.5"}),
            json!({"__type__": "pickle", "__value__": "x", "extra": 1}),
            json!({"__type__": "pickle"}),
        ] {
            assert!(!has_foreign_kombu_wrapper(&fine), "{fine}");
        }
        assert!(has_foreign_kombu_wrapper(
            &json!([{"__type__": 3, "__value__": 1}])
        ));
    }
}
