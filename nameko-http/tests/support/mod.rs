//! What the container-level tests share: services started on ephemeral ports, and a raw
//! HTTP/1.1 client that keeps the status line and headers byte for byte, as `curl -i` shows
//! them. Every wait is bounded by [`within`], so a regression fails instead of hanging.

#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "helpers fail the test loudly on purpose, and not every test binary uses each one"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use nameko_core::{Config, Service, ServiceContainer};
use nameko_http::WEB_SERVER_ADDRESS;
use nameko_http::server::WebServerExtension;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(10);

/// Waits for `future`, failing the test after a generous deadline.
pub(crate) async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("timed out waiting")
}

/// A configuration listening on an ephemeral port of the loopback interface.
pub(crate) fn config() -> Config {
    let mut config = Config::new();
    config.set(WEB_SERVER_ADDRESS, "127.0.0.1:0");
    config
}

/// A configuration for a service that joins the server already listening on `addr`.
pub(crate) fn config_at(addr: SocketAddr) -> Config {
    let mut config = Config::new();
    config.set(WEB_SERVER_ADDRESS, addr.to_string());
    config
}

/// Starts `service` and returns its container and the address it serves on.
pub(crate) async fn start(service: Service, config: Config) -> (ServiceContainer, SocketAddr) {
    let container = ServiceContainer::new(service, config).unwrap();
    within(container.start()).await.unwrap();
    let addr = WebServerExtension::of(container.container())
        .local_addr()
        .unwrap();
    (container, addr)
}

/// Starts `service` and returns the error its start failed with, as text.
pub(crate) async fn start_error(service: Service, config: Config) -> String {
    let container = ServiceContainer::new(service, config).unwrap();
    within(container.start()).await.unwrap_err().to_string()
}

/// A response as it came over the wire.
#[derive(Debug)]
pub(crate) struct Reply {
    /// `HTTP/1.1 200 OK`, without the line end.
    pub(crate) status_line: String,
    pub(crate) status: u16,
    /// In the order received.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Self {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.to_owned(), value.trim().to_owned())
            })
            .collect();
        Self {
            status_line,
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }

    /// The first value of header `name`, whatever its case.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole reply.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = within(TcpStream::connect(addr)).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    within(stream.write_all(head.as_bytes())).await.unwrap();
    within(stream.write_all(body)).await.unwrap();
    let mut raw = Vec::new();
    within(stream.read_to_end(&mut raw)).await.unwrap();
    Reply::parse(&raw)
}

/// `GET path`.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, "GET", path, &[], b"").await
}
