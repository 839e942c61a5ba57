//! The README's commands, run the way a newcomer runs them: build the `nameko` binary, start an
//! example, wait for `starting services:`, exercise it (HTTP requests as `curl -i` sends them,
//! `nameko call`, `nameko dispatch`), stop it with SIGTERM or Ctrl-C and check that it exits
//! cleanly. The same goes for `examples/greeter.rs`, a user's own binary on the library entry,
//! and for the README's mixed cluster: Python Nameko's `nameko run` next to the Rust binary.
//!
//! Finding the binary: `CARGO_BIN_EXE_nameko` is only set for tests of the package that defines
//! the binary, and this is another package. So the first test that needs it runs
//! `cargo build -p nameko-cli --bin nameko --message-format=json` (cargo does not hold its build
//! lock while tests run) and takes the executable's path from cargo's own report. That is exact
//! whatever the target directory, and never stale: cargo rebuilds the binary if its sources
//! changed since the test binary was built.
//!
//! HTTP examples each get a free port through `--define WEB_SERVER_ADDRESS=127.0.0.1:<port>`, so
//! they run in parallel. Broker examples keep the documentation's fixed service names, so each
//! is started by one test only; the two tests that run a `service_y` (in Rust, and in Python)
//! take turns through a mutex. No two copies of a service ever share a queue by accident.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use crate::support::{broker_uri, python, unique};

/// How long an example gets to print `starting services:`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped example gets to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long building the binary may take on a cold target directory.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

static NAMEKO: OnceCell<PathBuf> = OnceCell::const_new();
static GREETER: OnceCell<PathBuf> = OnceCell::const_new();
/// Held by the tests that run a `service_y` (Rust or Python), so two never share its queue.
static SERVICE_Y: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `nameko` binary, built on first use.
async fn nameko_bin() -> &'static Path {
    NAMEKO
        .get_or_init(|| cargo_build(&["--bin", "nameko"]))
        .await
}

/// The `greeter` example, a user's own binary on the library entry, built on first use.
async fn greeter_bin() -> &'static Path {
    GREETER
        .get_or_init(|| cargo_build(&["--example", "greeter"]))
        .await
}

/// Builds one executable of nameko-cli and returns its path as cargo reports it.
async fn cargo_build(target: &[&str]) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace root");
    let build = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "-p", "nameko-cli", "--message-format=json"])
        .args(target)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(BUILD_TIMEOUT, build)
        .await
        .expect("the build finished in time")
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build -p nameko-cli {target:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for {target:?}"))
}

/// A free TCP port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A running `nameko` process: its stdout read line by line, its stderr kept for failure
/// messages. Killed if dropped (a failed test never leaves one behind).
struct Nameko {
    child: Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: Arc<Mutex<String>>,
}

impl Nameko {
    /// Starts `nameko <args>` with `AMQP_URI` set to `broker` (if any).
    async fn spawn(args: &[&str], broker: Option<&str>) -> Self {
        Self::spawn_bin(nameko_bin().await, args, broker)
    }

    /// Starts `<binary> <args>` with `AMQP_URI` set to `broker` (if any).
    fn spawn_bin(binary: &Path, args: &[&str], broker: Option<&str>) -> Self {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_remove("AMQP_URI")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(uri) = broker {
            command.env("AMQP_URI", uri);
        }
        let mut child = command.spawn().expect("nameko starts");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Starts `nameko run <args>` and waits until it says `starting services: <services>`.
    async fn run(args: &[&str], broker: Option<&str>, services: &str) -> Self {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        let mut nameko = Self::spawn(&full, broker).await;
        nameko
            .expect_line(&format!("starting services: {services}"), START_TIMEOUT)
            .await;
        nameko
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a stdout line equal to `expected`, skipping others; fails with the logs.
    async fn expect_line(&mut self, expected: &str, timeout: Duration) {
        let wait = async {
            loop {
                match self.stdout.next_line().await {
                    Ok(Some(line)) if line == expected => return Ok(()),
                    Ok(Some(_)) => {}
                    Ok(None) => return Err("nameko closed its stdout"),
                    Err(_) => return Err("reading nameko's stdout failed"),
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!(
                "{why} before printing `{expected}`; stderr:\n{}",
                self.stderr()
            ),
            Err(_) => panic!(
                "nameko did not print `{expected}` within {timeout:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Sends SIGTERM, as a process manager does, and checks for a clean exit.
    async fn terminate(self) {
        self.stop_with("TERM").await;
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does, and checks for a clean exit.
    async fn interrupt(self) {
        self.stop_with("INT").await;
    }

    async fn stop_with(mut self, signal: &str) {
        let pid = self.child.id().expect("nameko is still running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
        let exit = tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("nameko did not stop within {STOP_TIMEOUT:?} of SIG{signal}")
            })
            .expect("waiting for nameko");
        assert!(
            exit.success(),
            "nameko exited with {exit} after SIG{signal}; stderr:\n{}",
            self.stderr()
        );
    }
}

/// What a one-shot command printed and how it exited.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `nameko <args>` to completion.
async fn nameko_once(args: &[&str], broker: Option<&str>) -> Output {
    let mut command = Command::new(nameko_bin().await);
    command
        .args(args)
        .env_remove("AMQP_URI")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(uri) = broker {
        command.env("AMQP_URI", uri);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("nameko finished in time")
        .expect("nameko runs");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An HTTP response as `curl -i` shows it.
#[derive(Debug)]
struct Response {
    status_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request, as `curl -i [-d body]` does, and reads the whole response.
async fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the example");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nConnection: close\r\n"
    );
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the response arrived in time")
        .expect("reading the response");
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    Response {
        status_line,
        headers,
        body: body.to_owned(),
    }
}

/// `--define WEB_SERVER_ADDRESS=127.0.0.1:<port>` for a fresh port, and that port.
fn web_address() -> (String, u16) {
    let port = free_port();
    (format!("WEB_SERVER_ADDRESS=127.0.0.1:{port}"), port)
}

/// Checks what `curl -i` would show: the status line, content type, length and body.
fn assert_response(response: &Response, status_line: &str, content_type: &str, body: &str) {
    assert_eq!(response.status_line, status_line, "{response:?}");
    assert_eq!(
        response.header("Content-Type"),
        Some(content_type),
        "{response:?}"
    );
    let length = body.len().to_string();
    assert_eq!(
        response.header("Content-Length"),
        Some(length.as_str()),
        "{response:?}"
    );
    assert!(response.header("Date").is_some(), "{response:?}");
    assert_eq!(response.body, body, "{response:?}");
}

const TEXT: &str = "text/plain; charset=utf-8";

#[tokio::test]
async fn http_answers_as_nameko_documents() {
    let (define, port) = web_address();
    let nameko = Nameko::run(&["http", "--define", &define], None, "http_service").await;

    let get = http(port, "GET", "/get/42", None).await;
    assert_response(&get, "HTTP/1.1 200 OK", TEXT, r#"{"value": 42}"#);
    let post = http(port, "POST", "/post", Some("post body")).await;
    assert_response(&post, "HTTP/1.1 200 OK", TEXT, "received: post body");
    for method in ["GET", "PUT", "POST", "DELETE"] {
        let multi = http(port, method, "/multi", None).await;
        assert_response(&multi, "HTTP/1.1 200 OK", TEXT, method);
    }
    let not_an_int = http(port, "GET", "/get/forty-two", None).await;
    assert!(
        not_an_int.status_line.starts_with("HTTP/1.1 404"),
        "{not_an_int:?}"
    );

    // Ctrl-C in the terminal where it runs.
    nameko.interrupt().await;
}

#[tokio::test]
async fn advanced_http_answers_as_nameko_documents() {
    let (define, port) = web_address();
    let nameko = Nameko::run(
        &["advanced_http", "--define", &define],
        None,
        "advanced_http_service",
    )
    .await;

    let privileged = http(port, "GET", "/privileged", None).await;
    assert_response(&privileged, "HTTP/1.1 403 FORBIDDEN", TEXT, "Forbidden");
    let headers = http(port, "GET", "/headers", None).await;
    assert_response(&headers, "HTTP/1.1 201 CREATED", TEXT, "");
    assert_eq!(
        headers.header("Location"),
        Some("https://www.example.com/widget/1")
    );
    let custom = http(port, "GET", "/custom", None).await;
    assert_response(&custom, "HTTP/1.1 200 OK", TEXT, "payload");

    nameko.terminate().await;
}

#[tokio::test]
async fn http_exceptions_answers_in_the_services_own_format() {
    let (define, port) = web_address();
    let nameko = Nameko::run(
        &["http_exceptions", "--define", &define],
        None,
        "http_service",
    )
    .await;

    let response = http(port, "GET", "/custom_exception", None).await;
    assert_response(
        &response,
        "HTTP/1.1 400 BAD REQUEST",
        "application/json",
        r#"{"error": "INVALID_ARGUMENTS", "message": "Argument `foo` is required."}"#,
    );

    nameko.terminate().await;
}

#[tokio::test]
async fn timer_prints_pong_every_second_and_stops_on_sigterm() {
    let mut nameko = Nameko::run(&["timer"], None, "service").await;
    nameko.expect_line("pong", Duration::from_secs(5)).await;
    nameko.expect_line("pong", Duration::from_secs(5)).await;
    nameko.terminate().await;
}

#[tokio::test]
async fn show_config_prints_the_effective_config_as_yaml() {
    let dir = std::env::temp_dir().join(format!("nameko-cli-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    std::fs::write(
        &file,
        "AMQP_URI: ${NAMEKO_E2E_UNSET_BROKER:amqp://guest:guest@rabbit}\nmax_workers: 3\n",
    )
    .unwrap();
    let out = nameko_once(
        &[
            "show-config",
            "--config",
            file.to_str().unwrap(),
            "--define",
            "max_workers=5",
            "--define",
            "WEB_SERVER_ADDRESS=127.0.0.1:8001",
        ],
        Some("amqp://from-the-environment"),
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert_eq!(
        out.stdout,
        "AMQP_URI: amqp://guest:guest@rabbit\nmax_workers: 5\nWEB_SERVER_ADDRESS: 127.0.0.1:8001\n"
    );
}

#[tokio::test]
async fn mistakes_exit_non_zero_with_a_clear_message() {
    let unknown = nameko_once(&["run", "nope"], None).await;
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown
            .stderr
            .contains("error: nothing to run is called `nope`: expected one of `"),
        "{}",
        unknown.stderr
    );
    let usage = nameko_once(&["call"], None).await;
    assert_eq!(usage.code, Some(2), "{}", usage.stderr);
    let bad_json = nameko_once(&["call", "greeting_service.hello", "Matt"], None).await;
    assert_eq!(bad_json.code, Some(1));
    assert!(
        bad_json.stderr.contains("which is not JSON"),
        "{}",
        bad_json.stderr
    );
}

#[tokio::test]
async fn services_that_cannot_start_exit_non_zero_and_say_why() {
    // Nothing listens on a port that was just free: the broker cannot be reached.
    let broker = format!("amqp://guest:secret@127.0.0.1:{}", free_port());
    let out = nameko_once(&["run", "helloworld", "--broker", &broker], None).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(!out.stdout.contains("starting services:"), "{}", out.stdout);
    assert!(
        out.stderr.contains("error: service `greeting_service`")
            && out.stderr.contains("could not connect to the broker"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("secret"), "{}", out.stderr);

    // A port already taken: the web server cannot listen.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let define = format!("WEB_SERVER_ADDRESS={}", taken.local_addr().unwrap());
    let out = nameko_once(&["run", "http", "--define", &define], None).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("cannot listen on"), "{}", out.stderr);
}

#[tokio::test]
async fn helloworld_answers_nameko_call() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let nameko = Nameko::run(&["helloworld"], Some(&uri), "greeting_service").await;

    let positional = nameko_call(&["greeting_service.hello", r#"["Matt"]"#], &uri).await;
    assert_eq!(positional.stdout, "\"Hello, Matt!\"\n");
    let keyword = nameko_call(&["greeting_service.hello", r#"{"name": "Matt"}"#], &uri).await;
    assert_eq!(keyword.stdout, "\"Hello, Matt!\"\n");

    let wrong = nameko_once(
        &["call", "greeting_service.hello", r#"["Matt", "Bob"]"#],
        Some(&uri),
    )
    .await;
    assert_eq!(wrong.code, Some(1), "{}", wrong.stderr);
    assert!(wrong.stdout.is_empty(), "{}", wrong.stdout);
    assert!(
        wrong.stderr.contains(
            "error: greeting_service.hello raised IncorrectSignature: hello() takes 1 positional argument but 2 were given"
        ),
        "{}",
        wrong.stderr
    );
    let missing = nameko_once(&["call", "greeting_service.goodbye"], Some(&uri)).await;
    assert_eq!(missing.code, Some(1), "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains("error: greeting_service.goodbye raised MethodNotFound: goodbye"),
        "{}",
        missing.stderr
    );

    nameko.terminate().await;
}

#[tokio::test]
async fn call_says_when_no_service_listens() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let service = unique("nobody");
    let target = format!("{service}.hello");
    let out = nameko_once(&["call", &target, "--timeout", "5"], Some(&uri)).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("error: unknown service `{service}`")),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn rpc_calls_through_a_proxy_across_processes() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let _service_y = SERVICE_Y.lock().await;
    // One process per service, as on two machines: `NAME:SERVICE` picks one of a group.
    let y = Nameko::run(&["rpc:service_y"], Some(&uri), "service_y").await;
    let x = Nameko::run(&["rpc:service_x"], Some(&uri), "service_x").await;

    let out = nameko_call(&["service_x.remote_method", r#"["hellø"]"#], &uri).await;
    assert_eq!(out.stdout, "\"hellø-x-y\"\n");

    x.terminate().await;
    y.terminate().await;
}

#[tokio::test]
async fn events_reach_service_b_from_service_a_and_from_the_command_line() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let mut nameko = Nameko::run(&["events"], Some(&uri), "service_a, service_b").await;

    let out = nameko_call(&["service_a.dispatching_method", r#"["hello"]"#], &uri).await;
    assert_eq!(out.stdout, "null\n");
    nameko
        .expect_line("service b received: hello", Duration::from_secs(10))
        .await;

    let dispatched = nameko_once(
        &["dispatch", "service_a", "event_type", r#"{"id": 1}"#],
        Some(&uri),
    )
    .await;
    assert_eq!(dispatched.code, Some(0), "{}", dispatched.stderr);
    nameko
        .expect_line(r#"service b received: {"id":1}"#, Duration::from_secs(10))
        .await;

    nameko.terminate().await;
}

#[tokio::test]
async fn event_broadcast_reaches_every_instance() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let mut first = Nameko::run(&["event_broadcast"], Some(&uri), "listener").await;
    let mut second = Nameko::run(&["event_broadcast"], Some(&uri), "listener").await;

    let out = nameko_once(&["dispatch", "monitor", "ping", r#""ping""#], Some(&uri)).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    first
        .expect_line("pong from listener", Duration::from_secs(10))
        .await;
    second
        .expect_line("pong from listener", Duration::from_secs(10))
        .await;

    first.terminate().await;
    second.terminate().await;
}

/// `nameko call <args>`, which must succeed; its output.
async fn nameko_call(args: &[&str], uri: &str) -> Output {
    let mut full = vec!["call"];
    full.extend_from_slice(args);
    let out = nameko_once(&full, Some(uri)).await;
    assert_eq!(
        out.code,
        Some(0),
        "nameko call {args:?} failed:\n{}",
        out.stderr
    );
    out
}

#[tokio::test]
async fn an_own_binary_gets_the_same_commands() {
    // Without a broker: the commands and options are there.
    let mut show = Nameko::spawn_bin(
        greeter_bin().await,
        &["show-config", "--define", "GREETING=Howdy"],
        Some("amqp://guest:guest@rabbit"),
    );
    show.expect_line("AMQP_URI: amqp://guest:guest@rabbit", START_TIMEOUT)
        .await;
    show.expect_line("GREETING: Howdy", START_TIMEOUT).await;

    let Some(uri) = broker_uri().await else {
        return;
    };
    let mut greeter = Nameko::spawn_bin(
        greeter_bin().await,
        &["run", "greeter", "--define", "GREETING=Howdy"],
        Some(&uri),
    );
    greeter
        .expect_line("starting services: greeter", START_TIMEOUT)
        .await;
    let out = nameko_call(&["greeter.hello", r#"["Matt"]"#], &uri).await;
    assert_eq!(out.stdout, "\"Howdy, Matt! (greeting 1)\"\n");
    // The first worker's ledger entry was committed at its teardown, so the count goes on.
    let out = nameko_call(&["greeter.hello", r#"["Ann"]"#], &uri).await;
    assert_eq!(out.stdout, "\"Howdy, Ann! (greeting 2)\"\n");
    greeter.terminate().await;
}

/// The documentation's Python `service_y`, as a module Python Nameko's `nameko run` imports.
const PYTHON_SERVICE_Y: &str = r#"from nameko.rpc import rpc


class ServiceY:
    name = "service_y"

    @rpc
    def append_identifier(self, value):
        return u"{}-y".format(value)
"#;

/// A Python `ClusterRpcProxy` calling `service_x.remote_method("hellø")`.
const PYTHON_CLIENT: &str = r#"
import warnings
warnings.simplefilter("ignore")
import eventlet
eventlet.monkey_patch()
import os
from nameko.standalone.rpc import ClusterRpcProxy
with ClusterRpcProxy({"AMQP_URI": os.environ["AMQP_URI"]}, timeout=10) as rpc:
    print(rpc.service_x.remote_method("hellø"))
"#;

#[tokio::test]
async fn rust_and_python_services_mix_in_one_cluster() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let Some(python) = python() else {
        return;
    };
    let _service_y = SERVICE_Y.lock().await;

    // Python Nameko's own `nameko run`, on the documentation's Python `service_y`.
    let dir = std::env::temp_dir().join(unique("nameko-cli-interop"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rpc_y.py"), PYTHON_SERVICE_Y).unwrap();
    let mut python_y = Command::new(&python)
        .current_dir(&dir)
        .args([
            "-c",
            "import sys; from nameko.cli.main import main; sys.argv[0] = 'nameko'; main()",
            "run",
            "--broker",
            &uri,
            "rpc_y",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python nameko starts");
    // Python Nameko logs (to stderr) once its consumer has connected.
    let mut python_log = BufReader::new(python_y.stderr.take().unwrap()).lines();
    let connected = async {
        while let Some(line) = python_log.next_line().await.unwrap() {
            if line.starts_with("Connected to amqp://") {
                return;
            }
        }
        panic!("python nameko ended before connecting");
    };
    tokio::time::timeout(START_TIMEOUT, connected)
        .await
        .expect("python nameko connected in time");

    // The Rust `service_x`, calling the Python `service_y`.
    let x = Nameko::run(&["rpc:service_x"], Some(&uri), "service_x").await;
    let out = nameko_call(&["service_x.remote_method", r#"["hellø"]"#], &uri).await;
    assert_eq!(out.stdout, "\"hellø-x-y\"\n");

    // A Python client calling the Rust `service_x`: Python, Rust, Python again.
    let client = Command::new(&python)
        .args(["-c", PYTHON_CLIENT])
        .env("AMQP_URI", &uri)
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let client = tokio::time::timeout(Duration::from_secs(60), client)
        .await
        .expect("the python client finished in time")
        .expect("python runs");
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&client.stdout), "hellø-x-y\n");

    x.terminate().await;
    let pid = python_y.id().expect("python nameko is running");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    tokio::time::timeout(STOP_TIMEOUT, python_y.wait())
        .await
        .expect("python nameko stopped in time")
        .expect("waiting for python nameko");
    let _ = std::fs::remove_dir_all(&dir);
}
