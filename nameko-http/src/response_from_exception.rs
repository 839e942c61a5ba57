//! Nameko's `response_from_exception`: how a handler's error becomes an HTTP response.
//!
//! By default an error is answered as Nameko answers it: `400` when it is one of the
//! entrypoint's `expected_exceptions` or a bad request (`MethodNotFound`, `IncorrectSignature`,
//! `MalformedRequest`), `500` otherwise, with the plain-text body `Error: <exc_type>: <value>`.
//!
//! Python services change this by subclassing the entrypoint and overriding the method, calling
//! the parent for the errors they leave alone. Here the override is a value, a
//! [`ResponseFromException`], made from a function that answers the errors it knows and returns
//! `None` for the rest, which then get the default. It is cheap to clone, so one mapping can be
//! given to every entrypoint of a service. It sees the error in its wire form, a
//! [`RemoteError`], because that is what every worker ends with, panics and failing
//! dependencies included; handlers choose that form through
//! [`IntoRemoteError`](nameko_core::IntoRemoteError).

use std::fmt;
use std::sync::Arc;

use hyper::StatusCode;
use nameko_core::{EntrypointInfo, RemoteError};

use crate::response::{Response, error_response};

type Mapping = dyn Fn(&RemoteError) -> Option<Response> + Send + Sync;

/// A service's own mapping from errors to responses; see the module documentation.
///
/// Made from any `Fn(&RemoteError) -> Response` (every error) or `Fn(&RemoteError) ->
/// Option<Response>` (`None` falls back to Nameko's default), with [`ResponseFromException::new`]
/// or `.into()`.
///
/// ```
/// use nameko_core::RemoteError;
/// use nameko_http::{ResponseFromException, full};
///
/// let json_errors = ResponseFromException::new(|error: &RemoteError| {
///     (error.exc_type == "InvalidArgumentsError").then(|| {
///         let body = serde_json::json!({"error": "INVALID_ARGUMENTS", "message": error.value});
///         hyper::Response::builder()
///             .status(400)
///             .header("Content-Type", "application/json")
///             .body(full(body.to_string()))
///             .ok()
///     })?
/// });
/// // One mapping for several entrypoints: `.response_from_exception(json_errors.clone())`.
/// # let _ = json_errors;
/// ```
#[derive(Clone)]
pub struct ResponseFromException {
    mapping: Arc<Mapping>,
}

impl ResponseFromException {
    /// A mapping from `map`, which answers with a response, or with `None` to leave the error to
    /// Nameko's default.
    pub fn new<F, R>(map: F) -> Self
    where
        F: Fn(&RemoteError) -> R + Send + Sync + 'static,
        R: Into<Option<Response>>,
    {
        Self {
            mapping: Arc::new(move |error: &RemoteError| map(error).into()),
        }
    }

    /// The response for `error`, raised by the entrypoint described by `info`.
    pub(crate) fn respond(
        mapping: Option<&Self>,
        info: &EntrypointInfo,
        error: &RemoteError,
    ) -> Response {
        mapping
            .and_then(|mapping| (mapping.mapping)(error))
            .unwrap_or_else(|| default_response(info, error))
    }
}

impl<F, R> From<F> for ResponseFromException
where
    F: Fn(&RemoteError) -> R + Send + Sync + 'static,
    R: Into<Option<Response>>,
{
    fn from(map: F) -> Self {
        Self::new(map)
    }
}

impl fmt::Debug for ResponseFromException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFromException(..)")
    }
}

/// Nameko's own answer: `400` for an expected error or a bad request, `500` for the rest.
fn default_response(info: &EntrypointInfo, error: &RemoteError) -> Response {
    let status = if info.is_expected(&error.exc_type) || error.is_bad_request() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error_response(status, &error.exc_type, &error.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::full;
    use http_body_util::BodyExt;

    async fn parts(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn info() -> EntrypointInfo {
        EntrypointInfo::new("http", "method").with_expected_exceptions(["ValueError"])
    }

    #[tokio::test]
    async fn the_default_is_400_for_expected_and_bad_requests_and_500_otherwise() {
        let expected = RemoteError::new("ValueError", "builtins.ValueError", "bad value");
        assert_eq!(
            parts(ResponseFromException::respond(None, &info(), &expected)).await,
            (
                StatusCode::BAD_REQUEST,
                "Error: ValueError: bad value\n".to_owned()
            )
        );
        let bad_request = RemoteError::incorrect_signature("missing `foo`");
        assert_eq!(
            parts(ResponseFromException::respond(None, &info(), &bad_request)).await,
            (
                StatusCode::BAD_REQUEST,
                "Error: IncorrectSignature: missing `foo`\n".to_owned()
            )
        );
        let other = RemoteError::new("CustomError", "svc.CustomError", "http broke");
        assert_eq!(
            parts(ResponseFromException::respond(None, &info(), &other)).await,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error: CustomError: http broke\n".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn a_mapping_answers_what_it_knows_and_leaves_the_rest_to_the_default() {
        let mapping: ResponseFromException = (|error: &RemoteError| {
            (error.exc_type == "Teapot").then(|| {
                let mut response = Response::new(full("short and stout"));
                *response.status_mut() = StatusCode::IM_A_TEAPOT;
                response
            })
        })
        .into();
        let teapot = RemoteError::new("Teapot", "svc.Teapot", "");
        assert_eq!(
            parts(ResponseFromException::respond(
                Some(&mapping),
                &info(),
                &teapot
            ))
            .await,
            (StatusCode::IM_A_TEAPOT, "short and stout".to_owned())
        );
        let other = RemoteError::new("CustomError", "svc.CustomError", "http broke");
        let (status, _) = parts(ResponseFromException::respond(
            Some(&mapping),
            &info(),
            &other,
        ))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

        let everything = ResponseFromException::new(|_: &RemoteError| Response::new(full("no")));
        let (status, body) = parts(ResponseFromException::respond(
            Some(&everything),
            &info(),
            &other,
        ))
        .await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "no"));
    }
}
