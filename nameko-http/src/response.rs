//! Nameko's handler return conventions as Rust types, and the server's own responses.
//!
//! A Nameko HTTP handler returns a string (200), `(status, body)`, `(status, headers, body)`,
//! or a ready werkzeug `Response`; the first three get `Content-Type: text/plain;
//! charset=utf-8` unless the headers say otherwise. [`IntoResponse`] is implemented for the
//! same shapes, so a handler's return type reads like its Python original. Python's runtime
//! `TypeError` for a non-string payload has no counterpart: the types rule it out.
//!
//! Mistakes that only show at run time (a status such as `1000`, a header value with a line
//! break) become a `500` in Nameko's error format rather than a panic. The server's own
//! answers are plain text too: Nameko's `Error: <exc_type>: <value>` for 400 and 500, short
//! reason lines for 404, 405 (with `Allow`), 413 and 503, where werkzeug would send HTML.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

use crate::method;

/// The error type a response body may fail with; the server then aborts the connection.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the server sends: usually one buffer, possibly a stream.
pub type Body = BoxBody<Bytes, BoxError>;

/// A response as the server sends it.
pub type Response = hyper::Response<Body>;

/// The content type of Nameko's string responses and of the server's own answers.
pub const TEXT_PLAIN_UTF_8: &str = "text/plain; charset=utf-8";

/// A body holding one buffer.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// What a handler may return.
pub trait IntoResponse {
    /// Turns the value into the response to send.
    fn into_response(self) -> Response;
}

/// What may be a response body: text, bytes, or an `http_body_util` body.
pub trait IntoBody {
    /// Turns the value into a [`Body`].
    fn into_body(self) -> Body;
}

impl IntoBody for Body {
    fn into_body(self) -> Body {
        self
    }
}

impl IntoBody for String {
    fn into_body(self) -> Body {
        full(self)
    }
}

impl IntoBody for &'static str {
    fn into_body(self) -> Body {
        full(self)
    }
}

impl IntoBody for Bytes {
    fn into_body(self) -> Body {
        full(self)
    }
}

impl IntoBody for Vec<u8> {
    fn into_body(self) -> Body {
        full(self)
    }
}

impl IntoBody for () {
    fn into_body(self) -> Body {
        empty()
    }
}

impl IntoBody for Full<Bytes> {
    fn into_body(self) -> Body {
        self.map_err(|never| match never {}).boxed()
    }
}

impl IntoBody for Empty<Bytes> {
    fn into_body(self) -> Body {
        self.map_err(|never| match never {}).boxed()
    }
}

/// A status given as a number or as a [`StatusCode`].
pub trait IntoStatus {
    /// The status, or the number that is not one.
    fn into_status(self) -> Result<StatusCode, u16>;
}

impl IntoStatus for StatusCode {
    fn into_status(self) -> Result<StatusCode, u16> {
        Ok(self)
    }
}

impl IntoStatus for u16 {
    fn into_status(self) -> Result<StatusCode, u16> {
        StatusCode::from_u16(self).map_err(|_| self)
    }
}

/// Extra headers: a `HeaderMap`, or name/value pairs in a `Vec`, an array or a map (the
/// counterpart of Python's headers dict).
pub trait IntoHeaders {
    /// The headers, or the first name or value that is not valid in HTTP.
    fn into_headers(self) -> Result<HeaderMap, String>;
}

impl IntoHeaders for HeaderMap {
    fn into_headers(self) -> Result<HeaderMap, String> {
        Ok(self)
    }
}

fn pairs_to_headers<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let (name, value) = (name.as_ref(), value.as_ref());
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name `{}`", name.escape_debug()))?;
        let header_value = HeaderValue::from_str(value).map_err(|_| {
            format!(
                "invalid value `{}` for header `{name}`",
                value.escape_debug()
            )
        })?;
        headers.append(header_name, header_value);
    }
    Ok(headers)
}

impl<K: AsRef<str>, V: AsRef<str>> IntoHeaders for Vec<(K, V)> {
    fn into_headers(self) -> Result<HeaderMap, String> {
        pairs_to_headers(self)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> IntoHeaders for [(K, V); N] {
    fn into_headers(self) -> Result<HeaderMap, String> {
        pairs_to_headers(self)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> IntoHeaders for BTreeMap<K, V> {
    fn into_headers(self) -> Result<HeaderMap, String> {
        pairs_to_headers(self)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, S> IntoHeaders for HashMap<K, V, S> {
    fn into_headers(self) -> Result<HeaderMap, String> {
        pairs_to_headers(self)
    }
}

fn text_response(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(TEXT_PLAIN_UTF_8),
        );
    }
    response
}

fn invalid_status(number: u16) -> Response {
    server_error(
        "ValueError",
        &format!("invalid http status `{number}`: expected a number from 100 to 999"),
    )
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        text_response(StatusCode::OK, HeaderMap::new(), full(self))
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        text_response(StatusCode::OK, HeaderMap::new(), full(self))
    }
}

impl<S: IntoStatus, B: IntoBody> IntoResponse for (S, B) {
    fn into_response(self) -> Response {
        let (status, body) = self;
        match status.into_status() {
            Ok(status) => text_response(status, HeaderMap::new(), body.into_body()),
            Err(number) => invalid_status(number),
        }
    }
}

impl<S: IntoStatus, H: IntoHeaders, B: IntoBody> IntoResponse for (S, H, B) {
    fn into_response(self) -> Response {
        let (status, headers, body) = self;
        let status = match status.into_status() {
            Ok(status) => status,
            Err(number) => return invalid_status(number),
        };
        match headers.into_headers() {
            Ok(headers) => text_response(status, headers, body.into_body()),
            Err(reason) => server_error("ValueError", &reason),
        }
    }
}

/// Ready responses with other bodies, passed through unchanged as a werkzeug `Response` is.
macro_rules! passthrough {
    ($($body:ty),*) => {$(
        impl IntoResponse for hyper::Response<$body> {
            fn into_response(self) -> Response {
                self.map(IntoBody::into_body)
            }
        }
    )*};
}
passthrough!(
    String,
    &'static str,
    Bytes,
    Vec<u8>,
    (),
    Full<Bytes>,
    Empty<Bytes>
);

/// Nameko's error response: `Error: <exc_type>: <value>` and a newline, as plain text.
pub fn error_response(status: StatusCode, exc_type: &str, value: &str) -> Response {
    text_response(
        status,
        HeaderMap::new(),
        full(format!("Error: {exc_type}: {value}\n")),
    )
}

/// A `500` in Nameko's error format, as for an unexpected exception.
pub fn server_error(exc_type: &str, value: &str) -> Response {
    error_response(StatusCode::INTERNAL_SERVER_ERROR, exc_type, value)
}

/// A `400` in Nameko's error format, as for an expected exception or a `BadRequest`.
pub fn bad_request(exc_type: &str, value: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, exc_type, value)
}

/// The answer for a path no rule matches.
pub fn not_found() -> Response {
    text_response(StatusCode::NOT_FOUND, HeaderMap::new(), full("Not Found\n"))
}

/// The answer for a path whose rules do not accept the method, listing those they do.
pub fn method_not_allowed(allow: &[Method]) -> Response {
    let mut response = text_response(
        StatusCode::METHOD_NOT_ALLOWED,
        HeaderMap::new(),
        full("Method Not Allowed\n"),
    );
    // Method names are tokens, always valid in a header value.
    if let Ok(value) = HeaderValue::from_str(&method::join(allow)) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// The answer for a request body over the server's limit.
pub fn payload_too_large(limit: usize) -> Response {
    text_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        HeaderMap::new(),
        full(format!(
            "Payload Too Large: expected a body of at most {limit} bytes\n"
        )),
    )
}

/// The answer for a request the service no longer takes: it is stopping, or was killed before
/// the request's worker could run. The connection is closed after it, so a keep-alive client
/// reconnects (perhaps to another instance) instead of asking the stopping one again.
pub fn service_unavailable() -> Response {
    let mut response = text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        HeaderMap::new(),
        full("Service Unavailable\n"),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(response: Response) -> (StatusCode, HeaderMap, String) {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    fn content_type(headers: &HeaderMap) -> &str {
        headers[header::CONTENT_TYPE].to_str().unwrap()
    }

    #[tokio::test]
    async fn strings_are_200_plain_text() {
        let (status, headers, body) = parts("{'value': 42}".into_response()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type(&headers), TEXT_PLAIN_UTF_8);
        assert_eq!(body, "{'value': 42}");
        let (status, _, body) = parts(String::from("received: x").into_response()).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "received: x"));
    }

    #[tokio::test]
    async fn status_and_body() {
        let (status, headers, body) = parts((403, "Forbidden").into_response()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(content_type(&headers), TEXT_PLAIN_UTF_8);
        assert_eq!(body, "Forbidden");
        let (status, _, _) = parts((StatusCode::ACCEPTED, String::new()).into_response()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }

    #[tokio::test]
    async fn status_headers_and_body() {
        let response =
            (201, [("Location", "https://www.example.com/widget/1")], "").into_response();
        let (status, headers, body) = parts(response).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            headers[header::LOCATION],
            "https://www.example.com/widget/1"
        );
        assert_eq!(content_type(&headers), TEXT_PLAIN_UTF_8);
        assert_eq!(body, "");

        let json = (
            400,
            vec![("Content-Type", "application/json".to_owned())],
            r#"{"error": "INVALID_ARGUMENTS"}"#,
        );
        let (_, headers, _) = parts(json.into_response()).await;
        assert_eq!(content_type(&headers), "application/json");

        let mut map = HeaderMap::new();
        map.insert("x-foo", HeaderValue::from_static("bar"));
        let (_, headers, _) = parts((200, map, Bytes::from_static(b"x")).into_response()).await;
        assert_eq!(headers["x-foo"], "bar");

        let dict = HashMap::from([("X-Foo", "bar")]);
        let (_, headers, _) = parts((200, dict, ()).into_response()).await;
        assert_eq!(headers["x-foo"], "bar");
    }

    #[tokio::test]
    async fn full_responses_pass_through() {
        let response = hyper::Response::builder()
            .status(418)
            .header("x-teapot", "yes")
            .body(String::from("short and stout"))
            .unwrap();
        let (status, headers, body) = parts(response.into_response()).await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(headers["x-teapot"], "yes");
        assert!(headers.get(header::CONTENT_TYPE).is_none());
        assert_eq!(body, "short and stout");
        let ready: Response = hyper::Response::new(full("x"));
        assert_eq!(parts(ready.into_response()).await.2, "x");
    }

    #[tokio::test]
    async fn run_time_mistakes_are_500s() {
        let (status, _, body) = parts((1000, "x").into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            "Error: ValueError: invalid http status `1000`: expected a number from 100 to 999\n"
        );
        let (status, _, body) = parts((200, [("X-Bad", "a\nb")], "x").into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            "Error: ValueError: invalid value `a\\nb` for header `X-Bad`\n"
        );
        let (status, _, _) = parts((200, [("Bad Name", "x")], "x").into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn server_answers() {
        let (status, headers, body) = parts(server_error("CustomError", "http broke")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type(&headers), TEXT_PLAIN_UTF_8);
        assert_eq!(body, "Error: CustomError: http broke\n");
        let (status, _, body) = parts(bad_request("ValueError", "bad")).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::BAD_REQUEST, "Error: ValueError: bad\n")
        );
        let (status, _, _) = parts(not_found()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, headers, _) = parts(method_not_allowed(&[
            Method::GET,
            Method::HEAD,
            Method::POST,
        ]))
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, HEAD, POST");
        let (status, _, _) = parts(payload_too_large(10)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, headers, body) = parts(service_unavailable()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::CONNECTION], "close");
        assert_eq!(body, "Service Unavailable\n");
    }
}
