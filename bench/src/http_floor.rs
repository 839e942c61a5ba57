//! The HTTP floor: a bare hyper hello-world server, the most an HTTP/1.1 server on this machine
//! can be expected to do.
//!
//! One task per connection with hyper's HTTP/1 connection driver (keep-alive on, as it is by
//! default), the same answer to every request and no routing: what the nameko-rs HTTP
//! entrypoint adds on top of it (routing, converters, a worker per request, the response
//! conventions) is exactly what the comparison is about.

use std::convert::Infallible;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Binds `address` and starts serving; the task accepts connections until the process ends.
pub(crate) async fn start(address: &str) -> Result<JoinHandle<Result<()>>> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    Ok(tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await?;
            // Small responses must leave at once rather than wait for Nagle's timer.
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let served = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
                // A load generator closing its connections at the end is not an error.
                drop(served);
            });
        }
    }))
}

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}
