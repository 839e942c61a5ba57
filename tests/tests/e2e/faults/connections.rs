//! The broker's side of a connection: connections the broker closes (with `rabbitmqctl`) are
//! reopened, and handlers that hog their threads starve neither heartbeats nor other calls.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nameko_amqp::ConnectionRole;
use nameko_core::{ContainerState, RemoteError, Service, Worker};
use nameko_events::{StandaloneDispatcher, event_handler, names};
use nameko_rpc::rpc;
use serde_json::json;
use tokio::sync::mpsc;

use crate::proxy::FaultProxy;
use crate::support::faults::{
    CONNECT_TIMEOUT, Executions, WAIT, calls, client, delete_queues, inspector, recorded, settle,
    shared_connection, start, tags, wait_for_consumers, within,
};
use crate::support::processes::{
    broker_peer_ports, close_broker_connection, rabbitmqctl, rabbitmqctl_output,
};
use crate::support::{broker_uri, config, unique};

/// The broker's own tool closes the service's connections (as an operator, or a broker
/// shutting down, does): the service reconnects and serves on, and the broker holds no
/// connection of the old ones.
#[tokio::test]
async fn connections_the_broker_closes_are_reopened() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let Some(rabbitmqctl) = rabbitmqctl() else {
        return;
    };
    let proxy = FaultProxy::for_broker(&uri).await;
    let config_service = config(&proxy.uri(&uri, CONNECT_TIMEOUT), &[]);
    let name = unique("faults_forced");
    let executions = Executions::default();
    let (events_tx, mut events) = mpsc::unbounded_channel::<String>();
    let on_job = move |_: Worker, payload: serde_json::Value| {
        let events_tx = events_tx.clone();
        async move {
            let _ = events_tx.send(payload["id"].as_str().unwrap_or_default().to_owned());
        }
    };
    let source = unique("faults_src");
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("work", recorded(&executions)))
            .entrypoint(event_handler(source.as_str(), "job", "on_job", on_job)),
        &config_service,
    )
    .await;
    let direct = config(&uri, &[]);
    let client = client(&direct).await;
    let dispatcher = StandaloneDispatcher::new(&direct).unwrap();
    let mut workers = service.container().subscribe_workers();
    calls(&client, &name, &tags("before", 2)).await;
    settle(&mut workers, 2, &config_service).await;
    // Replies go out on the requests' channels: the service consumes and never publishes, so
    // it holds one connection.
    proxy.wait_for_open(1, WAIT).await;

    let closed = proxy.upstream_ports();
    for port in &closed {
        close_broker_connection(&rabbitmqctl, *port).await;
    }
    // The consumers reconnect at once.
    let reopened = async {
        while proxy.linked_connections() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within(reopened).await;
    assert_eq!(service.state(), ContainerState::Running);

    calls(&client, &name, &tags("after", 2)).await;
    within(dispatcher.dispatch(&source, "job", &json!({"id": "after"})))
        .await
        .unwrap();
    assert_eq!(within(events.recv()).await.unwrap(), "after");
    assert_eq!(executions.total(), 4, "each call handled once");

    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    let event_queue = names::service_pool_queue(&source, "job", &name, "on_job");
    wait_for_consumers(&inspector, &queue, 1).await;
    wait_for_consumers(&inspector, &event_queue, 1).await;
    proxy.wait_for_open(1, WAIT).await;
    let open = broker_peer_ports(&rabbitmqctl).await;
    for port in closed {
        assert!(
            !open.contains(&port),
            "the broker still holds connection :{port}"
        );
    }
    let queues = rabbitmqctl_output(
        &rabbitmqctl,
        &["-q", "--no-table-headers", "list_queues", "name"],
    )
    .await
    .lines()
    .map(str::trim)
    .filter(|queue| queue.contains(name.as_str()))
    .map(str::to_owned)
    .collect::<HashSet<_>>();
    assert_eq!(
        queues,
        HashSet::from([queue.clone(), event_queue.clone()]),
        "recovery declared the same queues again, and no others"
    );
    client.stop().await;
    within(service.stop()).await;
    delete_queues(&inspector, &[queue, event_queue]).await;
}

/// Handlers that hog their thread (blocking, as CPU-bound code does) for several heartbeat
/// intervals. With one of the runtime's two threads blocked, other calls are answered
/// meanwhile. With both blocked, nothing else runs, but the connection's heartbeats do (on the
/// broker runtime): the broker keeps the connection, no request is handed out again, and each
/// blocked call finishes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_hogging_their_threads_starve_neither_heartbeats_nor_other_calls() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &["HEARTBEAT=1"]);
    let name = unique("faults_hog");
    let hogging = Arc::new(AtomicUsize::new(0));
    let hogs = Executions::default();
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let hog = {
        let (hogging, hogs) = (hogging.clone(), hogs.clone());
        move |_: Worker, (tag, seconds): (String, u64)| {
            let (hogging, hogs, started_tx) = (hogging.clone(), hogs.clone(), started_tx.clone());
            async move {
                hogs.record(&tag);
                hogging.fetch_add(1, Ordering::SeqCst);
                let _ = started_tx.send(());
                // Blocking on purpose: this is the misbehaving handler under test.
                std::thread::sleep(Duration::from_secs(seconds));
                hogging.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(tag)
            }
        }
    };
    let executions = Executions::default();
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("hog", hog))
            .entrypoint(rpc("work", recorded(&executions))),
        &config,
    )
    .await;
    let client = client(&config).await;
    calls(&client, &name, &tags("before", 1)).await;
    let consuming = shared_connection(&config, ConnectionRole::Consumer).await;
    let publishing = shared_connection(&config, ConnectionRole::Publisher).await;

    // Five seconds: the broker drops a connection after two missed one-second heartbeats.
    let hogged = within(client.call_async::<String>(&name, "hog", ("alone", 5)))
        .await
        .unwrap();
    within(started.recv()).await.unwrap();
    calls(&client, &name, &tags("meanwhile", 3)).await;
    assert_eq!(
        hogging.load(Ordering::SeqCst),
        1,
        "the other calls were answered while the handler hogged its thread"
    );
    assert_eq!(within(hogged).await.unwrap(), "alone");

    let first = within(client.call_async::<String>(&name, "hog", ("first", 5)))
        .await
        .unwrap();
    let second = within(client.call_async::<String>(&name, "hog", ("second", 5)))
        .await
        .unwrap();
    assert_eq!(within(first).await.unwrap(), "first");
    assert_eq!(within(second).await.unwrap(), "second");

    calls(&client, &name, &tags("after", 1)).await;
    for (role, before) in [
        (ConnectionRole::Consumer, &consuming),
        (ConnectionRole::Publisher, &publishing),
    ] {
        let now = shared_connection(&config, role).await;
        assert!(
            now.same_connection(before),
            "the {role} connection survived"
        );
    }
    for tag in ["alone", "first", "second"] {
        assert_eq!(
            hogs.of(tag),
            1,
            "`{tag}` ran once: nothing was handed out again"
        );
    }
    assert_eq!(executions.total(), 5);
    assert_eq!(service.state(), ContainerState::Running);
    client.stop().await;
    within(service.stop()).await;
    let inspector = inspector(&uri).await;
    delete_queues(&inspector, &[format!("rpc-{name}")]).await;
}
