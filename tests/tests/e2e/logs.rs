//! What reaches the log when calls fail: the arguments an entrypoint names in
//! `sensitive_arguments` appear as `********`, whichever entrypoint took the call (RPC, event,
//! HTTP) and whichever log line mentions it (the worker's error, the RPC consumer refusing a
//! call whose arguments do not bind).
//!
//! Each test captures the log with a subscriber of its own thread and runs on a current-thread
//! runtime, so every task it starts (consumers, workers, the web server) logs into its capture
//! and no other test's lines get in. The secrets are unique per test.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nameko_core::{RemoteError, Service, ServiceContainer, Worker};
use nameko_events::{StandaloneDispatcher, event_handler};
use nameko_http::server::WebServerExtension;
use nameko_http::{Request, http};
use nameko_rpc::{ClusterRpcClient, RpcError, rpc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tracing_subscriber::fmt::MakeWriter;

use crate::support::{broker_uri, config, unique};

const WAIT: Duration = Duration::from_secs(20);

/// The log lines of one test, and a signal for each line written.
#[derive(Clone, Default)]
struct Captured {
    lines: Arc<Mutex<Vec<u8>>>,
    written: Arc<Notify>,
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.lines.lock().unwrap().extend_from_slice(bytes);
        self.written.notify_one();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// Starts capturing this thread's log at `DEBUG`, until the guard is dropped.
    fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(captured.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }

    /// Waits until a line with `needle` was logged, and returns the log.
    async fn wait_for(&self, needle: &str) -> String {
        let waiting = async {
            loop {
                // A line written between this check and the wait leaves a permit behind.
                if self.text().contains(needle) {
                    return;
                }
                self.written.notified().await;
            }
        };
        if tokio::time::timeout(WAIT, waiting).await.is_err() {
            panic!("`{needle}` was never logged:\n{}", self.text());
        }
        self.text()
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
    #[allow(dead_code, reason = "bound so that its redaction is seen; never read")]
    password: u64,
}

async fn login(_: Worker, args: Login) -> Result<String, RemoteError> {
    Err(RemoteError::new(
        "LoginFailed",
        "tests.LoginFailed",
        format!("no such user {}", args.user),
    ))
}

#[tokio::test(flavor = "current_thread")]
async fn rpc_logs_never_show_sensitive_arguments() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let (log, _guard) = Captured::start();
    let config = config(&uri, &[]);
    let service = unique("sensitive_rpc");
    let container = ServiceContainer::new(
        Service::new(service.as_str())
            .entrypoint(rpc("login", login).sensitive_arguments(["password"])),
        config.clone(),
    )
    .unwrap();
    tokio::time::timeout(WAIT, container.start())
        .await
        .unwrap()
        .unwrap();
    let client = ClusterRpcClient::connect(&config).await.unwrap();

    // The handler fails: the worker's error line lists the arguments, redacted.
    let secret = 918_273_645_546_372_819_u64;
    let error = client
        .call::<Value>(
            &service,
            "login",
            json!({"user": "matt", "password": secret}),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::Remote { .. }), "{error}");
    let text = log.wait_for("error in worker").await;
    assert!(text.contains(r#""password":"********""#), "{text}");
    assert!(text.contains(r#""user":"matt""#), "{text}");

    // The arguments do not bind: the consumer's line quotes the binding error, which must not
    // quote the value of a sensitive argument either.
    let wrong_type = "Hunter2-not-a-number";
    let error = client
        .call::<Value>(
            &service,
            "login",
            json!({"user": "matt", "password": wrong_type}),
        )
        .await
        .unwrap_err();
    let RpcError::Remote { error, .. } = error else {
        panic!("expected an IncorrectSignature, got {error}");
    };
    assert_eq!(error.exc_type, "IncorrectSignature");
    assert!(!error.value.contains(wrong_type), "{}", error.value);
    let text = log.wait_for("refused without a worker").await;

    for secret in [secret.to_string(), wrong_type.to_owned()] {
        assert!(!text.contains(&secret), "{secret} was logged:\n{text}");
    }
    container.stop().await;
    crate::support::cleanup(&uri, &[format!("rpc-{service}")], &[]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn event_logs_never_show_sensitive_arguments() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let (log, _guard) = Captured::start();
    let config = config(&uri, &[]);
    let (source, service) = (unique("sensitive_source"), unique("sensitive_events"));
    let (seen, mut handled) = mpsc::unbounded_channel();
    let handler = move |_: Worker, payload: Value| {
        let seen = seen.clone();
        async move {
            let _ = seen.send(());
            Err::<(), _>(RemoteError::new(
                "Rejected",
                "tests.Rejected",
                format!("cannot take card of {}", payload["holder"]),
            ))
        }
    };
    let container = ServiceContainer::new(
        Service::new(service.as_str()).entrypoint(
            event_handler(&source, "paid", "on_paid", handler)
                .sensitive_arguments(["payload.card.number"]),
        ),
        config.clone(),
    )
    .unwrap();
    tokio::time::timeout(WAIT, container.start())
        .await
        .unwrap()
        .unwrap();

    let number = "4111-5555-7777-9999";
    StandaloneDispatcher::new(&config)
        .unwrap()
        .dispatch(
            &source,
            "paid",
            &json!({"holder": "matt", "card": {"number": number, "expiry": "12/30"}}),
        )
        .await
        .unwrap();
    tokio::time::timeout(WAIT, handled.recv())
        .await
        .unwrap()
        .unwrap();
    let text = log.wait_for("error in worker").await;
    assert!(text.contains(r#""number":"********""#), "{text}");
    assert!(text.contains(r#""expiry":"12/30""#), "{text}");
    assert!(
        !text.contains(number),
        "the card number was logged:\n{text}"
    );
    container.stop().await;
    crate::support::cleanup(
        &uri,
        &[nameko_events::names::service_pool_queue(
            &source, "paid", &service, "on_paid",
        )],
        &[nameko_events::names::event_exchange(&source)],
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn http_logs_never_show_sensitive_arguments() {
    let (log, _guard) = Captured::start();
    let mut config = nameko_core::Config::new();
    config.set("WEB_SERVER_ADDRESS", "127.0.0.1:0");
    async fn reset(_: Worker, request: Request) -> Result<String, RemoteError> {
        Err(RemoteError::new(
            "Expired",
            "tests.Expired",
            format!(
                "user {} has no pending reset",
                request.path_values().get_int("user").unwrap_or(0)
            ),
        ))
    }
    let container = ServiceContainer::new(
        Service::new(unique("sensitive_http").as_str()).entrypoint(
            http("GET", "/reset/<int:user>/<token>", "reset", reset).sensitive_arguments(["token"]),
        ),
        config,
    )
    .unwrap();
    tokio::time::timeout(WAIT, container.start())
        .await
        .unwrap()
        .unwrap();
    let addr = WebServerExtension::of(container.container())
        .local_addr()
        .unwrap();

    let token = "Tok3n-very-secret-reset-link";
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET /reset/7/{token}?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");

    let text = log.wait_for("error in worker").await;
    assert!(text.contains(r#""token":"********""#), "{text}");
    assert!(text.contains(r#""user":7"#), "{text}");
    assert!(!text.contains(token), "the token was logged:\n{text}");
    container.stop().await;
}
