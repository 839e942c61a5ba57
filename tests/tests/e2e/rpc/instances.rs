//! Several instances, slow workers, dead instances and stopping services: the queue is shared
//! round robin, a request outlives its instance, `max_workers` bounds handlers without stalling
//! the consumer, and a graceful stop finishes running work and hands back the rest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nameko_core::{ContainerState, RemoteError, Service, Worker};
use nameko_rpc::rpc;

use crate::support::raw::{Raw, delete_rpc_queues, wait_until_handed_out};
use crate::support::rpc::{Gate, ServiceX, client, held, hello, start, within};
use crate::support::{broker_uri, config, unique};

#[tokio::test]
async fn instances_share_the_queue_round_robin_each_request_handled_once() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_pool");
    let handled = Arc::new(Mutex::new(HashMap::<String, Vec<String>>::new()));
    let instance = |label: &'static str| {
        let handled = handled.clone();
        move |_: Worker, tag: String| {
            let handled = handled.clone();
            async move {
                handled
                    .lock()
                    .unwrap()
                    .entry(label.to_owned())
                    .or_default()
                    .push(tag.clone());
                Ok::<_, RemoteError>(label.to_owned())
            }
        }
    };
    let a = start(
        Service::new(name.as_str()).entrypoint(rpc("work", instance("a"))),
        &config,
    )
    .await;
    let b = start(
        Service::new(name.as_str()).entrypoint(rpc("work", instance("b"))),
        &config,
    )
    .await;
    let client = client(&config).await;

    let mut answered = Vec::new();
    for i in 0..10 {
        let by: String = within(client.call(&name, "work", (i.to_string(),)))
            .await
            .unwrap();
        answered.push(by);
    }
    let handled = handled.lock().unwrap().clone();
    let a_count = handled.get("a").map_or(0, Vec::len);
    let b_count = handled.get("b").map_or(0, Vec::len);
    assert_eq!(
        a_count + b_count,
        10,
        "each request handled exactly once: {handled:?}"
    );
    assert!(
        a_count >= 1 && b_count >= 1,
        "both instances served: {handled:?}"
    );
    let mut tags: Vec<String> = handled.values().flatten().cloned().collect();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 10);
    assert_eq!(answered.iter().filter(|by| *by == "a").count(), a_count);

    client.stop().await;
    within(a.stop()).await;
    within(b.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn a_request_survives_the_death_of_its_instance() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_at_least_once");
    let (gate, mut arrived) = Gate::new();
    let doomed = start(
        Service::new(name.as_str()).entrypoint(rpc("work", held("doomed", gate.clone()))),
        &config,
    )
    .await;
    let client = client(&config).await;
    let call = client
        .call_async::<String>(&name, "work", ("job",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "job");

    let (survivor_gate, mut survivor_arrived) = Gate::new();
    survivor_gate.release(1);
    let survivor = start(
        Service::new(name.as_str()).entrypoint(rpc("work", held("survivor", survivor_gate))),
        &config,
    )
    .await;
    within(doomed.kill()).await;
    assert_eq!(doomed.state(), ContainerState::Killed);

    assert_eq!(within(survivor_arrived.recv()).await.unwrap(), "job");
    assert_eq!(within(call).await.unwrap(), "survivor:job");
    client.stop().await;
    within(survivor.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn max_workers_bounds_concurrent_handlers_without_stalling_the_consumer() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    // Prefetch above max_workers, so only the worker pool can hold the extra requests back.
    let config = config(&uri, &["max_workers=2", "PREFETCH_COUNT=10"]);
    let name = unique("rpc_bounded");
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (gate, mut arrived) = Gate::new();
    let handler = {
        let (running, most, gate) = (running.clone(), most.clone(), gate.clone());
        move |_: Worker, tag: String| {
            let (running, most, gate) = (running.clone(), most.clone(), gate.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                gate.pass(tag.clone()).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(tag)
            }
        }
    };
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("work", handler))
            .entrypoint(rpc("hello", hello)),
        &config,
    )
    .await;
    let client = client(&config).await;
    let mut calls = Vec::new();
    for i in 0..5 {
        calls.push(
            client
                .call_async::<String>(&name, "work", (i.to_string(),))
                .await
                .unwrap(),
        );
    }
    within(arrived.recv()).await.unwrap();
    within(arrived.recv()).await.unwrap();

    // Every request has reached the service (none waits in the queue) while two run.
    let raw = Raw::new(&uri, "nameko-rpc").await;
    wait_until_handed_out(&raw, &name).await;
    assert_eq!(running.load(Ordering::SeqCst), 2);
    assert!(arrived.try_recv().is_err(), "a third handler started");

    // Release one at a time: a new handler starts only when one finishes.
    for _ in 0..3 {
        gate.release(1);
        within(arrived.recv()).await.unwrap();
        assert!(most.load(Ordering::SeqCst) <= 2);
    }
    gate.release(2);
    let mut results = Vec::new();
    for call in calls {
        results.push(within(call).await.unwrap());
    }
    results.sort();
    assert_eq!(results, ["0", "1", "2", "3", "4"]);
    assert_eq!(most.load(Ordering::SeqCst), 2);

    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn graceful_stop_finishes_running_work_and_hands_back_the_rest() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &["max_workers=1", "PREFETCH_COUNT=5"]);
    let name = unique("rpc_stop");
    let (gate, mut arrived) = Gate::new();
    let first = start(
        Service::new(name.as_str()).entrypoint(rpc("work", held("first", gate.clone()))),
        &config,
    )
    .await;
    let client = client(&config).await;
    let running = client
        .call_async::<String>(&name, "work", ("running",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "running");
    let waiting = client
        .call_async::<String>(&name, "work", ("waiting",))
        .await
        .unwrap();

    // Wait until the second request sits with the first instance (prefetched, no worker slot).
    let raw = Raw::new(&uri, "nameko-rpc").await;
    wait_until_handed_out(&raw, &name).await;

    let stopping = tokio::spawn({
        let first = first.clone();
        async move { first.stop().await }
    });
    // The running worker finishes and its reply goes out during the stop.
    gate.release(1);
    assert_eq!(within(running).await.unwrap(), "first:running");
    within(stopping).await.unwrap();
    assert_eq!(first.state(), ContainerState::Stopped);

    // The request that never got a worker went back to the queue for the next instance.
    let (next_gate, mut next_arrived) = Gate::new();
    next_gate.release(1);
    let second = start(
        Service::new(name.as_str()).entrypoint(rpc("work", held("second", next_gate))),
        &config,
    )
    .await;
    assert_eq!(within(next_arrived.recv()).await.unwrap(), "waiting");
    assert_eq!(within(waiting).await.unwrap(), "second:waiting");
    client.stop().await;
    within(second.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn a_stopping_service_still_receives_replies_for_its_running_workers() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let x = unique("service_x");
    let y = unique("service_y");
    let (gate, mut arrived) = Gate::new();
    let service_y = start(
        Service::new(y.as_str()).entrypoint(rpc("slow", held("y", gate.clone()))),
        &config,
    )
    .await;
    async fn relay(worker: Worker<ServiceX>, tag: String) -> anyhow::Result<String> {
        let answer: String = worker.service().y.call(&worker, "slow", (tag,)).await?;
        Ok(format!("x:{answer}"))
    }
    let service_x = start(
        ServiceX::service(&x, &y).entrypoint(rpc("relay", relay)),
        &config,
    )
    .await;
    let client = client(&config).await;
    let call = client
        .call_async::<String>(&x, "relay", ("job",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "job");

    // x stops while its worker waits for y: its reply listener must outlive the worker.
    let stopping = tokio::spawn({
        let service_x = service_x.clone();
        async move { service_x.stop().await }
    });
    gate.release(1);
    assert_eq!(within(call).await.unwrap(), "x:y:job");
    within(stopping).await.unwrap();
    assert_eq!(service_x.state(), ContainerState::Stopped);

    client.stop().await;
    within(service_y.stop()).await;
    delete_rpc_queues(&uri, &[&x, &y]).await;
}
