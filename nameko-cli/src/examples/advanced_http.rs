//! Nameko's `advanced_http` example: service `advanced_http_service`, whose handlers choose
//! their status, add headers, or build the whole response themselves.
//!
//! Run it with `cargo run -p nameko-cli -- run advanced_http` (no broker needed), then:
//!
//! ```text
//! $ curl -i localhost:8000/privileged
//! HTTP/1.1 403 FORBIDDEN
//! content-type: text/plain; charset=utf-8
//! content-length: 9
//!
//! Forbidden
//! $ curl -i localhost:8000/headers
//! HTTP/1.1 201 CREATED
//! location: https://www.example.com/widget/1
//! content-type: text/plain; charset=utf-8
//! content-length: 0
//!
//! $ curl localhost:8000/custom
//! payload
//! ```
//!
//! The Python original:
//!
//! ```python
//! class Service:
//!     name = "advanced_http_service"
//!
//!     @http('GET', '/privileged')
//!     def forbidden(self, request):
//!         return 403, "Forbidden"
//!
//!     @http('GET', '/headers')
//!     def redirect(self, request):
//!         return 201, {'Location': 'https://www.example.com/widget/1'}, ""
//!
//!     @http('GET', '/custom')
//!     def custom(self, request):
//!         return Response("payload")
//! ```

use nameko_core::{Config, Service, Worker};
use nameko_http::{Request, TEXT_PLAIN_UTF_8, http};

/// The service: `GET /privileged`, `GET /headers`, `GET /custom`.
pub fn service(_config: &Config) -> Service {
    Service::new("advanced_http_service")
        .entrypoint(http("GET", "/privileged", "forbidden", forbidden))
        .entrypoint(http("GET", "/headers", "redirect", redirect))
        .entrypoint(http("GET", "/custom", "custom", custom))
}

/// `(status, body)`.
async fn forbidden(_worker: Worker, _request: Request) -> (u16, &'static str) {
    (403, "Forbidden")
}

/// `(status, headers, body)`: the headers are any list or map of name/value pairs.
async fn redirect(
    _worker: Worker,
    _request: Request,
) -> (u16, [(&'static str, &'static str); 1], &'static str) {
    (201, [("Location", "https://www.example.com/widget/1")], "")
}

/// A complete response, sent as it is (werkzeug's `Response("payload")` is plain text too).
async fn custom(_worker: Worker, _request: Request) -> hyper::Response<&'static str> {
    let mut response = hyper::Response::new("payload");
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(TEXT_PLAIN_UTF_8),
    );
    response
}
