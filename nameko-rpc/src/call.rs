//! Making a call: the request as Python Nameko sends it, and [`RpcCall`], the handle on its reply.
//!
//! Both the in-service [`ServiceProxy`](crate::ServiceProxy) and the standalone clients send
//! requests through a `Caller`: a confirmed publisher and a reply listener. A call registers
//! its correlation id with the listener *before* publishing, so a reply can never arrive
//! unexpected; publishes `mandatory` on a confirm channel, so a request no queue is bound for
//! comes back as `UnknownService` straight away instead of hanging; and then waits for the reply.
//! The confirm and the reply are awaited one after the other, but the reply is buffered as soon
//! as it arrives, so their latencies never add up.
//!
//! Every call has a deadline covering both the publish and the reply ([`DEFAULT_TIMEOUT`] unless
//! configured otherwise; `None` waits forever, as Nameko 2 does). A call that times out or is
//! dropped unanswered forgets its correlation id, and a late reply is then acknowledged and
//! dropped by the listener.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nameko_amqp::{PublishError, PublishOptions, Publisher};
use nameko_core::{ContextData, RemoteError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::args::{Args, IntoRpcArgs};
use crate::error::RpcError;
use crate::names::routing_key;
use crate::reply_listener::{Reply, ReplyFailure, ReplyListener};
use crate::responder::has_foreign_kombu_wrapper;

/// How long a call waits for its reply unless told otherwise: 30 seconds, for standalone clients
/// and for `RpcProxy` alike. Python Nameko 2 waits forever by default; a bounded wait turns a
/// lost reply or a hung service into an `RpcTimeout` instead of a stuck caller.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends requests and hands out [`RpcCall`]s. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    inner: Arc<CallerInner>,
}

#[derive(Debug)]
struct CallerInner {
    publisher: Publisher,
    listener: ReplyListener,
    exchange: String,
}

/// One call about to be sent.
pub(crate) struct Request<'a> {
    pub(crate) service: &'a str,
    pub(crate) method: &'a str,
    pub(crate) context: &'a ContextData,
    pub(crate) timeout: Option<Duration>,
}

impl Caller {
    pub(crate) fn new(publisher: Publisher, listener: ReplyListener, exchange: String) -> Self {
        Self {
            inner: Arc::new(CallerInner {
                publisher,
                listener,
                exchange,
            }),
        }
    }

    /// The listener replies come back to.
    pub(crate) fn listener(&self) -> &ReplyListener {
        &self.inner.listener
    }

    /// Publishes the request and returns the handle on its reply. Fails at once with
    /// `UnknownService` when no queue is bound for the request.
    pub(crate) async fn send<R>(
        &self,
        request: Request<'_>,
        args: impl IntoRpcArgs,
    ) -> Result<RpcCall<R>, RpcError> {
        let Request {
            service,
            method,
            context,
            timeout,
        } = request;
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let invalid = |message: String| RpcError::InvalidArguments {
            service: service.to_owned(),
            method: method.to_owned(),
            message,
        };
        let args = args.into_rpc_args().map_err(|e| invalid(e.to_string()))?;
        let body = request_body(args);
        if has_foreign_kombu_wrapper(&body) {
            return Err(invalid(
                "an object with exactly the keys `__type__` and `__value__` names a type kombu does not know, so Python could not read the request".into(),
            ));
        }
        let body = nameko_amqp::json::encode(&body);

        let listener = &self.inner.listener;
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let Some(receiver) = listener.register(&correlation_id) else {
            return Err(RpcError::ReplyListenerStopped {
                service: service.to_owned(),
                method: method.to_owned(),
            });
        };
        let call = RpcCall {
            service: service.to_owned(),
            method: method.to_owned(),
            correlation_id,
            receiver: Some(receiver),
            deadline,
            timeout,
            listener: Some(listener.clone()),
            _result: PhantomData,
        };

        let options = PublishOptions {
            mandatory: true,
            headers: nameko_amqp::headers::encode_context(context),
            correlation_id: Some(call.correlation_id.clone()),
            reply_to: Some(listener.reply_to().to_owned()),
            ..PublishOptions::default()
        };
        let key = routing_key(service, method);
        let publish = self
            .inner
            .publisher
            .publish(&self.inner.exchange, &key, &body, options);
        let published = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, publish).await {
                Ok(published) => published,
                Err(_) => return Err(call.timed_out()),
            },
            None => publish.await,
        };
        // On error, dropping `call` forgets its correlation id.
        match published {
            Ok(()) => Ok(call),
            Err(PublishError::Unroutable {
                exchange,
                routing_key,
            }) => Err(RpcError::UnknownService {
                service: service.to_owned(),
                exchange,
                routing_key,
            }),
            Err(source) => Err(RpcError::Publish {
                service: service.to_owned(),
                method: method.to_owned(),
                source: Box::new(source),
            }),
        }
    }
}

/// The request body: `{"args": [...], "kwargs": {...}}`, in that order.
pub(crate) fn request_body(args: Args) -> Value {
    let mut body = Map::new();
    body.insert("args".to_owned(), Value::Array(args.args));
    body.insert("kwargs".to_owned(), Value::Object(args.kwargs));
    Value::Object(body)
}

/// A call in flight (Nameko's `call_async` reply): await it, or its [`RpcCall::result`], for the
/// result. Calls on one proxy or client may be awaited in any order.
///
/// Dropping it without awaiting abandons the reply.
#[derive(Debug)]
pub struct RpcCall<R> {
    service: String,
    method: String,
    correlation_id: String,
    receiver: Option<oneshot::Receiver<Reply>>,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    /// Where the reply is awaited; `None` for a call a test double answered at once.
    listener: Option<ReplyListener>,
    _result: PhantomData<fn() -> R>,
}

impl<R> RpcCall<R> {
    /// A call answered already with `body` (`{"result": .., "error": ..}`), as a test double
    /// answers: its reply is read exactly as a broker's would be.
    pub(crate) fn answered(service: &str, method: &str, body: Value) -> Self {
        let (sender, receiver) = oneshot::channel();
        let _ = sender.send(Ok(body));
        Self {
            service: service.to_owned(),
            method: method.to_owned(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
            receiver: Some(receiver),
            deadline: None,
            timeout: None,
            listener: None,
            _result: PhantomData,
        }
    }

    /// The request's correlation id.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The service called.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// The method called.
    pub fn method_name(&self) -> &str {
        &self.method
    }

    fn timed_out(&self) -> RpcError {
        RpcError::Timeout {
            service: self.service.clone(),
            method: self.method.clone(),
            timeout: self.timeout.unwrap_or_default(),
        }
    }
}

impl<R: DeserializeOwned> RpcCall<R> {
    /// Waits for the reply: the result, or the remote error, a timeout, or the listener gone.
    pub async fn result(mut self) -> Result<R, RpcError> {
        let Some(receiver) = self.receiver.take() else {
            return Err(self.listener_stopped());
        };
        let received = match self.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, receiver).await {
                Ok(received) => received,
                Err(_) => return Err(self.timed_out()),
            },
            None => receiver.await,
        };
        let reply = received.map_err(|_| self.listener_stopped())?;
        let body = reply.map_err(|failure| match failure {
            ReplyFailure::Malformed(message) => self.malformed(message),
            ReplyFailure::QueueLost(queue) => RpcError::ReplyQueueLost {
                service: self.service.clone(),
                method: self.method.clone(),
                queue,
            },
        })?;
        self.read_reply(body)
    }

    /// The reply can no longer come: the listener stopped (its sender for this call dropped).
    fn listener_stopped(&self) -> RpcError {
        RpcError::ReplyListenerStopped {
            service: self.service.clone(),
            method: self.method.clone(),
        }
    }

    fn malformed(&self, message: String) -> RpcError {
        RpcError::MalformedReply {
            service: self.service.clone(),
            method: self.method.clone(),
            message,
        }
    }

    /// Reads `{"result": ..., "error": ...}`. As in Python, any truthy `error` is a failure and
    /// `result` is read only when there is none.
    fn read_reply(&self, body: Value) -> Result<R, RpcError> {
        let Value::Object(mut body) = body else {
            return Err(self.malformed(format!("expected an object, found `{body}`")));
        };
        let error = body.remove("error").unwrap_or(Value::Null);
        if truthy(&error) {
            return Err(RpcError::Remote {
                call: routing_key(&self.service, &self.method),
                error: remote_error(error),
            });
        }
        let result = body.remove("result").unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|source| RpcError::UnexpectedResult {
            service: self.service.clone(),
            method: self.method.clone(),
            source,
        })
    }
}

impl<R> Drop for RpcCall<R> {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.forget(&self.correlation_id);
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> IntoFuture for RpcCall<R> {
    type Output = Result<R, RpcError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, RpcError>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.result())
    }
}

/// Python's truthiness, which is how Nameko's client decides whether a reply is an error.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(object) => !object.is_empty(),
    }
}

/// The error object of a reply; an error that is not Nameko's four keys is kept as its text.
fn remote_error(error: Value) -> RemoteError {
    match serde_json::from_value::<RemoteError>(error.clone()) {
        Ok(remote) if error.is_object() => remote,
        _ => RemoteError::generic(match error {
            Value::String(text) => text,
            other => other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_request_body_matches_the_golden_message() {
        let args = Args::new(vec![json!(1)]).kwarg("b", json!([1, "x"]));
        assert_eq!(
            nameko_amqp::json::encode(&request_body(args)),
            br#"{"args": [1], "kwargs": {"b": [1, "x"]}}"#
        );
        assert_eq!(
            nameko_amqp::json::encode(&request_body(Args::default())),
            br#"{"args": [], "kwargs": {}}"#
        );
    }

    #[test]
    fn truthiness_is_pythons() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for true_ in [
            json!(true),
            json!(1),
            json!("x"),
            json!([0]),
            json!({"a": 1}),
        ] {
            assert!(truthy(&true_), "{true_}");
        }
    }

    #[test]
    fn error_objects_are_read_leniently() {
        let python = remote_error(
            json!({"exc_type": "ValueError", "exc_path": "builtins.ValueError", "exc_args": ["bad", "7"], "value": "('bad', 7)"}),
        );
        assert_eq!(python.exc_type, "ValueError");
        assert_eq!(python.exc_args, vec![json!("bad"), json!("7")]);
        let odd = remote_error(json!("boom"));
        assert_eq!(odd.value, "boom");
        let partial = remote_error(json!({"exc_type": "X"}));
        assert_eq!(partial.exc_type, "X");
    }
}
