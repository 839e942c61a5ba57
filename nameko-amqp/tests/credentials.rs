//! Credentials never reach a log line or an error message: every way of failing to connect is
//! tried with a password nobody else uses, and neither the error (`Display` and `Debug`) nor
//! anything logged, by this crate or by lapin and its TLS stack at `TRACE`, may contain it.
//!
//! The log is captured by a process-wide subscriber, which is why these tests are a test binary
//! of their own: lapin logs from its own threads, which a per-thread subscriber would miss.
//! Tests run in parallel, so each looks for its own password in the shared capture.
//!
//! The one test that needs a broker (a login the broker refuses) connects to `AMQP_URI`
//! (default `amqp://guest:guest@127.0.0.1:5672/%2f`); without one it says so and passes, unless
//! `CI` is set, where a missing broker is a failure.

#![allow(
    clippy::unwrap_used,
    reason = "test code: failures are loud on purpose"
)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nameko_amqp::{AmqpUri, Connection, ConnectionConfig, ConnectionRole};
use tracing_subscriber::fmt::MakeWriter;

const DEFAULT_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PATIENCE: Duration = Duration::from_secs(10);

/// Everything logged by this process so far.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
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
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The process's log, captured at `TRACE` for every crate from the first call on.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(captured.clone())
            .init();
        captured
    })
}

/// A password for one test, unlike anything else in the process.
fn secret(name: &str) -> String {
    format!("Pw{name}{}", uuid::Uuid::new_v4().simple())
}

/// Fails unless neither `shown` nor the log so far holds `password`.
fn assert_hidden(password: &str, shown: &str) {
    assert!(!shown.contains(password), "the password shows in: {shown}");
    let log = logs().text();
    assert!(
        !log.contains(password),
        "the password was logged:\n{}",
        log.lines()
            .filter(|line| line.contains(password))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

async fn connect_error(config: &ConnectionConfig) -> String {
    let error = tokio::time::timeout(PATIENCE, Connection::connect(config))
        .await
        .expect("the attempt ends in time")
        .expect_err("the connection fails");
    format!("{error} / {error:?}")
}

#[tokio::test]
async fn a_refused_connection_does_not_show_the_password() {
    logs();
    let password = secret("refused");
    let config =
        ConnectionConfig::parse(&format!("amqp://user:{password}@127.0.0.1:1/%2f")).unwrap();
    let shown = connect_error(&config).await;
    assert!(shown.contains("amqp://user:***@127.0.0.1:1/%2f"), "{shown}");
    let shared = Connection::shared(&config, ConnectionRole::Consumer)
        .await
        .unwrap_err();
    assert_hidden(
        &password,
        &format!("{shown} {shared} {shared:?} {config:?} {}", config.uri()),
    );
}

#[tokio::test]
async fn a_tls_failure_does_not_show_the_password() {
    logs();
    let password = secret("tls");
    // Nothing listens on port 1, and a plain listener would fail the handshake: both are
    // failures of the TLS path.
    let config =
        ConnectionConfig::parse(&format!("amqps://user:{password}@127.0.0.1:1/%2f")).unwrap();
    let shown = connect_error(&config).await;
    assert!(shown.contains("amqps://user:***@"), "{shown}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = tokio::io::AsyncWriteExt::write_all(&mut socket, b"AMQP\x00\x00\x09\x01").await;
        }
    });
    let plain_port =
        ConnectionConfig::parse(&format!("amqps://user:{password}@127.0.0.1:{port}/")).unwrap();
    let not_tls = connect_error(&plain_port).await;
    serving.abort();
    assert_hidden(&password, &format!("{shown} {not_tls}"));
}

#[test]
fn uris_that_do_not_parse_do_not_show_the_password() {
    logs();
    let password = secret("parse");
    let mut shown = String::new();
    for text in [
        format!("amqp://user:{password}@host:port/v"),
        format!("amqp://user:{password}/x@host/v"),
        format!("amqp://user:{password}?x@host/v"),
        format!("amqp://user:{password}#x@host/v"),
        format!("amqp://user:{password}@[::1/v"),
        format!("amqp://user:{password}@h/v?heartbeat=soon"),
        format!("redis://user:{password}@h/v"),
    ] {
        let error = AmqpUri::parse(&text).unwrap_err();
        shown.push_str(&format!("{error} {error:?} "));
    }
    // A parameter the URI may carry but this client ignores is logged by name only.
    let uri = AmqpUri::parse(&format!("amqp://user:{password}@h/v?ignored_option=1")).unwrap();
    shown.push_str(&format!("{uri} {uri:?}"));
    assert!(
        logs().text().contains("ignored_option"),
        "the log is not captured"
    );
    assert_hidden(&password, &shown);
}

#[tokio::test]
async fn a_login_the_broker_refuses_does_not_show_the_password() {
    logs();
    let uri = std::env::var("AMQP_URI").unwrap_or_else(|_| DEFAULT_URI.to_owned());
    let broker = AmqpUri::parse(&uri).unwrap();
    let reachable = tokio::time::timeout(
        PATIENCE,
        Connection::connect(&ConnectionConfig::new(broker.clone())),
    )
    .await;
    if !matches!(reachable, Ok(Ok(_))) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no RabbitMQ answers at {broker}"
        );
        eprintln!("skipping: no RabbitMQ at {broker}; set AMQP_URI to run this test");
        return;
    }
    let password = secret("refusedlogin");
    let host = if broker.host().contains(':') {
        format!("[{}]", broker.host())
    } else {
        broker.host().to_owned()
    };
    for method in ["PLAIN", "AMQPLAIN"] {
        let config = ConnectionConfig::parse(&format!(
            "amqp://{}:{password}@{host}:{}/%2f",
            broker.username(),
            broker.port()
        ))
        .unwrap()
        .with_login_method(method)
        .unwrap();
        let shown = connect_error(&config).await;
        assert!(shown.contains("ACCESS_REFUSED"), "{method}: {shown}");
        assert_hidden(&password, &shown);
    }
}
