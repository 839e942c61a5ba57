//! Nameko's `http` entrypoint for nameko-rs: routing, request and response conventions, and the
//! web server, on hyper.
//!
//! This crate builds on `nameko-core` and knows nothing of AMQP: an HTTP-only service runs and is
//! tested without a broker. [`http`] declares an entrypoint as Nameko's `@http(method, url)`
//! does; each request runs as a worker of the service's container (so `max_workers`, dependency
//! injection and panic isolation apply), and what the handler returns becomes the response by
//! Nameko's conventions. Routes use werkzeug's rule syntax with typed converters
//! (`/get/<int:value>`), `GET` routes answer `HEAD`, an unknown path is `404` and a wrong method
//! `405` with `Allow`.
//!
//! A handler is an `async fn(Worker, Request) -> R`, where `R` is one of (see
//! [`IntoHandlerResult`]):
//!
//! | Return value                      | Response                                          |
//! |-----------------------------------|---------------------------------------------------|
//! | `String` or `&'static str`        | `200`, `Content-Type: text/plain; charset=utf-8`  |
//! | `(status, body)`                  | that status, plain text                           |
//! | `(status, headers, body)`         | that status, plain text unless the headers say otherwise |
//! | [`Response`]                      | sent as it is                                     |
//! | `Result<T, E>`, `T` one of these  | `Err(e)`: `500 Error: <exc_type>: <value>`, `400` when the error is expected or a bad request, or the entrypoint's own [`ResponseFromException`] |
//!
//! The seed document's three examples:
//!
//! ```no_run
//! use nameko_core::{Config, RemoteError, Service, ServiceRunner, Worker};
//! use nameko_http::{Request, Response, full, http};
//!
//! // `http`: a body string, typed path values, the request body, a method list.
//! async fn get_method(_: Worker, request: Request) -> String {
//!     let value = request.path_values().get_int("value").unwrap_or_default();
//!     format!("{{\"value\": {value}}}")
//! }
//! async fn do_post(_: Worker, request: Request) -> String {
//!     format!("received: {}", String::from_utf8_lossy(request.body()))
//! }
//! async fn do_multi(_: Worker, request: Request) -> String {
//!     request.method().to_string()
//! }
//!
//! // `advanced_http`: a status, a status with headers, a full response.
//! async fn forbidden(_: Worker, _: Request) -> (u16, &'static str) {
//!     (403, "Forbidden")
//! }
//! async fn redirect(_: Worker, _: Request) -> (u16, [(&'static str, &'static str); 1], &'static str) {
//!     (201, [("Location", "https://www.example.com/widget/1")], "")
//! }
//! async fn custom(_: Worker, _: Request) -> Response {
//!     let mut response = Response::new(full("payload"));
//!     response.headers_mut().insert(
//!         hyper::header::CONTENT_TYPE,
//!         hyper::header::HeaderValue::from_static(nameko_http::TEXT_PLAIN_UTF_8),
//!     );
//!     response
//! }
//!
//! // `http_exceptions`: an error, and the service's own error responses.
//! async fn custom_exception(_: Worker, _: Request) -> Result<String, RemoteError> {
//!     Err(RemoteError::new(
//!         "InvalidArgumentsError",
//!         "http_exceptions.InvalidArgumentsError",
//!         "Argument `foo` is required.",
//!     ))
//! }
//! fn response_from_exception(error: &RemoteError) -> Option<Response> {
//!     let code = match error.exc_type.as_str() {
//!         "InvalidArgumentsError" => "INVALID_ARGUMENTS",
//!         _ => return None, // Nameko's default answer
//!     };
//!     // Spaced as Python's `json.dumps` writes it, so the bytes match a Python service's.
//!     let (code, message) = (serde_json::json!(code), serde_json::json!(error.value));
//!     let body = format!("{{\"error\": {code}, \"message\": {message}}}");
//!     hyper::Response::builder()
//!         .status(400)
//!         .header("Content-Type", "application/json")
//!         .body(full(body))
//!         .ok()
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let http_service = Service::new("http_service")
//!     .entrypoint(http("GET", "/get/<int:value>", "get_method", get_method))
//!     .entrypoint(http("POST", "/post", "do_post", do_post))
//!     .entrypoint(http("GET,PUT,POST,DELETE", "/multi", "do_multi", do_multi));
//! let advanced_http_service = Service::new("advanced_http_service")
//!     .entrypoint(http("GET", "/privileged", "forbidden", forbidden))
//!     .entrypoint(http("GET", "/headers", "redirect", redirect))
//!     .entrypoint(http("GET", "/custom", "custom", custom));
//! let exceptions_service = Service::new("http_exceptions_service").entrypoint(
//!     http("GET", "/custom_exception", "custom_exception", custom_exception)
//!         .response_from_exception(response_from_exception),
//! );
//!
//! // All three on one address, one listener: `WEB_SERVER_ADDRESS` defaults to `0.0.0.0:8000`.
//! let mut runner = ServiceRunner::new(Config::new());
//! runner.add_service(http_service)?;
//! runner.add_service(advanced_http_service)?;
//! runner.add_service(exceptions_service)?;
//! runner.start().await?;
//! runner.run_until_signal().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Configuration keys, read from the service's config:
//!
//! | Key                         | Default        | Meaning                                      |
//! |-----------------------------|----------------|----------------------------------------------|
//! | [`WEB_SERVER_ADDRESS`]      | `0.0.0.0:8000` | where to listen, `[address:]port`            |
//! | [`WEB_MAX_BODY_SIZE`]       | `1048576`      | largest request body in bytes; `413` beyond  |
//! | [`WEB_HEADER_READ_TIMEOUT`] | `30`           | seconds a client may take to send its headers; also closes idle keep-alive connections |
//! | [`WEB_SHUTDOWN_TIMEOUT`]    | `30`           | seconds the last service on an address waits for open connections when it stops |
//!
//! One web server serves each bind address of a process, shared by every service on it (the
//! [`WebServerExtension`](server::WebServerExtension) of each container registers its routes
//! there). That plumbing lives in [`server`], apart from what a service is written with; the
//! transport layer is usable on its own too: [`WebServer::register`](server::WebServer::register)
//! serves [`Route`](server::Route)s of plain `Fn(Request) -> impl Future` handlers, without a
//! container.

mod entrypoint;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod method;
mod path_values;
mod request;
mod response;
mod response_from_exception;
mod router;
mod rule;
pub mod server;

pub use entrypoint::{Http, HttpHandler, IntoHandlerResult, http};
pub use error::{Error, Result, RuleError};
pub use path_values::{PathValue, PathValues};
pub use request::Request;
pub use response::{
    Body, BoxError, IntoBody, IntoHeaders, IntoResponse, IntoStatus, Response, TEXT_PLAIN_UTF_8,
    bad_request, empty, error_response, full, method_not_allowed, not_found, payload_too_large,
    server_error, service_unavailable,
};
pub use response_from_exception::ResponseFromException;
pub use server::settings::{
    DEFAULT_WEB_SERVER_ADDRESS, WEB_HEADER_READ_TIMEOUT, WEB_MAX_BODY_SIZE, WEB_SERVER_ADDRESS,
    WEB_SHUTDOWN_TIMEOUT,
};

pub use hyper::body::Bytes;
pub use hyper::{HeaderMap, Method, StatusCode};
