//! Fuzz target for what an event handler reads off a delivery: content type, headers (context
//! data and the redelivery counter) and body.
//!
//! The target panics only when an invariant breaks: an event the handler cannot read is a
//! defined outcome (rejected without requeue), never a failure. It is driven by libFuzzer from
//! the workspace's `fuzz/` directory and, on stable Rust, by this module's tests, which replay
//! `fuzz/corpus/event_message/` and run a short randomized search. The module only exists with
//! the `fuzzing` feature or in tests, so it is no part of the crate's API.

use nameko_amqp::lapin::BasicProperties;
use nameko_amqp::lapin::types::parsing::parse_field_table;
use nameko_amqp::{Delivery, FieldTable};

use crate::message::{read, redeliveries};
use crate::names::REDELIVERIES_HEADER;

/// The content types a delivery may carry, chosen by the input's first byte.
const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("APPLICATION/JSON"),
    Some("text/plain"),
    Some(""),
];

/// One delivery: the first byte picks a content type, a field table follows (the headers; an
/// input that is not one has none), and the rest is the body.
///
/// Reading never panics; a delivery that reads has the body's payload, never carries the
/// redelivery counter on as context data, and counts redeliveries from the raw header only.
pub fn event_message(data: &[u8]) {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(*selector) % CONTENT_TYPES.len()];
    let (body, headers) = match parse_field_table(rest) {
        Ok((body, headers)) => (body, headers),
        Err(_) => (rest, FieldTable::default()),
    };

    let mut inner = nameko_amqp::lapin::message::Delivery::mock(
        1,
        "src.events".into(),
        "thing".into(),
        false,
        body.to_vec(),
    );
    let mut properties = BasicProperties::default().with_headers(headers.clone());
    if let Some(content_type) = content_type {
        properties = properties.with_content_type(content_type.into());
    }
    inner.properties = properties;
    let delivery = Delivery::from(inner);

    match read(&delivery) {
        Ok(event) => {
            let payload = nameko_amqp::json::decode(body);
            assert!(
                payload.is_ok_and(|payload| payload == event.payload),
                "the payload is not the body's"
            );
            assert!(!event.context.contains_key(REDELIVERIES_HEADER));
            assert_eq!(event.redeliveries, redeliveries(Some(&headers)));
        }
        Err(_) => {
            let json = content_type
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
            assert!(
                !json || nameko_amqp::json::decode(body).is_err(),
                "a JSON event with a readable body was refused"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use nameko_amqp::{AMQPValue, LongString};
    use proptest::prelude::*;

    use super::*;
    use nameko_core::fuzzing::replay::{config, corpus};

    /// A field table in AMQP's wire format, as [`event_message`] expects after its first byte.
    fn table_bytes(entries: &[(&str, AMQPValue)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (key, value) in entries {
            body.push(u8::try_from(key.len()).unwrap());
            body.extend_from_slice(key.as_bytes());
            match value {
                AMQPValue::LongString(text) => {
                    body.push(b'S');
                    body.extend_from_slice(
                        &u32::try_from(text.as_bytes().len()).unwrap().to_be_bytes(),
                    );
                    body.extend_from_slice(text.as_bytes());
                }
                AMQPValue::LongLongInt(int) => {
                    body.push(b'l');
                    body.extend_from_slice(&int.to_be_bytes());
                }
                _ => body.push(b'V'),
            }
        }
        let mut table = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        table.extend(body);
        table
    }

    fn header_value() -> impl Strategy<Value = AMQPValue> {
        prop_oneof![
            ".{0,6}".prop_map(|text| AMQPValue::LongString(LongString::from(text))),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            (0i64..5).prop_map(AMQPValue::LongLongInt),
            "[0-9 ]{0,4}".prop_map(|text| AMQPValue::LongString(LongString::from(text))),
            Just(AMQPValue::Void),
        ]
    }

    fn delivery_bytes() -> impl Strategy<Value = Vec<u8>> {
        let key = prop::sample::select(vec![
            "x-nameko-redeliveries",
            "nameko.x-nameko-redeliveries",
            "nameko.call_id_stack",
            "nameko.user_id",
            "x-death",
        ]);
        let body = prop_oneof![
            Just(b"{\"a\": 1}".to_vec()),
            Just(b"[NaN, {\"__type__\": \"decimal\", \"__value__\": \"1.5\"}]".to_vec()),
            Just(b"{\"__type__\": \"pickle\", \"__value__\": \"x\"}".to_vec()),
            prop::collection::vec(any::<u8>(), 0..12),
        ];
        (
            any::<u8>(),
            prop::collection::vec((key, header_value()), 0..4),
            body,
        )
            .prop_map(|(selector, entries, body)| {
                let entries: Vec<(&str, AMQPValue)> = entries;
                let mut data = vec![selector];
                data.extend(table_bytes(&entries));
                data.extend(body);
                data
            })
    }

    #[test]
    fn event_message_corpus() {
        for input in corpus("event_message") {
            event_message(&input);
        }
    }

    proptest! {
        #![proptest_config(config(2000))]

        #[test]
        fn event_message_random(data in delivery_bytes()) {
            event_message(&data);
        }

        #[test]
        fn event_message_random_bytes(data in prop::collection::vec(any::<u8>(), 0..48)) {
            event_message(&data);
        }
    }
}
