//! The `http` entrypoint: Nameko's `@http` decorator as a constructor.
//!
//! `http("GET", "/get/<int:value>", "get_method", get_method)` exposes the `async fn
//! get_method(worker, request)` on that route. The handler gets the [`Worker`] (context and
//! dependencies, as every handler does) and the [`Request`] with its body read and its path
//! values typed; it returns anything [`IntoHandlerResult`]: a response by Nameko's conventions,
//! or a `Result` whose error becomes a response through the entrypoint's
//! [`ResponseFromException`].
//!
//! Every request runs as a worker of the service's container, so `max_workers` bounds HTTP
//! handlers as it bounds every other entrypoint, dependencies are injected, and a panic is an
//! error for that request alone. The worker runs inside the request's own future
//! ([`Container::run_worker`]), not in a task of its own, which saves a spawn and a wake-up on
//! every request; a client that disconnects does not cut it short, since a dropped worker
//! finishes in a task. The response travels out of the worker as soon as the method returns,
//! so it is written before the dependencies' `worker_result` and `worker_teardown` hooks
//! finish; the worker's result is the status code. As in Nameko, HTTP requests carry no context
//! data in; the worker's arguments, for logs, are the method and path and the path values by
//! name (`{"request": "GET /get/42", "value": 42}`), which is what `sensitive_arguments` can
//! redact.
//!
//! The entrypoint owns no socket. At setup it checks its method list and rule (a bad one fails
//! the service's start, never a request) and hands its route to the container's
//! [`WebServerExtension`], which registers every route of the container at start. On stop the
//! route answers new requests with `503` while those already running finish; a request whose
//! worker never started because the container stopped or was killed gets `503` too.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nameko_core::{
    BoxError, Container, ContextData, Entrypoint, EntrypointInfo, Extension, IntoRemoteError,
    RemoteError, Worker, WorkerAborted,
};
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tracing::debug;

use crate::method::Methods;
use crate::request::Request;
use crate::response::{self, IntoResponse, Response};
use crate::response_from_exception::ResponseFromException;
use crate::rule::Rule;
use crate::server::{BoxFuture, Route, RouteHandler, ServerConfig, WebServerExtension};

/// What an `http` handler may return.
///
/// - anything [`IntoResponse`]: a body string (`200 text/plain; charset=utf-8`), `(status,
///   body)`, `(status, headers, body)`, or a full [`Response`];
/// - `Result<T, E>` with `T: IntoResponse` and `E: IntoRemoteError` (`RemoteError`,
///   `anyhow::Error`, your own error type): an `Err` is answered by the entrypoint's
///   [`ResponseFromException`], by default `500`, or `400` for an expected error or a bad
///   request, with the body `Error: <exc_type>: <value>`.
///
/// Implemented for all of these; there is nothing to implement by hand.
pub trait IntoHandlerResult {
    /// The response, or the error to answer.
    fn into_handler_result(self) -> Result<Response, RemoteError>;
}

impl<T: IntoResponse> IntoHandlerResult for T {
    fn into_handler_result(self) -> Result<Response, RemoteError> {
        Ok(self.into_response())
    }
}

impl<T: IntoResponse, E: IntoRemoteError> IntoHandlerResult for Result<T, E> {
    fn into_handler_result(self) -> Result<Response, RemoteError> {
        self.map(IntoResponse::into_response)
            .map_err(IntoRemoteError::into_remote_error)
    }
}

/// A handler an `http` entrypoint can run: an `async fn(Worker, Request) -> R` (or a closure
/// returning a future) where `R` is [`IntoHandlerResult`].
///
/// Implemented for every such function; there is nothing to implement by hand.
pub trait HttpHandler<S>: Send + Sync + 'static {
    /// Runs the handler and turns its return value into a response or an error.
    fn call(
        &self,
        worker: Worker<S>,
        request: Request,
    ) -> impl Future<Output = Result<Response, RemoteError>> + Send + 'static;
}

impl<F, S, Fut> HttpHandler<S> for F
where
    F: Fn(Worker<S>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoHandlerResult,
{
    fn call(
        &self,
        worker: Worker<S>,
        request: Request,
    ) -> impl Future<Output = Result<Response, RemoteError>> + Send + 'static {
        let call = self(worker, request);
        async move { call.await.into_handler_result() }
    }
}

/// The `http` entrypoint; build it with [`http`].
pub struct Http<S, H> {
    info: Arc<EntrypointInfo>,
    /// Kept as written and parsed at setup, so a mistake fails the service's start with the
    /// entrypoint named, instead of a panic where the service is declared.
    methods: String,
    rule: String,
    handler: Arc<H>,
    response_from_exception: Option<ResponseFromException>,
    /// Cleared on stop: the route then refuses new requests while running ones finish.
    accepting: Arc<AtomicBool>,
    _state: PhantomData<fn() -> S>,
}

/// Exposes `handler` as the service method `method_name` on `rule` for `methods` (Nameko's
/// `@http(method, url)`).
///
/// `methods` is one method or a comma-separated list (`"GET,PUT,POST,DELETE"`); a `GET` route
/// also answers `HEAD`. `rule` is werkzeug's syntax (`/get/<int:value>`; converters `string`,
/// `int`, `float`, `path`, `uuid`, `any(..)`). Both are checked when the service starts: a bad
/// one fails the start with a message naming it. The handler reads the typed path values from
/// [`Request::path_values`].
///
/// ```
/// use nameko_core::{RemoteError, Service, Worker};
/// use nameko_http::{Request, Response, full, http};
///
/// // A body string: `200 text/plain; charset=utf-8`.
/// async fn get_method(_: Worker, request: Request) -> String {
///     let value = request.path_values().get_int("value").unwrap_or_default();
///     format!("{{\"value\": {value}}}")
/// }
///
/// // `(status, body)` and `(status, headers, body)`.
/// async fn forbidden(_: Worker, _: Request) -> (u16, &'static str) {
///     (403, "Forbidden")
/// }
/// async fn redirect(_: Worker, _: Request) -> (u16, [(&'static str, &'static str); 1], &'static str) {
///     (201, [("Location", "https://www.example.com/widget/1")], "")
/// }
///
/// // A full response.
/// async fn custom(_: Worker, _: Request) -> Response {
///     Response::new(full("payload"))
/// }
///
/// // A `Result`: the error becomes `500 Error: <exc_type>: <value>` (or `400` when expected).
/// async fn do_post(_: Worker, request: Request) -> Result<String, RemoteError> {
///     let body = request.text().map_err(|e| RemoteError::new("BadRequest", "svc.BadRequest", e.to_string()))?;
///     Ok(format!("received: {body}"))
/// }
///
/// let service = Service::new("http_service")
///     .entrypoint(http("GET", "/get/<int:value>", "get_method", get_method))
///     .entrypoint(http("GET", "/privileged", "forbidden", forbidden))
///     .entrypoint(http("GET", "/headers", "redirect", redirect))
///     .entrypoint(http("GET", "/custom", "custom", custom))
///     .entrypoint(http("POST", "/post", "do_post", do_post).expected_exceptions(["BadRequest"]));
/// # let _ = service;
/// ```
pub fn http<S, H, Fut>(methods: &str, rule: &str, method_name: &str, handler: H) -> Http<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Worker<S>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoHandlerResult,
{
    Http {
        info: Arc::new(EntrypointInfo::new("http", method_name)),
        methods: methods.to_owned(),
        rule: rule.to_owned(),
        handler: Arc::new(handler),
        response_from_exception: None,
        accepting: Arc::new(AtomicBool::new(true)),
        _state: PhantomData,
    }
}

impl<S, H> Http<S, H> {
    /// Errors with these `exc_type`s are part of the method's contract: they are answered with
    /// `400` instead of `500` and logged as warnings (Nameko's `expected_exceptions`).
    #[must_use]
    pub fn expected_exceptions<I, T>(mut self, exc_types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.info = Arc::new((*self.info).clone().with_expected_exceptions(exc_types));
        self
    }

    /// Path values (`"token"`) or parts of them redacted whenever the worker's arguments are
    /// logged (Nameko's `sensitive_arguments`).
    #[must_use]
    pub fn sensitive_arguments<I, T>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.info = Arc::new((*self.info).clone().with_sensitive_arguments(paths));
        self
    }

    /// Answers the handler's errors with this mapping instead of Nameko's default (the override
    /// of `response_from_exception` in Python); errors it returns `None` for keep the default.
    ///
    /// Takes a function `Fn(&RemoteError) -> Response` or `-> Option<Response>`, or a
    /// [`ResponseFromException`] shared with other entrypoints.
    #[must_use]
    pub fn response_from_exception(mut self, mapping: impl Into<ResponseFromException>) -> Self {
        self.response_from_exception = Some(mapping.into());
        self
    }

    /// The method list as declared.
    pub fn methods(&self) -> &str {
        &self.methods
    }

    /// The url rule as declared.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

impl<S, H> fmt::Debug for Http<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("method_name", &self.info.method_name())
            .field("methods", &self.methods)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync + 'static, H: HttpHandler<S>> Extension for Http<S, H> {
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let methods = Methods::parse(&self.methods)?;
        let rule = Rule::parse(&self.rule)?;
        // The shared extension reads these too; reading them here names this entrypoint in
        // the error when a setting is wrong.
        ServerConfig::from_config(container.config())?;
        let route = HttpRoute {
            info: self.info.clone(),
            handler: self.handler.clone(),
            container: container.clone(),
            response_from_exception: self.response_from_exception.clone(),
            accepting: self.accepting.clone(),
            _state: PhantomData,
        };
        WebServerExtension::of(container).add_route(Route::new(methods, rule, route));
        Ok(())
    }

    async fn stop(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    async fn kill(&self) {
        self.accepting.store(false, Ordering::Release);
    }
}

impl<S: Send + Sync + 'static, H: HttpHandler<S>> Entrypoint for Http<S, H> {
    type State = S;

    fn info(&self) -> &Arc<EntrypointInfo> {
        &self.info
    }
}

/// The route an entrypoint registers: runs each request as a worker of its container.
struct HttpRoute<S, H> {
    info: Arc<EntrypointInfo>,
    handler: Arc<H>,
    container: Container,
    response_from_exception: Option<ResponseFromException>,
    accepting: Arc<AtomicBool>,
    _state: PhantomData<fn() -> S>,
}

/// What the method hands the request waiting for it: the handler's response, or its error.
type Reply = Result<Response, RemoteError>;

impl<S: Send + Sync + 'static, H: HttpHandler<S>> RouteHandler for HttpRoute<S, H> {
    fn call(&self, request: Request) -> BoxFuture<Response> {
        if !self.accepting.load(Ordering::Acquire) {
            return Box::pin(async { response::service_unavailable() });
        }
        let args = logged_args(&request, self.info.sensitive_arguments());
        let (reply_tx, mut reply_rx) = oneshot::channel::<Reply>();
        let handler = self.handler.clone();
        let method = move |worker: Worker<S>| async move {
            // A client that went away while the request waited for a worker slot gets no
            // handler run on its behalf.
            if reply_tx.is_closed() {
                return Err(client_gone());
            }
            match handler.call(worker, request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = reply_tx.send(Ok(response));
                    Ok(Value::from(status))
                }
                Err(error) => {
                    let _ = reply_tx.send(Err(error.clone()));
                    Err(error)
                }
            }
        };
        // Run in this request's own future: no task, no hand-over back to the connection.
        let mut worker = self
            .container
            .run_worker(&self.info, ContextData::new(), args, method);

        let info = self.info.clone();
        let mapping = self.response_from_exception.clone();
        Box::pin(async move {
            // The response leaves as soon as the method has it. A worker still busy in its
            // dependencies' `worker_result` or `worker_teardown` hooks then finishes on its own:
            // dropping it hands it to a task (see `RunningWorker`).
            let reply = tokio::select! {
                biased;
                outcome = &mut worker => reply_rx.try_recv().map_err(|_| outcome),
                reply = &mut reply_rx => match reply {
                    Ok(reply) => Ok(reply),
                    Err(_) => Err((&mut worker).await),
                },
            };
            let error = match reply {
                Ok(Ok(response)) => return response,
                Ok(Err(error)) => error,
                // The method never answered: the worker failed around it (a dependency that
                // could not be injected, a panic) or did not run.
                Err(Ok(Err(error))) => error,
                Err(Ok(Ok(_))) => RemoteError::generic("the handler's response was lost"),
                Err(Err(aborted)) => return unanswered(&info, aborted),
            };
            // Mapped here rather than in the worker, so that a panicking mapping is a `500`
            // for this request, as a panicking handler is.
            ResponseFromException::respond(mapping.as_ref(), &info, &error)
        })
    }
}

/// The response for a request whose worker ended without answering: the container stopped or
/// was killed before it ran, or killed while it ran, or a dependency's hook panicked before the
/// handler answered.
fn unanswered(info: &EntrypointInfo, aborted: WorkerAborted) -> Response {
    debug!(
        method = info.method_name(),
        reason = %aborted,
        "request unanswered: the worker did not run to its end"
    );
    response::service_unavailable()
}

fn client_gone() -> RemoteError {
    RemoteError::new(
        "ClientDisconnected",
        "nameko_rs.ClientDisconnected",
        "the client closed the connection before a worker took its request",
    )
}

/// The worker's arguments as logs show them: Python passes `request` and the path values as
/// keyword arguments, so they are named the same way.
///
/// The path holds the path values too, so when one of them is a sensitive argument the path is
/// not shown: redacting the value alone would leave it in `request` for every log to read.
fn logged_args(request: &Request, sensitive: &[String]) -> Value {
    let mut args = Map::new();
    let mut hide_path = false;
    for (name, value) in request.path_values().iter() {
        args.insert(name.to_owned(), value.to_json());
        hide_path |= sensitive.iter().any(|path| names_argument(path, name));
    }
    let path = if hide_path {
        nameko_core::redact::REDACTED
    } else {
        request.path()
    };
    args.insert(
        "request".to_owned(),
        Value::String(format!("{} {path}", request.method())),
    );
    Value::Object(args)
}

/// Whether a `sensitive_arguments` path (`token`, `token.part`, `token[0]`) starts at the
/// argument `name`: its first run of word characters, as Nameko reads paths.
fn names_argument(path: &str, name: &str) -> bool {
    path.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .find(|key| !key.is_empty())
        == Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::StatusCode;

    async fn outcome(result: impl IntoHandlerResult) -> Result<(StatusCode, String), RemoteError> {
        let response = result.into_handler_result()?;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok((status, String::from_utf8(body.to_vec()).unwrap()))
    }

    #[tokio::test]
    async fn responses_and_results_become_handler_results() {
        assert_eq!(
            outcome("text").await.unwrap(),
            (StatusCode::OK, "text".to_owned())
        );
        assert_eq!(
            outcome((403, "Forbidden")).await.unwrap(),
            (StatusCode::FORBIDDEN, "Forbidden".to_owned())
        );
        let ok: Result<String, RemoteError> = Ok("fine".to_owned());
        assert_eq!(
            outcome(ok).await.unwrap(),
            (StatusCode::OK, "fine".to_owned())
        );
        let err: Result<(u16, &str), anyhow::Error> = Err(anyhow::anyhow!("broken"));
        let err = outcome(err).await.unwrap_err();
        assert_eq!(
            (err.exc_type.as_str(), err.value.as_str()),
            ("Error", "broken")
        );
    }

    #[test]
    fn logged_args_name_the_request_and_the_path_values() {
        let request = hyper::Request::builder()
            .method("GET")
            .uri("/get/42?secret=1")
            .body(hyper::body::Bytes::new())
            .unwrap();
        let mut values = crate::PathValues::new();
        values.insert("value", crate::PathValue::Int(42));
        let request = Request::from_http(request).with_path_values(values);
        assert_eq!(
            logged_args(&request, &[]),
            serde_json::json!({"value": 42, "request": "GET /get/42"})
        );
        assert_eq!(
            logged_args(&request, &["other".into(), "values".into()]),
            serde_json::json!({"value": 42, "request": "GET /get/42"})
        );
        // A sensitive path value would show in the path: the path is not shown.
        for sensitive in ["value", "value.x", "value[0]"] {
            let logged = logged_args(&request, &[sensitive.into()]);
            assert_eq!(
                logged,
                serde_json::json!({"value": 42, "request": "GET ********"})
            );
        }
    }

    #[tokio::test]
    async fn a_request_whose_client_left_before_a_worker_took_it_runs_no_handler() {
        let mut config = nameko_core::Config::new();
        config.set("max_workers", 1);
        let container =
            nameko_core::ServiceContainer::new(nameko_core::Service::new("svc"), config).unwrap();
        container.start().await.unwrap();
        let running = container.container().clone();
        let mut events = running.subscribe_workers();

        // Another worker holds the only slot, so the request waits for it.
        let (release, held) = oneshot::channel::<()>();
        let busy = running.spawn_worker(
            &Arc::new(EntrypointInfo::new("test", "busy")),
            ContextData::new(),
            Value::Null,
            move |_: Worker| async move {
                let _ = held.await;
                Ok(Value::Null)
            },
        );
        let ran = Arc::new(AtomicBool::new(false));
        let handler_ran = ran.clone();
        let route = HttpRoute {
            info: Arc::new(EntrypointInfo::new("http", "method")),
            handler: Arc::new(move |_: Worker, _: Request| {
                handler_ran.store(true, Ordering::SeqCst);
                async { "ran" }
            }),
            container: running.clone(),
            response_from_exception: None,
            accepting: Arc::new(AtomicBool::new(true)),
            _state: PhantomData,
        };
        let request = hyper::Request::builder()
            .uri("/x")
            .body(hyper::body::Bytes::new())
            .unwrap();
        // hyper drops the request's future when its client disconnects.
        drop(route.call(Request::from_http(request)));
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();

        let event = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let event = events.recv().await.unwrap();
                if event.context.entrypoint().method_name() == "method" {
                    break event;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(
            event.result.as_ref().unwrap_err().exc_type,
            "ClientDisconnected"
        );
        assert!(!ran.load(Ordering::SeqCst));
        container.stop().await;
    }

    #[tokio::test]
    async fn a_request_dropped_while_its_handler_runs_lets_the_handler_finish() {
        let container = nameko_core::ServiceContainer::new(
            nameko_core::Service::new("svc"),
            nameko_core::Config::new(),
        )
        .unwrap();
        container.start().await.unwrap();
        let running = container.container().clone();
        let mut events = running.subscribe_workers();

        let (started_tx, started) = oneshot::channel::<()>();
        let (release, released) = oneshot::channel::<()>();
        let gates = Arc::new(std::sync::Mutex::new(Some((started_tx, released))));
        let finished = Arc::new(AtomicBool::new(false));
        let handler_finished = finished.clone();
        let route = HttpRoute {
            info: Arc::new(EntrypointInfo::new("http", "method")),
            handler: Arc::new(move |_: Worker, _: Request| {
                let (started_tx, released) = gates.lock().unwrap().take().unwrap();
                let finished = handler_finished.clone();
                async move {
                    started_tx.send(()).unwrap();
                    let _ = released.await;
                    finished.store(true, Ordering::SeqCst);
                    "done"
                }
            }),
            container: running.clone(),
            response_from_exception: None,
            accepting: Arc::new(AtomicBool::new(true)),
            _state: PhantomData,
        };
        let request = hyper::Request::builder()
            .uri("/x")
            .body(hyper::body::Bytes::new())
            .unwrap();
        let mut call = route.call(Request::from_http(request));
        // Polled until the handler is under way, then dropped, as hyper drops a request's
        // future when its client disconnects.
        tokio::select! {
            _ = &mut call => panic!("the handler cannot have answered yet"),
            started = started => started.unwrap(),
        }
        drop(call);
        release.send(()).unwrap();

        let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.result, Ok(Value::from(200)));
        assert!(finished.load(Ordering::SeqCst));
        container.stop().await;
    }

    #[test]
    fn a_declaration_keeps_its_options() {
        async fn handler(_: Worker, _: Request) -> &'static str {
            ""
        }
        let entrypoint = http("GET,POST", "/x/<int:id>", "method", handler)
            .expected_exceptions(["ValueError"])
            .sensitive_arguments(["id"]);
        assert_eq!(entrypoint.methods(), "GET,POST");
        assert_eq!(entrypoint.rule(), "/x/<int:id>");
        assert!(entrypoint.info().is_expected("ValueError"));
        assert_eq!(entrypoint.info().sensitive_arguments(), ["id"]);
        assert_eq!(entrypoint.info().kind(), "http");
    }
}
