//! The HTTP load generator: a fixed number of keep-alive connections, each sending the next
//! request as soon as the previous response has been read, for a fixed time.
//!
//! It is written on hyper's client connection API rather than left to an external tool (`wrk`
//! is rarely installed and cannot be relied on), and it drives every HTTP target the same way:
//! `GET /get/42` with a `Host` header, the whole response body read, the status checked. Each
//! connection is a task on the harness's runtime, which shares the machine's cores with the
//! server under test, exactly as it does for the floor it is compared with.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::latency::{Latencies, Throughput, Window};

/// The path every target is asked for; the floor answers any path.
pub(crate) const PATH: &str = "/get/42";

/// Runs `connections` keep-alive connections against `address` until the end of `window`,
/// counting the responses completed within it.
pub(crate) async fn run(
    address: SocketAddr,
    connections: usize,
    window: Window,
) -> Result<Throughput> {
    let mut clients = JoinSet::new();
    for _ in 0..connections {
        clients.spawn(connection(address, window));
    }
    let mut total = Throughput::empty(window.duration());
    while let Some(joined) = clients.join_next().await {
        let (completed, latencies) = joined.context("a connection task failed")??;
        total.add(completed, latencies);
    }
    Ok(total)
}

async fn connection(address: SocketAddr, window: Window) -> Result<(u64, Latencies)> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, driver) = http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(driver);
    let host = address.to_string();
    let mut completed = 0_u64;
    let mut latencies = Latencies::default();
    loop {
        let started = Instant::now();
        if started >= window.until {
            break;
        }
        let request = Request::get(PATH)
            .header(header::HOST, host.as_str())
            .body(Empty::<Bytes>::new())?;
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("GET {PATH} from {address} failed"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != StatusCode::OK {
            bail!(
                "GET {PATH} from {address}: expected 200 OK, found {status} ({})",
                String::from_utf8_lossy(&body)
            );
        }
        let finished = Instant::now();
        if window.contains(finished) {
            completed += 1;
            latencies.record(finished - started);
        }
    }
    drop(sender);
    driver.abort();
    Ok((completed, latencies))
}
