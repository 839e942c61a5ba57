//! Real processes: a `nameko-fault-service` instance SIGKILLed mid-call, and a bounded load test
//! with instances killed (SIGKILL), stopped (SIGTERM) and started again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nameko_events::{StandaloneDispatcher, names};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::support::faults::{WAIT, client, delete_queues, inspector, wait_for_consumers, within};
use crate::support::processes::{ServiceProcess, collect_lines, count};
use crate::support::{broker_uri, config, unique};

/// An instance SIGKILLed while it runs a call and handles an event: both come back from the
/// broker to the other instance, the caller gets exactly one answer, from the survivor, and
/// the event is handled to the end once.
#[tokio::test]
async fn an_instance_killed_mid_call_hands_its_work_to_another() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let (name, source) = (unique("faults_sigkill"), unique("faults_src"));
    let (lines, mut ready, output) = collect_lines();
    let doomed = ServiceProcess::start(1, &name, &source, &uri, &lines, &mut ready).await;

    let client = client(&config(&uri, &[])).await;
    let call = within(client.call_async::<String>(&name, "work", ("k1", 1500)))
        .await
        .unwrap();
    let dispatcher = StandaloneDispatcher::from_uri(&uri).unwrap();
    within(dispatcher.dispatch(&source, "job", &json!({"id": "e1", "millis": 1500})))
        .await
        .unwrap();
    output
        .wait_for(WAIT, |lines| {
            count(lines, Some(1), "start k1") == 1 && count(lines, Some(1), "event-start e1") == 1
        })
        .await;

    let survivor = ServiceProcess::start(2, &name, &source, &uri, &lines, &mut ready).await;
    doomed.kill().await;

    let answer = within(call).await.unwrap();
    let survivor_pid = survivor.child.id().expect("running");
    assert_eq!(answer, format!("{survivor_pid}:k1"));
    output
        .wait_for(WAIT, |lines| count(lines, Some(2), "event-done e1") == 1)
        .await;
    {
        let lines = output.snapshot();
        assert_eq!(count(&lines, Some(1), "done k1"), 0, "killed mid-call");
        assert_eq!(
            count(&lines, Some(1), "event-done e1"),
            0,
            "killed mid-event"
        );
        assert_eq!(count(&lines, None, "done k1"), 1);
        assert_eq!(count(&lines, None, "event-done e1"), 1);
    }

    // The dead instance's consumers are gone with its connection.
    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    let event_queue = names::service_pool_queue(&source, "job", &name, "on_job");
    wait_for_consumers(&inspector, &queue, 1).await;
    wait_for_consumers(&inspector, &event_queue, 1).await;

    assert_eq!(survivor.terminate().await, Some(0), "a graceful stop");
    output
        .wait_for(WAIT, |lines| count(lines, Some(2), "stopped") == 1)
        .await;
    wait_for_consumers(&inspector, &queue, 0).await;
    client.stop().await;
    delete_queues(&inspector, &[queue, event_queue]).await;
}

/// How many calls and events the load test sends: `NAMEKO_LOAD` or 5,000. Four in five are RPC
/// calls, the rest events.
fn load_size() -> usize {
    std::env::var("NAMEKO_LOAD")
        .ok()
        .and_then(|size| size.parse().ok())
        .unwrap_or(5_000)
}

/// Calls and events from several clients while service instances are killed (SIGKILL) and
/// stopped (SIGTERM) and new ones started: every call is answered once, every event handled,
/// none lost. Events may be handled twice only when an instance was killed between handling
/// one and acknowledging it (at-least-once); each such duplicate must involve a killed
/// instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_instances_killed_and_restarted_loses_nothing() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let total = load_size();
    let (call_count, event_count) = (total - total / 5, total / 5);
    let (name, source) = (unique("faults_load"), unique("faults_src"));
    let (lines, mut ready, output) = collect_lines();
    let began = Instant::now();

    let mut instances = Vec::new();
    for number in 1..=3 {
        instances
            .push(ServiceProcess::start(number, &name, &source, &uri, &lines, &mut ready).await);
    }
    let mut next_number = 4;

    const CLIENTS: usize = 4;
    const IN_FLIGHT: usize = 32;
    let config = config(&uri, &[]);
    let answered = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for client_number in 0..CLIENTS {
        let client = client(&config)
            .await
            .with_timeout(Some(Duration::from_secs(120)));
        let (name, answered) = (name.clone(), answered.clone());
        senders.spawn(async move {
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut calls = tokio::task::JoinSet::new();
            let mut errors = Vec::new();
            for i in (client_number..call_count).step_by(CLIENTS) {
                let permit = slots.clone().acquire_owned().await.unwrap();
                let (client, name, answered) = (client.clone(), name.clone(), answered.clone());
                calls.spawn(async move {
                    let tag = format!("c{i}");
                    let millis = (i % 7) as u64;
                    let outcome = client
                        .call::<String>(&name, "work", (tag.clone(), millis))
                        .await;
                    drop(permit);
                    match outcome {
                        Ok(answer) if answer.ends_with(&format!(":{tag}")) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        }
                        Ok(answer) => Err(format!("`{tag}` answered `{answer}`")),
                        Err(error) => Err(format!("`{tag}` failed: {error}")),
                    }
                });
            }
            while let Some(outcome) = calls.join_next().await {
                if let Err(error) = outcome.expect("call task") {
                    errors.push(error);
                }
            }
            client.stop().await;
            errors
        });
    }
    let dispatcher = Arc::new(StandaloneDispatcher::new(&config).unwrap());
    let dispatching = {
        let (dispatcher, source) = (dispatcher.clone(), source.clone());
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut sends = tokio::task::JoinSet::new();
            for i in 0..event_count {
                let permit = slots.clone().acquire_owned().await.unwrap();
                let (dispatcher, source) = (dispatcher.clone(), source.clone());
                sends.spawn(async move {
                    let payload = json!({"id": format!("e{i}"), "millis": i % 5});
                    let sent = dispatcher.dispatch(&source, "job", &payload).await;
                    drop(permit);
                    sent.map_err(|error| format!("event e{i}: {error}"))
                });
            }
            let mut errors = Vec::new();
            while let Some(sent) = sends.join_next().await {
                if let Err(error) = sent.expect("dispatch task") {
                    errors.push(error);
                }
            }
            errors
        })
    };

    // Chaos while the load runs: replace one instance at a time, alternately killing it and
    // stopping it gracefully, until the calls are answered.
    let mut killed = HashSet::new();
    let (mut kills, mut stops) = (0usize, 0usize);
    let mut round = 0usize;
    while answered.load(Ordering::Relaxed) < call_count && !senders.is_empty() {
        let progress = answered.load(Ordering::Relaxed);
        let moved = async {
            while answered.load(Ordering::Relaxed) < (progress + call_count / 12).min(call_count) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(120), moved)
            .await
            .is_err()
        {
            panic!(
                "no progress for two minutes: {} of {call_count} calls answered",
                answered.load(Ordering::Relaxed)
            );
        }
        if answered.load(Ordering::Relaxed) >= call_count {
            break;
        }
        let victim = instances.remove(0);
        let number = victim.number;
        if round.is_multiple_of(2) {
            victim.kill().await;
            killed.insert(number);
            kills += 1;
        } else {
            assert_eq!(
                victim.terminate().await,
                Some(0),
                "instance {number} stops gracefully"
            );
            stops += 1;
        }
        round += 1;
        instances.push(
            ServiceProcess::start(next_number, &name, &source, &uri, &lines, &mut ready).await,
        );
        next_number += 1;
    }

    let mut call_errors = Vec::new();
    while let Some(errors) = senders.join_next().await {
        call_errors.extend(errors.expect("client task"));
    }
    let event_errors = within(dispatching).await.expect("dispatch task");
    let answered = answered.load(Ordering::Relaxed);

    // Every event that was dispatched gets handled, however long the last ones take.
    output
        .wait_for(Duration::from_secs(120), |lines| {
            let handled: HashSet<&str> = lines
                .iter()
                .filter_map(|(_, line)| line.strip_prefix("event-done "))
                .collect();
            handled.len() >= event_count
        })
        .await;
    let elapsed = began.elapsed();

    let lines = output.snapshot();
    let mut handled: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut executions: HashMap<&str, usize> = HashMap::new();
    for (number, line) in &lines {
        if let Some(id) = line.strip_prefix("event-done ") {
            handled.entry(id).or_default().push(*number);
        } else if let Some(tag) = line.strip_prefix("done ") {
            *executions.entry(tag).or_default() += 1;
        }
    }
    let event_duplicates: Vec<_> = handled.iter().filter(|(_, by)| by.len() > 1).collect();
    let rpc_reruns: usize = executions.values().map(|runs| runs - 1).sum();
    let lost_events = (0..event_count)
        .filter(|i| !handled.contains_key(format!("e{i}").as_str()))
        .count();
    eprintln!(
        "load: {total} sent ({call_count} calls, {event_count} events) in {elapsed:.1?} with \
         {kills} instances killed and {stops} stopped; {answered} calls answered, {} call \
         errors, {rpc_reruns} requests run again after a kill; {} events handled, {} dispatch \
         errors, {} handled twice, {lost_events} lost",
        call_errors.len(),
        handled.len(),
        event_errors.len(),
        event_duplicates.len(),
    );

    assert!(
        call_errors.is_empty(),
        "call errors: {:?}",
        &call_errors[..call_errors.len().min(5)]
    );
    assert!(
        event_errors.is_empty(),
        "dispatch errors: {:?}",
        &event_errors[..event_errors.len().min(5)]
    );
    assert_eq!(answered, call_count, "every call answered");
    assert_eq!(lost_events, 0, "every event handled");
    for (id, by) in &event_duplicates {
        assert!(
            by.iter().any(|number| killed.contains(number)),
            "event {id} handled twice ({by:?}) without an instance being killed"
        );
    }
    assert!(
        kills + stops >= 1,
        "the load outlasted at least one replacement"
    );

    let inspector = inspector(&uri).await;
    let queue = format!("rpc-{name}");
    let event_queue = names::service_pool_queue(&source, "job", &name, "on_job");
    wait_for_consumers(&inspector, &queue, instances.len() as u32).await;
    for instance in instances {
        assert_eq!(instance.terminate().await, Some(0));
    }
    wait_for_consumers(&inspector, &queue, 0).await;
    let left = inspector
        .inspect_queue(&event_queue)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.message_count, 0, "no event left behind");
    delete_queues(&inspector, &[queue, event_queue]).await;
}
