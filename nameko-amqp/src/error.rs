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
    /// An `@` follows the host, which is almost always a user name or password with an
    /// unencoded `/` or `?` in it: the part before it would be read as the host, so it is
    /// refused without echoing any of it.
    #[error(
        "unexpected `@` after the host of the amqp uri: expected `/`, `?` and `@` in a user name, password or vhost to be percent-encoded (`%2F`, `%3F`, `%40`)"
    )]
    MisplacedAt,
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
    /// A broker key of the service's config has a value of the wrong kind.
    #[error(transparent)]
    Config(#[from] nameko_core::ConfigError),
    /// The broker address is unusable.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// The connection could not be established.
    #[error("could not connect to the broker at {address}: {source}{hint}")]
    Connect {
        /// The redacted broker address.
        address: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
        /// What the failure most likely means, in words for the operator (an untrusted
        /// certificate, tls to a plain port, a login mechanism the broker does not offer), or
        /// nothing.
        hint: &'static str,
    },
    /// The broker did not complete the connection (TCP connect and AMQP handshake) in time.
    #[error("could not connect to the broker at {address}: no answer within {timeout:?}")]
    ConnectTimedOut {
        /// The redacted broker address.
        address: String,
        /// How long the attempt was given.
        timeout: std::time::Duration,
    },
    /// An `AMQP_SSL` setting cannot be used.
    #[error("invalid `AMQP_SSL` option `{option}`: expected {expected}, found {found}")]
    TlsOption {
        /// The option, or `AMQP_SSL` itself.
        option: String,
        /// What would have been accepted.
        expected: &'static str,
        /// What was given, cut to 64 characters.
        found: String,
    },
    /// A file named by `AMQP_SSL` cannot be read, or does not hold what its option needs.
    #[error("cannot use the `AMQP_SSL` {option} file `{path}`: {reason}")]
    TlsFile {
        /// `ca_certs`, `certfile` or `keyfile`.
        option: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
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
    /// A consumer's stream of deliveries ended although nobody asked it to stop: its service
    /// would silently stop receiving from the queue.
    #[error(
        "the consumer of queue `{queue}` ended without being stopped (was it cancelled elsewhere?)"
    )]
    ConsumerEnded {
        /// The queue that was consumed.
        queue: String,
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

    /// Whether the operation failed because the connection or its channel went away (a network
    /// cut, a broker restart or forced close, missed heartbeats), rather than because the broker
    /// refused what was asked (a channel-level reply code such as 404 or 406) or the request
    /// itself was invalid. Only the first kind is worth retrying on a new connection.
    ///
    /// Every failure to connect counts, refused logins included: a broker that is restarting
    /// refuses for a moment, and giving up would leave a service that never recovers.
    #[must_use]
    pub fn is_connection_failure(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::ConnectTimedOut { .. } => true,
            Self::Amqp { source, .. } => is_connection_failure(source),
            _ => false,
        }
    }
}

fn protocol_reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(error) => Some(error.get_id()),
        _ => None,
    }
}

/// The connection or channel is gone: I/O failed, heartbeats stopped, the broker closed the
/// connection (a connection-level, "hard" reply code such as 320 `CONNECTION_FORCED`), or the
/// channel or connection was already closed when the operation started. A channel-level ("soft")
/// reply code is the broker refusing one request and is not a connection failure.
pub(crate) fn is_connection_failure(error: &lapin::Error) -> bool {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(_) => error.is_amqp_hard_error(),
        lapin::ErrorKind::IOError(_)
        | lapin::ErrorKind::MissingHeartbeatError
        | lapin::ErrorKind::InvalidChannel(_)
        | lapin::ErrorKind::InvalidChannelState(..)
        | lapin::ErrorKind::InvalidConnectionState(_) => true,
        _ => false,
    }
}

/// Words for an operator on why a connection failed, for the failures whose own text does not
/// say what to change: an untrusted or misnamed broker certificate, TLS spoken to a plain port,
/// and a broker that hangs up on a login mechanism it does not offer (RabbitMQ closes the socket
/// without a reason). Empty when there is nothing to add.
pub(crate) fn connect_hint(
    error: &lapin::Error,
    login_method: Option<lapin::uri::SASLMechanism>,
) -> &'static str {
    use lapin::uri::SASLMechanism;
    let lapin::ErrorKind::IOError(io) = error.kind() else {
        return "";
    };
    let text = io.to_string();
    if text.contains("UnknownIssuer") {
        return " (the broker's certificate is not signed by a trusted authority: name its CA file in `AMQP_SSL` as `ca_certs`)";
    }
    if text.contains("NotValidForName") {
        return " (the broker's certificate is not valid for the host name in the uri: use a name the certificate lists)";
    }
    if text.contains("corrupt message") || text.contains("InvalidContentType") {
        return " (the port does not speak tls: `amqps://` and `AMQP_SSL` need the broker's tls port, usually 5671)";
    }
    let hung_up = matches!(
        io.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    );
    match login_method {
        Some(SASLMechanism::External) if hung_up => {
            " (the broker hung up during the login: expected it to offer the EXTERNAL mechanism, which RabbitMQ does with the rabbitmq_auth_mechanism_ssl plugin, to a client certificate sent over tls)"
        }
        Some(SASLMechanism::Anonymous | SASLMechanism::RabbitCrDemo) if hung_up => {
            " (the broker hung up during the login: expected it to offer the `LOGIN_METHOD` mechanism)"
        }
        _ => "",
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

    /// Whether the publish failed because the connection or channel went away before the broker
    /// confirmed the message (see [`Error::is_connection_failure`]). The message may or may not
    /// have reached the broker: a retry can deliver it twice.
    #[must_use]
    pub fn is_connection_failure(&self) -> bool {
        match self {
            Self::Failed { source, .. } => is_connection_failure(source),
            Self::Invalid(error) => error.is_connection_failure(),
            Self::Unroutable { .. } | Self::Nacked { .. } | Self::Unconfirmed { .. } => false,
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
