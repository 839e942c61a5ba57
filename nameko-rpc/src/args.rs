//! Argument binding: Nameko's `(args, kwargs)` bound to a handler's typed parameter the way
//! Python binds a call to a function's signature.
//!
//! A Nameko request carries a list of positional arguments and an object of keyword arguments;
//! a Python method takes them by position or by name. A Rust handler declares one parameter type
//! `A: Deserialize`, and a small serde `Deserializer` over `(args, kwargs)` decides how to fill
//! it from what serde tells it about `A`:
//!
//! - a **struct** is a parameter list: positional values fill its fields in declaration order,
//!   keyword values fill fields by name (`echo(1)`, `echo(a=1)` and `echo(1, b=2)` all bind
//!   `struct Echo { a: i64, b: Option<i64> }`); `Option` and `#[serde(default)]` fields are
//!   optional parameters;
//! - a **tuple** takes exactly that many positional values and no keywords;
//! - `()` (or a unit struct) takes no arguments at all;
//! - [`Args`] takes everything as it came (Python's `*args, **kwargs`);
//! - `Option<T>` is `None` for a call without arguments, otherwise binds `T`;
//! - **anything else** (`String`, numbers, `Vec<T>`, maps, enums, `serde_json::Value`) is a single
//!   argument, given positionally or as a lone keyword argument of any name.
//!
//! Whatever does not fit is an `IncorrectSignature` with the text Python's `inspect.getcallargs`
//! would produce, so a Python caller reads the same message from a Rust service as from a Python
//! one: `echo() missing 1 required positional argument: 'a'`, `echo() takes from 1 to 2
//! positional arguments but 3 were given`, `echo() got an unexpected keyword argument 'x'`,
//! `echo() got multiple values for argument 'a'`. Counts leave out Python's `self`. A value of the
//! wrong type names the argument: `echo() argument 'a': invalid type: string "x", expected i64`.
//!
//! serde's derived code stops at the first missing field; to list every missing argument as
//! Python does, binding runs again with placeholder values for the fields already found missing
//! (only when the call is wrong, never on the normal path). Field aliases and `#[serde(flatten)]`
//! are not supported for positional binding.

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The name [`Args`] gives serde, so the binder knows to hand it the call unchanged.
const ARGS_STRUCT: &str = "nameko_rpc::Args";

/// Every argument of a call as it came: positional values and keyword values.
///
/// As a handler's parameter it accepts any call (Python's `*args, **kwargs`). As the arguments of
/// an outgoing call it sends positional and keyword arguments together:
///
/// ```
/// use nameko_rpc::Args;
/// use serde_json::json;
///
/// let args = Args::new(vec![json!(1)]).kwarg("b", json!([1, "x"]));
/// assert_eq!(args.args, vec![json!(1)]);
/// assert_eq!(args.kwargs["b"], json!([1, "x"]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "nameko_rpc::Args")]
pub struct Args {
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<Value>,
    /// Keyword arguments.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
}

impl Args {
    /// These positional arguments and no keyword arguments.
    pub fn new(args: Vec<Value>) -> Self {
        Self {
            args,
            kwargs: Map::new(),
        }
    }

    /// Adds a keyword argument.
    #[must_use]
    pub fn kwarg(mut self, name: impl Into<String>, value: Value) -> Self {
        self.kwargs.insert(name.into(), value);
        self
    }
}

/// What an outgoing call's arguments can be: anything serialisable, or [`Args`].
///
/// A serialised list or tuple is the positional arguments, an object or struct the keyword
/// arguments, `()` (or `null`) no arguments, and any other single value one positional argument.
/// A single list argument must therefore be wrapped: `(vec![1, 2],)`. [`Args`] sends positional
/// and keyword arguments together.
pub trait IntoRpcArgs {
    /// Converts into positional and keyword arguments.
    fn into_rpc_args(self) -> Result<Args, serde_json::Error>;
}

impl<T: Serialize> IntoRpcArgs for T {
    fn into_rpc_args(self) -> Result<Args, serde_json::Error> {
        Ok(match serde_json::to_value(self)? {
            Value::Null => Args::default(),
            Value::Array(args) => Args::new(args),
            Value::Object(kwargs) => Args {
                args: Vec::new(),
                kwargs,
            },
            single => Args::new(vec![single]),
        })
    }
}

impl IntoRpcArgs for Args {
    fn into_rpc_args(self) -> Result<Args, serde_json::Error> {
        Ok(self)
    }
}

/// A handler's parameter, bound, with the arguments in the form worker logs show them.
#[derive(Debug)]
pub(crate) struct Bound<T> {
    /// The value the handler receives.
    pub(crate) value: T,
    /// An object of argument names to values when the parameter is a struct (so
    /// `sensitive_arguments` can name them), otherwise `{"args": [...], "kwargs": {...}}`.
    pub(crate) logged: Value,
}

/// Binds a call of `method` with these arguments to `T`; the error is the text of an
/// `IncorrectSignature`.
#[cfg(test)]
pub(crate) fn bind<T: DeserializeOwned>(
    method: &str,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
) -> Result<Bound<T>, String> {
    bind_redacting(method, args, kwargs, &[])
}

/// [`bind`] for an entrypoint with these `sensitive_arguments`: an error about a value that one
/// of them names does not quote the value, since the error is logged and sensitive values must
/// never reach a log.
pub(crate) fn bind_redacting<T: DeserializeOwned>(
    method: &str,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    sensitive: &[String],
) -> Result<Bound<T>, String> {
    let mut logged = None;
    let sensitive = Sensitive(sensitive);
    let outcome = T::deserialize(Binder {
        method,
        args: args.clone(),
        kwargs: kwargs.clone(),
        placeholders: &[],
        sensitive,
        logged: &mut logged,
    });
    match outcome {
        Ok(value) => Ok(Bound {
            value,
            logged: logged.unwrap_or_else(|| generic_log(args, kwargs)),
        }),
        Err(BindError::Missing(first)) => {
            let missing = missing_fields::<T>(method, &args, &kwargs, vec![first]);
            Err(missing_message(method, &missing))
        }
        Err(BindError::TooMany { given, max }) => {
            let required = match probe::<T>(method, &[], &Map::new(), &[]) {
                Some(first) => missing_fields::<T>(method, &[], &Map::new(), vec![first]).len(),
                None => 0,
            };
            Err(too_many_message(method, required.min(max), max, given))
        }
        Err(BindError::Signature(message)) => Err(message),
        Err(BindError::Custom(_)) if sensitive.any() => Err(format!(
            "{method}() arguments do not fit its signature ({NOT_SHOWN})"
        )),
        Err(BindError::Custom(message)) => Err(format!(
            "{method}() arguments do not fit its signature: {message}"
        )),
    }
}

/// What an error says instead of serde's description, which may quote the value.
const NOT_SHOWN: &str = "details not shown for a sensitive argument";

/// An entrypoint's `sensitive_arguments`, asked about the argument an error is about.
///
/// Paths name arguments the way the worker logs them: a struct parameter's fields by name, any
/// other parameter as `args[n]` and `kwargs.<name>`. An argument is sensitive when a path starts
/// with it: `card` covers an error about `card`, and so does `card.number`, since a type error
/// anywhere inside it may quote the sensitive part.
#[derive(Clone, Copy)]
struct Sensitive<'a>(&'a [String]);

impl Sensitive<'_> {
    fn any(self) -> bool {
        !self.0.is_empty()
    }

    /// Whether the argument named `name` (a struct field or a keyword) is, or holds, one.
    fn named(self, name: &str) -> bool {
        self.0.iter().any(|path| {
            let mut keys = keys(path);
            match keys.next() {
                Some("kwargs") => keys.next().is_none_or(|key| key == name),
                first => first == Some(name),
            }
        })
    }

    /// Whether positional arguments are, or hold, one.
    fn positional(self) -> bool {
        self.0.iter().any(|path| keys(path).next() == Some("args"))
    }

    /// The error about the argument `label`, without serde's text when `hidden`.
    fn argument_error(
        method: &str,
        label: &str,
        error: &dyn std::fmt::Display,
        hidden: bool,
    ) -> BindError {
        BindError::Signature(if hidden {
            format!("{method}() argument{label}: the value does not fit ({NOT_SHOWN})")
        } else {
            format!("{method}() argument{label}: {error}")
        })
    }
}

/// The words of a redaction path, as Nameko reads paths (runs of word characters are keys):
/// `card` and `number` of `card.number[0]`.
fn keys(path: &str) -> impl Iterator<Item = &str> {
    path.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|key| !key.is_empty())
}

fn generic_log(args: Vec<Value>, kwargs: Map<String, Value>) -> Value {
    let mut logged = Map::new();
    logged.insert("args".to_owned(), Value::Array(args));
    logged.insert("kwargs".to_owned(), Value::Object(kwargs));
    Value::Object(logged)
}

/// Every required field missing from this call, in declaration order, starting from the one
/// serde reported first.
fn missing_fields<T: DeserializeOwned>(
    method: &str,
    args: &[Value],
    kwargs: &Map<String, Value>,
    mut missing: Vec<&'static str>,
) -> Vec<&'static str> {
    // Each round fills the fields found so far with placeholders and reveals the next one; the
    // bound keeps a pathological `Deserialize` impl from looping.
    for _ in 0..256 {
        match probe::<T>(method, args, kwargs, &missing) {
            Some(next) if !missing.contains(&next) => missing.push(next),
            _ => break,
        }
    }
    missing
}

/// Binds with placeholders for `placeholders`; returns the first missing field, if that is
/// what failed.
fn probe<T: DeserializeOwned>(
    method: &str,
    args: &[Value],
    kwargs: &Map<String, Value>,
    placeholders: &[&'static str],
) -> Option<&'static str> {
    let mut logged = None;
    let outcome = T::deserialize(Binder {
        method,
        args: args.to_vec(),
        kwargs: kwargs.clone(),
        placeholders,
        sensitive: Sensitive(&[]),
        logged: &mut logged,
    });
    match outcome {
        Err(BindError::Missing(field)) => Some(field),
        _ => None,
    }
}

fn missing_message(method: &str, missing: &[&str]) -> String {
    let quoted: Vec<String> = missing.iter().map(|name| format!("'{name}'")).collect();
    let names = match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    let count = missing.len();
    let plural = if count == 1 { "" } else { "s" };
    format!("{method}() missing {count} required positional argument{plural}: {names}")
}

fn too_many_message(method: &str, min: usize, max: usize, given: usize) -> String {
    let verb = if given == 1 { "was" } else { "were" };
    if min == max {
        let plural = if max == 1 { "" } else { "s" };
        format!("{method}() takes {max} positional argument{plural} but {given} {verb} given")
    } else {
        format!(
            "{method}() takes from {min} to {max} positional arguments but {given} {verb} given"
        )
    }
}

/// Why binding failed, as the binder and serde's derived visitors report it.
#[derive(Debug)]
enum BindError {
    /// A required field was not given (reported by serde's derived struct visitors).
    Missing(&'static str),
    /// More positional values than the struct has fields.
    TooMany { given: usize, max: usize },
    /// A complete Python-like message.
    Signature(String),
    /// What a visitor said about a value of the wrong shape.
    Custom(String),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(field) => write!(f, "missing argument '{field}'"),
            Self::TooMany { given, max } => {
                write!(f, "takes {max} positional arguments but {given} were given")
            }
            Self::Signature(message) | Self::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for BindError {}

impl de::Error for BindError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self::Custom(msg.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Self::Missing(field)
    }
}

/// The deserializer over one call's arguments.
struct Binder<'a> {
    method: &'a str,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    /// Struct fields to fill with a placeholder while probing for further missing fields.
    placeholders: &'a [&'static str],
    /// Arguments whose values an error must not quote.
    sensitive: Sensitive<'a>,
    /// Where the arguments are recorded for logs, by name when the target is a struct.
    logged: &'a mut Option<Value>,
}

impl Binder<'_> {
    fn unexpected_keyword(&self, name: &str) -> BindError {
        BindError::Signature(format!(
            "{}() got an unexpected keyword argument '{name}'",
            self.method
        ))
    }

    /// The one argument of a handler that takes a single value.
    fn single(self) -> Result<(Option<String>, Value), BindError> {
        let method = self.method;
        let (args, kwargs) = (self.args, self.kwargs);
        *self.logged = Some(generic_log(args.clone(), kwargs.clone()));
        match (args.len(), kwargs.len()) {
            (1, 0) => Ok((None, args.into_iter().next().unwrap_or(Value::Null))),
            (0, 1) => Ok(kwargs
                .into_iter()
                .next()
                .map_or((None, Value::Null), |(k, v)| (Some(k), v))),
            (0, 0) => Err(BindError::Signature(format!(
                "{method}() missing 1 required positional argument"
            ))),
            (given, 0) => Err(BindError::Signature(too_many_message(method, 1, 1, given))),
            (0, _) => Err(BindError::Signature(format!(
                "{method}() got an unexpected keyword argument '{}'",
                kwargs.keys().nth(1).map_or("", String::as_str)
            ))),
            (1, _) => Err(BindError::Signature(format!(
                "{method}() got an unexpected keyword argument '{}'",
                kwargs.keys().next().map_or("", String::as_str)
            ))),
            (given, _) => Err(BindError::Signature(too_many_message(method, 1, 1, given))),
        }
    }

    /// Deserializes the single argument with `deserialize`, naming it in a type error.
    fn single_with<'de, V, F>(self, visitor: V, deserialize: F) -> Result<V::Value, BindError>
    where
        V: Visitor<'de>,
        F: FnOnce(Value, V) -> Result<V::Value, serde_json::Error>,
    {
        let method = self.method;
        let sensitive = self.sensitive;
        let (name, value) = self.single()?;
        deserialize(value, visitor).map_err(|err| match name {
            Some(name) => Sensitive::argument_error(
                method,
                &format!(" '{name}'"),
                &err,
                sensitive.named(&name),
            ),
            None => Sensitive::argument_error(method, "", &err, sensitive.positional()),
        })
    }

    fn no_arguments(&self) -> Result<(), BindError> {
        if let Some(name) = self.kwargs.keys().next() {
            return Err(self.unexpected_keyword(name));
        }
        if !self.args.is_empty() {
            return Err(BindError::Signature(too_many_message(
                self.method,
                0,
                0,
                self.args.len(),
            )));
        }
        Ok(())
    }
}

macro_rules! single_value {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
                self.single_with(visitor, |value, visitor| value.$method(visitor))
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Binder<'_> {
    type Error = BindError;

    single_value!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
    );

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, BindError> {
        self.single_with(visitor, |value, visitor| {
            value.deserialize_enum(name, variants, visitor)
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
        if self.args.is_empty() && self.kwargs.is_empty() {
            *self.logged = Some(generic_log(Vec::new(), Map::new()));
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
        self.no_arguments()?;
        *self.logged = Some(generic_log(Vec::new(), Map::new()));
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, BindError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, BindError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, BindError> {
        if let Some(name) = self.kwargs.keys().next() {
            return Err(self.unexpected_keyword(name));
        }
        let given = self.args.len();
        if given > len {
            return Err(BindError::Signature(too_many_message(
                self.method,
                len,
                len,
                given,
            )));
        }
        if given < len {
            let count = len - given;
            let plural = if count == 1 { "" } else { "s" };
            return Err(BindError::Signature(format!(
                "{}() missing {count} required positional argument{plural}",
                self.method
            )));
        }
        *self.logged = Some(generic_log(self.args.clone(), Map::new()));
        visitor.visit_seq(PositionalSeq {
            method: self.method,
            sensitive: self.sensitive,
            values: self.args.into_iter().enumerate(),
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, BindError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, BindError> {
        let method = self.method;
        if name == ARGS_STRUCT {
            *self.logged = Some(generic_log(self.args.clone(), self.kwargs.clone()));
            let entries = vec![
                ("args", Slot::Value(Value::Array(self.args))),
                ("kwargs", Slot::Value(Value::Object(self.kwargs))),
            ];
            return visitor.visit_map(FieldMap::new(method, self.sensitive, entries));
        }
        if self.args.len() > fields.len() {
            return Err(BindError::TooMany {
                given: self.args.len(),
                max: fields.len(),
            });
        }
        let mut entries: Vec<(&'static str, Slot)> = fields
            .iter()
            .copied()
            .zip(self.args.into_iter().map(Slot::Value))
            .collect();
        for (key, value) in self.kwargs {
            let Some(field) = fields.iter().copied().find(|field| *field == key) else {
                return Err(BindError::Signature(format!(
                    "{method}() got an unexpected keyword argument '{key}'"
                )));
            };
            if entries.iter().any(|(name, _)| *name == field) {
                return Err(BindError::Signature(format!(
                    "{method}() got multiple values for argument '{key}'"
                )));
            }
            entries.push((field, Slot::Value(value)));
        }
        *self.logged = Some(Value::Object(
            entries
                .iter()
                .filter_map(|(name, slot)| match slot {
                    Slot::Value(value) => Some(((*name).to_owned(), value.clone())),
                    Slot::Placeholder => None,
                })
                .collect(),
        ));
        for field in self.placeholders {
            if !entries.iter().any(|(name, _)| name == field) {
                entries.push((field, Slot::Placeholder));
            }
        }
        visitor.visit_map(FieldMap::new(method, self.sensitive, entries))
    }
}

/// A struct field's value: given by the caller, or a placeholder while probing.
enum Slot {
    Value(Value),
    Placeholder,
}

/// The fields of a struct parameter, in the order the caller gave them.
struct FieldMap<'a> {
    method: &'a str,
    sensitive: Sensitive<'a>,
    entries: std::vec::IntoIter<(&'static str, Slot)>,
    current: Option<(&'static str, Slot)>,
}

impl<'a> FieldMap<'a> {
    fn new(method: &'a str, sensitive: Sensitive<'a>, entries: Vec<(&'static str, Slot)>) -> Self {
        Self {
            method,
            sensitive,
            entries: entries.into_iter(),
            current: None,
        }
    }
}

impl<'de> MapAccess<'de> for FieldMap<'_> {
    type Error = BindError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, BindError> {
        let Some((name, slot)) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some((name, slot));
        let key: StrDeserializer<'_, BindError> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, BindError> {
        match self.current.take() {
            Some((name, Slot::Value(value))) => seed.deserialize(value).map_err(|err| {
                let hidden = self.sensitive.named(name);
                Sensitive::argument_error(self.method, &format!(" '{name}'"), &err, hidden)
            }),
            Some((_, Slot::Placeholder)) => seed.deserialize(Placeholder),
            None => Err(BindError::Custom(
                "a value was asked for before its key".into(),
            )),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// The positional values of a tuple parameter.
struct PositionalSeq<'a> {
    method: &'a str,
    sensitive: Sensitive<'a>,
    values: std::iter::Enumerate<std::vec::IntoIter<Value>>,
}

impl<'de> SeqAccess<'de> for PositionalSeq<'_> {
    type Error = BindError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, BindError> {
        let Some((index, value)) = self.values.next() else {
            return Ok(None);
        };
        seed.deserialize(value).map(Some).map_err(|err| {
            let label = format!(" {}", index + 1);
            Sensitive::argument_error(self.method, &label, &err, self.sensitive.positional())
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.values.len())
    }
}

/// Stands in for a missing argument while probing: it gives every visitor the plainest value of
/// the kind it asks for, so binding can go on and report the next missing field. Whatever it
/// cannot satisfy ends the probe; the fields found until then are still reported.
struct Placeholder;

macro_rules! placeholder_visit {
    ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
                visitor.$visit($value)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Placeholder {
    type Error = BindError;

    placeholder_visit!(
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_i128 => visit_i128(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_u128 => visit_u128(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char(' '),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_identifier => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
    );

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, BindError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, BindError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
        visitor.visit_seq(PlaceholderSeq(0))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, BindError> {
        visitor.visit_seq(PlaceholderSeq(len))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, BindError> {
        visitor.visit_seq(PlaceholderSeq(len))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BindError> {
        visitor.visit_map(PlaceholderMap(&[]))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, BindError> {
        // Fill a nested struct completely, so its own required fields are not mistaken for
        // missing arguments.
        visitor.visit_map(PlaceholderMap(fields))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, BindError> {
        let first = variants
            .first()
            .copied()
            .ok_or_else(|| BindError::Custom("an enum without variants".into()))?;
        visitor.visit_enum(PlaceholderEnum(first))
    }
}

struct PlaceholderSeq(usize);

impl<'de> SeqAccess<'de> for PlaceholderSeq {
    type Error = BindError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, BindError> {
        if self.0 == 0 {
            return Ok(None);
        }
        self.0 -= 1;
        seed.deserialize(Placeholder).map(Some)
    }
}

struct PlaceholderMap(&'static [&'static str]);

impl<'de> MapAccess<'de> for PlaceholderMap {
    type Error = BindError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, BindError> {
        let Some((first, rest)) = self.0.split_first() else {
            return Ok(None);
        };
        self.0 = rest;
        let key: StrDeserializer<'_, BindError> = first.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, BindError> {
        seed.deserialize(Placeholder)
    }
}

struct PlaceholderEnum(&'static str);

impl<'de> EnumAccess<'de> for PlaceholderEnum {
    type Error = BindError;
    type Variant = Placeholder;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Placeholder), BindError> {
        let key: StrDeserializer<'_, BindError> = self.0.into_deserializer();
        Ok((seed.deserialize(key)?, Placeholder))
    }
}

impl<'de> VariantAccess<'de> for Placeholder {
    type Error = BindError;

    fn unit_variant(self) -> Result<(), BindError> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, BindError> {
        seed.deserialize(Placeholder)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, BindError> {
        visitor.visit_seq(PlaceholderSeq(len))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, BindError> {
        visitor.visit_map(PlaceholderMap(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call<T: DeserializeOwned>(args: Value, kwargs: Value) -> Result<Bound<T>, String> {
        let args = args.as_array().cloned().unwrap_or_default();
        let kwargs = kwargs.as_object().cloned().unwrap_or_default();
        bind::<T>("echo", args, kwargs)
    }

    fn error<T: DeserializeOwned + std::fmt::Debug>(args: Value, kwargs: Value) -> String {
        call::<T>(args, kwargs).unwrap_err()
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Echo {
        a: i64,
        b: Option<Value>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Three {
        a: String,
        b: String,
        c: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Inner {
        x: i64,
        y: i64,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Nested {
        first: Inner,
        second: Inner,
        #[serde(default)]
        flag: bool,
    }

    #[test]
    fn errors_about_sensitive_arguments_do_not_quote_the_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code, reason = "only binding is under test")]
        struct Login {
            user: String,
            password: i64,
            card: Option<Vec<u32>>,
        }
        let bind = |args: Value, kwargs: Value, sensitive: &[&str]| {
            let sensitive: Vec<String> = sensitive.iter().map(|s| (*s).to_owned()).collect();
            bind_redacting::<Login>(
                "login",
                args.as_array().cloned().unwrap_or_default(),
                kwargs.as_object().cloned().unwrap_or_default(),
                &sensitive,
            )
            .unwrap_err()
        };
        let plain = bind(json!(["matt", "hunter2"]), json!({}), &[]);
        assert!(plain.contains("hunter2"), "{plain}");
        for sensitive in [&["password"][..], &["kwargs.password"], &["kwargs"]] {
            let message = bind(json!(["matt"]), json!({"password": "hunter2"}), sensitive);
            assert_eq!(
                message,
                "login() argument 'password': the value does not fit (details not shown for a sensitive argument)"
            );
        }
        let nested = bind(
            json!(["matt", 1, [1, "4111-1111"]]),
            json!({}),
            &["card[1]"],
        );
        assert!(!nested.contains("4111"), "{nested}");
        assert!(nested.starts_with("login() argument 'card'"), "{nested}");
        // Other arguments keep serde's description, value included.
        let other = bind(json!([5, 1]), json!({}), &["password"]);
        assert_eq!(
            other,
            "login() argument 'user': invalid type: integer `5`, expected a string"
        );

        let single =
            bind_redacting::<u32>("pin", vec![json!("1234x")], Map::new(), &["args[0]".into()]);
        assert!(!single.unwrap_err().contains("1234x"));
        let tuple = bind_redacting::<(String, u32)>(
            "pin",
            vec![json!("a"), json!("1234x")],
            Map::new(),
            &["args".into()],
        );
        assert_eq!(
            tuple.unwrap_err(),
            "pin() argument 2: the value does not fit (details not shown for a sensitive argument)"
        );
        let keyword = bind_redacting::<u32>(
            "pin",
            Vec::new(),
            json!({"code": "1234x"}).as_object().cloned().unwrap(),
            &["kwargs.code".into()],
        );
        assert!(!keyword.unwrap_err().contains("1234x"));
    }

    #[test]
    fn a_struct_binds_by_position_and_by_name() {
        let both = call::<Echo>(json!([1]), json!({"b": [1, "x"]})).unwrap();
        assert_eq!(
            both.value,
            Echo {
                a: 1,
                b: Some(json!([1, "x"]))
            }
        );
        assert_eq!(both.logged, json!({"a": 1, "b": [1, "x"]}));
        let positional = call::<Echo>(json!([1, 2]), json!({})).unwrap();
        assert_eq!(
            positional.value,
            Echo {
                a: 1,
                b: Some(json!(2))
            }
        );
        let named = call::<Echo>(json!([]), json!({"b": 2, "a": 1})).unwrap();
        assert_eq!(
            named.value,
            Echo {
                a: 1,
                b: Some(json!(2))
            }
        );
        let optional_left_out = call::<Echo>(json!([5]), json!({})).unwrap();
        assert_eq!(optional_left_out.value, Echo { a: 5, b: None });
    }

    #[test]
    fn a_struct_reports_what_python_reports() {
        assert_eq!(
            error::<Echo>(json!([]), json!({})),
            "echo() missing 1 required positional argument: 'a'"
        );
        assert_eq!(
            error::<Echo>(json!([]), json!({"b": 1})),
            "echo() missing 1 required positional argument: 'a'"
        );
        assert_eq!(
            error::<Three>(json!([]), json!({})),
            "echo() missing 3 required positional arguments: 'a', 'b' and 'c'"
        );
        assert_eq!(
            error::<Three>(json!(["x"]), json!({})),
            "echo() missing 2 required positional arguments: 'b' and 'c'"
        );
        assert_eq!(
            error::<Echo>(json!([1, 2, 3]), json!({})),
            "echo() takes from 1 to 2 positional arguments but 3 were given"
        );
        assert_eq!(
            error::<Three>(json!(["1", "2", "3", "4"]), json!({})),
            "echo() takes 3 positional arguments but 4 were given"
        );
        assert_eq!(
            error::<Echo>(json!([1]), json!({"x": 1})),
            "echo() got an unexpected keyword argument 'x'"
        );
        assert_eq!(
            error::<Echo>(json!([1]), json!({"a": 1})),
            "echo() got multiple values for argument 'a'"
        );
        assert_eq!(
            error::<Echo>(json!(["x"]), json!({})),
            "echo() argument 'a': invalid type: string \"x\", expected i64"
        );
    }

    #[test]
    fn nested_structs_do_not_confuse_the_missing_list() {
        assert_eq!(
            error::<Nested>(json!([]), json!({})),
            "echo() missing 2 required positional arguments: 'first' and 'second'"
        );
        let err = error::<Nested>(json!([{"x": 1}]), json!({}));
        assert!(
            err.starts_with("echo() argument 'first': missing field `y`"),
            "{err}"
        );
        assert_eq!(
            error::<Nested>(
                json!([{"x": 1, "y": 2}, {"x": 1, "y": 2}, true, 4]),
                json!({})
            ),
            "echo() takes from 2 to 3 positional arguments but 4 were given"
        );
    }

    #[test]
    fn a_tuple_binds_positions_exactly() {
        let bound = call::<(String, i64)>(json!(["a", 2]), json!({})).unwrap();
        assert_eq!(bound.value, ("a".to_owned(), 2));
        assert_eq!(bound.logged, json!({"args": ["a", 2], "kwargs": {}}));
        assert_eq!(
            error::<(String, i64)>(json!(["a"]), json!({})),
            "echo() missing 1 required positional argument"
        );
        assert_eq!(
            error::<(String,)>(json!(["a", "b"]), json!({})),
            "echo() takes 1 positional argument but 2 were given"
        );
        assert_eq!(
            error::<(String,)>(json!(["a"]), json!({"k": 1})),
            "echo() got an unexpected keyword argument 'k'"
        );
        assert_eq!(
            error::<(String, i64)>(json!(["a", "b"]), json!({})),
            "echo() argument 2: invalid type: string \"b\", expected i64"
        );
    }

    #[test]
    fn a_plain_type_binds_one_argument() {
        assert_eq!(call::<String>(json!(["x"]), json!({})).unwrap().value, "x");
        assert_eq!(
            call::<String>(json!([]), json!({"name": "x"}))
                .unwrap()
                .value,
            "x"
        );
        assert_eq!(
            call::<Vec<i64>>(json!([[1, 2]]), json!({})).unwrap().value,
            vec![1, 2]
        );
        assert_eq!(
            call::<Value>(json!([{"k": 1}]), json!({})).unwrap().value,
            json!({"k": 1})
        );
        assert_eq!(
            error::<String>(json!([]), json!({})),
            "echo() missing 1 required positional argument"
        );
        assert_eq!(
            error::<String>(json!(["x", "y"]), json!({})),
            "echo() takes 1 positional argument but 2 were given"
        );
        assert_eq!(
            error::<String>(json!(["x"]), json!({"y": 1})),
            "echo() got an unexpected keyword argument 'y'"
        );
        assert_eq!(
            error::<String>(json!([]), json!({"x": 1, "y": 1})),
            "echo() got an unexpected keyword argument 'y'"
        );
        assert_eq!(
            error::<i64>(json!([]), json!({"n": "x"})),
            "echo() argument 'n': invalid type: string \"x\", expected i64"
        );
        assert_eq!(
            error::<i64>(json!(["x"]), json!({})),
            "echo() argument: invalid type: string \"x\", expected i64"
        );
    }

    #[test]
    fn unit_takes_nothing_and_option_takes_nothing_or_one() {
        call::<()>(json!([]), json!({})).unwrap();
        assert_eq!(
            error::<()>(json!([1]), json!({})),
            "echo() takes 0 positional arguments but 1 was given"
        );
        assert_eq!(
            error::<()>(json!([]), json!({"a": 1})),
            "echo() got an unexpected keyword argument 'a'"
        );
        assert_eq!(
            call::<Option<String>>(json!([]), json!({})).unwrap().value,
            None
        );
        assert_eq!(
            call::<Option<String>>(json!(["x"]), json!({}))
                .unwrap()
                .value,
            Some("x".to_owned())
        );
    }

    #[test]
    fn args_take_everything_unchanged() {
        let bound = call::<Args>(json!([1, "x"]), json!({"k": null})).unwrap();
        assert_eq!(
            bound.value,
            Args::new(vec![json!(1), json!("x")]).kwarg("k", Value::Null)
        );
        assert_eq!(
            bound.logged,
            json!({"args": [1, "x"], "kwargs": {"k": null}})
        );
        // Elsewhere `Args` reads the wire's own shape.
        let parsed: Args =
            serde_json::from_value(json!({"args": [1], "kwargs": {"b": 2}})).unwrap();
        assert_eq!(parsed, Args::new(vec![json!(1)]).kwarg("b", json!(2)));
    }

    #[test]
    fn outgoing_arguments_follow_their_shape() {
        #[derive(Serialize)]
        struct Kw {
            a: i64,
        }
        assert_eq!(
            (1, "x").into_rpc_args().unwrap(),
            Args::new(vec![json!(1), json!("x")])
        );
        assert_eq!(
            Kw { a: 1 }.into_rpc_args().unwrap(),
            Args::default().kwarg("a", json!(1))
        );
        assert_eq!(().into_rpc_args().unwrap(), Args::default());
        assert_eq!("x".into_rpc_args().unwrap(), Args::new(vec![json!("x")]));
        assert_eq!(
            (vec![1, 2],).into_rpc_args().unwrap(),
            Args::new(vec![json!([1, 2])])
        );
        let both = Args::new(vec![json!(1)]).kwarg("b", json!(2));
        assert_eq!(both.clone().into_rpc_args().unwrap(), both);
    }

    #[test]
    fn newtypes_and_enums_bind_one_argument() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Name(String);
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Colour {
            Red,
        }
        assert_eq!(
            call::<Name>(json!(["n"]), json!({})).unwrap().value,
            Name("n".into())
        );
        assert_eq!(
            call::<Colour>(json!(["red"]), json!({})).unwrap().value,
            Colour::Red
        );
    }
}
