//! Nameko's `http_exceptions` example: service `http_service`, whose errors are answered in
//! the service's own JSON format instead of Nameko's plain-text one.
//!
//! Run it with `cargo run -p nameko-cli -- run http_exceptions` (no broker needed), then:
//!
//! ```text
//! $ curl -i http://localhost:8000/custom_exception
//! HTTP/1.1 400 Bad Request
//! content-type: application/json
//! content-length: 72
//!
//! {"error": "INVALID_ARGUMENTS", "message": "Argument `foo` is required."}
//! ```
//!
//! Python overrides `HttpRequestHandler.response_from_exception` in a subclass; here the
//! override is a function handed to the entrypoint. It answers the errors it knows and returns
//! `None` for the rest, which then get Nameko's default (`500 Error: <exc_type>: <value>`). It
//! sees every error in its wire form, a `RemoteError`, so the handler's error type decides its
//! `exc_type` through `IntoRemoteError`. The Python original:
//!
//! ```python
//! class HttpError(Exception):
//!     error_code = 'BAD_REQUEST'
//!     status_code = 400
//!
//! class InvalidArgumentsError(HttpError):
//!     error_code = 'INVALID_ARGUMENTS'
//!
//! class HttpEntrypoint(HttpRequestHandler):
//!     def response_from_exception(self, exc):
//!         if isinstance(exc, HttpError):
//!             response = Response(
//!                 json.dumps({
//!                     'error': exc.error_code,
//!                     'message': safe_for_serialization(exc),
//!                 }),
//!                 status=exc.status_code,
//!                 mimetype='application/json'
//!             )
//!             return response
//!         return HttpRequestHandler.response_from_exception(self, exc)
//!
//! http = HttpEntrypoint.decorator
//!
//! class Service:
//!     name = "http_service"
//!
//!     @http('GET', '/custom_exception')
//!     def custom_exception(self, request):
//!         raise InvalidArgumentsError("Argument `foo` is required.")
//! ```

use nameko_core::{Config, IntoRemoteError, RemoteError, Service, Worker};
use nameko_http::{IntoResponse, Request, Response, http};

/// The errors this service answers in its own format.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    /// A request without an argument the method needs.
    #[error("{0}")]
    InvalidArguments(String),
}

impl HttpError {
    /// The `exc_type` it travels as.
    fn exc_type(&self) -> &'static str {
        match self {
            Self::InvalidArguments(_) => "InvalidArgumentsError",
        }
    }
}

/// The `error` code and status this service answers an `exc_type` with, when it is its own.
fn error_code(exc_type: &str) -> Option<(&'static str, u16)> {
    match exc_type {
        "InvalidArgumentsError" => Some(("INVALID_ARGUMENTS", 400)),
        _ => None,
    }
}

impl IntoRemoteError for HttpError {
    fn into_remote_error(self) -> RemoteError {
        let exc_type = self.exc_type();
        RemoteError::new(
            exc_type,
            format!("http_exceptions.{exc_type}"),
            self.to_string(),
        )
    }
}

/// The service: `GET /custom_exception`, with its own error responses.
pub fn service(_config: &Config) -> Service {
    Service::new("http_service").entrypoint(
        http(
            "GET",
            "/custom_exception",
            "custom_exception",
            custom_exception,
        )
        .response_from_exception(response_from_exception),
    )
}

async fn custom_exception(_worker: Worker, _request: Request) -> Result<String, HttpError> {
    Err(HttpError::InvalidArguments(
        "Argument `foo` is required.".to_owned(),
    ))
}

/// `{"error": <code>, "message": <value>}` as `application/json` for this service's errors,
/// spaced as Python's `json.dumps` spaces it; `None` leaves any other error to the default.
fn response_from_exception(error: &RemoteError) -> Option<Response> {
    let (code, status) = error_code(&error.exc_type)?;
    let body = format!(
        r#"{{"error": {}, "message": {}}}"#,
        serde_json::Value::from(code),
        serde_json::Value::from(error.value.as_str())
    );
    Some((status, [("Content-Type", "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_travels_with_its_own_type_and_message() {
        let error = HttpError::InvalidArguments("Argument `foo` is required.".to_owned())
            .into_remote_error();
        assert_eq!(error.exc_type, "InvalidArgumentsError");
        assert_eq!(error.exc_path, "http_exceptions.InvalidArgumentsError");
        assert_eq!(error.value, "Argument `foo` is required.");
        let response = response_from_exception(&error).unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["content-type"], "application/json");
    }

    #[test]
    fn other_errors_are_left_to_the_default() {
        assert!(response_from_exception(&RemoteError::generic("boom")).is_none());
    }
}
