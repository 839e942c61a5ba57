//! What a service costs the broker in connections, counted on the broker itself.
//!
//! Every AMQP extension reads its broker from one [`nameko_amqp::AmqpSettings`], so a service
//! with RPC, event handlers and a dispatcher asks for the same settings everywhere and shares one
//! consuming and one publishing connection, whatever the URI says about heartbeats. Each test runs
//! in a vhost of its own (made with `rabbitmqctl`), so the broker's connection list shows that
//! test's connections and nobody else's.

use std::path::PathBuf;
use std::time::Duration;

use nameko_core::{Service, ServiceContainer, Worker};
use nameko_events::{EventDispatcher, event_handler};
use nameko_rpc::{ClusterRpcClient, rpc};
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::support::{broker_uri, config, unique};

/// How long a step may take.
const EXPECT: Duration = Duration::from_secs(20);

/// A vhost of one test's own, deleted when dropped.
struct Vhost {
    rabbitmqctl: PathBuf,
    name: String,
}

impl Vhost {
    /// Makes a new vhost that `guest` may use, or `None` (after saying why) without
    /// `rabbitmqctl` outside CI.
    async fn new() -> Option<Self> {
        let rabbitmqctl = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("rabbitmqctl"))
            .find(|path| path.is_file());
        let Some(rabbitmqctl) = rabbitmqctl else {
            assert!(
                std::env::var_os("CI").is_none(),
                "rabbitmqctl is not on PATH; under CI the connection counts must be checked"
            );
            eprintln!("skipping: rabbitmqctl is not on PATH, so connections cannot be counted");
            return None;
        };
        let vhost = Self {
            rabbitmqctl,
            name: unique("conns"),
        };
        vhost.ctl(&["add_vhost", &vhost.name]).await;
        vhost
            .ctl(&[
                "set_permissions",
                "-p",
                &vhost.name,
                "guest",
                ".*",
                ".*",
                ".*",
            ])
            .await;
        Some(vhost)
    }

    async fn ctl(&self, args: &[&str]) -> String {
        let output = tokio::time::timeout(
            EXPECT,
            Command::new(&self.rabbitmqctl)
                .arg("-q")
                .args(args)
                .output(),
        )
        .await
        .expect("rabbitmqctl answers in time")
        .expect("rabbitmqctl runs");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The broker URI of this vhost, with `query` appended.
    fn uri(&self, base: &str, query: &str) -> String {
        let authority = base
            .split_once("://")
            .map_or(base, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or("localhost");
        format!("amqp://{authority}/{}{query}", self.name)
    }

    /// The heartbeat timeout of every open connection to this vhost, sorted.
    async fn heartbeats(&self) -> Vec<u64> {
        let listing = self
            .ctl(&["list_connections", "vhost", "timeout", "--no-table-headers"])
            .await;
        let mut timeouts: Vec<u64> = listing
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                (fields.next() == Some(self.name.as_str()))
                    .then(|| fields.next()?.trim().parse().ok())
                    .flatten()
            })
            .collect();
        timeouts.sort_unstable();
        timeouts
    }

    /// [`Vhost::heartbeats`] once it lists `expected` connections (the broker lists a new one
    /// a moment after its handshake), or whatever it lists at the deadline.
    async fn settled_heartbeats(&self, expected: usize) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + EXPECT;
        loop {
            let heartbeats = self.heartbeats().await;
            if heartbeats.len() == expected || tokio::time::Instant::now() > deadline {
                // Anything extra would show up now: look once more after a pause.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return self.heartbeats().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        // Deleting a vhost closes what is left on it; a test that failed must not leave one.
        let _ = std::process::Command::new(&self.rabbitmqctl)
            .args(["-q", "delete_vhost", &self.name])
            .output();
    }
}

/// The state of [`relay`]: the dispatcher its `emit` method uses.
struct Relay {
    dispatch: EventDispatcher,
}

/// A service with all three AMQP extensions: an `emit` method that dispatches `ping`, and a
/// handler of its own `ping` events that reports their payload to `seen`.
fn relay(name: &str, seen: mpsc::UnboundedSender<Value>) -> Service<Relay> {
    let emit = |worker: Worker<Relay>, payload: Value| async move {
        let dispatch = worker.service().dispatch.clone();
        dispatch.dispatch(&worker, "ping", &payload).await?;
        Ok::<_, nameko_events::Error>(())
    };
    let handle = move |_: Worker<Relay>, payload: Value| {
        let _ = seen.send(payload);
        async {}
    };
    Service::with_state(name, |deps| Relay {
        dispatch: deps.add("dispatch", EventDispatcher::new()),
    })
    .entrypoint(rpc("emit", emit))
    .entrypoint(event_handler(name, "ping", "handle", handle))
}

/// Runs [`relay`] with `defines` on a vhost of its own, calls it once so that every extension
/// has connected, and returns the heartbeat of each connection on the vhost.
async fn connections_of_a_relay(uri_query: &str, defines: &[&str]) -> Option<Vec<u64>> {
    let uri = broker_uri().await?;
    let vhost = Vhost::new().await?;
    let mut config = config(&vhost.uri(&uri, uri_query), defines);
    config.set("max_workers", 2);
    let name = unique("relay");
    let (seen, mut inbox) = mpsc::unbounded_channel();
    let container = ServiceContainer::new(relay(&name, seen), config.clone()).expect("a service");
    tokio::time::timeout(EXPECT, container.start())
        .await
        .expect("starts in time")
        .expect("the service starts");

    // The client shares the service's connections too: it reads the same settings in the
    // same process.
    let client = ClusterRpcClient::connect(&config).await.expect("a client");
    let payload = json!({"n": 1});
    let () = tokio::time::timeout(EXPECT, client.call(&name, "emit", [payload.clone()]))
        .await
        .expect("answered in time")
        .expect("emit succeeds");
    let got = tokio::time::timeout(EXPECT, inbox.recv()).await;
    assert_eq!(got.expect("the event arrives in time"), Some(payload));

    let heartbeats = vhost.settled_heartbeats(2).await;
    client.stop().await;
    container.stop().await;
    Some(heartbeats)
}

#[tokio::test]
async fn rpc_and_events_share_two_connections_with_the_uri_s_heartbeat() {
    let Some(heartbeats) = connections_of_a_relay("?heartbeat=15", &[]).await else {
        return;
    };
    assert_eq!(
        heartbeats,
        [15, 15],
        "one consuming and one publishing connection"
    );
}

#[tokio::test]
async fn the_heartbeat_key_beats_the_uri_s_on_every_connection() {
    let Some(heartbeats) = connections_of_a_relay("?heartbeat=15", &["HEARTBEAT=20"]).await else {
        return;
    };
    assert_eq!(heartbeats, [20, 20]);
}

#[tokio::test]
async fn without_a_heartbeat_anywhere_nameko_s_default_applies() {
    let Some(heartbeats) = connections_of_a_relay("", &[]).await else {
        return;
    };
    assert_eq!(heartbeats, [60, 60]);
}

#[tokio::test]
async fn an_events_only_service_refuses_a_serializer_it_cannot_speak() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &["serializer=pickle"]);
    let name = unique("pickled");
    let handle = |_: Worker, _: Value| async {};
    let service =
        Service::new(name.as_str()).entrypoint(event_handler(&name, "ping", "handle", handle));
    let container = ServiceContainer::new(service, config).expect("a service");
    let error = tokio::time::timeout(EXPECT, container.start())
        .await
        .expect("answers in time")
        .expect_err("pickle is refused at start")
        .to_string();
    assert!(error.contains("`serializer`"), "{error}");
    assert!(error.contains("json"), "{error}");
}
