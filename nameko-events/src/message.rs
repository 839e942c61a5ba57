//! Reading an event message off a delivery: its payload, its context data and how often it was
//! put back after failing.
//!
//! Nameko decodes the body by its content type and drops what it cannot decode ("Can't decode
//! message body"); so does this, with the same rules: the content type must be
//! `application/json` (a missing one is refused too, as kombu refuses it), and the body must be
//! kombu JSON, whose `__type__` wrappers of unknown types are errors. Such a message can never
//! succeed, so the handler rejects it without requeueing, which drops it, or dead-letters it
//! when the queue has a dead-letter policy; it never stops the service.
//!
//! Every header becomes context data with the `nameko.` prefix removed, as in Nameko, except
//! this crate's own redelivery counter, which is taken out first so it cannot travel on.

use nameko_amqp::{DecodeError, Delivery, FieldTable};
use nameko_core::ContextData;
use serde_json::Value;

use crate::names::REDELIVERIES_HEADER;

/// Why a delivery is not an event this crate can hand to a handler.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error("unsupported content type {}: expected `application/json`", describe(.0.as_deref()))]
    ContentType(Option<String>),
    #[error(transparent)]
    Body(#[from] DecodeError),
}

fn describe(content_type: Option<&str>) -> String {
    content_type.map_or_else(|| "(none)".to_owned(), |ct| format!("`{ct}`"))
}

/// An event as a handler's worker receives it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IncomingEvent {
    pub(crate) payload: Value,
    pub(crate) context: ContextData,
    /// How many times this event was put back on its queue after a failure.
    pub(crate) redeliveries: u32,
}

/// Whether a content type is JSON, ignoring case and parameters such as `; charset=utf-8`.
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';').next().is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case(nameko_amqp::json::CONTENT_TYPE)
        })
    })
}

/// Reads the payload, context data and redelivery count of a delivery.
pub(crate) fn read(delivery: &Delivery) -> Result<IncomingEvent, Unreadable> {
    if !is_json(delivery.content_type()) {
        return Err(Unreadable::ContentType(
            delivery.content_type().map(str::to_owned),
        ));
    }
    let payload = nameko_amqp::json::decode(delivery.body())?;
    let mut context = delivery.context_data();
    // Both the raw header and a `nameko.`-prefixed copy (which a Python peer would emit after
    // taking the raw one as context data) decode to this key.
    context.remove(REDELIVERIES_HEADER);
    Ok(IncomingEvent {
        payload,
        context,
        redeliveries: redeliveries(delivery.headers()),
    })
}

/// The redelivery counter of a message: the raw header only, in any integer type or as
/// digits; anything else counts as zero.
pub(crate) fn redeliveries(headers: Option<&FieldTable>) -> u32 {
    let Some(value) = headers.and_then(|h| h.inner().get(REDELIVERIES_HEADER)) else {
        return 0;
    };
    match nameko_amqp::headers::amqp_to_json(value) {
        Value::Number(n) => n
            .as_u64()
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nameko_amqp::lapin::BasicProperties;
    use nameko_amqp::{AMQPValue, FieldArray};
    use serde_json::json;

    pub(crate) fn delivery(
        content_type: Option<&str>,
        body: &[u8],
        headers: FieldTable,
    ) -> Delivery {
        let mut inner = nameko_amqp::lapin::message::Delivery::mock(
            1,
            "src.events".into(),
            "thing".into(),
            false,
            body.to_vec(),
        );
        let mut properties = BasicProperties::default().with_headers(headers);
        if let Some(ct) = content_type {
            properties = properties.with_content_type(ct.into());
        }
        inner.properties = properties;
        Delivery::from(inner)
    }

    /// The event a Python `EventDispatcher` sent in the captured fixtures.
    #[test]
    fn reads_the_python_fixture_event() {
        let mut headers = FieldTable::default();
        headers.insert("nameko.user_id".into(), AMQPValue::LongString("u-1".into()));
        headers.insert(
            "nameko.language".into(),
            AMQPValue::LongString("en-gb".into()),
        );
        headers.insert(
            "nameko.custom_key".into(),
            AMQPValue::LongString("c".into()),
        );
        headers.insert(
            "nameko.call_id_stack".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::LongString("standalone_rpc_proxy.call.574257a7".into()),
                AMQPValue::LongString("golden.dispatch.9f07442c".into()),
            ])),
        );
        let event = read(&delivery(Some("application/json"), br#"{"p": 1}"#, headers)).unwrap();
        assert_eq!(event.payload, json!({"p": 1}));
        assert_eq!(
            Value::Object(event.context),
            json!({"user_id": "u-1", "language": "en-gb", "custom_key": "c",
                   "call_id_stack": ["standalone_rpc_proxy.call.574257a7", "golden.dispatch.9f07442c"]})
        );
        assert_eq!(event.redeliveries, 0);

        let standalone = read(&delivery(
            Some("application/json"),
            br#"{"p": 2}"#,
            FieldTable::default(),
        ));
        assert!(standalone.unwrap().context.is_empty());
    }

    #[test]
    fn unreadable_messages_say_why() {
        let none = FieldTable::default;
        let cases = [
            (
                Some("application/json"),
                &b"not json"[..],
                "invalid json body",
            ),
            (
                Some("application/x-python-serialize"),
                b"{}",
                "unsupported content type `application/x-python-serialize`",
            ),
            (None, b"{}", "unsupported content type (none)"),
            (
                Some("application/json"),
                br#"{"__type__": "mystery", "__value__": 1}"#,
                "unknown kombu type",
            ),
        ];
        for (content_type, body, expected) in cases {
            let error = read(&delivery(content_type, body, none()))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(expected), "{error}");
        }
        let lenient = read(&delivery(
            Some("Application/JSON; charset=utf-8"),
            b"[1]",
            none(),
        ));
        assert_eq!(lenient.unwrap().payload, json!([1]));
        let nan = read(&delivery(Some("application/json"), b"[NaN]", none()));
        assert_eq!(
            nan.unwrap().payload,
            json!([null]),
            "python's NaN is accepted"
        );
    }

    #[test]
    fn the_redelivery_counter_is_read_and_never_becomes_context() {
        let mut headers = FieldTable::default();
        headers.insert(REDELIVERIES_HEADER.into(), AMQPValue::LongLongInt(2));
        headers.insert(
            format!("nameko.{REDELIVERIES_HEADER}").as_str().into(),
            AMQPValue::LongInt(9),
        );
        headers.insert("nameko.user_id".into(), AMQPValue::LongString("u".into()));
        let event = read(&delivery(Some("application/json"), b"1", headers)).unwrap();
        assert_eq!(event.redeliveries, 2, "only the raw header counts");
        assert_eq!(Value::Object(event.context), json!({"user_id": "u"}));

        let count = |value: AMQPValue| {
            let mut headers = FieldTable::default();
            headers.insert(REDELIVERIES_HEADER.into(), value);
            redeliveries(Some(&headers))
        };
        assert_eq!(count(AMQPValue::ShortShortUInt(3)), 3);
        assert_eq!(count(AMQPValue::LongString("4".into())), 4);
        assert_eq!(count(AMQPValue::LongLongInt(-1)), 0);
        assert_eq!(count(AMQPValue::Boolean(true)), 0);
        assert_eq!(redeliveries(None), 0);
    }
}
