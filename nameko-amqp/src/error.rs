//! The errors of this crate.
//!
//! They are split by what a caller can do about them: [`UriError`] is a configuration mistake
//! found before any I/O, [`PublishError`] separates the outcomes a caller must act on
//! (`Unroutable` becomes Nameko's `UnknownService`) from transport failures, [`DecodeError`]
//! means a message body cannot be read and is dropped, and [`Error`] covers everything else
//! that talks to the broker. No message ever contains a password: URIs appear only in their
//! redacted form.

use thiserror::Error;

/// The result type of this crate's broker operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A broker address that cannot be used, found while parsing it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriError {
    /// The text has no `scheme://` prefix.
    #[error(
        "invalid amqp uri: expected `amqp://user:password@host:port/vhost`, found no `://` after a scheme"
    )]
    MissingScheme,
    /// The scheme names a transport other than AMQP 0-9-1.
    #[error("unsupported uri scheme `{scheme}`: expected `amqp`, `amqps` or `pyamqp`")]
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
    },
    /// The port is not a number between 1 and 65535.
    #[error("invalid port `{port}` in amqp uri: expected a number from 1 to 65535")]
    InvalidPort {
        /// The port as written.
        port: String,
    },
    /// The host part cannot be read (for example an IPv6 address without its closing `]`).
    #[error("invalid host `{host}` in amqp uri: {reason}")]
    InvalidHost {
        /// The host as written.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// kombu's failover lists (`amqp://a;amqp://b`) are not supported.
    #[error("several brokers in one amqp uri are not supported: expected a single host")]
    Failover,
    /// The URI has a `#fragment`, which is almost always an unencoded `#` in a password.
    #[error("unexpected `#` in amqp uri: expected none (write `#` in a password as `%23`)")]
    Fragment,
    /// A percent-decoded part is not UTF-8.
    #[error("the {part} of the amqp uri is not valid utf-8 once percent-decoded")]
    NotUtf8 {
        /// Which part: `username`, `password`, `host` or `vhost`.
        part: &'static str,
    },
    /// AMQP carries the vhost in a short string, which holds at most 255 bytes.
    #[error("vhost of the amqp uri is {len} bytes long: expected at most 255")]
    VhostTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A query parameter this crate understands has a value it cannot use.
    #[error("invalid value `{value}` for amqp uri parameter `{key}`: expected {expected}")]
    InvalidParameter {
        /// The parameter name.
        key: String,
        /// The value as written.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
}

/// A failure talking to the broker, or a value the broker cannot carry.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker address is unusable.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// The connection could not be established.
    #[error("could not connect to the broker at {address}: {source}")]
    Connect {
        /// The redacted broker address.
        address: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// `amqps://` was asked for but this build has no TLS support; connecting in plain text
    /// instead would send the credentials unencrypted.
    #[error(
        "tls is not available in this build: expected an `amqp://` uri, found `amqps://` for {address}"
    )]
    TlsUnavailable {
        /// The redacted broker address.
        address: String,
    },
    /// `LOGIN_METHOD` names a SASL mechanism the client does not know.
    #[error(
        "unknown login method `{0}`: expected one of PLAIN, AMQPLAIN, EXTERNAL, ANONYMOUS, RABBIT-CR-DEMO"
    )]
    LoginMethod(String),
    /// Connections run their bookkeeping on the tokio runtime that opened them.
    #[error("no tokio runtime: expected to be called from within a tokio runtime")]
    NoRuntime,
    /// A channel-level operation failed (declare, bind, consume, ack, close...).
    #[error("{operation} failed: {source}")]
    Amqp {
        /// The AMQP method or helper that failed, e.g. `queue.declare \`rpc-orders\``.
        operation: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// AMQP short strings (exchange and queue names, routing keys, header keys, most message
    /// properties) hold at most 255 bytes.
    #[error("{what} `{value}` is {len} bytes long: expected at most 255")]
    TooLong {
        /// What the value is, e.g. `routing key`.
        what: &'static str,
        /// The value, cut to its first 64 characters.
        value: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The object was closed and cannot be used any more.
    #[error("the {what} is closed: expected an open one")]
    Closed {
        /// What was closed, e.g. `publisher`.
        what: &'static str,
    },
    /// The delivery was acknowledged, rejected or invalidated already, or its channel is closed.
    #[error(
        "cannot settle delivery {delivery_tag}: expected an unsettled delivery on an open channel, found it already settled or its channel gone"
    )]
    AlreadySettled {
        /// The delivery tag on its channel.
        delivery_tag: u64,
    },
}

impl Error {
    pub(crate) fn amqp(operation: impl Into<String>, source: lapin::Error) -> Self {
        Self::Amqp {
            operation: operation.into(),
            source,
        }
    }

    /// The AMQP reply code the broker closed a channel or connection with, if that is why this
    /// operation failed (for example 404 `NOT_FOUND` or 406 `PRECONDITION_FAILED`).
    #[must_use]
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Self::Connect { source, .. } | Self::Amqp { source, .. } => protocol_reply_code(source),
            _ => None,
        }
    }
}

fn protocol_reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(error) => Some(error.get_id()),
        _ => None,
    }
}

/// Why a confirmed publish did not succeed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A mandatory message matched no queue and the broker returned it (312 `NO_ROUTE`).
    /// For an RPC request this is Nameko's `UnknownService`.
    #[error(
        "unroutable message: expected a queue bound to exchange `{exchange}` for routing key `{routing_key}`, found none"
    )]
    Unroutable {
        /// The exchange the message was published to.
        exchange: String,
        /// The routing key it was published with.
        routing_key: String,
    },
    /// The broker refused responsibility for the message (`basic.nack`).
    #[error(
        "the broker refused the message for exchange `{exchange}` with routing key `{routing_key}` (basic.nack)"
    )]
    Nacked {
        /// The exchange the message was published to.
        exchange: String,
        /// The routing key it was published with.
        routing_key: String,
    },
    /// The channel is not in confirm mode, so there is no way to know the message arrived.
    #[error(
        "publish to exchange `{exchange}` was not confirmed: expected a channel in confirm mode"
    )]
    Unconfirmed {
        /// The exchange the message was published to.
        exchange: String,
    },
    /// The channel or connection failed before the broker confirmed the message.
    #[error("publish to exchange `{exchange}` with routing key `{routing_key}` failed: {source}")]
    Failed {
        /// The exchange the message was published to.
        exchange: String,
        /// The routing key it was published with.
        routing_key: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// A name or property cannot be carried by AMQP (for example longer than 255 bytes).
    #[error(transparent)]
    Invalid(#[from] Error),
}

impl PublishError {
    /// The AMQP reply code behind this failure, if the broker gave one: 312 `NO_ROUTE` for
    /// [`PublishError::Unroutable`], or the code the broker closed the channel with (for
    /// example 404 when the exchange does not exist).
    #[must_use]
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Self::Unroutable { .. } => Some(312),
            Self::Failed { source, .. } => protocol_reply_code(source),
            Self::Invalid(error) => error.reply_code(),
            Self::Nacked { .. } | Self::Unconfirmed { .. } => None,
        }
    }
}

/// A message body that cannot be decoded as kombu JSON.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not JSON, even allowing Python's `NaN` and `Infinity`.
    #[error("invalid json body: {0}")]
    Json(#[from] serde_json::Error),
    /// A `{"__type__": ..., "__value__": ...}` wrapper names a type kombu does not define;
    /// kombu raises for these too, so the message is undecodable on both sides.
    #[error(
        "unknown kombu type {type_name} in a `__type__`/`__value__` wrapper: expected one of datetime, date, time, decimal, uuid, bytes, base64"
    )]
    UnknownType {
        /// The `__type__` value, as JSON.
        type_name: String,
    },
    /// A known kombu wrapper holds a value of the wrong shape.
    #[error("kombu `{type_name}` wrapper holds {found}: expected {expected}")]
    InvalidTypedValue {
        /// The `__type__` value.
        type_name: String,
        /// What the wrapper should hold.
        expected: &'static str,
        /// What it holds, as JSON.
        found: String,
    },
}

/// Build a short string, or say which value is too long instead of panicking as lapin's
/// `From<String>` would.
pub(crate) fn short_string(what: &'static str, value: &str) -> Result<lapin::types::ShortString> {
    lapin::types::ShortString::try_new(value).map_err(|_| Error::TooLong {
        what,
        value: value.chars().take(64).collect(),
        len: value.len(),
    })
}
