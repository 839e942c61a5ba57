//! The golden messages: requests and replies captured from Python Nameko 2.14.1, the fixture
//! the RPC tests compare nameko-rs's bytes with.
//!
//! The fixture lives with `nameko-rpc`'s own tests (`nameko-rpc/tests/fixtures/`), which check
//! the codec against it without a broker; these helpers read it for the tests that replay it
//! through one.

use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

pub fn golden() -> Vec<Value> {
    serde_json::from_str(include_str!(
        "../../../../nameko-rpc/tests/fixtures/python-nameko-2.14.1/messages.json"
    ))
    .expect("fixture json")
}

/// The golden request and reply bodies of a captured step (requests carry `reply_to`).
pub fn golden_pair(step: &str) -> (Value, String) {
    let messages = golden();
    let of_step: Vec<&Value> = messages
        .iter()
        .filter(|m| m["step"].as_str().unwrap().starts_with(step))
        .collect();
    let request = of_step
        .iter()
        .find(|m| m["properties"].get("reply_to").is_some())
        .copied()
        .cloned()
        .unwrap();
    let reply = of_step
        .iter()
        .find(|m| m["properties"].get("reply_to").is_none() && m["exchange"] == "nameko-rpc")
        .unwrap();
    (request, reply["body"].as_str().unwrap().to_owned())
}

/// Python's request headers for a fixture request, as py-amqp writes them.
pub fn python_headers(request: &Value) -> FieldTable {
    let mut headers = FieldTable::default();
    for (key, value) in request["properties"]["application_headers"]
        .as_object()
        .unwrap()
    {
        let value = match value {
            Value::String(s) => AMQPValue::LongString(s.as_str().into()),
            Value::Array(items) => AMQPValue::FieldArray(
                items
                    .iter()
                    .map(|i| AMQPValue::LongString(i.as_str().unwrap().into()))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            other => panic!("unexpected header {other}"),
        };
        headers.insert(key.as_str().into(), value);
    }
    headers
}
