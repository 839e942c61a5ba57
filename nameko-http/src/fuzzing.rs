//! Fuzz targets for what the HTTP side reads: url rules with the paths matched against them, and
//! raw HTTP requests sent to a running web server over TCP.
//!
//! Each target panics only when an invariant breaks: a rule refused at declaration, a `404`, a
//! `400` from hyper are defined outcomes, never failures. The targets are driven by libFuzzer
//! from the workspace's `fuzz/` directory and, on stable Rust, by this module's tests, which
//! replay `fuzz/corpus/<target>/` and run a short randomized search. The module only exists with
//! the `fuzzing` feature or in tests, so it is no part of the crate's API.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Request;
use crate::method::Methods;
use crate::router::{Lookup, Router};
use crate::rule::Rule;
use crate::server::{BindAddress, Registration, Route, ServerConfig, WebServer};

/// At most this many routes and requests are read from one input, to keep each run short.
const MAX_LINES: usize = 16;

/// Url rules and requests, checked against a plain reading of the rules.
///
/// The input is text: lines up to the first empty line declare routes (`METHODS RULE`, or just
/// `RULE` for `GET`), the lines after it are requests (`METHOD PATH`). Parsing rules never
/// panics, and every request gets the answer the rules give when each is tried on its own: the
/// router's index never loses a rule that matches, a match comes with the values that rule
/// converts, the most specific rule wins, `405` lists exactly the methods of the rules that
/// match, and `404` means none does.
pub fn routing(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (declarations, requests) = text.split_once("\n\n").unwrap_or((&text, ""));

    let mut router = Router::new();
    let mut routes: Vec<(Methods, Rule)> = Vec::new();
    for line in declarations.lines().take(MAX_LINES) {
        let (methods, rule) = line.split_once(' ').unwrap_or(("GET", line));
        let (Ok(methods), Ok(rule)) = (Methods::parse(methods), Rule::parse(rule)) else {
            continue;
        };
        // A route whose rule does not read back as itself would be registered as something else.
        assert_eq!(rule.as_str(), rule.to_string());
        if router
            .add(methods.clone(), rule.clone(), routes.len())
            .is_ok()
        {
            routes.push((methods, rule));
        }
    }

    for line in requests.lines().take(MAX_LINES) {
        let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            continue;
        };
        let path = path.split_once('?').map_or(path, |(path, _query)| path);
        check_lookup(&routes, &router, &method, path);
    }
}

fn check_lookup(routes: &[(Methods, Rule)], router: &Router<usize>, method: &Method, path: &str) {
    let matching: Vec<usize> = (0..routes.len())
        .filter(|i| routes[*i].1.match_path(path).is_some())
        .collect();
    let accepting: Vec<usize> = matching
        .iter()
        .copied()
        .filter(|i| routes[*i].0.allows(method))
        .collect();
    match router.lookup(method, path) {
        Lookup::Match(index, values) => {
            let (methods, rule) = &routes[*index];
            assert!(
                methods.allows(method),
                "{method} {path} went to {methods} {rule}"
            );
            assert_eq!(
                rule.match_path(path),
                Some(values),
                "{method} {path} to {rule}"
            );
            for other in &accepting {
                let other_rule = &routes[*other].1;
                assert!(
                    rule.rank().cmp(other_rule.rank()).is_le(),
                    "{method} {path} went to {rule} rather than the more specific {other_rule}"
                );
            }
        }
        Lookup::MethodNotAllowed { allow } => {
            assert!(
                accepting.is_empty(),
                "{method} {path} refused, yet {accepting:?} accept it"
            );
            let mut expected: Vec<Method> = matching
                .iter()
                .flat_map(|i| routes[*i].0.allowed())
                .collect();
            expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            expected.dedup();
            assert_eq!(allow, expected, "Allow for {path}");
        }
        Lookup::NotFound => {
            assert!(
                matching.is_empty(),
                "{path} not found, yet {matching:?} match it"
            );
        }
    }
}

/// Raw bytes sent to a web server as one HTTP/1.1 connection (the write side is closed after
/// them). The server answers with a well-formed response or closes the connection, never with a
/// `500` (its handlers do not fail), no task of the server panics, and it still answers a plain
/// request afterwards.
pub fn http_request(data: &[u8]) {
    let server = server();
    server.runtime.block_on(async {
        let answer = exchange(server.addr, data).await;
        if !answer.is_empty() {
            let status = status_of(&answer)
                .unwrap_or_else(|| panic!("not an HTTP response: {:?}", head(&answer)));
            assert_ne!(status, 500, "{:?}", head(&answer));
        }
        let canary = exchange(
            server.addr,
            b"GET /items/7?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status_of(&canary), Some(200), "{:?}", head(&canary));
    });
    assert_eq!(
        SERVER_PANICS.load(Ordering::SeqCst),
        0,
        "a task of the web server panicked"
    );
}

/// Panics on the fuzzed server's threads (see [`server`]).
static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

/// The thread name of the fuzzed server's runtime, which the panic hook looks for.
const SERVER_THREAD: &str = "nameko-http-fuzzed";

struct FuzzedServer {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    /// Keeps the server running for the life of the process.
    _registration: Registration,
}

/// One web server per process, with routes of every converter, on its own runtime.
fn server() -> &'static FuzzedServer {
    static SERVER: OnceLock<FuzzedServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(SERVER_THREAD) {
                SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("cannot build a runtime: {error}"));
        let mut config = ServerConfig::new(
            BindAddress::parse("127.0.0.1:0").unwrap_or_else(|error| panic!("{error}")),
        );
        config.header_read_timeout = Duration::from_secs(2);
        config.max_body_size = 64;
        let routes = [
            ("GET", "/items/<int:id>"),
            ("GET,POST", "/items/<name>"),
            ("PUT", "/items/new"),
            ("GET", "/f/<float:x>/<uuid:u>"),
            ("DELETE", "/any/<any(a, b):which>"),
            ("POST", "/files/<path:rest>"),
            ("GET", "/"),
        ]
        .into_iter()
        .map(|(methods, rule)| {
            Route::parse(methods, rule, echo).unwrap_or_else(|error| panic!("{error}"))
        })
        .collect();
        let registration = runtime
            .block_on(WebServer::register(&config, routes))
            .unwrap_or_else(|error| panic!("cannot start the web server: {error}"));
        FuzzedServer {
            addr: registration.local_addr(),
            runtime,
            _registration: registration,
        }
    })
}

/// Answers with what the server made of the request, touching every part of it.
async fn echo(request: Request) -> String {
    format!(
        "{} {} {:?} {:?} {} {:?}",
        request.method(),
        request.path(),
        request.path_values(),
        request.query_pairs(),
        request.body().len(),
        request.text().ok(),
    )
}

/// Sends `data` on a new connection, closes the write side and reads until the server closes
/// (or 5 s pass: the server's header timeout is 2 s).
async fn exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the fuzzed server: {error}"));
    // The server may answer and close before reading everything: a reset is an answer too.
    let _ = stream.write_all(data).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed the connection"
    );
    answer
}

/// The status code of the first response in `answer`.
fn status_of(answer: &[u8]) -> Option<u16> {
    let rest = answer
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| answer.strip_prefix(b"HTTP/1.0 "))?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?;
    code.parse().ok()
}

fn head(answer: &[u8]) -> String {
    String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use proptest::prelude::*;

    use super::*;
    use nameko_core::fuzzing::replay::{config, corpus, soup};

    const RULE_TOKENS: &[&str] = &[
        "/",
        "/",
        "/",
        "items",
        "new",
        "x",
        "<",
        ">",
        "int:",
        "float:",
        "uuid:",
        "path:",
        "string:",
        "any(a, b):",
        "any(",
        ")",
        ",",
        "id",
        "name",
        "rest",
        ":",
        "*",
        ".",
        "%",
        "%2F",
        "%41",
        "A",
        "42",
        "-1",
        "1.5",
        "00000000-0000-0000-0000-000000000000",
        "\u{e9}",
        "GET ",
        "POST ",
        "GET,HEAD ",
        "HEAD ",
        "PUT ",
        "\n",
        "\n",
        "\n\n",
    ];

    const HTTP_TOKENS: &[&str] = &[
        "GET ",
        "POST ",
        "HEAD ",
        "PUT ",
        "DELETE ",
        "OPTIONS ",
        "/",
        "/items/",
        "7",
        "new",
        "/f/1.5/",
        "00000000-0000-0000-0000-00000000000A",
        "/any/a",
        "/files/a/b",
        "%2F",
        "%",
        "%zz",
        "?",
        "&",
        "=",
        "q",
        " HTTP/1.1\r\n",
        " HTTP/1.0\r\n",
        " HTTP/2.0\r\n",
        "Host: x\r\n",
        "Content-Length: 5\r\n",
        "Content-Length: 99999999999999999999\r\n",
        "Content-Length: -1\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Connection: close\r\n",
        "Expect: 100-continue\r\n",
        "\r\n",
        "0\r\n\r\n",
        "5\r\nhello\r\n",
        "fffffffff\r\n",
        "hello",
        "\u{e9}",
        "\0",
    ];

    /// The canary of [`http_request`] on its own: a client that closes its write side once
    /// the request is sent still gets the answer.
    #[test]
    fn a_client_that_half_closes_still_gets_its_answer() {
        let server = server();
        let answer = server.runtime.block_on(exchange(
            server.addr,
            b"POST /items/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        ));
        assert_eq!(status_of(&answer), Some(200), "{}", head(&answer));
        let text = String::from_utf8_lossy(&answer);
        assert!(text.ends_with("2 Some(\"hi\")"), "{text}");
    }

    #[test]
    fn routing_corpus() {
        for input in corpus("routing") {
            routing(&input);
        }
    }

    #[test]
    fn http_request_corpus() {
        for input in corpus("http_request") {
            http_request(&input);
        }
    }

    proptest! {
        #![proptest_config(config(3000))]

        #[test]
        fn routing_random(data in soup(RULE_TOKENS, 60)) {
            routing(&data);
        }
    }

    proptest! {
        #![proptest_config(config(300))]

        #[test]
        fn http_request_random(data in soup(HTTP_TOKENS, 24)) {
            http_request(&data);
        }
    }
}
