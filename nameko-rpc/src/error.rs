//! The errors of RPC calls and of the RPC extensions.
//!
//! A call can fail in ways a caller treats differently: the remote method raised (the
//! [`RemoteError`] is kept whole, so its `exc_type` can be matched), no service is listening
//! (`UnknownService`, detected at publish time through mandatory publishing and confirms), no
//! reply came in time, or the broker connection failed. Each is its own variant.
//!
//! An `RpcError` also knows its wire form ([`IntoRemoteError`]), so a handler that calls another
//! service and returns `Result<_, RemoteError>` propagates a remote error with its own type, and
//! timeouts and unknown services as Nameko's `RpcTimeout` and `UnknownService`. In handlers
//! returning `anyhow::Result`, `?` works as well: a remote error travels as the `RpcError`'s
//! source, where nameko-core finds it when it builds the reply, so it keeps its type there too;
//! other failures (a timeout, an unknown service) become a generic error with their message. Write
//! `.map_err(RemoteError::from)` before `?` to keep those typed in an `anyhow` handler.

use std::time::Duration;

use nameko_core::{ConfigError, IntoRemoteError, RemoteError};

/// The result type of this crate.
pub type Result<T, E = RpcError> = std::result::Result<T, E>;

/// `exc_path` of Nameko's `UnknownService`.
pub const UNKNOWN_SERVICE: &str = "nameko.exceptions.UnknownService";
/// `exc_path` of Nameko's `RpcTimeout`.
pub const RPC_TIMEOUT: &str = "nameko.exceptions.RpcTimeout";
/// `exc_path` of Nameko 3's `ReplyQueueExpiredWithPendingReplies`.
pub const REPLY_QUEUE_EXPIRED: &str = "nameko.exceptions.ReplyQueueExpiredWithPendingReplies";

/// Why an RPC call, or an RPC extension, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The remote method failed; `error` is what it sent back.
    #[error("`{call}` failed remotely")]
    Remote {
        /// The method called, as `service.method`.
        call: String,
        /// The error as the remote service reported it.
        #[source]
        error: RemoteError,
    },
    /// No queue is bound for the request: no instance of the service has ever run on this
    /// broker (Nameko's `UnknownService`).
    #[error(
        "unknown service `{service}`: expected a queue bound to exchange `{exchange}` for routing key `{routing_key}`, found none"
    )]
    UnknownService {
        /// The service called.
        service: String,
        /// The RPC exchange.
        exchange: String,
        /// The request's routing key.
        routing_key: String,
    },
    /// No reply arrived within the call's timeout (Nameko's `RpcTimeout`).
    #[error("no reply from `{service}.{method}` within {timeout:?}")]
    Timeout {
        /// The service called.
        service: String,
        /// The method called.
        method: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The arguments could not be turned into JSON for the request.
    #[error("arguments for `{service}.{method}` cannot be sent: {message}")]
    InvalidArguments {
        /// The service called.
        service: String,
        /// The method called.
        method: String,
        /// What is wrong with them.
        message: String,
    },
    /// The reply's result does not have the type the caller asked for.
    #[error("the result of `{service}.{method}` does not have the expected type: {source}")]
    UnexpectedResult {
        /// The service called.
        service: String,
        /// The method called.
        method: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A reply arrived that is not `{"result": ..., "error": ...}` JSON.
    #[error("malformed reply from `{service}.{method}`: {message}")]
    MalformedReply {
        /// The service called.
        service: String,
        /// The method called.
        method: String,
        /// What is wrong with it.
        message: String,
    },
    /// The reply listener stopped before the reply arrived: its client or service stopped, or
    /// its consumer ended for good (the broker refused to declare its queue again). A lost
    /// connection does not stop it: it recovers, and calls keep waiting.
    #[error("the reply listener stopped before a reply from `{service}.{method}` arrived")]
    ReplyListenerStopped {
        /// The service called.
        service: String,
        /// The method called.
        method: String,
    },
    /// The reply queue vanished while the call waited (it expired while the caller could not
    /// reach the broker, or it was deleted), so the reply is lost; found when the reply
    /// listener recovered (Nameko 3's `ReplyQueueExpiredWithPendingReplies`). The request may
    /// have been handled.
    #[error(
        "the reply from `{service}.{method}` is lost: expected reply queue `{queue}` to exist until the reply arrived, found it gone"
    )]
    ReplyQueueLost {
        /// The service called.
        service: String,
        /// The method called.
        method: String,
        /// The reply queue that vanished.
        queue: String,
    },
    /// The client was stopped and can no longer be used.
    #[error("the rpc client was stopped and can no longer be used")]
    Stopped,
    /// A proxy was called before its container set it up: it was built outside
    /// `Service::with_state`'s `deps.add`, or used before the service started.
    #[error(
        "the rpc proxy for `{service}` is not set up: register it with `deps.add(..)` in `Service::with_state` and call it from a running service"
    )]
    NotSetUp {
        /// The service the proxy calls.
        service: String,
    },
    /// The request could not be published.
    #[error("request to `{service}.{method}` could not be published: {source}")]
    Publish {
        /// The service called.
        service: String,
        /// The method called.
        method: String,
        /// What the publisher reported.
        #[source]
        source: Box<nameko_amqp::PublishError>,
    },
    /// Talking to the broker failed (connecting, declaring, consuming).
    #[error(transparent)]
    Amqp(#[from] nameko_amqp::Error),
    /// The broker address in the configuration is unusable.
    #[error(transparent)]
    Uri(#[from] nameko_amqp::UriError),
    /// A configuration key has a value of the wrong kind.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Two `rpc` entrypoints of one service are bound to the same method name.
    #[error(
        "service `{service}` has two rpc entrypoints named `{method}`: expected one per method"
    )]
    DuplicateMethod {
        /// The service.
        service: String,
        /// The method name.
        method: String,
    },
}

impl IntoRemoteError for RpcError {
    /// A remote error keeps its own type; `UnknownService` and `Timeout` become Nameko's
    /// `UnknownService` and `RpcTimeout`; anything else is a generic error with this message.
    fn into_remote_error(self) -> RemoteError {
        match self {
            Self::Remote { error, .. } => error,
            Self::UnknownService { service, .. } => RemoteError::new(
                "UnknownService",
                UNKNOWN_SERVICE,
                format!("Unknown service `{service}`"),
            )
            .with_args([serde_json::Value::String(service)]),
            timeout @ Self::Timeout { .. } => {
                RemoteError::new("RpcTimeout", RPC_TIMEOUT, timeout.to_string())
            }
            lost @ Self::ReplyQueueLost { .. } => RemoteError::new(
                "ReplyQueueExpiredWithPendingReplies",
                REPLY_QUEUE_EXPIRED,
                lost.to_string(),
            ),
            other => RemoteError::generic(other),
        }
    }
}

impl From<RpcError> for RemoteError {
    fn from(err: RpcError) -> Self {
        err.into_remote_error()
    }
}

impl RpcError {
    /// The remote error, when the remote method failed.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            Self::Remote { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The remote error's `exc_type` (such as `ValueError` or `MethodNotFound`), when the remote
    /// method failed.
    pub fn exc_type(&self) -> Option<&str> {
        self.remote().map(|e| e.exc_type.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_follow_nameko() {
        let unknown = RpcError::UnknownService {
            service: "nope".into(),
            exchange: "nameko-rpc".into(),
            routing_key: "nope.m".into(),
        };
        let remote = unknown.into_remote_error();
        assert_eq!(remote.exc_type, "UnknownService");
        assert_eq!(remote.exc_path, UNKNOWN_SERVICE);
        assert_eq!(remote.value, "Unknown service `nope`");
        assert_eq!(remote.exc_args, vec![serde_json::json!("nope")]);

        let timeout = RpcError::Timeout {
            service: "s".into(),
            method: "m".into(),
            timeout: Duration::from_secs(2),
        };
        assert_eq!(timeout.into_remote_error().exc_type, "RpcTimeout");

        let lost = RpcError::ReplyQueueLost {
            service: "s".into(),
            method: "m".into(),
            queue: "rpc.reply-c-1".into(),
        };
        let remote = lost.into_remote_error();
        assert_eq!(remote.exc_type, "ReplyQueueExpiredWithPendingReplies");
        assert_eq!(remote.exc_path, REPLY_QUEUE_EXPIRED);
        assert!(remote.value.contains("rpc.reply-c-1"), "{}", remote.value);

        let inner = RemoteError::new("ValueError", "builtins.ValueError", "bad");
        let failed = RpcError::Remote {
            call: "s.m".into(),
            error: inner.clone(),
        };
        assert_eq!(failed.exc_type(), Some("ValueError"));
        assert_eq!(RemoteError::from(failed), inner);
    }

    #[test]
    fn a_remote_error_survives_anyhow() {
        let inner = RemoteError::new("ValueError", "builtins.ValueError", "bad");
        let failed = RpcError::Remote {
            call: "s.m".into(),
            error: inner.clone(),
        };
        let any = anyhow::Error::from(failed);
        assert_eq!(format!("{any:#}"), "`s.m` failed remotely: ValueError bad");
        assert_eq!(any.into_remote_error(), inner);
    }
}
