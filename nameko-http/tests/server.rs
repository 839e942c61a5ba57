//! The web server over real TCP on ephemeral ports: routing and converters, Nameko's return
//! conventions, HEAD, 404/405/413, slow clients, keep-alive, graceful stop, and several
//! services sharing one address.
//!
//! Ordinary requests go through hyper's client; malformed, slow and keep-alive cases through
//! a raw `TcpStream`, where the test must control every byte. Every wait is bounded by
//! [`within`], so a regression fails instead of hanging.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside `#[test]` functions fail the test loudly on purpose"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nameko_http::server::{BindAddress, Registration, Route, ServerConfig, ServerState, WebServer};
use nameko_http::{Error, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

const PATIENCE: Duration = Duration::from_secs(10);

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("timed out waiting")
}

fn config() -> ServerConfig {
    ServerConfig::new(BindAddress::parse("127.0.0.1:0").unwrap())
}

/// The configuration of another service on the address of a running server.
fn same_address(addr: SocketAddr) -> ServerConfig {
    ServerConfig::new(BindAddress::parse(&format!("127.0.0.1:{}", addr.port())).unwrap())
}

async fn start(routes: Vec<Route>) -> Registration {
    start_with(config(), routes).await
}

async fn start_with(config: ServerConfig, routes: Vec<Route>) -> Registration {
    WebServer::register(&config, routes).await.unwrap()
}

fn route<F, Fut>(methods: &str, rule: &str, handler: F) -> Route
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: nameko_http::IntoResponse,
{
    Route::parse(methods, rule, handler).unwrap()
}

/// The two handlers of the seed document's `http.py` example.
fn http_example() -> Vec<Route> {
    vec![
        route("GET", "/get/<int:value>", |r: Request| async move {
            format!("{{'value': {}}}", r.path_values().get_int("value").unwrap())
        }),
        route("POST", "/post", |r: Request| async move {
            format!("received: {}", r.text().unwrap())
        }),
    ]
}

struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    addr: SocketAddr,
    path: &str,
    body: &str,
) -> Reply {
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = within(client.request(request)).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = within(body.collect()).await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(&client(), Method::GET, addr, path, "").await
}

/// A response read byte by byte from a raw connection.
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response; `None` when the server closed the connection first. A `HEAD`
/// response has no body whatever its `Content-Length` says.
async fn read_reply(stream: &mut BufReader<TcpStream>, head_request: bool) -> Option<RawReply> {
    let mut status_line = String::new();
    if within(stream.read_line(&mut status_line)).await.ok()? == 0 {
        return None;
    }
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        within(stream.read_line(&mut line)).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut reply = RawReply {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_request {
        let length: usize = reply.header("content-length").unwrap().parse().unwrap();
        reply.body = vec![0; length];
        within(stream.read_exact(&mut reply.body)).await.unwrap();
    }
    Some(reply)
}

async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(within(TcpStream::connect(addr)).await.unwrap())
}

async fn write(stream: &mut BufReader<TcpStream>, bytes: &[u8]) {
    within(stream.get_mut().write_all(bytes)).await.unwrap();
}

/// Waits for the server to close the connection and returns what it sent before.
async fn closed(stream: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut rest = Vec::new();
    // A reset is as closed as an orderly end.
    let _ = within(stream.read_to_end(&mut rest)).await;
    rest
}

#[tokio::test]
async fn get_matches_the_seed_transcript() {
    let server = start(http_example()).await;
    let reply = get(server.local_addr(), "/get/42").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("content-length"), Some("13"));
    assert!(reply.header("date").is_some());
    assert_eq!(reply.body, "{'value': 42}");
    server.stop().await;
}

#[tokio::test]
async fn post_body_reaches_the_handler() {
    let server = start(http_example()).await;
    let reply = send(
        &client(),
        Method::POST,
        server.local_addr(),
        "/post",
        "post body",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-length"), Some("19"));
    assert_eq!(reply.body, "received: post body");
}

#[tokio::test]
async fn each_converter_matches_or_gives_404() {
    let echo = |name: &'static str| {
        move |r: Request| async move { format!("{name}={}", r.path_values().to_json()) }
    };
    let server = start(vec![
        route("GET", "/int/<int:v>", echo("int")),
        route("GET", "/float/<float:v>", echo("float")),
        route("GET", "/string/<string:v>", echo("string")),
        route("GET", "/default/<v>", echo("default")),
        route("GET", "/path/<path:v>", echo("path")),
        route("GET", "/uuid/<uuid:v>", echo("uuid")),
        route("GET", "/any/<any(red, 'green'):v>", echo("any")),
    ])
    .await;
    let addr = server.local_addr();
    let cases = [
        ("/int/42", Some(r#"int={"v":42}"#)),
        ("/int/-1", None),
        ("/int/4.2", None),
        ("/int/99999999999999999999", None),
        ("/float/4.5", Some(r#"float={"v":4.5}"#)),
        ("/float/4", None),
        (
            "/string/hello%20world",
            Some(r#"string={"v":"hello world"}"#),
        ),
        ("/string/a/b", None),
        ("/default/x", Some(r#"default={"v":"x"}"#)),
        ("/path/a/b/c.txt", Some(r#"path={"v":"a/b/c.txt"}"#)),
        ("/path/", None),
        (
            "/uuid/123E4567-E89B-12D3-A456-426614174000",
            Some(r#"uuid={"v":"123e4567-e89b-12d3-a456-426614174000"}"#),
        ),
        ("/uuid/123e4567", None),
        ("/any/green", Some(r#"any={"v":"green"}"#)),
        ("/any/blue", None),
        ("/int/%FF", None),
    ];
    for (path, expected) in cases {
        let reply = get(addr, path).await;
        match expected {
            Some(body) => {
                assert_eq!(reply.status, StatusCode::OK, "{path}");
                assert_eq!(reply.body, body, "{path}");
            }
            None => assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}"),
        }
    }
}

#[tokio::test]
async fn a_method_list_routes_each_method_and_405_lists_them() {
    let server = start(vec![route(
        "GET,PUT,POST,DELETE",
        "/multi",
        |r: Request| async move { r.method().to_string() },
    )])
    .await;
    let client = client();
    let addr = server.local_addr();
    for method in [Method::GET, Method::PUT, Method::POST, Method::DELETE] {
        let reply = send(&client, method.clone(), addr, "/multi", "").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, method.as_str());
    }
    let reply = send(&client, Method::PATCH, addr, "/multi", "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("DELETE, GET, HEAD, POST, PUT"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405() {
    let server = start(http_example()).await;
    let addr = server.local_addr();
    let reply = get(addr, "/nothing/here").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body, "Not Found\n");
    let reply = get(addr, "/post").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("POST"));
    let reply = send(&client(), Method::POST, addr, "/get/1", "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn head_on_a_get_route_keeps_headers_and_drops_the_body() {
    let server = start(vec![route("GET", "/thing", |_r: Request| async {
        (200, [("X-Foo", "bar")], "thirteen char")
    })])
    .await;
    let mut stream = connect(server.local_addr()).await;
    write(&mut stream, b"HEAD /thing HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let reply = read_reply(&mut stream, true).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("13"));
    assert_eq!(reply.header("x-foo"), Some("bar"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // No body bytes were sent: the next response on the connection starts right away.
    write(&mut stream, b"GET /thing HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let reply = read_reply(&mut stream, false).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"thirteen char");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let mut config = config();
    config.max_body_size = 16;
    let server = start_with(
        config,
        vec![route("POST", "/upload", |r: Request| async move {
            format!("{} bytes", r.body().len())
        })],
    )
    .await;
    let addr = server.local_addr();
    let client = client();
    let reply = send(&client, Method::POST, addr, "/upload", &"x".repeat(16)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "16 bytes")
    );
    let reply = send(&client, Method::POST, addr, "/upload", &"x".repeat(17)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Without a declared length the limit applies while reading.
    let mut stream = connect(addr).await;
    let chunk = "y".repeat(40);
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n{chunk}\r\n0\r\n\r\n"
    );
    write(&mut stream, request.as_bytes()).await;
    let reply = read_reply(&mut stream, false).await.unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("connection"), Some("close"));
}

#[tokio::test]
async fn a_malformed_chunked_body_is_400() {
    let server = start(http_example()).await;
    let mut stream = connect(server.local_addr()).await;
    write(
        &mut stream,
        b"POST /post HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n0\r\n\r\n",
    )
    .await;
    let reply = read_reply(&mut stream, false).await.unwrap();
    assert_eq!(reply.status, 400);
    assert!(
        String::from_utf8(reply.body)
            .unwrap()
            .starts_with("Error: BadRequest: cannot read the request body")
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    let mut config = config();
    config.header_read_timeout = Duration::from_millis(300);
    let server = start_with(config, http_example()).await;
    let mut stream = connect(server.local_addr()).await;
    let started = Instant::now();
    write(&mut stream, b"GET /get/1 HTTP/1.1\r\nHost: te").await;
    let sent = closed(&mut stream).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    // hyper may say `408 Request Timeout` before closing; it never serves the request.
    assert!(
        sent.is_empty() || sent.starts_with(b"HTTP/1.1 408"),
        "{sent:?}"
    );
    // The server itself is unaffected.
    assert_eq!(
        get(server.local_addr(), "/get/1").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn keep_alive_serves_two_requests_on_one_connection() {
    let server = start(http_example()).await;
    let mut stream = connect(server.local_addr()).await;
    write(&mut stream, b"GET /get/1 HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let first = read_reply(&mut stream, false).await.unwrap();
    write(
        &mut stream,
        b"POST /post HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    let second = read_reply(&mut stream, false).await.unwrap();
    assert_eq!(first.body, b"{'value': 1}");
    assert_eq!(second.body, b"received: abc");
}

/// A route whose handler reports that it started and then waits to be released.
fn blocking_route(started: mpsc::UnboundedSender<()>, release: Arc<Notify>) -> Route {
    route("GET", "/slow", move |_r: Request| {
        let started = started.clone();
        let release = release.clone();
        async move {
            let _ = started.send(());
            release.notified().await;
            "finished"
        }
    })
}

#[tokio::test]
async fn graceful_stop_finishes_in_flight_requests_and_refuses_new_connections() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let server = start(vec![blocking_route(started_tx, release.clone())]).await;
    let addr = server.local_addr();
    let watch = server.server().clone();

    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    within(started.recv()).await.unwrap();
    let stopping = tokio::spawn(server.stop());
    within(watch.stopped_accepting()).await;
    assert_eq!(watch.state(), ServerState::Draining);
    assert!(TcpStream::connect(addr).await.is_err());
    assert!(!stopping.is_finished());

    release.notify_one();
    let reply = within(in_flight).await.unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "finished")
    );
    within(stopping).await.unwrap();
    assert_eq!(watch.state(), ServerState::Stopped);
}

#[tokio::test]
async fn idle_keep_alive_connections_close_promptly_on_stop() {
    let server = start(http_example()).await;
    let watch = server.server().clone();
    let mut stream = connect(server.local_addr()).await;
    write(&mut stream, b"GET /get/1 HTTP/1.1\r\nHost: test\r\n\r\n").await;
    read_reply(&mut stream, false).await.unwrap();
    // The default shutdown deadline is 30 s; an idle connection must not wait for it.
    let started = Instant::now();
    within(server.stop()).await;
    assert!(started.elapsed() < ServerConfig::DEFAULT_SHUTDOWN_TIMEOUT / 2);
    assert!(read_reply(&mut stream, false).await.is_none());
    assert_eq!(watch.state(), ServerState::Stopped);
}

#[tokio::test]
async fn requests_still_running_at_the_deadline_are_dropped() {
    let mut config = config();
    config.shutdown_timeout = Duration::from_millis(200);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let server = start_with(
        config,
        vec![blocking_route(started_tx, Arc::new(Notify::new()))],
    )
    .await;
    let mut stream = connect(server.local_addr()).await;
    write(&mut stream, b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n").await;
    within(started.recv()).await.unwrap();
    let begun = Instant::now();
    within(server.stop()).await;
    assert!(begun.elapsed() >= Duration::from_millis(200));
    assert!(read_reply(&mut stream, false).await.is_none());
}

#[tokio::test]
async fn two_services_on_one_address_share_a_listener_without_misrouting() {
    let service = |name: &'static str| {
        vec![route(
            "GET",
            &format!("/{name}/<int:n>"),
            move |r: Request| async move { format!("{name} {}", r.path_values().get_int("n").unwrap()) },
        )]
    };
    let first = start(service("a")).await;
    let addr = first.local_addr();
    let second = start_with(same_address(addr), service("b")).await;
    assert_eq!(second.local_addr(), addr);
    assert_eq!(first.server().local_addr(), second.server().local_addr());

    let client = client();
    let replies = (0..100).map(|i| {
        let client = client.clone();
        let name = if i % 2 == 0 { "a" } else { "b" };
        async move {
            let reply = send(&client, Method::GET, addr, &format!("/{name}/{i}"), "").await;
            (reply.status, reply.body, format!("{name} {i}"))
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    for reply in replies {
        tasks.spawn(reply);
    }
    let mut count = 0;
    while let Some(result) = within(tasks.join_next()).await {
        let (status, body, expected) = result.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, expected);
        count += 1;
    }
    assert_eq!(count, 100);

    // One service leaving takes its routes along and leaves the other's serving.
    let watch = first.server().clone();
    within(first.stop()).await;
    assert_eq!(watch.state(), ServerState::Serving);
    assert_eq!(get(addr, "/a/1").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(addr, "/b/1").await.body, "b 1");
    within(second.stop()).await;
    assert_eq!(watch.state(), ServerState::Stopped);
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_route_clash_between_services_is_an_error_and_adds_nothing() {
    let first = start(http_example()).await;
    let addr = first.local_addr();
    let clashing = vec![
        route("GET", "/extra", |_r: Request| async { "extra" }),
        route("GET", "/get/<int:other>", |_r: Request| async { "other" }),
    ];
    let err = WebServer::register(&same_address(addr), clashing)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RouteClash { ref method, .. } if method == Method::GET));
    assert_eq!(
        err.to_string(),
        "route clash: `GET /get/<int:other>` is already registered by `/get/<int:value>`: expected each method of a rule to be registered once"
    );
    assert_eq!(get(addr, "/extra").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(addr, "/get/5").await.body, "{'value': 5}");
    // A clash within one service's own routes is refused before anything is bound.
    let own = vec![
        route("GET", "/x", |_r: Request| async { "1" }),
        route("GET", "/x/", |_r: Request| async { "2" }),
    ];
    assert!(matches!(
        WebServer::register(&config(), own).await,
        Err(Error::RouteClash { .. })
    ));
}

#[tokio::test]
async fn bad_bind_addresses_are_refused() {
    for bad in [
        "",
        "abc",
        ":8000",
        "host:",
        "host:port",
        "1:2:3",
        "::1:8000",
        "70000",
        "-1",
    ] {
        let err = BindAddress::parse(bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("misconfigured bind address `{bad}`: expected `[address:]port`")
        );
    }
    let default = BindAddress::parse("8000").unwrap();
    assert_eq!(default, BindAddress::default());
    assert_eq!(default.to_string(), "0.0.0.0:8000");
    let named = BindAddress::parse("localhost:8080").unwrap();
    assert_eq!((named.host(), named.port()), ("localhost", 8080));
}

#[tokio::test]
async fn a_port_in_use_is_an_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = ServerConfig::new(BindAddress::parse(&format!("127.0.0.1:{port}")).unwrap());
    let err = WebServer::register(&config, http_example())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Bind { .. }));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("cannot listen on `127.0.0.1:{port}`: ")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("in use"), "{message}");
}

#[tokio::test]
async fn a_new_registration_waits_for_a_closing_server_to_free_its_port() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let mut config = config();
    config.shutdown_timeout = Duration::from_secs(5);
    let old = start_with(config, vec![blocking_route(started_tx, release.clone())]).await;
    let addr = old.local_addr();
    let watch = old.server().clone();
    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    within(started.recv()).await.unwrap();
    drop(old);

    let new = within(WebServer::register(&same_address(addr), http_example()))
        .await
        .unwrap();
    assert_eq!(new.local_addr(), addr);
    assert_ne!(watch.state(), ServerState::Serving);
    assert_eq!(get(addr, "/get/3").await.body, "{'value': 3}");

    release.notify_one();
    assert_eq!(within(in_flight).await.unwrap().body, "finished");
    within(watch.stopped()).await;
    new.stop().await;
}

#[tokio::test]
async fn return_conventions_and_errors_reach_the_client() {
    let server = start(vec![
        route("GET", "/privileged", |_r: Request| async {
            (403, "Forbidden")
        }),
        route("GET", "/headers", |_r: Request| async {
            (201, [("Location", "https://www.example.com/widget/1")], "")
        }),
        route("GET", "/panic", |_r: Request| async {
            if true {
                panic!("http broke");
            }
            "unreachable"
        }),
        route("GET", "/query", |r: Request| async move {
            format!(
                "{} {} {}",
                r.query("q").unwrap_or("-"),
                r.header("x-foo").unwrap_or("-"),
                r.remote_addr().unwrap().ip()
            )
        }),
    ])
    .await;
    let addr = server.local_addr();
    let reply = get(addr, "/privileged").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::FORBIDDEN, "Forbidden")
    );
    assert_eq!(reply.header("content-length"), Some("9"));
    let reply = get(addr, "/headers").await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(
        reply.header("location"),
        Some("https://www.example.com/widget/1")
    );
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("content-length"), Some("0"));
    let reply = get(addr, "/panic").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body, "Error: Panic: http broke\n");
    // The connection task survived the panic: the server still answers.
    let request = hyper::Request::builder()
        .uri(format!("http://{addr}/query?q=a+b"))
        .header("X-Foo", "bar")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = within(client().request(request)).await.unwrap();
    let body = within(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "a b bar 127.0.0.1");
}
