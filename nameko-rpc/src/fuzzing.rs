//! Fuzz target for what an RPC service reads from a request: the body, and the binding of its
//! `args` and `kwargs` to handler parameters of every shape the `args` module supports.
//!
//! The target panics only when an invariant breaks: a request the service refuses is a defined
//! outcome (a `MalformedRequest` or `IncorrectSignature` reply), never a failure. It is driven by
//! libFuzzer from the workspace's `fuzz/` directory and, on stable Rust, by this module's tests,
//! which replay `fuzz/corpus/rpc_request/` and run a short randomized search. The module only
//! exists with the `fuzzing` feature or in tests, so it is no part of the crate's API.

use std::collections::BTreeMap;

use nameko_core::{INCORRECT_SIGNATURE, MALFORMED_REQUEST, RemoteError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::Args;
use crate::args::bind_redacting;
use crate::consumer::request_arguments;

/// A request body as the RPC consumer reads it, then bound to a range of handler parameters:
/// every outcome is a value or a Python-like `IncorrectSignature` text, and an error about a
/// sensitive argument never quotes its value.
pub fn rpc_request(data: &[u8]) {
    let body = match nameko_amqp::json::decode(data) {
        Ok(body) => body,
        // The consumer answers `MalformedRequest` with the decoder's message.
        Err(_) => return,
    };
    let (args, kwargs) = match request_arguments(body) {
        Ok(parts) => parts,
        Err(error) => {
            assert_eq!(error.exc_path, MALFORMED_REQUEST, "{error:?}");
            return;
        }
    };
    bind_every_shape(&args, &kwargs);
}

/// A struct parameter list with required, optional and defaulted parameters.
#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only binding is exercised")]
struct Echo {
    a: i64,
    b: Option<String>,
    #[serde(default)]
    c: Vec<f64>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only binding is exercised")]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only binding is exercised")]
struct Nested {
    first: Point,
    second: Option<Point>,
    #[serde(default)]
    flag: bool,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only binding is exercised")]
enum Shape {
    Unit,
    Circle(f64),
    Pair(i8, i8),
    Rect { w: u16, h: u16 },
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only binding is exercised")]
struct Tag(String);

#[derive(Debug, Deserialize)]
struct Nothing;

/// A parameter list whose every argument is named sensitive by [`SENSITIVE`].
#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only binding is exercised")]
struct Secret {
    password: u32,
    card: Option<Point>,
}

/// The `sensitive_arguments` of the [`Secret`] binding, covering every place an argument can
/// come from.
const SENSITIVE: [&str; 4] = ["password", "card.x", "args", "kwargs"];

fn bind_every_shape(args: &[Value], kwargs: &Map<String, Value>) {
    check::<Echo>(args, kwargs);
    check::<Nested>(args, kwargs);
    check::<(String, u8)>(args, kwargs);
    check::<(Option<i64>,)>(args, kwargs);
    check::<String>(args, kwargs);
    check::<Value>(args, kwargs);
    check::<Option<i64>>(args, kwargs);
    check::<Option<Echo>>(args, kwargs);
    check::<()>(args, kwargs);
    check::<Nothing>(args, kwargs);
    check::<Tag>(args, kwargs);
    check::<Shape>(args, kwargs);
    check::<Vec<Point>>(args, kwargs);
    check::<BTreeMap<String, u64>>(args, kwargs);
    check::<bool>(args, kwargs);
    check::<char>(args, kwargs);
    check::<u128>(args, kwargs);
    check::<f32>(args, kwargs);

    // `Args` takes any call as it came.
    match bind_redacting::<Args>("m", args.to_vec(), kwargs.clone(), &[]) {
        Ok(bound) => {
            assert_eq!(bound.value.args, args);
            assert_eq!(&bound.value.kwargs, kwargs);
        }
        Err(message) => panic!("Args refused a call: {message}"),
    }

    // Errors about sensitive arguments never quote what was sent.
    let sensitive: Vec<String> = SENSITIVE.iter().map(|path| (*path).to_owned()).collect();
    if let Err(message) = bind_redacting::<Secret>("m", args.to_vec(), kwargs.clone(), &sensitive)
        && message.contains("argument")
        && !message.contains("unexpected keyword")
    {
        for value in args.iter().chain(kwargs.values()) {
            for shown in quotable(value) {
                assert!(
                    !message.contains(&format!("`{shown}`"))
                        && !message.contains(&format!("{shown:?}")),
                    "`{message}` quotes {shown}"
                );
            }
        }
    }
}

/// The texts serde would quote in an error about `value` or a part of it.
fn quotable(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) if text.len() >= 3 => vec![text.clone()],
        Value::Number(number) if number.to_string().len() >= 3 => vec![number.to_string()],
        Value::Array(items) => items.iter().flat_map(quotable).collect(),
        Value::Object(members) => members.values().flat_map(quotable).collect(),
        _ => Vec::new(),
    }
}

/// Binds to `T`: a bound call is logged as an object; a refused one is an `IncorrectSignature`
/// naming the method as Python does.
fn check<T: DeserializeOwned>(args: &[Value], kwargs: &Map<String, Value>) {
    match bind_redacting::<T>("method", args.to_vec(), kwargs.clone(), &[]) {
        Ok(bound) => assert!(bound.logged.is_object(), "logged {}", bound.logged),
        Err(message) => {
            assert!(message.starts_with("method() "), "{message}");
            let error = RemoteError::incorrect_signature(message);
            assert_eq!(error.exc_path, INCORRECT_SIGNATURE);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use nameko_core::fuzzing::replay::{config, corpus};

    /// Argument values of the kinds the handler shapes above ask for, and a few they do not.
    fn argument() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0u64..300).prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec!["Unit", "Circle", "Pair", "Rect", "x", "ab"])
                .prop_map(Value::from),
            ".{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::vec((field_name(), inner), 0..4)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    fn field_name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "a", "b", "c", "x", "y", "w", "h", "first", "second", "flag", "password", "card",
            "Circle", "Rect", "other",
        ])
        .prop_map(str::to_owned)
    }

    fn request() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec(argument(), 0..5),
            prop::collection::vec((field_name(), argument()), 0..4),
        )
            .prop_map(|(args, kwargs)| {
                let kwargs: Map<String, Value> = kwargs.into_iter().collect();
                json!({"args": args, "kwargs": kwargs})
            })
    }

    #[test]
    fn rpc_request_corpus() {
        for input in corpus("rpc_request") {
            rpc_request(&input);
        }
    }

    proptest! {
        #![proptest_config(config(1500))]

        #[test]
        fn rpc_request_random_calls(body in request()) {
            rpc_request(&nameko_amqp::json::encode(&body));
        }

        #[test]
        fn rpc_request_random_bodies(body in argument()) {
            rpc_request(&nameko_amqp::json::encode(&body));
        }
    }
}
