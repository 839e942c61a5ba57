//! The kombu JSON codec: message bodies exactly as Python Nameko reads and writes them.
//!
//! Python and serde_json disagree in three places, and each is handled here rather than left to
//! callers:
//!
//! - **Non-standard numbers.** Python's `json.dumps` writes `NaN`, `Infinity` and `-Infinity`;
//!   serde_json rejects them and `serde_json::Value` cannot hold them. [`decode`] rewrites those
//!   three tokens to `null` when they stand outside string literals. A NaN sent by Python
//!   therefore arrives as `null`: lossy, but a handler sees a value instead of a message dropped
//!   as undecodable.
//! - **kombu type wrappers.** kombu 5.3+ sends `datetime`, `date`, `time`, `Decimal`, `UUID` and
//!   `bytes` as `{"__type__": <name>, "__value__": <value>}`, and any object with exactly those
//!   two keys is unwrapped on receipt. [`decode`] unwraps them into plain JSON strings: the ISO
//!   text for datetime, date and time, the decimal digits for decimal, the hyphenated form
//!   for uuid (whose value is `{"hex": ...}`), the text for `bytes` (kombu uses it for UTF-8
//!   bytes) and the base64 text as sent for `base64` (non-UTF-8 bytes), since JSON has no byte
//!   string. An unknown `__type__` is a [`DecodeError`], as it is an error in kombu.
//! - **Byte-exact output.** Golden messages must match Python byte for byte, so [`encode`]
//!   writes what `json.dumps` writes by default: `", "` and `": "` separators, keys in insertion
//!   order (the workspace enables serde_json's `preserve_order`), `ensure_ascii` escapes
//!   (`\u00e9`, surrogate pairs above U+FFFF, `\u007f`) and Python's `repr` of floats (`1e-05`,
//!   `1e+16`, `2.0`).

use serde_json::{Map, Number, Value};

use crate::error::DecodeError;

/// The MIME type of this codec, as kombu registers it.
pub const CONTENT_TYPE: &str = "application/json";
/// The content encoding kombu sends with JSON bodies.
pub const CONTENT_ENCODING: &str = "utf-8";

/// Decode a kombu JSON body into plain JSON.
///
/// `NaN`, `Infinity` and `-Infinity` become `null`; kombu type wrappers become strings (see
/// the module documentation).
///
/// ```
/// let value = nameko_amqp::json::decode(br#"{"args": [NaN], "kwargs": {}}"#).unwrap();
/// assert_eq!(value, serde_json::json!({"args": [null], "kwargs": {}}));
/// ```
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let value: Value = match replace_non_finite(body) {
        Some(rewritten) => serde_json::from_slice(&rewritten)?,
        None => serde_json::from_slice(body)?,
    };
    unwrap_kombu_types(value)
}

/// Encode a value as Python's `json.dumps(value)` would.
///
/// ```
/// use serde_json::json;
///
/// let body = nameko_amqp::json::encode(&json!({"result": {"a": 1, "b": [1, "x"]}, "error": null}));
/// assert_eq!(body, br#"{"result": {"a": 1, "b": [1, "x"]}, "error": null}"#);
/// ```
#[must_use]
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    write_value(&mut out, value);
    out.into_bytes()
}

/// Rewrite Python's non-finite number literals outside strings to `null`, or `None` when the
/// body has none (the common case, which then parses without a copy).
fn replace_non_finite(body: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    let mentions = |token: &[u8]| body.windows(token.len()).any(|window| window == token);
    if !mentions(b"NaN") && !mentions(b"Infinity") {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    'bytes: while i < body.len() {
        let byte = body[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
        } else {
            for token in TOKENS {
                if body[i..].starts_with(token) {
                    out.extend_from_slice(b"null");
                    i += token.len();
                    continue 'bytes;
                }
            }
        }
        out.push(byte);
        i += 1;
    }
    Some(out)
}

fn unwrap_kombu_types(value: Value) -> Result<Value, DecodeError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(unwrap_kombu_types)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(object) => {
            // kombu's object_hook runs innermost first, so unwrap the members before deciding
            // whether this object is itself a wrapper.
            let mut unwrapped = Map::with_capacity(object.len());
            for (key, member) in object {
                unwrapped.insert(key, unwrap_kombu_types(member)?);
            }
            if unwrapped.len() == 2
                && let (Some(type_name), Some(_)) =
                    (unwrapped.get("__type__"), unwrapped.get("__value__"))
            {
                let type_name = type_name.clone();
                let inner = unwrapped.remove("__value__").unwrap_or(Value::Null);
                return unwrap_typed(&type_name, inner);
            }
            Ok(Value::Object(unwrapped))
        }
        other => Ok(other),
    }
}

fn unwrap_typed(type_name: &Value, inner: Value) -> Result<Value, DecodeError> {
    let Some(name) = type_name.as_str() else {
        return Err(DecodeError::UnknownType {
            type_name: shortened(type_name),
        });
    };
    let invalid = |expected: &'static str, found: &Value| DecodeError::InvalidTypedValue {
        type_name: shortened(&Value::from(name)),
        expected,
        found: shortened(found),
    };
    match name {
        "datetime" | "date" | "time" | "decimal" | "bytes" | "base64" => match inner {
            Value::String(_) => Ok(inner),
            other => Err(invalid("a string", &other)),
        },
        "uuid" => {
            let hex = inner
                .as_object()
                .filter(|object| object.len() == 1)
                .and_then(|object| object.get("hex"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("an object `{\"hex\": \"...\"}`", &inner))?;
            let uuid = uuid::Uuid::try_parse(hex).map_err(|_| invalid("a uuid in hex", &inner))?;
            Ok(Value::String(uuid.hyphenated().to_string()))
        }
        _ => Err(DecodeError::UnknownType {
            type_name: shortened(type_name),
        }),
    }
}

/// How much of a value from a message an error quotes: enough to recognise it, and not a
/// message's worth of text in every log line the error reaches.
const QUOTED_CHARS: usize = 64;

/// A value as JSON, cut after [`QUOTED_CHARS`] characters.
fn shortened(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(out, number),
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            for (index, (key, member)) in object.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, member);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, number: &Number) {
    if let Some(int) = number.as_i64() {
        out.push_str(&int.to_string());
    } else if let Some(uint) = number.as_u64() {
        out.push_str(&uint.to_string());
    } else if let Some(float) = number.as_f64() {
        out.push_str(&python_float_repr(float));
    } else {
        // Unreachable without serde_json's arbitrary_precision; its own text is the best guess.
        out.push_str(&number.to_string());
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in positional notation when
/// the decimal exponent is from -4 to 15, else scientific with a signed two-digit exponent.
fn python_float_repr(float: f64) -> String {
    if float.is_nan() {
        return "NaN".into();
    }
    if float.is_infinite() {
        return if float > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` also prints the shortest round-trip digits: `d.ddde<exp>`.
    let scientific = format!("{:e}", float.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if float.is_sign_negative() { "-" } else { "" };

    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{fraction}e{exponent_sign}{:02}",
            exponent.unsigned_abs()
        );
    }
    let point = exponent + 1; // digits before the decimal point
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        let point = point as usize;
        if digits.len() <= point {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

/// A JSON string with Python's `ensure_ascii=True` escaping.
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(encode(&value)).unwrap()
    }

    /// Every body in the captured Python traffic re-encodes to the same bytes.
    #[test]
    fn fixture_bodies_roundtrip_byte_for_byte() {
        let fixtures = include_str!("../tests/fixtures/python-nameko-2.14.1/messages.json");
        let messages: Vec<Value> = serde_json::from_str(fixtures).unwrap();
        assert!(messages.len() >= 10);
        for message in messages {
            let body = message["body"].as_str().unwrap();
            let decoded = decode(body.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(encode(&decoded)).unwrap(), body);
        }
    }

    #[test]
    fn encodes_like_json_dumps() {
        assert_eq!(
            encode(&json!({"args": [1], "kwargs": {"b": [1, "x"]}})),
            br#"{"args": [1], "kwargs": {"b": [1, "x"]}}"#
        );
        assert_eq!(
            encode(&json!({"result": {"a": 1, "b": [1, "x"]}, "error": null})),
            br#"{"result": {"a": 1, "b": [1, "x"]}, "error": null}"#
        );
        assert_eq!(encode(&json!({})), b"{}");
        assert_eq!(encode(&json!([])), b"[]");
        assert_eq!(encode(&json!([true, false, null])), b"[true, false, null]");
        assert_eq!(encode(&json!(-5)), b"-5");
        assert_eq!(encode(&json!(u64::MAX)), b"18446744073709551615");
    }

    #[test]
    fn keeps_insertion_order() {
        assert_eq!(
            roundtrip(r#"{"z": 1, "a": 2, "m": 3}"#),
            r#"{"z": 1, "a": 2, "m": 3}"#
        );
    }

    #[test]
    fn escapes_like_ensure_ascii() {
        // Expected strings produced by Python 3: json.dumps(...).
        assert_eq!(encode(&json!("caf\u{e9}")), br#""caf\u00e9""#);
        assert_eq!(encode(&json!("\u{1f600}")), br#""\ud83d\ude00""#);
        assert_eq!(
            encode(&json!("q\"b\\n\nr\rt\tb\u{8}f\u{c}")),
            br#""q\"b\\n\nr\rt\tb\bf\f""#
        );
        assert_eq!(
            encode(&json!("\u{1}\u{1f}\u{7f}")),
            br#""\u0001\u001f\u007f""#
        );
        assert_eq!(encode(&json!("/<>&'")), br#""/<>&'""#);
        assert_eq!(encode(&json!({"\u{e9}": 1})), br#"{"\u00e9": 1}"#);
    }

    #[test]
    fn floats_like_python_repr() {
        // Each pair is (value, repr(value) in Python 3).
        let cases: [(f64, &str); 16] = [
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (100.0, "100.0"),
        ];
        for (value, expected) in cases {
            assert_eq!(python_float_repr(value), expected, "{value:e}");
            assert_eq!(
                String::from_utf8(encode(&json!(value))).unwrap(),
                expected,
                "{value:e}"
            );
        }
    }

    #[test]
    fn decodes_python_non_finite_numbers_as_null() {
        assert_eq!(
            decode(br#"{"a": NaN, "b": [Infinity, -Infinity], "c": 1}"#).unwrap(),
            json!({"a": null, "b": [null, null], "c": 1})
        );
        // Inside strings they are text, escaped quotes included.
        assert_eq!(
            decode(br#"["NaN", "say \"Infinity\" NaN", NaN]"#).unwrap(),
            json!(["NaN", "say \"Infinity\" NaN", null])
        );
        assert_eq!(
            decode(br#"{"NaN": "-Infinity"}"#).unwrap(),
            json!({"NaN": "-Infinity"})
        );
        assert!(decode(b"[-NaN]").is_err());
        assert!(decode(b"[NaNa]").is_err());
    }

    #[test]
    fn unwraps_kombu_types() {
        let body = br#"{"when": {"__type__": "datetime", "__value__": "2024-01-02T03:04:05"},
            "day": {"__type__": "date", "__value__": "2024-01-02"},
            "at": {"__type__": "time", "__value__": "03:04:05.123456"},
            "price": {"__type__": "decimal", "__value__": "12.30"},
            "id": {"__type__": "uuid", "__value__": {"hex": "164b3074325c4d5e8f7a0b1c2d3e4f50"}},
            "text": {"__type__": "bytes", "__value__": "h\u00e9"},
            "blob": {"__type__": "base64", "__value__": "/w=="},
            "nested": [{"__type__": "decimal", "__value__": "1"}]}"#;
        assert_eq!(
            decode(body).unwrap(),
            json!({
                "when": "2024-01-02T03:04:05",
                "day": "2024-01-02",
                "at": "03:04:05.123456",
                "price": "12.30",
                "id": "164b3074-325c-4d5e-8f7a-0b1c2d3e4f50",
                "text": "h\u{e9}",
                "blob": "/w==",
                "nested": ["1"],
            })
        );
    }

    #[test]
    fn objects_that_merely_look_like_wrappers_stay() {
        assert_eq!(
            decode(br#"{"__type__": "nope", "__value__": 1, "extra": 2}"#).unwrap(),
            json!({"__type__": "nope", "__value__": 1, "extra": 2})
        );
        assert_eq!(
            decode(br#"{"__type__": "nope"}"#).unwrap(),
            json!({"__type__": "nope"})
        );
    }

    #[test]
    fn unknown_or_malformed_wrappers_are_errors() {
        let error = decode(br#"{"__type__": "pickle", "__value__": "x"}"#).unwrap_err();
        assert!(matches!(error, DecodeError::UnknownType { .. }), "{error}");
        assert!(error.to_string().contains("\"pickle\""), "{error}");
        assert!(matches!(
            decode(br#"[{"__type__": 3, "__value__": "x"}]"#),
            Err(DecodeError::UnknownType { .. })
        ));
        assert!(matches!(
            decode(br#"{"__type__": "datetime", "__value__": 5}"#),
            Err(DecodeError::InvalidTypedValue { .. })
        ));
        assert!(matches!(
            decode(br#"{"__type__": "uuid", "__value__": {"hex": "xyz"}}"#),
            Err(DecodeError::InvalidTypedValue { .. })
        ));
        // Errors quote the start of a value, not all of it.
        let long = format!(
            r#"{{"__type__": "date", "__value__": [{}1]}}"#,
            "1, ".repeat(5000)
        );
        let error = decode(long.as_bytes()).unwrap_err().to_string();
        assert!(error.len() < 200, "{error}");
        assert!(error.contains("[1,1,1,"), "{error}");
    }

    #[test]
    fn invalid_json_is_an_error() {
        assert!(matches!(decode(b"{"), Err(DecodeError::Json(_))));
        assert!(matches!(decode(b"\xff"), Err(DecodeError::Json(_))));
        assert!(matches!(decode(b""), Err(DecodeError::Json(_))));
    }
}
