//! The `http` entrypoint through real service containers over real TCP: return forms, error
//! forms, custom error responses, worker semantics (context, arguments, `max_workers`, panics),
//! graceful stop and kill, services sharing an address, and start errors. No broker is involved.

#![allow(
    clippy::unwrap_used,
    reason = "handlers and helpers outside `#[test]` functions fail the test loudly on purpose"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nameko_core::{ContainerState, RemoteError, Service, Worker};
use nameko_http::{
    Request, Response, ResponseFromException, StatusCode, WEB_MAX_BODY_SIZE, full, http,
};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use support::{config, config_at, get, send, start, start_error, within};

/// A handler that reports when it starts, then waits until the test opens its gate.
fn gated(
    gate: &Arc<Semaphore>,
    started: &mpsc::UnboundedSender<()>,
) -> impl Fn(Worker, Request) -> std::pin::Pin<Box<dyn Future<Output = &'static str> + Send>>
+ Send
+ Sync
+ 'static {
    let gate = gate.clone();
    let started = started.clone();
    move |_, _| {
        let gate = gate.clone();
        let started = started.clone();
        Box::pin(async move {
            started.send(()).unwrap();
            let _pass = gate.acquire().await.unwrap();
            "done"
        })
    }
}

async fn quick(_: Worker, _: Request) -> &'static str {
    "quick"
}

#[tokio::test]
async fn each_return_form_reaches_the_client() {
    async fn string(_: Worker, request: Request) -> String {
        format!(
            "{{\"value\": {}}}",
            request.path_values().get_int("value").unwrap()
        )
    }
    async fn static_str(_: Worker, _: Request) -> &'static str {
        "static"
    }
    async fn status(_: Worker, _: Request) -> (StatusCode, String) {
        (StatusCode::ACCEPTED, "accepted".to_owned())
    }
    async fn headers(_: Worker, _: Request) -> (u16, Vec<(&'static str, &'static str)>, String) {
        (
            201,
            vec![
                ("Location", "https://www.example.com/widget/1"),
                ("X-Foo", "bar"),
            ],
            String::new(),
        )
    }
    async fn json_headers(
        _: Worker,
        _: Request,
    ) -> (u16, [(&'static str, &'static str); 1], &'static str) {
        (200, [("Content-Type", "application/json")], r#"{"a": 1}"#)
    }
    async fn full_response(_: Worker, _: Request) -> Response {
        let mut response = Response::new(full("short and stout"));
        *response.status_mut() = StatusCode::IM_A_TEAPOT;
        response
            .headers_mut()
            .insert("x-teapot", "yes".parse().unwrap());
        response
    }
    async fn result_ok(_: Worker, request: Request) -> Result<String, RemoteError> {
        Ok(format!(
            "uuid {}",
            request.path_values().get_uuid("id").unwrap()
        ))
    }
    async fn anyhow_ok(_: Worker, request: Request) -> anyhow::Result<(u16, String)> {
        let x = request.path_values().get_float("x").unwrap();
        Ok((200, format!("half is {}", x / 2.0)))
    }

    let service = Service::new("return_forms")
        .entrypoint(http("GET", "/get/<int:value>", "string", string))
        .entrypoint(http("GET", "/static", "static_str", static_str))
        .entrypoint(http("GET", "/status", "status", status))
        .entrypoint(http("GET", "/headers", "headers", headers))
        .entrypoint(http("GET", "/json", "json_headers", json_headers))
        .entrypoint(http("GET", "/full", "full_response", full_response))
        .entrypoint(http("GET", "/ok/<uuid:id>", "result_ok", result_ok))
        .entrypoint(http("GET", "/half/<float:x>", "anyhow_ok", anyhow_ok));
    let (container, addr) = start(service, config()).await;

    let reply = get(addr, "/get/42").await;
    assert_eq!(reply.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("content-length"), Some("13"));
    assert_eq!(reply.text(), r#"{"value": 42}"#);
    // A value its converter refuses never reaches the handler.
    assert_eq!(get(addr, "/get/forty-two").await.status, 404);

    let reply = get(addr, "/static").await;
    assert_eq!((reply.status, reply.text()), (200, "static"));

    let reply = get(addr, "/status").await;
    assert_eq!(reply.status_line, "HTTP/1.1 202 ACCEPTED");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.text(), "accepted");

    let reply = get(addr, "/headers").await;
    assert_eq!(reply.status_line, "HTTP/1.1 201 CREATED");
    assert_eq!(
        reply.header("location"),
        Some("https://www.example.com/widget/1")
    );
    assert_eq!(reply.header("x-foo"), Some("bar"));
    assert_eq!(reply.header("content-length"), Some("0"));
    assert_eq!(reply.text(), "");

    let reply = get(addr, "/json").await;
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.text(), r#"{"a": 1}"#);

    let reply = get(addr, "/full").await;
    assert_eq!(reply.status_line, "HTTP/1.1 418 I'M A TEAPOT");
    assert_eq!(reply.header("x-teapot"), Some("yes"));
    assert_eq!(reply.header("content-type"), None);
    assert_eq!(reply.text(), "short and stout");

    let reply = get(addr, "/ok/123E4567-E89B-12D3-A456-426614174000").await;
    assert_eq!(
        (reply.status, reply.text()),
        (200, "uuid 123e4567-e89b-12d3-a456-426614174000")
    );

    let reply = get(addr, "/half/3.0").await;
    assert_eq!((reply.status, reply.text()), (200, "half is 1.5"));

    within(container.stop()).await;
}

#[tokio::test]
async fn handler_errors_get_nameko_default_responses() {
    async fn fail(_: Worker, _: Request) -> Result<String, RemoteError> {
        Err(RemoteError::new(
            "CustomError",
            "svc.CustomError",
            "http broke",
        ))
    }
    async fn expected(_: Worker, _: Request) -> Result<String, RemoteError> {
        Err(RemoteError::new(
            "ValueError",
            "builtins.ValueError",
            "bad value",
        ))
    }
    async fn bad_request(_: Worker, _: Request) -> Result<String, RemoteError> {
        Err(RemoteError::incorrect_signature("missing `foo`"))
    }
    async fn plain(_: Worker, _: Request) -> anyhow::Result<String> {
        anyhow::bail!("plain failure")
    }

    let service = Service::new("error_forms")
        .entrypoint(http("GET", "/fail", "fail", fail))
        .entrypoint(
            http("GET", "/expected", "expected", expected).expected_exceptions(["ValueError"]),
        )
        .entrypoint(http("POST", "/bad", "bad_request", bad_request))
        .entrypoint(http("GET", "/plain", "plain", plain));
    let (container, addr) = start(service, config()).await;

    let reply = get(addr, "/fail").await;
    assert_eq!(reply.status_line, "HTTP/1.1 500 INTERNAL SERVER ERROR");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.text(), "Error: CustomError: http broke\n");

    let reply = get(addr, "/expected").await;
    assert_eq!(reply.status_line, "HTTP/1.1 400 BAD REQUEST");
    assert_eq!(reply.text(), "Error: ValueError: bad value\n");

    let reply = send(addr, "POST", "/bad", &[], b"x").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.text(), "Error: IncorrectSignature: missing `foo`\n");

    let reply = get(addr, "/plain").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.text(), "Error: Error: plain failure\n");

    within(container.stop()).await;
}

#[tokio::test]
async fn a_custom_response_from_exception_answers_what_it_knows() {
    async fn invalid(_: Worker, _: Request) -> Result<String, RemoteError> {
        Err(RemoteError::new(
            "InvalidArgumentsError",
            "svc.InvalidArgumentsError",
            "Argument `foo` is required.",
        ))
    }
    async fn other(_: Worker, _: Request) -> Result<String, RemoteError> {
        Err(RemoteError::new(
            "CustomError",
            "svc.CustomError",
            "http broke",
        ))
    }
    fn json_errors(error: &RemoteError) -> Option<Response> {
        (error.exc_type == "InvalidArgumentsError").then(|| {
            let body = json!({"error": "INVALID_ARGUMENTS", "message": error.value});
            let mut response = Response::new(full(body.to_string()));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            response
        })
    }

    // One mapping shared by two entrypoints, and one that answers every error.
    let shared = ResponseFromException::new(json_errors);
    let service = Service::new("custom_errors")
        .entrypoint(
            http("GET", "/invalid", "invalid", invalid).response_from_exception(shared.clone()),
        )
        .entrypoint(http("GET", "/other", "other", other).response_from_exception(shared))
        .entrypoint(
            http("GET", "/teapot", "teapot", other).response_from_exception(|_: &RemoteError| {
                let mut response = Response::new(full("no"));
                *response.status_mut() = StatusCode::IM_A_TEAPOT;
                response
            }),
        );
    let (container, addr) = start(service, config()).await;

    let reply = get(addr, "/invalid").await;
    assert_eq!(reply.status_line, "HTTP/1.1 400 BAD REQUEST");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap(),
        json!({"error": "INVALID_ARGUMENTS", "message": "Argument `foo` is required."})
    );

    // What the mapping leaves alone gets Nameko's default.
    let reply = get(addr, "/other").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.text(), "Error: CustomError: http broke\n");

    let reply = get(addr, "/teapot").await;
    assert_eq!((reply.status, reply.text()), (418, "no"));

    within(container.stop()).await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_the_service_keeps_serving() {
    async fn panics(_: Worker, request: Request) -> String {
        if request.query("panic").is_some() {
            panic!("boom");
        }
        "fine".to_owned()
    }
    let service = Service::new("panicking").entrypoint(http("GET", "/maybe", "panics", panics));
    let (container, addr) = start(service, config()).await;

    let reply = get(addr, "/maybe?panic=1").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.text(), "Error: HandlerPanicked: boom\n");
    for _ in 0..3 {
        let reply = get(addr, "/maybe").await;
        assert_eq!((reply.status, reply.text()), (200, "fine"));
    }
    assert_eq!(container.state(), ContainerState::Running);

    within(container.stop()).await;
}

#[tokio::test]
async fn workers_start_with_empty_context_and_log_the_request_and_path_values() {
    async fn get_method(_: Worker, _: Request) -> (u16, &'static str) {
        (202, "")
    }
    let service = Service::new("worker_args").entrypoint(
        http("GET", "/get/<int:value>/<token>", "get_method", get_method)
            .sensitive_arguments(["token"]),
    );
    let (container, addr) = start(service, config()).await;
    let mut events = container.container().subscribe_workers();

    let reply = send(addr, "GET", "/get/42/secret?q=1", &[("X-User", "bob")], b"").await;
    assert_eq!(reply.status, 202);

    let event = within(events.recv()).await.unwrap();
    let context = &event.context;
    assert_eq!(context.entrypoint().method_name(), "get_method");
    assert!(context.data().is_empty(), "{:?}", context.data());
    // The path holds the sensitive `token`, so `request` does not show it; the path values are
    // there by name.
    assert_eq!(
        context.args(),
        &json!({"value": 42, "token": "secret", "request": "GET ********"})
    );
    assert_eq!(
        context.redacted_args(),
        json!({"value": 42, "token": "********", "request": "GET ********"})
    );
    // The worker's result is the status code.
    assert_eq!(event.result, Ok(json!(202)));

    within(container.stop()).await;
}

#[tokio::test]
async fn max_workers_bounds_concurrent_http_handlers() {
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handler = {
        let inner = gated(&gate, &started_tx);
        let (running, most) = (running.clone(), most.clone());
        move |worker: Worker, request: Request| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let call = inner(worker, request);
            let running = running.clone();
            async move {
                let out = call.await;
                running.fetch_sub(1, Ordering::SeqCst);
                out
            }
        }
    };
    let mut config = config();
    config.set("max_workers", 2);
    let service = Service::new("bounded").entrypoint(http("GET", "/slow", "slow", handler));
    let (container, addr) = start(service, config).await;

    let requests: Vec<_> = (0..4).map(|_| tokio::spawn(get(addr, "/slow"))).collect();
    within(started.recv()).await.unwrap();
    within(started.recv()).await.unwrap();
    // Two handlers hold both slots: the other requests wait for one.
    let third = tokio::time::timeout(std::time::Duration::from_millis(300), started.recv()).await;
    assert!(
        third.is_err(),
        "a third handler started with max_workers = 2"
    );
    assert_eq!(running.load(Ordering::SeqCst), 2);

    gate.add_permits(4);
    for request in requests {
        let reply = within(request).await.unwrap();
        assert_eq!((reply.status, reply.text()), (200, "done"));
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);

    within(container.stop()).await;
}

#[tokio::test]
async fn graceful_stop_finishes_in_flight_requests_and_refuses_new_ones() {
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let service = Service::new("stopping")
        .entrypoint(http("GET", "/slow", "slow", gated(&gate, &started_tx)))
        .entrypoint(http("GET", "/quick", "quick", quick));
    let (container, addr) = start(service, config()).await;

    let in_flight = tokio::spawn(get(addr, "/slow"));
    within(started.recv()).await.unwrap();
    let stopping = tokio::spawn({
        let container = container.clone();
        async move { container.stop().await }
    });

    // Once the entrypoints have stopped, new requests are refused.
    let refused = within(async {
        loop {
            let reply = get(addr, "/quick").await;
            if reply.status != 200 {
                break reply;
            }
        }
    })
    .await;
    assert_eq!(refused.status_line, "HTTP/1.1 503 SERVICE UNAVAILABLE");
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(refused.text(), "Service Unavailable\n");
    assert_eq!(get(addr, "/slow").await.status, 503);

    // The stop waits for the request in flight, which then gets its response.
    assert!(!stopping.is_finished());
    gate.add_permits(1);
    let reply = within(in_flight).await.unwrap();
    assert_eq!((reply.status, reply.text()), (200, "done"));
    within(stopping).await.unwrap();
    assert_eq!(container.state(), ContainerState::Stopped);

    // The last service on the address closed the listener.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn kill_answers_in_flight_requests_with_503() {
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let service =
        Service::new("killed").entrypoint(http("GET", "/slow", "slow", gated(&gate, &started_tx)));
    let (container, addr) = start(service, config()).await;

    let in_flight = tokio::spawn(get(addr, "/slow"));
    within(started.recv()).await.unwrap();
    within(container.kill()).await;
    let reply = within(in_flight).await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(container.state(), ContainerState::Killed);
}

#[tokio::test]
async fn two_services_on_one_address_share_a_listener_without_misrouting() {
    async fn a(_: Worker, _: Request) -> &'static str {
        "a"
    }
    async fn b(_: Worker, _: Request) -> &'static str {
        "b"
    }
    let (first, addr) = start(
        Service::new("first").entrypoint(http("GET", "/a", "a", a)),
        config(),
    )
    .await;
    let (second, second_addr) = start(
        Service::new("second").entrypoint(http("GET,POST", "/b", "b", b)),
        config_at(addr),
    )
    .await;
    assert_eq!(second_addr, addr);

    for _ in 0..20 {
        assert_eq!(get(addr, "/a").await.text(), "a");
        assert_eq!(get(addr, "/b").await.text(), "b");
    }

    // The first service leaves; the second keeps serving on the same listener.
    within(first.stop()).await;
    assert_eq!(get(addr, "/a").await.status, 404);
    assert_eq!(get(addr, "/b").await.text(), "b");

    within(second.stop()).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_route_claimed_by_another_service_fails_the_start() {
    let (first, addr) = start(
        Service::new("owner").entrypoint(http("GET", "/same", "quick", quick)),
        config(),
    )
    .await;
    let error = start_error(
        Service::new("intruder").entrypoint(http("GET,POST", "/same", "quick", quick)),
        config_at(addr),
    )
    .await;
    assert!(error.contains("route clash: `GET /same`"), "{error}");
    assert_eq!(get(addr, "/same").await.text(), "quick");
    within(first.stop()).await;
}

#[tokio::test]
async fn misconfigurations_fail_the_start_with_clear_messages() {
    let one = |methods: &str, rule: &str| {
        Service::new("misconfigured").entrypoint(http(methods, rule, "quick", quick))
    };

    let mut bad_address = config();
    bad_address.set("WEB_SERVER_ADDRESS", "localhost:http");
    let error = start_error(one("GET", "/x"), bad_address).await;
    assert_eq!(
        error,
        "service `misconfigured`: http entrypoint `quick` failed to set up: misconfigured bind address `localhost:http`: expected `[address:]port`"
    );

    let error = start_error(one("GE T", "/x"), config()).await;
    assert_eq!(
        error,
        "service `misconfigured`: http entrypoint `quick` failed to set up: invalid http methods `GE T`: `GE T` is not a valid http method name"
    );

    let error = start_error(one("GET", "x/<int:id>"), config()).await;
    assert!(
        error.contains("http entrypoint `quick` failed to set up: invalid url rule `x/<int:id>`"),
        "{error}"
    );

    let mut bad_limit = config();
    bad_limit.set(WEB_MAX_BODY_SIZE, "lots");
    let error = start_error(one("GET", "/x"), bad_limit).await;
    assert!(
        error.contains("key `WEB_MAX_BODY_SIZE` must be a positive number of bytes"),
        "{error}"
    );

    async fn other(_: Worker, _: Request) -> &'static str {
        "other"
    }
    let clash = Service::new("misconfigured")
        .entrypoint(http("GET", "/items/<int:id>", "quick", quick))
        .entrypoint(http("GET,DELETE", "/items/<int:other>", "other", other));
    let error = start_error(clash, config()).await;
    assert!(
        error.contains("route clash: `GET /items/<int:other>`"),
        "{error}"
    );
}

#[tokio::test]
async fn a_port_in_use_is_a_start_error_naming_the_address() {
    let blocker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken = blocker.local_addr().unwrap();
    let error = start_error(
        Service::new("late").entrypoint(http("GET", "/x", "quick", quick)),
        config_at(taken),
    )
    .await;
    assert!(
        error.contains(&format!("cannot listen on `{taken}`")),
        "{error}"
    );
}

#[tokio::test]
async fn head_404_405_and_413_hold_through_a_container() {
    async fn post(_: Worker, request: Request) -> String {
        format!("received: {}", request.text().unwrap())
    }
    let mut config = config();
    config.set(WEB_MAX_BODY_SIZE, 16);
    let service = Service::new("routing")
        .entrypoint(http("GET", "/get", "quick", quick))
        .entrypoint(http("POST", "/post", "post", post));
    let (container, addr) = start(service, config).await;

    let reply = send(addr, "HEAD", "/get", &[], b"").await;
    assert_eq!(reply.status_line, "HTTP/1.1 200 OK");
    assert_eq!(reply.header("content-length"), Some("5"));
    assert!(reply.body.is_empty());

    let reply = get(addr, "/nowhere").await;
    assert_eq!(reply.status_line, "HTTP/1.1 404 NOT FOUND");

    let reply = send(addr, "DELETE", "/get", &[], b"").await;
    assert_eq!(reply.status_line, "HTTP/1.1 405 METHOD NOT ALLOWED");
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));

    let reply = send(addr, "POST", "/post", &[], b"small body").await;
    assert_eq!((reply.status, reply.text()), (200, "received: small body"));
    // A declared length over the limit is refused before the body is read (or sent).
    let reply = send(addr, "POST", "/post", &[("Content-Length", "17")], b"").await;
    assert_eq!(reply.status, 413);

    within(container.stop()).await;
}

/// A dependency whose `worker_teardown` waits until the test opens its gate.
struct SlowTeardown {
    gate: Arc<Semaphore>,
    torn_down: Arc<AtomicUsize>,
}

impl nameko_core::Extension for SlowTeardown {}

impl nameko_core::DependencyProvider for SlowTeardown {
    async fn worker_teardown(&self, _: &nameko_core::WorkerContext) {
        let _pass = self.gate.acquire().await.unwrap();
        self.torn_down.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn the_response_leaves_before_a_slow_teardown_which_still_runs_to_its_end() {
    let gate = Arc::new(Semaphore::new(0));
    let torn_down = Arc::new(AtomicUsize::new(0));
    let service = Service::new("slow_teardown")
        .dependency(
            "slow",
            SlowTeardown {
                gate: gate.clone(),
                torn_down: torn_down.clone(),
            },
        )
        .entrypoint(http("GET", "/quick", "quick", quick));
    let (container, addr) = start(service, config()).await;
    let mut events = container.container().subscribe_workers();

    // The teardown is still waiting for the gate: the client has its answer regardless.
    let reply = within(get(addr, "/quick")).await;
    assert_eq!((reply.status, reply.text()), (200, "quick"));
    assert_eq!(torn_down.load(Ordering::SeqCst), 0);

    gate.add_permits(1);
    let event = within(events.recv()).await.unwrap();
    assert_eq!(event.result, Ok(json!(200)));
    assert_eq!(torn_down.load(Ordering::SeqCst), 1);
    within(container.stop()).await;
}
