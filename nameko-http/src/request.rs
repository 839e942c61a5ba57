//! The request a handler receives, the counterpart of the `werkzeug.Request` Nameko passes.
//!
//! The server reads the whole body before the handler runs, bounded by its size limit, so a
//! handler sees plain [`Bytes`] and never deals with a half-read stream, a slow client or an
//! oversized upload: those were answered with `400` or `413` already. Alongside come the typed
//! path variables of the matched rule and the decoded query pairs. Reading the body as text or
//! JSON is a fallible helper, because a bad body is the client's mistake (Nameko's
//! `BadRequest`), not the handler's.

use std::net::SocketAddr;

use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::http::request::Parts;
use hyper::{Method, Uri, Version};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::path_values::PathValues;
use crate::rule::percent_decode_bytes;

/// An HTTP request with its body read and its path matched.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    path_values: PathValues,
    /// Decoded once, since handlers often read several parameters.
    query: Vec<(String, String)>,
    remote_addr: Option<SocketAddr>,
}

impl Request {
    /// A request from its head and body, with no path values yet.
    pub fn new(head: Parts, body: Bytes) -> Self {
        let query = head.uri.query().map(parse_query).unwrap_or_default();
        Self {
            method: head.method,
            uri: head.uri,
            version: head.version,
            headers: head.headers,
            body,
            path_values: PathValues::new(),
            query,
            remote_addr: None,
        }
    }

    /// A request from an `http::Request` with its body in memory; handy in tests.
    pub fn from_http(request: hyper::Request<Bytes>) -> Self {
        let (head, body) = request.into_parts();
        Self::new(head, body)
    }

    /// Sets the path values of the matched rule.
    pub fn with_path_values(mut self, path_values: PathValues) -> Self {
        self.path_values = path_values;
        self
    }

    /// Sets the client's address.
    pub fn with_remote_addr(mut self, remote_addr: SocketAddr) -> Self {
        self.remote_addr = Some(remote_addr);
        self
    }

    /// The method; `HEAD` when a `GET` route serves a `HEAD` request.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target as received.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The path, still percent-encoded.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The query string without the `?`, still encoded; empty when there is none.
    pub fn query_string(&self) -> &str {
        self.uri.query().unwrap_or_default()
    }

    /// The query's name/value pairs, decoded (`+` is a space), in order, repeats included.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// The first value of the query parameter `name`, like werkzeug's `request.args.get`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name`, when it is visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text, like werkzeug's `request.get_data(as_text=True)`.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(Error::BodyNotUtf8)
    }

    /// The body parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(Error::BodyNotJson)
    }

    /// The typed variables of the matched rule.
    pub fn path_values(&self) -> &PathValues {
        &self.path_values
    }

    /// The client's address, when the request came over a socket.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }
}

/// `application/x-www-form-urlencoded` decoding; bytes that are not UTF-8 become U+FFFD, as
/// werkzeug replaces them, so a query never makes a request fail.
fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode =
        |s: &str| String::from_utf8_lossy(&percent_decode_bytes(&s.replace('+', " "))).into_owned();
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path_values::PathValue;

    fn request(uri: &str, body: &'static [u8]) -> Request {
        let request = hyper::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("X-Foo", "bar")
            .body(Bytes::from_static(body))
            .unwrap();
        Request::from_http(request)
    }

    #[test]
    fn exposes_method_path_query_and_headers() {
        let req = request("/get/42?a=1&b=x+y&a=2&c&d=%C3%A9%2B", b"");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.path(), "/get/42");
        assert_eq!(req.query_string(), "a=1&b=x+y&a=2&c&d=%C3%A9%2B");
        assert_eq!(req.query("a"), Some("1"));
        assert_eq!(req.query("b"), Some("x y"));
        assert_eq!(req.query("c"), Some(""));
        assert_eq!(req.query("d"), Some("é+"));
        assert_eq!(req.query("z"), None);
        assert_eq!(req.query_pairs().len(), 5);
        assert_eq!(req.header("x-foo"), Some("bar"));
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(request("/p", b"").query_string(), "");
        assert!(request("/p", b"").query_pairs().is_empty());
    }

    #[test]
    fn invalid_utf8_in_the_query_is_replaced() {
        let req = request("/q?x=%FF%41", b"");
        assert_eq!(req.query("x"), Some("\u{FFFD}A"));
    }

    #[test]
    fn body_as_text_or_json() {
        let req = request("/post", b"post body");
        assert_eq!(req.text().unwrap(), "post body");
        assert!(matches!(
            req.json::<serde_json::Value>(),
            Err(Error::BodyNotJson(_))
        ));
        let req = request("/post", br#"{"value": 42}"#);
        let json: serde_json::Value = req.json().unwrap();
        assert_eq!(json["value"], 42);
        let req = request("/post", b"\xff");
        assert!(matches!(req.text(), Err(Error::BodyNotUtf8(_))));
        assert_eq!(req.body().as_ref(), b"\xff");
    }

    #[test]
    fn carries_path_values_and_remote_addr() {
        let mut values = PathValues::new();
        values.insert("value", PathValue::Int(42));
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let req = request("/get/42", b"")
            .with_path_values(values)
            .with_remote_addr(addr);
        assert_eq!(req.path_values().get_int("value"), Some(42));
        assert_eq!(req.remote_addr(), Some(addr));
    }
}
