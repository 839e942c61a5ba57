//! The errors of this crate: dispatching, configuring and running event handlers.
//!
//! A dispatch error reaches handler code, so it converts into [`RemoteError`] and `?` works in a
//! handler that returns `Result<_, RemoteError>`. Configuration errors are found when a service
//! starts, before any queue is declared, and say what to change.

use nameko_core::{ConfigError, IntoRemoteError, RemoteError};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `exc_type` of a failed dispatch as a handler's caller sees it.
pub const EVENT_DISPATCH_ERROR: &str = "EventDispatchError";
/// `exc_path` of a failed dispatch.
pub const EVENT_DISPATCH_ERROR_PATH: &str = "nameko_rs.EventDispatchError";

/// `exc_type` of an event whose payload does not fit the handler's payload type.
pub const MALFORMED_EVENT: &str = "MalformedEvent";
/// `exc_path` of an event whose payload does not fit the handler's payload type.
pub const MALFORMED_EVENT_PATH: &str = "nameko_rs.MalformedEvent";

/// Something went wrong dispatching or handling events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service configuration has a bad value (`AMQP_URI`, `HEARTBEAT`, `PREFETCH_COUNT`...).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker could not be reached, or refused a declaration or a consumer.
    #[error(transparent)]
    Broker(Box<nameko_amqp::Error>),
    /// The broker did not confirm an event.
    #[error(transparent)]
    Publish(Box<nameko_amqp::PublishError>),
    /// The payload cannot be written as JSON (a map with non-string keys, a failing
    /// `Serialize` implementation).
    #[error("payload of event `{event_type}` cannot be serialized as json: {source}")]
    Serialize {
        /// The event type being dispatched.
        event_type: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
    /// The payload holds an object with exactly the keys `__type__` and `__value__` that kombu
    /// would not accept; Python receivers would drop the whole event.
    #[error(
        "payload of event `{event_type}` would be dropped by python receivers: {source}; expected no object with exactly the keys `__type__` and `__value__` unless it is a kombu type"
    )]
    KombuWrapper {
        /// The event type being dispatched.
        event_type: String,
        /// Why kombu would refuse it.
        #[source]
        source: nameko_amqp::DecodeError,
    },
    /// Nameko's combination that cannot work: a broadcast identifier that changes at every
    /// start names a new queue at every start, so nothing can be kept for the instance while it
    /// is down.
    #[error(
        "event handler `{method}` uses the default broadcast identifier, which changes at every start, with reliable delivery: expected `.reliable_delivery(false)` or a stable identifier (`HandlerType::broadcast_with(..)` or `BroadcastIdentifier::Config(..)`)"
    )]
    DefaultBroadcastIdentifierWithReliableDelivery {
        /// The handler's method name.
        method: String,
    },
    /// A broadcast identifier read from the configuration is missing or not text.
    #[error(
        "broadcast identifier config key `{key}` must hold a string or a number, found {found}"
    )]
    BroadcastIdentifierConfig {
        /// The configuration key.
        key: String,
        /// What the key held.
        found: String,
    },
    /// A broadcast identifier must tell instances apart, so it cannot be empty.
    #[error("broadcast identifier is empty: expected a non-empty string")]
    EmptyBroadcastIdentifier,
    /// A dependency or entrypoint was used before its service started.
    #[error("{what} is not set up: expected its service container to have started")]
    NotStarted {
        /// What was used.
        what: &'static str,
    },
}

// Boxed: lapin's errors are large, and every `Result` of this crate would carry their size.
impl From<nameko_amqp::Error> for Error {
    fn from(error: nameko_amqp::Error) -> Self {
        Self::Broker(Box::new(error))
    }
}

impl From<nameko_amqp::PublishError> for Error {
    fn from(error: nameko_amqp::PublishError) -> Self {
        Self::Publish(Box::new(error))
    }
}

impl IntoRemoteError for Error {
    fn into_remote_error(self) -> RemoteError {
        RemoteError::new(
            EVENT_DISPATCH_ERROR,
            EVENT_DISPATCH_ERROR_PATH,
            self.to_string(),
        )
    }
}

impl From<Error> for RemoteError {
    fn from(error: Error) -> Self {
        error.into_remote_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_errors_cross_the_wire_with_their_message() {
        let remote: RemoteError = Error::NotStarted {
            what: "the event dispatcher",
        }
        .into();
        assert_eq!(remote.exc_type, "EventDispatchError");
        assert_eq!(remote.exc_path, "nameko_rs.EventDispatchError");
        assert_eq!(
            remote.value,
            "the event dispatcher is not set up: expected its service container to have started"
        );
    }
}
