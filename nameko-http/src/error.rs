//! The errors of this crate.
//!
//! They are split by when they happen. [`RuleError`] is a url rule that cannot work, found
//! when the rule is parsed, so a service with a bad `http(..)` declaration fails to start
//! instead of failing on its first request. [`Error`] covers the rest of registration (method
//! lists, route clashes, configuration, bind addresses, binding) and the two ways a handler can
//! fail to read a request body. Nothing here describes a per-request routing outcome: a path
//! that matches no rule is a `404` response, not an error.

use hyper::Method;
use thiserror::Error;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A url rule (`/get/<int:value>`) that cannot be routed, with the rule as written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleError {
    /// Werkzeug rules are absolute paths.
    #[error("invalid url rule `{rule}`: expected it to start with `/`")]
    NoLeadingSlash {
        /// The rule as written.
        rule: String,
    },
    /// A `<` without its `>`, a stray `>`, or text inside `<...>` that is not
    /// `converter(args):name`.
    #[error("invalid url rule `{rule}`: malformed part `{part}`: expected {expected}")]
    Malformed {
        /// The rule as written.
        rule: String,
        /// The path segment that cannot be read.
        part: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// Variables such as `item-<int:id>` share a segment with literal text; only whole
    /// segments are supported.
    #[error(
        "invalid url rule `{rule}`: a variable must fill a whole path segment, found `{segment}`"
    )]
    PartialSegment {
        /// The rule as written.
        rule: String,
        /// The segment that mixes a variable with other text.
        segment: String,
    },
    /// The converter is not one of werkzeug's built-in ones.
    #[error(
        "invalid url rule `{rule}`: unknown converter `{converter}`: expected one of `string`, `int`, `float`, `path`, `uuid`, `any(..)`"
    )]
    UnknownConverter {
        /// The rule as written.
        rule: String,
        /// The converter as written.
        converter: String,
    },
    /// Werkzeug's converter arguments (`int(min=1)`, `string(length=2)`) are not supported,
    /// except for the choices of `any(..)`.
    #[error(
        "invalid url rule `{rule}`: converter `{converter}` takes no arguments here, found `({arguments})`"
    )]
    UnsupportedArguments {
        /// The rule as written.
        rule: String,
        /// The converter name.
        converter: String,
        /// The arguments as written, without the parentheses.
        arguments: String,
    },
    /// A variable name that is not an identifier, so it could not name a handler argument.
    #[error(
        "invalid url rule `{rule}`: invalid variable name `{name}`: expected letters, digits and `_`, not starting with a digit"
    )]
    InvalidName {
        /// The rule as written.
        rule: String,
        /// The name as written.
        name: String,
    },
    /// Two variables with one name would make one of them unreachable.
    #[error("invalid url rule `{rule}`: variable `{name}` appears more than once")]
    DuplicateName {
        /// The rule as written.
        rule: String,
        /// The repeated name.
        name: String,
    },
    /// A `path` variable takes the rest of the path, so nothing can follow it.
    #[error(
        "invalid url rule `{rule}`: the `path` variable `{name}` must be the last part of the rule"
    )]
    PathNotLast {
        /// The rule as written.
        rule: String,
        /// The name of the `path` variable.
        name: String,
    },
}

/// Everything else that can go wrong in this crate.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A url rule that cannot be routed.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The method string of an `http(..)` declaration, such as `"GET,POST"`, cannot be read.
    #[error("invalid http methods `{methods}`: {reason}")]
    InvalidMethods {
        /// The method string as written.
        methods: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two routes with the same rule accept the same method, so a request could go to either.
    #[error(
        "route clash: `{method} {rule}` is already registered by `{existing}`: expected each method of a rule to be registered once"
    )]
    RouteClash {
        /// The method both routes accept.
        method: Method,
        /// The rule being added, as written.
        rule: String,
        /// The rule already registered, as written (the same shape, perhaps other names).
        existing: String,
    },
    /// A web server setting in the service's configuration has a value of the wrong kind.
    #[error(transparent)]
    Config(#[from] nameko_core::ConfigError),
    /// `WEB_SERVER_ADDRESS` is not `[address:]port`.
    #[error("misconfigured bind address `{address}`: expected `[address:]port`")]
    BindAddress {
        /// The address as configured.
        address: String,
    },
    /// The host part of the bind address does not resolve.
    #[error("cannot resolve bind address `{address}`: {source}")]
    Resolve {
        /// The address as configured.
        address: String,
        /// Why the lookup failed; `NotFound` when it succeeded without any address.
        #[source]
        source: std::io::Error,
    },
    /// The listener cannot be opened, most often because the port is in use.
    #[error("cannot listen on `{address}`: {source}")]
    Bind {
        /// The address that could not be bound.
        address: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// [`Request::text`](crate::Request::text) found a body that is not UTF-8.
    #[error("request body is not valid utf-8: {0}")]
    BodyNotUtf8(#[source] std::str::Utf8Error),
    /// [`Request::json`](crate::Request::json) found a body that is not the expected JSON.
    #[error("request body is not the expected json: {0}")]
    BodyNotJson(#[source] serde_json::Error),
}
