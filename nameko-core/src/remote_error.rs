//! The wire error: what a failed call looks like on the wire, in both directions.
//!
//! Python Nameko serialises an exception as exactly four keys (`exc_type`, `exc_path`, `exc_args`,
//! `value`) and a Python client rebuilds it from them; the three `nameko.exceptions.*` paths below
//! come back to Python as its own native exception types. `RemoteError` carries those four fields
//! and nothing else, so an error crosses languages without loss. It is a value, kept apart from
//! transport failures (a dropped connection is not a remote error), the way tonic keeps `Status`
//! apart from its transport error.
//!
//! Handlers choose how their errors look on the wire through [`IntoRemoteError`]: implement it for
//! your own error type to pick its `exc_type` and `exc_path`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `exc_path` of Nameko's `MethodNotFound`: the routing key named no `rpc` method.
pub const METHOD_NOT_FOUND: &str = "nameko.exceptions.MethodNotFound";
/// `exc_path` of Nameko's `IncorrectSignature`: the arguments do not fit the handler.
pub const INCORRECT_SIGNATURE: &str = "nameko.exceptions.IncorrectSignature";
/// `exc_path` of Nameko's `MalformedRequest`: the request body is not `{args, kwargs}`.
pub const MALFORMED_REQUEST: &str = "nameko.exceptions.MalformedRequest";
/// `exc_path` of Nameko's `UnserializableValueError`: a result that JSON cannot carry.
pub const UNSERIALIZABLE_VALUE: &str = "nameko.exceptions.UnserializableValueError";
/// `exc_path` given to Rust errors that did not choose their own type.
pub const GENERIC_ERROR: &str = "nameko_rs.Error";
/// `exc_path` of a handler that panicked.
pub const HANDLER_PANICKED: &str = "nameko_rs.HandlerPanicked";
/// The `exc_path` of [`RemoteError::state_mismatch`].
pub const STATE_MISMATCH: &str = "nameko_rs.StateMismatch";

/// An error as it crosses the wire: exactly the four fields Python Nameko serialises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    /// The short class name, such as `ValueError` or `MethodNotFound`.
    #[serde(default)]
    pub exc_type: String,
    /// `<module>.<ClassName>`: Python clients look this up to raise a native exception.
    #[serde(default)]
    pub exc_path: String,
    /// The exception's arguments, made "safe" as Nameko does: strings, lists and objects kept,
    /// every other value turned into its string form.
    #[serde(default)]
    pub exc_args: Vec<Value>,
    /// The error's message (`str(exc)` in Python).
    #[serde(default, deserialize_with = "lenient_string")]
    pub value: String,
}

impl RemoteError {
    /// An error of the given type whose single argument is its message.
    pub fn new(
        exc_type: impl Into<String>,
        exc_path: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        let value = value.into();
        Self {
            exc_type: exc_type.into(),
            exc_path: exc_path.into(),
            exc_args: vec![Value::String(value.clone())],
            value,
        }
    }

    /// Replaces the arguments, made safe the way Nameko's `safe_for_serialization` does.
    pub fn with_args(mut self, args: impl IntoIterator<Item = Value>) -> Self {
        self.exc_args = args.into_iter().map(safe_for_serialization).collect();
        self
    }

    /// `MethodNotFound(<method>)`, as Nameko replies to an unknown method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new("MethodNotFound", METHOD_NOT_FOUND, method)
    }

    /// `IncorrectSignature(<message>)`: missing, extra or ill-typed arguments.
    pub fn incorrect_signature(message: impl Into<String>) -> Self {
        Self::new("IncorrectSignature", INCORRECT_SIGNATURE, message)
    }

    /// `StateMismatch`: a worker started over another service's state than its handler reads.
    /// `Service<S>::entrypoint` rules it out; an entrypoint that erases state types answers
    /// with this rather than panicking.
    pub fn state_mismatch<S: ?Sized>() -> Self {
        Self::new(
            "StateMismatch",
            STATE_MISMATCH,
            format!(
                "the entrypoint expects service state `{}`, which is not this service's",
                std::any::type_name::<S>()
            ),
        )
    }

    /// `MalformedRequest(<message>)`: a request body Nameko cannot read.
    pub fn malformed_request(message: impl Into<String>) -> Self {
        Self::new("MalformedRequest", MALFORMED_REQUEST, message)
    }

    /// `UnserializableValueError`: the handler's result could not become JSON.
    pub fn unserializable_value(what: impl fmt::Display) -> Self {
        Self::new(
            "UnserializableValueError",
            UNSERIALIZABLE_VALUE,
            format!("Unserializable value: `{what}`"),
        )
    }

    /// A Rust error that did not choose its own type: `Error` at `nameko_rs.Error`.
    pub fn generic(message: impl fmt::Display) -> Self {
        Self::new("Error", GENERIC_ERROR, message.to_string())
    }

    /// Whether Nameko counts this error as a `BadRequest` (HTTP maps these to 400).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self.exc_path.as_str(),
            METHOD_NOT_FOUND | INCORRECT_SIGNATURE | MALFORMED_REQUEST
        )
    }
}

impl fmt::Display for RemoteError {
    /// Python's `RemoteError.__str__`: `"<exc_type> <value>"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.exc_type, self.value)
    }
}

impl std::error::Error for RemoteError {}

/// Nameko's `safe_for_serialization`: strings, lists and objects are kept (recursively), every
/// other value becomes its string form, so `7` arrives as `"7"` and `null` as `"None"`.
pub fn safe_for_serialization(value: Value) -> Value {
    match value {
        Value::String(_) => value,
        Value::Array(items) => {
            Value::Array(items.into_iter().map(safe_for_serialization).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, safe_for_serialization(v)))
                .collect(),
        ),
        Value::Null => Value::String("None".into()),
        Value::Bool(true) => Value::String("True".into()),
        Value::Bool(false) => Value::String("False".into()),
        Value::Number(n) => Value::String(n.to_string()),
    }
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// How a handler's error becomes a [`RemoteError`] on the wire.
///
/// Implement it for your own error types to choose their `exc_type` and `exc_path`; a Python
/// caller that registered a class under the same `exc_path` gets an instance of it back.
///
/// ```
/// use nameko_core::{IntoRemoteError, RemoteError};
///
/// struct InvalidArguments(String);
///
/// impl IntoRemoteError for InvalidArguments {
///     fn into_remote_error(self) -> RemoteError {
///         RemoteError::new("InvalidArguments", "orders.InvalidArguments", self.0)
///     }
/// }
/// ```
pub trait IntoRemoteError {
    /// Converts the error into its wire form.
    fn into_remote_error(self) -> RemoteError;
}

impl IntoRemoteError for RemoteError {
    fn into_remote_error(self) -> RemoteError {
        self
    }
}

impl IntoRemoteError for anyhow::Error {
    /// A `RemoteError` inside the chain, as the error itself or as a source of it, is kept as
    /// it is (so an error from a nested call propagates with its type); anything else becomes a
    /// generic error with the full message.
    fn into_remote_error(self) -> RemoteError {
        match self.downcast::<RemoteError>() {
            Ok(remote) => remote,
            Err(other) => match other
                .chain()
                .find_map(|cause| cause.downcast_ref::<RemoteError>())
            {
                Some(remote) => remote.clone(),
                None => RemoteError::generic(format!("{other:#}")),
            },
        }
    }
}

impl IntoRemoteError for Box<dyn std::error::Error + Send + Sync> {
    fn into_remote_error(self) -> RemoteError {
        match self.downcast::<RemoteError>() {
            Ok(remote) => *remote,
            Err(other) => RemoteError::generic(other),
        }
    }
}

impl IntoRemoteError for String {
    fn into_remote_error(self) -> RemoteError {
        RemoteError::generic(self)
    }
}

impl IntoRemoteError for &str {
    fn into_remote_error(self) -> RemoteError {
        RemoteError::generic(self)
    }
}

impl IntoRemoteError for std::convert::Infallible {
    fn into_remote_error(self) -> RemoteError {
        match self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_exactly_the_four_nameko_keys() {
        let err = RemoteError::method_not_found("no_such_method");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"exc_type": "MethodNotFound", "exc_path": "nameko.exceptions.MethodNotFound",
                   "exc_args": ["no_such_method"], "value": "no_such_method"})
        );
    }

    #[test]
    fn args_are_made_safe_like_python() {
        let err = RemoteError::new("ValueError", "builtins.ValueError", "('bad', 7)").with_args([
            json!("bad"),
            json!(7),
            json!({"k": [1, null, true]}),
        ]);
        assert_eq!(
            err.exc_args,
            vec![
                json!("bad"),
                json!("7"),
                json!({"k": ["1", "None", "True"]})
            ]
        );
    }

    #[test]
    fn reads_a_python_error_and_displays_like_python() {
        let err: RemoteError = serde_json::from_str(
            r#"{"exc_type": "ValueError", "exc_path": "builtins.ValueError", "exc_args": ["bad", "7"], "value": "('bad', 7)"}"#,
        )
        .unwrap();
        assert_eq!(err.to_string(), "ValueError ('bad', 7)");
        assert!(!err.is_bad_request());
        assert!(RemoteError::incorrect_signature("x").is_bad_request());
    }

    #[test]
    fn anyhow_keeps_a_wrapped_remote_error() {
        let inner = RemoteError::new("Boom", "svc.Boom", "bang");
        let any: anyhow::Error = inner.clone().into();
        assert_eq!(any.into_remote_error(), inner);
        let other = anyhow::anyhow!("plain failure").into_remote_error();
        assert_eq!(other.exc_path, GENERIC_ERROR);
        assert_eq!(other.value, "plain failure");
    }
}
