//! The context-data header codec: Nameko's worker context data as AMQP message headers.
//!
//! Nameko sends each context item (`call_id_stack`, `user_id`, `language`, custom keys) as a
//! header named `nameko.<key>`, drops items whose value is `None`, and on receipt turns
//! **every** header into a context item, removing the `nameko.` prefix where present, so
//! foreign headers such as `x-death` travel on as context too. The two directions are
//! therefore not symmetric, and both are plain functions over `serde_json` values so that the
//! RPC and event crates share one definition.
//!
//! Encoding picks the AMQP types py-amqp reads back as the same Python values: strings as long
//! strings, booleans, integers as 64-bit integers, floats as doubles, lists as field arrays (so
//! `call_id_stack` stays a list; a string would be split into characters by Nameko), objects
//! as nested tables, and `null` inside them as void. Keys longer than an AMQP short string
//! allows are skipped with a warning rather than truncated, since a truncated key would be a
//! different key.
//!
//! Decoding accepts every type py-amqp or RabbitMQ may write and never fails: a header a peer
//! can send must not be able to crash a service or drop its message. Numbers and booleans map
//! directly (non-finite floats become `null`, as in the JSON codec); strings and byte arrays
//! become text, lossily if they are not UTF-8; decimals become their digits (`"12.34"`) and
//! timestamps ISO 8601 text (`"2024-01-02T03:04:05"`), the forms the JSON codec gives kombu's
//! decimals and datetimes; void becomes `null`; nesting deeper than 64 levels becomes `null`.

use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Number, Value};

/// The prefix Nameko puts before every context-data key in message headers.
pub const CONTEXT_HEADER_PREFIX: &str = "nameko.";

/// Nesting deeper than this in a received header is replaced by `null`: no caller needs it,
/// and it bounds the recursion on input from the wire.
const MAX_DEPTH: usize = 64;

/// Encode context data as message headers: each item whose value is not `null` becomes the
/// header `nameko.<key>`.
///
/// ```
/// use serde_json::json;
///
/// let context = json!({"call_id_stack": ["svc.method.1"], "language": "en", "user_id": null});
/// let headers = nameko_amqp::headers::encode_context(context.as_object().unwrap());
/// assert!(headers.contains_key("nameko.call_id_stack"));
/// assert!(headers.contains_key("nameko.language"));
/// assert!(!headers.contains_key("nameko.user_id"));
/// ```
#[must_use]
pub fn encode_context(context: &Map<String, Value>) -> FieldTable {
    let mut headers = FieldTable::default();
    for (key, value) in context {
        if value.is_null() {
            continue;
        }
        let name = format!("{CONTEXT_HEADER_PREFIX}{key}");
        match ShortString::try_new(name) {
            Ok(name) => {
                headers.insert(name, json_to_amqp(value));
            }
            Err(_) => tracing::warn!(
                key = %key.chars().take(64).collect::<String>(),
                "context data key too long for an amqp header, not sent"
            ),
        }
    }
    headers
}

/// Decode message headers into context data: every header becomes an item, with the
/// `nameko.` prefix removed where present. Never fails.
///
/// ```
/// use nameko_amqp::{AMQPValue, FieldTable};
///
/// let mut headers = FieldTable::default();
/// headers.insert("nameko.language".into(), AMQPValue::LongString("en-gb".into()));
/// headers.insert("x-death".into(), AMQPValue::Boolean(true));
/// let context = nameko_amqp::headers::decode_context(&headers);
/// assert_eq!(context["language"], "en-gb");
/// assert_eq!(context["x-death"], true);
/// ```
#[must_use]
pub fn decode_context(headers: &FieldTable) -> Map<String, Value> {
    headers
        .inner()
        .iter()
        .map(|(key, value)| {
            let key = key.as_str();
            let key = key.strip_prefix(CONTEXT_HEADER_PREFIX).unwrap_or(key);
            (key.to_owned(), amqp_to_json(value))
        })
        .collect()
}

/// The same as [`decode_context`], for the optional headers of a message's properties.
#[must_use]
pub fn decode_optional_context(headers: Option<&FieldTable>) -> Map<String, Value> {
    headers.map(decode_context).unwrap_or_default()
}

/// Convert one JSON value to the AMQP value py-amqp would write for the same Python value.
#[must_use]
pub fn json_to_amqp(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(flag) => AMQPValue::Boolean(*flag),
        Value::Number(number) => number_to_amqp(number),
        Value::String(text) => AMQPValue::LongString(LongString::from(text.as_str())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(json_to_amqp).collect::<Vec<_>>(),
        )),
        Value::Object(object) => {
            let mut table = FieldTable::default();
            for (key, member) in object {
                match ShortString::try_new(key.as_str()) {
                    Ok(key) => {
                        table.insert(key, json_to_amqp(member));
                    }
                    Err(_) => tracing::warn!(
                        key = %key.chars().take(64).collect::<String>(),
                        "key too long for an amqp field table, not sent"
                    ),
                }
            }
            AMQPValue::FieldTable(table)
        }
    }
}

fn number_to_amqp(number: &Number) -> AMQPValue {
    if let Some(int) = number.as_i64() {
        AMQPValue::LongLongInt(int)
    } else if let Some(float) = number.as_f64() {
        // Integers above i64::MAX have no AMQP integer type; a double is the closest value.
        AMQPValue::Double(float)
    } else {
        AMQPValue::Void
    }
}

/// Convert one received AMQP value to JSON. Never fails: see the module documentation for how
/// each type is represented.
#[must_use]
pub fn amqp_to_json(value: &AMQPValue) -> Value {
    amqp_to_json_at(value, 0)
}

fn amqp_to_json_at(value: &AMQPValue, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    match value {
        AMQPValue::Boolean(flag) => Value::Bool(*flag),
        AMQPValue::ShortShortInt(int) => Value::from(*int),
        AMQPValue::ShortShortUInt(int) => Value::from(*int),
        AMQPValue::ShortInt(int) => Value::from(*int),
        AMQPValue::ShortUInt(int) => Value::from(*int),
        AMQPValue::LongInt(int) => Value::from(*int),
        AMQPValue::LongUInt(int) => Value::from(*int),
        AMQPValue::LongLongInt(int) => Value::from(*int),
        // Non-finite floats have no JSON form and become null, as in the JSON codec.
        AMQPValue::Float(float) => float_to_json(f64::from(*float)),
        AMQPValue::Double(float) => float_to_json(*float),
        AMQPValue::DecimalValue(decimal) => {
            Value::String(decimal_text(decimal.scale, decimal.value))
        }
        AMQPValue::ShortString(text) => Value::String(text.as_str().to_owned()),
        // Python bytes and str are both written as long strings: text when it is UTF-8.
        AMQPValue::LongString(text) => bytes_to_json(text.as_bytes()),
        AMQPValue::ByteArray(bytes) => bytes_to_json(bytes.as_slice()),
        AMQPValue::FieldArray(items) => Value::Array(
            items
                .as_slice()
                .iter()
                .map(|item| amqp_to_json_at(item, depth + 1))
                .collect(),
        ),
        AMQPValue::FieldTable(table) => Value::Object(
            table
                .inner()
                .iter()
                .map(|(key, member)| (key.as_str().to_owned(), amqp_to_json_at(member, depth + 1)))
                .collect(),
        ),
        AMQPValue::Timestamp(seconds) => Value::String(timestamp_text(*seconds)),
        AMQPValue::Void => Value::Null,
    }
}

fn float_to_json(float: f64) -> Value {
    Number::from_f64(float).map_or(Value::Null, Value::Number)
}

/// Bytes as text when they are UTF-8 (the usual case: Python `str` values), else lossily
/// decoded: a header must never make a message undeliverable.
fn bytes_to_json(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// A decimal as its digits, like `str(Decimal)` for plain values. py-amqp writes the value as
/// a signed 32-bit integer although lapin reads it unsigned, so it is reinterpreted here.
fn decimal_text(scale: u8, raw: u32) -> String {
    let value = i64::from(raw as i32);
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// A timestamp (seconds since the epoch, UTC) in ISO 8601, the form the JSON codec gives
/// kombu's datetimes.
fn timestamp_text(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm, for
/// non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{ByteArray, DecimalValue};
    use serde_json::json;

    fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in entries {
            table.insert(key.into(), value);
        }
        table
    }

    fn long(text: &str) -> AMQPValue {
        AMQPValue::LongString(text.into())
    }

    /// The headers of every captured Python request, as py-amqp wrote them: long strings, and
    /// `call_id_stack` as an array of long strings.
    fn python_headers(json_headers: &Map<String, Value>) -> FieldTable {
        let mut headers = FieldTable::default();
        for (key, value) in json_headers {
            let value = match value {
                Value::String(text) => long(text),
                Value::Array(items) => AMQPValue::FieldArray(
                    items
                        .iter()
                        .map(|item| long(item.as_str().unwrap()))
                        .collect::<Vec<_>>()
                        .into(),
                ),
                other => panic!("unexpected fixture header {other}"),
            };
            headers.insert(key.as_str().into(), value);
        }
        headers
    }

    #[test]
    fn golden_headers_decode_and_reencode() {
        let fixtures = include_str!("../tests/fixtures/python-nameko-2.14.1/messages.json");
        let messages: Vec<Value> = serde_json::from_str(fixtures).unwrap();
        let mut checked = 0;
        for message in &messages {
            let json_headers = message["properties"]["application_headers"]
                .as_object()
                .unwrap();
            let headers = python_headers(json_headers);
            let context = decode_context(&headers);
            assert_eq!(context.len(), json_headers.len());
            for (key, value) in json_headers {
                let short = key.strip_prefix("nameko.").unwrap();
                assert_eq!(&context[short], value, "{key}");
            }
            // Encoding the decoded context gives back exactly what Python sent.
            assert_eq!(encode_context(&context), headers);
            checked += usize::from(!json_headers.is_empty());
        }
        assert!(checked >= 8, "only {checked} fixture messages had headers");

        let first = decode_context(&python_headers(
            messages[0]["properties"]["application_headers"]
                .as_object()
                .unwrap(),
        ));
        assert_eq!(
            Value::Object(first),
            json!({
                "call_id_stack": ["standalone_rpc_proxy.call.574257a7-6d1b-4bfd-943d-8d86be483fa9"],
                "custom_key": "c",
                "language": "en-gb",
                "user_id": "u-1",
            })
        );
    }

    #[test]
    fn encode_prefixes_keys_and_drops_nulls() {
        let context = json!({
            "call_id_stack": ["a.b.1", "c.d.2"],
            "user_id": null,
            "flag": true,
            "count": 3,
            "ratio": 0.5,
            "nested": {"k": ["v", null]},
        });
        let headers = encode_context(context.as_object().unwrap());
        assert_eq!(
            headers,
            table(vec![
                (
                    "nameko.call_id_stack",
                    AMQPValue::FieldArray(vec![long("a.b.1"), long("c.d.2")].into())
                ),
                ("nameko.flag", AMQPValue::Boolean(true)),
                ("nameko.count", AMQPValue::LongLongInt(3)),
                ("nameko.ratio", AMQPValue::Double(0.5)),
                (
                    "nameko.nested",
                    AMQPValue::FieldTable(table(vec![(
                        "k",
                        AMQPValue::FieldArray(vec![long("v"), AMQPValue::Void].into())
                    )]))
                ),
            ])
        );
    }

    #[test]
    fn encode_skips_keys_too_long_for_amqp() {
        let long_key = "k".repeat(250);
        let mut context = Map::new();
        context.insert(long_key, json!("v"));
        context.insert("ok".into(), json!({ "x".repeat(300): 1 }));
        let headers = encode_context(&context);
        assert_eq!(
            headers,
            table(vec![(
                "nameko.ok",
                AMQPValue::FieldTable(FieldTable::default())
            )])
        );
    }

    #[test]
    fn decode_keeps_every_header_and_strips_the_prefix() {
        let headers = table(vec![
            ("nameko.user_id", long("u-1")),
            (
                "x-death",
                AMQPValue::FieldArray(
                    vec![AMQPValue::FieldTable(table(vec![(
                        "count",
                        AMQPValue::LongLongInt(1),
                    )]))]
                    .into(),
                ),
            ),
            ("nameko.", long("empty key")),
        ]);
        assert_eq!(
            Value::Object(decode_context(&headers)),
            json!({"user_id": "u-1", "x-death": [{"count": 1}], "": "empty key"})
        );
        assert!(decode_optional_context(None).is_empty());
    }

    #[test]
    fn decode_accepts_every_type_py_amqp_writes() {
        let headers = table(vec![
            ("S", long("text")),
            ("t", AMQPValue::Boolean(false)),
            ("d", AMQPValue::Double(1.5)),
            ("f", AMQPValue::Float(0.25)),
            ("I", AMQPValue::LongInt(-7)),
            ("L", AMQPValue::LongLongInt(-9_000_000_000)),
            ("small", AMQPValue::ShortShortInt(-1)),
            ("usmall", AMQPValue::ShortShortUInt(255)),
            ("short", AMQPValue::ShortInt(-300)),
            ("ushort", AMQPValue::ShortUInt(60000)),
            ("ulong", AMQPValue::LongUInt(4_000_000_000)),
            (
                "D",
                AMQPValue::DecimalValue(DecimalValue {
                    scale: 2,
                    value: 1234,
                }),
            ),
            (
                "Dneg",
                AMQPValue::DecimalValue(DecimalValue {
                    scale: 3,
                    value: (-5i32) as u32,
                }),
            ),
            (
                "Dint",
                AMQPValue::DecimalValue(DecimalValue {
                    scale: 0,
                    value: 42,
                }),
            ),
            ("T", AMQPValue::Timestamp(1_704_164_645)),
            ("T0", AMQPValue::Timestamp(0)),
            (
                "F",
                AMQPValue::FieldTable(table(vec![("a", AMQPValue::Void)])),
            ),
            (
                "A",
                AMQPValue::FieldArray(vec![long("x"), AMQPValue::LongInt(1)].into()),
            ),
            ("V", AMQPValue::Void),
            (
                "x",
                AMQPValue::ByteArray(ByteArray::from(b"raw".as_slice())),
            ),
            (
                "bad",
                AMQPValue::LongString(LongString::from(vec![0x66, 0xff])),
            ),
            ("nan", AMQPValue::Double(f64::NAN)),
            ("inf", AMQPValue::Float(f32::INFINITY)),
            ("short_string", AMQPValue::ShortString("s".into())),
        ]);
        assert_eq!(
            Value::Object(decode_context(&headers)),
            json!({
                "A": ["x", 1],
                "D": "12.34",
                "Dint": "42",
                "Dneg": "-0.005",
                "F": {"a": null},
                "I": -7,
                "L": -9_000_000_000i64,
                "S": "text",
                "T": "2024-01-02T03:04:05",
                "T0": "1970-01-01T00:00:00",
                "V": null,
                "bad": "f\u{fffd}",
                "d": 1.5,
                "f": 0.25,
                "inf": null,
                "nan": null,
                "short": -300,
                "short_string": "s",
                "small": -1,
                "t": false,
                "ulong": 4_000_000_000u64,
                "ushort": 60000,
                "usmall": 255,
                "x": "raw",
            })
        );
    }

    #[test]
    fn decode_bounds_nesting() {
        let mut value = AMQPValue::LongString("deep".into());
        for _ in 0..200 {
            value = AMQPValue::FieldArray(vec![value].into());
        }
        let decoded = amqp_to_json(&value);
        let mut depth = 0;
        let mut cursor = &decoded;
        while let Value::Array(items) = cursor {
            depth += 1;
            cursor = &items[0];
        }
        assert_eq!(depth, MAX_DEPTH + 1);
        assert_eq!(cursor, &Value::Null);
    }

    #[test]
    fn timestamps_cover_leap_years() {
        assert_eq!(timestamp_text(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(timestamp_text(4_102_444_799), "2099-12-31T23:59:59");
    }
}
