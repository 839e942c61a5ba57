//! Nameko's `http` example: service `http_service` with three routes, showing typed path
//! values, the request body, and one method answering several HTTP methods.
//!
//! Run it with `cargo run -p nameko-cli -- run http` (no broker needed), then:
//!
//! ```text
//! $ curl -i localhost:8000/get/42
//! HTTP/1.1 200 OK
//! content-type: text/plain; charset=utf-8
//! content-length: 13
//!
//! {"value": 42}
//! $ curl -i -d "post body" localhost:8000/post
//! HTTP/1.1 200 OK
//! content-type: text/plain; charset=utf-8
//! content-length: 19
//!
//! received: post body
//! $ curl -X PUT localhost:8000/multi
//! PUT
//! ```
//!
//! `WEB_SERVER_ADDRESS` (`--define WEB_SERVER_ADDRESS=127.0.0.1:8001`) moves it elsewhere. The
//! Python original:
//!
//! ```python
//! class HttpService:
//!     name = "http_service"
//!
//!     @http('GET', '/get/<int:value>')
//!     def get_method(self, request, value):
//!         return json.dumps({'value': value})
//!
//!     @http('POST', '/post')
//!     def do_post(self, request):
//!         return u"received: {}".format(request.get_data(as_text=True))
//!
//!     @http('GET,PUT,POST,DELETE', '/multi')
//!     def do_multi(self, request):
//!         return request.method
//! ```

use nameko_core::{Config, Service, Worker};
use nameko_http::{Request, http};

/// The service: `GET /get/<int:value>`, `POST /post`, `GET,PUT,POST,DELETE /multi`.
pub fn service(_config: &Config) -> Service {
    Service::new("http_service")
        .entrypoint(http("GET", "/get/<int:value>", "get_method", get_method))
        .entrypoint(http("POST", "/post", "do_post", do_post))
        .entrypoint(http("GET,PUT,POST,DELETE", "/multi", "do_multi", do_multi))
}

/// The `int` converter has already refused anything but digits, so the value is there.
async fn get_method(_worker: Worker, request: Request) -> String {
    let value = request.path_values().get_int("value").unwrap_or_default();
    format!("{{\"value\": {value}}}")
}

/// Invalid UTF-8 is replaced rather than refused, as werkzeug's `get_data(as_text=True)` does.
async fn do_post(_worker: Worker, request: Request) -> String {
    format!("received: {}", String::from_utf8_lossy(request.body()))
}

async fn do_multi(_worker: Worker, request: Request) -> String {
    request.method().to_string()
}

#[cfg(test)]
mod tests {
    use nameko_core::testing::worker_factory;
    use nameko_http::{Bytes, PathValue, PathValues};

    use super::*;

    fn request(method: &str, body: &'static str) -> Request {
        let request = hyper::Request::builder()
            .method(method)
            .uri("/")
            .body(Bytes::from_static(body.as_bytes()))
            .unwrap();
        Request::from_http(request)
    }

    fn worker() -> Worker {
        worker_factory(&service(&Config::new())).worker("get_method")
    }

    #[tokio::test]
    async fn the_handlers_answer_as_nameko_documents() {
        let mut values = PathValues::new();
        values.insert("value", PathValue::Int(42));
        let get = request("GET", "").with_path_values(values);
        assert_eq!(get_method(worker(), get).await, r#"{"value": 42}"#);
        assert_eq!(
            do_post(worker(), request("POST", "post body")).await,
            "received: post body"
        );
        assert_eq!(do_multi(worker(), request("DELETE", "")).await, "DELETE");
    }
}
