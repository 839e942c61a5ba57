//! Fuzz targets for what this crate reads from the wire or from a config: message bodies
//! (kombu JSON), message headers (AMQP field tables) and broker URIs.
//!
//! Each target takes arbitrary bytes and panics only when an invariant breaks: an input the code
//! refuses is a defined outcome (an error value), never a failure. The same functions are driven
//! two ways, so that a finding in one is a test in the other: by libFuzzer from the workspace's
//! `fuzz/` directory (which needs nightly compiler features), and on stable Rust by this module's
//! tests, which replay the corpus kept in `fuzz/corpus/<target>/` and run a short randomized
//! search. The module only exists with the `fuzzing` feature or in tests, so it is no part of
//! the crate's API.

use lapin::types::FieldTable;

use crate::{AmqpUri, headers, json};

/// A message body: decoding never panics, and whatever decodes re-encodes (as ASCII, as Python
/// writes it) to a body that decodes to the same value.
pub fn json_body(data: &[u8]) {
    let Ok(value) = json::decode(data) else {
        return;
    };
    let encoded = json::encode(&value);
    assert!(encoded.is_ascii(), "encode wrote non-ASCII bytes");
    match json::decode(&encoded) {
        Ok(again) => assert_eq!(again, value, "decode(encode(v)) differs from v"),
        Err(error) => panic!("cannot decode what encode wrote: {error}"),
    }
}

/// Message headers as they come off the wire: a field table, parsed by lapin and turned into
/// context data (see [`context_table`]).
pub fn context_headers(data: &[u8]) {
    if let Ok((_, table)) = lapin::types::parsing::parse_field_table(data) {
        context_table(&table);
    }
}

/// Context data from any field table: decoding never panics, and encoding the context again
/// keeps every item except `null`s (which Nameko does not send) and keys too long for a header
/// once prefixed.
pub fn context_table(table: &FieldTable) {
    let context = headers::decode_context(table);
    let again = headers::decode_context(&headers::encode_context(&context));
    for (key, value) in &context {
        let sendable = !value.is_null() && key.len() + headers::CONTEXT_HEADER_PREFIX.len() <= 255;
        match again.get(key) {
            Some(found) => {
                assert!(sendable, "`{key}` should not have been sent");
                assert_eq!(found, value, "`{key}` changed on the way back");
            }
            None => assert!(!sendable, "`{key}` was lost on the way back"),
        }
    }
    assert!(again.keys().all(|key| context.contains_key(key)));
}

/// Stands for a password in [`amqp_uri`]; it appears nowhere else in the text parsed.
const PASSWORD_MARKER: &str = "Pw7xMarker";

/// A broker URI: parsing never panics, and a password never shows in what is printed of the
/// address or of the error, whatever the rest of the text holds.
///
/// The input is split at its first NUL byte: the part before is appended to a known password,
/// the part after follows the `@` (host, port, vhost, query...).
pub fn amqp_uri(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(uri) = AmqpUri::parse(&text) {
        let printed = uri.to_string();
        assert_eq!(printed, uri.redacted());
        assert!(printed.contains(":***@"), "`{printed}` is not redacted");
        // What is printed is itself a URI naming the same broker.
        match AmqpUri::parse(&printed) {
            Ok(again) => {
                assert_eq!(again.host(), uri.host());
                assert_eq!(again.port(), uri.port());
                assert_eq!(again.vhost(), uri.vhost());
                assert_eq!(again.username(), uri.username());
            }
            Err(error) => panic!("`{printed}` does not parse again: {error}"),
        }
    }

    let (extra, rest) = match data.iter().position(|byte| *byte == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let rest = String::from_utf8_lossy(rest);
    if rest.contains(PASSWORD_MARKER) {
        return;
    }
    let text = format!(
        "amqp://user:{PASSWORD_MARKER}{}@{rest}",
        String::from_utf8_lossy(extra)
    );
    let shown = match AmqpUri::parse(&text) {
        Ok(uri) => format!("{uri} {uri:?} {}", uri.redacted()),
        Err(error) => format!("{error} {error:?}"),
    };
    assert!(
        !shown.contains(PASSWORD_MARKER),
        "the password shows in `{shown}` for `{text}`"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use lapin::types::{
        AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
    };
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use nameko_core::fuzzing::replay::{config, corpus, soup};

    const JSON_TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\"a\"",
        "\"args\"",
        "\"kwargs\"",
        "\"__type__\"",
        "\"__value__\"",
        "\"uuid\"",
        "\"hex\"",
        "\"datetime\"",
        "\"bytes\"",
        "\"pickle\"",
        "\"164b3074325c4d5e8f7a0b1c2d3e4f50\"",
        "NaN",
        "Infinity",
        "-Infinity",
        "-",
        "0",
        "1",
        "-0.0",
        "1e400",
        "1e-7",
        "18446744073709551616",
        "0.1",
        "true",
        "null",
        "\\",
        "\\\"",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\ud800",
        "\u{e9}",
        " ",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
            prop::sample::select(vec!["datetime", "uuid", "decimal", "base64", "x"])
                .prop_map(|name| serde_json::json!({"__type__": name, "__value__": "1"})),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::vec(("[a-z_]{0,9}", inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    fn amqp_value() -> impl Strategy<Value = AMQPValue> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<i8>().prop_map(AMQPValue::ShortShortInt),
            any::<u8>().prop_map(AMQPValue::ShortShortUInt),
            any::<i16>().prop_map(AMQPValue::ShortInt),
            any::<u32>().prop_map(AMQPValue::LongUInt),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<f32>().prop_map(AMQPValue::Float),
            any::<f64>().prop_map(AMQPValue::Double),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
            ".{0,6}".prop_map(|text| AMQPValue::ShortString(ShortString::from(text))),
            prop::collection::vec(any::<u8>(), 0..6)
                .prop_map(|bytes| AMQPValue::LongString(LongString::from(bytes))),
            prop::collection::vec(any::<u8>(), 0..6)
                .prop_map(|bytes| AMQPValue::ByteArray(ByteArray::from(bytes))),
            any::<u64>().prop_map(AMQPValue::Timestamp),
            Just(AMQPValue::Void),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|items| AMQPValue::FieldArray(FieldArray::from(items))),
                field_table(inner).prop_map(AMQPValue::FieldTable),
            ]
        })
    }

    fn field_table(values: impl Strategy<Value = AMQPValue>) -> impl Strategy<Value = FieldTable> {
        let key = prop_oneof!["(nameko\\.)?[a-z_\\-]{0,8}", "x{250,255}"];
        prop::collection::vec((key, values), 0..6).prop_map(|entries| {
            let mut table = FieldTable::default();
            for (key, value) in entries {
                table.insert(ShortString::from(key), value);
            }
            table
        })
    }

    #[test]
    fn json_body_corpus() {
        for input in corpus("json_body") {
            json_body(&input);
        }
    }

    #[test]
    fn context_headers_corpus() {
        for input in corpus("context_headers") {
            context_headers(&input);
        }
    }

    #[test]
    fn amqp_uri_corpus() {
        for input in corpus("amqp_uri") {
            amqp_uri(&input);
        }
    }

    const URI_TOKENS: &[&str] = &[
        "amqp://",
        "amqps://",
        "pyamqp://",
        "redis://",
        "user",
        ":",
        "@",
        "/",
        "//",
        "%2f",
        "%",
        "%ff",
        "%4",
        "[",
        "]",
        "::1",
        "localhost",
        "10.0.0.1",
        "5672",
        "0",
        "70000",
        "?",
        "&",
        "=",
        "heartbeat",
        "login_method",
        "EXTERNAL",
        "#",
        ";",
        ",",
        "\0",
        "\u{e9}",
    ];

    proptest! {
        #![proptest_config(config(2000))]

        #[test]
        fn json_body_random_bytes(data in soup(JSON_TOKENS, 40)) {
            json_body(&data);
        }

        #[test]
        fn json_body_random_values(value in json_value()) {
            json_body(&serde_json::to_vec(&value).unwrap());
            json_body(&json::encode(&value));
        }

        #[test]
        fn context_headers_random_bytes(data in prop::collection::vec(any::<u8>(), 0..64)) {
            context_headers(&data);
        }

        #[test]
        fn context_tables_random(table in field_table(amqp_value())) {
            context_table(&table);
        }

        #[test]
        fn amqp_uri_random(data in soup(URI_TOKENS, 40)) {
            amqp_uri(&data);
        }
    }
}
