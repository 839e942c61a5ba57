//! The seed document's three HTTP examples (`http`, `advanced_http`, `http_exceptions`), written
//! as a Rust service would write them, against the document's `curl -i` transcripts: the same
//! status lines, content types, lengths and bodies, byte for byte. (`Date` differs by nature.)
//!
//! One difference is deliberate: `GET /get/42` answers the JSON text `{"value": 42}`, where the
//! transcript shows Python's repr `{'value': 42}` of an older version of the example; both are
//! 13 bytes.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod support;

use nameko_core::{IntoRemoteError, RemoteError, Service, Worker};
use nameko_http::{Request, Response, StatusCode, TEXT_PLAIN_UTF_8, full, http};
use serde_json::json;

use support::{config, get, send, start, within};

/// `examples/http.py`.
mod http_example {
    use super::*;

    pub(crate) async fn get_method(_: Worker, request: Request) -> String {
        let value = request.path_values().get_int("value").unwrap_or_default();
        format!("{{\"value\": {value}}}")
    }

    pub(crate) async fn do_post(_: Worker, request: Request) -> String {
        format!("received: {}", String::from_utf8_lossy(request.body()))
    }

    pub(crate) async fn do_multi(_: Worker, request: Request) -> String {
        request.method().to_string()
    }

    pub(crate) fn service() -> Service {
        Service::new("http_service")
            .entrypoint(http("GET", "/get/<int:value>", "get_method", get_method))
            .entrypoint(http("POST", "/post", "do_post", do_post))
            .entrypoint(http("GET,PUT,POST,DELETE", "/multi", "do_multi", do_multi))
    }
}

/// `examples/advanced_http.py`.
mod advanced_http_example {
    use super::*;

    pub(crate) async fn forbidden(_: Worker, _: Request) -> (u16, &'static str) {
        (403, "Forbidden")
    }

    pub(crate) async fn redirect(
        _: Worker,
        _: Request,
    ) -> (u16, [(&'static str, &'static str); 1], &'static str) {
        (201, [("Location", "https://www.example.com/widget/1")], "")
    }

    pub(crate) async fn custom(_: Worker, _: Request) -> Response {
        // werkzeug's `Response("payload")`: plain text unless told otherwise.
        let mut response = Response::new(full("payload"));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(TEXT_PLAIN_UTF_8),
        );
        response
    }

    pub(crate) fn service() -> Service {
        Service::new("advanced_http_service")
            .entrypoint(http("GET", "/privileged", "forbidden", forbidden))
            .entrypoint(http("GET", "/headers", "redirect", redirect))
            .entrypoint(http("GET", "/custom", "custom", custom))
    }
}

/// `examples/http_exceptions.py`.
mod http_exceptions_example {
    use super::*;

    /// The example's `HttpError` hierarchy: each error has a wire type and an error code.
    pub(crate) enum HttpError {
        InvalidArguments(String),
    }

    impl IntoRemoteError for HttpError {
        fn into_remote_error(self) -> RemoteError {
            match self {
                Self::InvalidArguments(message) => RemoteError::new(
                    "InvalidArgumentsError",
                    "http_exceptions.InvalidArgumentsError",
                    message,
                ),
            }
        }
    }

    /// The override of `response_from_exception`: JSON for the example's own errors, Nameko's
    /// default for the rest.
    pub(crate) fn response_from_exception(error: &RemoteError) -> Option<Response> {
        let (error_code, status) = match error.exc_type.as_str() {
            "InvalidArgumentsError" => ("INVALID_ARGUMENTS", StatusCode::BAD_REQUEST),
            _ => return None,
        };
        // Spaced as Python's `json.dumps` writes it.
        let body = format!(
            "{{\"error\": {}, \"message\": {}}}",
            json!(error_code),
            json!(error.value)
        );
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        Some(response)
    }

    pub(crate) async fn custom_exception(_: Worker, _: Request) -> Result<String, HttpError> {
        Err(HttpError::InvalidArguments(
            "Argument `foo` is required.".to_owned(),
        ))
    }

    pub(crate) fn service() -> Service {
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
}

#[tokio::test]
async fn http_example_matches_its_transcripts() {
    let (container, addr) = start(http_example::service(), config()).await;

    // $ curl -i localhost:8000/get/42
    let reply = get(addr, "/get/42").await;
    assert_eq!(reply.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("Content-Length"), Some("13"));
    assert!(reply.header("Date").is_some());
    assert_eq!(reply.body, br#"{"value": 42}"#);

    // $ curl -i -d "post body" localhost:8000/post
    let reply = send(
        addr,
        "POST",
        "/post",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"post body",
    )
    .await;
    assert_eq!(reply.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("Content-Length"), Some("19"));
    assert_eq!(reply.body, b"received: post body");

    for method in ["GET", "PUT", "POST", "DELETE"] {
        let reply = send(addr, method, "/multi", &[], b"").await;
        assert_eq!(reply.status_line, "HTTP/1.1 200 OK");
        assert_eq!(
            reply.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(reply.body, method.as_bytes());
    }
    let reply = send(addr, "PATCH", "/multi", &[], b"").await;
    assert_eq!(reply.status_line, "HTTP/1.1 405 METHOD NOT ALLOWED");
    assert_eq!(reply.header("Allow"), Some("DELETE, GET, HEAD, POST, PUT"));

    within(container.stop()).await;
}

#[tokio::test]
async fn advanced_http_example_matches_its_transcripts() {
    let (container, addr) = start(advanced_http_example::service(), config()).await;

    // $ curl -i localhost:8000/privileged
    let reply = get(addr, "/privileged").await;
    assert_eq!(reply.status_line, "HTTP/1.1 403 FORBIDDEN");
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("Content-Length"), Some("9"));
    assert_eq!(reply.body, b"Forbidden");

    // curl -i localhost:8000/headers
    let reply = get(addr, "/headers").await;
    assert_eq!(reply.status_line, "HTTP/1.1 201 CREATED");
    assert_eq!(
        reply.header("Location"),
        Some("https://www.example.com/widget/1")
    );
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("Content-Length"), Some("0"));
    assert!(reply.body.is_empty());

    let reply = get(addr, "/custom").await;
    assert_eq!(reply.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.body, b"payload");

    within(container.stop()).await;
}

#[tokio::test]
async fn http_exceptions_example_matches_its_transcript() {
    let (container, addr) = start(http_exceptions_example::service(), config()).await;

    // $ curl -i http://localhost:8000/custom_exception
    let reply = get(addr, "/custom_exception").await;
    assert_eq!(reply.status_line, "HTTP/1.1 400 BAD REQUEST");
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(reply.header("Content-Length"), Some("72"));
    assert_eq!(
        reply.text(),
        r#"{"error": "INVALID_ARGUMENTS", "message": "Argument `foo` is required."}"#
    );

    within(container.stop()).await;
}
