//! One request, from hyper's to the handler's and back: routing, the body, panics, and the last
//! touches on the response.
//!
//! Bodies are collected up to a limit before the handler runs (`413` beyond it, `400` when
//! reading fails). The service function never fails: every error, a handler's panic included,
//! is turned into a response, because an `Err` would abort the connection. hyper answers
//! neither `HEAD` for `GET` routes nor `405` with `Allow`, so the dispatcher does both. Status
//! lines carry werkzeug's capitalised reason phrases (`HTTP/1.1 404 NOT FOUND`), so responses
//! read as a Python service's do.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::ext::ReasonPhrase;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use tracing::error;

use super::registry::Shared;
use super::route::{BoxFuture, RouteHandler};
use crate::request::Request;
use crate::response::{self, Response};
use crate::router::Lookup;

pub(super) async fn dispatch(
    shared: Arc<Shared>,
    remote: SocketAddr,
    request: hyper::Request<Incoming>,
) -> Result<Response, Infallible> {
    let method = request.method().clone();
    let found = match shared.router().lookup(&method, request.uri().path()) {
        Lookup::Match(route, values) => Ok((route.handler.clone(), values)),
        Lookup::MethodNotAllowed { allow } => Err(response::method_not_allowed(&allow)),
        Lookup::NotFound => Err(response::not_found()),
    };
    let response = match found {
        Err(response) => response,
        Ok((handler, values)) => match read_body(request, shared.config.max_body_size).await {
            Err(response) => response,
            Ok((head, body)) => {
                let request = Request::new(head, body)
                    .with_path_values(values)
                    .with_remote_addr(remote);
                call(handler.as_ref(), request).await
            }
        },
    };
    Ok(finish(&method, response))
}

/// Collects the body up to `limit` bytes; the error is the response to send instead.
async fn read_body(
    request: hyper::Request<Incoming>,
    limit: usize,
) -> Result<(Parts, Bytes), Response> {
    let (head, body) = request.into_parts();
    let too_large = || {
        let mut response = response::payload_too_large(limit);
        // The rest of the body is never read, so the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    // A declared length over the limit is refused before reading anything.
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((head, collected.to_bytes())),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err(response::bad_request(
            "BadRequest",
            &format!("cannot read the request body: {error}"),
        )),
    }
}

/// Runs a handler, turning a panic into a `500` for this request alone.
async fn call(handler: &dyn RouteHandler, request: Request) -> Response {
    match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(request))) {
        Ok(future) => CatchUnwind { future }.await,
        Err(panic) => panic_response(panic),
    }
}

struct CatchUnwind {
    future: BoxFuture<Response>,
}

impl Future for CatchUnwind {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let future = &mut self.future;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(panic_response(panic)),
        }
    }
}

fn panic_response(panic: Box<dyn Any + Send>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the handler panicked".to_owned());
    error!(panic = %message, "http handler panicked");
    response::server_error("Panic", &message)
}

/// Last touches before a response is written.
fn finish(method: &Method, mut response: Response) -> Response {
    let exact = response.body().size_hint().exact();
    // A `Content-Length` that disagrees with the body makes hyper abort the connection; the
    // body is the truth, and hyper writes its length itself.
    if let (Some(length), Some(declared)) = (exact, response.headers().get(header::CONTENT_LENGTH))
        && declared.to_str().ok().and_then(|v| v.parse::<u64>().ok()) != Some(length)
    {
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    // Werkzeug writes reason phrases in capitals (`403 FORBIDDEN`); so do we, so that status
    // lines read as a Python service's do. A reason the response chose itself is kept.
    if response.extensions().get::<ReasonPhrase>().is_none()
        && let Some(reason) = response.status().canonical_reason()
        && reason.bytes().any(|b| b.is_ascii_lowercase())
        && let Ok(reason) = ReasonPhrase::try_from(reason.to_ascii_uppercase())
    {
        response.extensions_mut().insert(reason);
    }
    if *method == Method::HEAD {
        // Keep the headers of the `GET` response, with the length of the body it would send.
        if let Some(length) = exact
            && response.status() != StatusCode::NO_CONTENT
        {
            response
                .headers_mut()
                .entry(header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(length));
        }
        *response.body_mut() = response::empty();
    }
    response
}
