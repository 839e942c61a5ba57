//! Events between Rust and Python Nameko 2.14.1 on one broker: Python dispatchers reaching Rust
//! handlers of every type, Rust dispatchers reaching Python handlers, and a Rust and a Python
//! instance of one service sharing its queue.
//!
//! The Python peers are `tests/python/events_dispatch.py` and `tests/python/events_handler.py`;
//! they print the lines the tests wait for and exit by themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nameko_core::testing::entrypoint_hook;
use nameko_core::{ContextData, Service};
use nameko_events::{HandlerType, StandaloneDispatcher, event_exchange, event_handler, names};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::cleanup;
use crate::support::events::{EXPECT, Received, recorder, run, stragglers, take};
use crate::support::{PythonProcess, broker_uri, config, python, unique};

/// How long a Python peer may take to start, which includes importing eventlet and nameko.
const PYTHON_START: Duration = Duration::from_secs(60);

/// One `event <payload> <context>` line of `events_handler.py`.
fn python_event(line: &str) -> (Value, Value) {
    let rest = line
        .strip_prefix("event ")
        .unwrap_or_else(|| panic!("expected an `event` line, found {line:?}"));
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
    let payload = values.next().expect("a payload").expect("json payload");
    let context = values.next().expect("a context").expect("json context");
    (payload, context)
}

/// A payload with what JSON codecs disagree on: non-ASCII text, floats, nulls, nesting.
fn tricky(id: i64) -> Value {
    json!({"id": id, "text": "caf\u{e9} \u{1f600}", "ratio": 1.5, "whole": 2.0, "none": null, "list": [1, "x", {"k": []}]})
}

#[tokio::test]
async fn python_dispatches_reach_rust_handlers_of_every_type() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let Some(python) = python() else { return };
    let config = config(&uri, &[]);
    let (source, event) = (unique("pysrc"), "thing");
    let (pool, single_a, single_b, bcast) = (
        unique("rs_pool"),
        unique("rs_single_a"),
        unique("rs_single_b"),
        unique("rs_bcast"),
    );
    let (tx, mut inbox) = mpsc::unbounded_channel();

    let mut containers = Vec::new();
    for instance in ["1", "2"] {
        let handler = event_handler(
            &source,
            event,
            "handle",
            recorder(&format!("pool/{instance}"), &tx),
        );
        containers.push(run(Service::new(pool.as_str()).entrypoint(handler), &config).await);
        let handler = event_handler(
            &source,
            event,
            "handle",
            recorder(&format!("bcast/{instance}"), &tx),
        )
        .handler_type(HandlerType::broadcast())
        .reliable_delivery(false);
        containers.push(run(Service::new(bcast.as_str()).entrypoint(handler), &config).await);
    }
    for service in [&single_a, &single_b] {
        let handler = event_handler(
            &source,
            event,
            "handle",
            recorder(&format!("single/{service}"), &tx),
        )
        .handler_type(HandlerType::Singleton);
        containers.push(run(Service::new(service.as_str()).entrypoint(handler), &config).await);
    }
    // Per event: one pool instance, one singleton handler, both broadcast instances.
    let kinds = |reports: &[Received]| {
        let mut kinds: Vec<&str> = reports
            .iter()
            .map(|r| r.who.split('/').next().unwrap())
            .collect();
        kinds.sort_unstable();
        kinds.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let expected_kinds = vec!["bcast", "bcast", "pool", "single"];

    let payload = tricky(1).to_string();
    let mut standalone = PythonProcess::spawn(
        &python,
        "events_dispatch.py",
        &uri,
        &["standalone", &source, event, &payload],
    );
    standalone.wait_for_line("dispatched -", PYTHON_START).await;
    assert_eq!(standalone.finish(EXPECT).await, 0);
    let reports = take(&mut inbox, 4).await;
    assert_eq!(kinds(&reports), expected_kinds);
    let bcast_instances: BTreeSet<&str> = reports
        .iter()
        .filter(|r| r.who.starts_with("bcast"))
        .map(|r| r.who.as_str())
        .collect();
    assert_eq!(bcast_instances.len(), 2, "both broadcast instances");
    for report in &reports {
        assert_eq!(report.payload, tricky(1), "{}", report.who);
        assert!(
            report.context.is_empty(),
            "the standalone dispatcher sends no headers"
        );
        assert_eq!(report.call_id_stack, vec![report.call_id.clone()]);
    }

    let payload = tricky(2).to_string();
    let context = json!({"user_id": "u-1", "language": "en-gb", "custom_key": "c"}).to_string();
    let mut in_service = PythonProcess::spawn(
        &python,
        "events_dispatch.py",
        &uri,
        &["service", &source, event, &payload, &context],
    );
    let line = in_service.next_line(PYTHON_START).await;
    let python_call_id = line
        .strip_prefix("dispatched ")
        .unwrap_or_else(|| panic!("expected `dispatched <call_id>`, found {line:?}"))
        .to_owned();
    assert!(python_call_id.starts_with(&format!("{source}.emit.")));
    assert_eq!(in_service.finish(EXPECT).await, 0);
    let mut reports = take(&mut inbox, 4).await;
    reports.extend(stragglers(&mut inbox).await);
    assert_eq!(kinds(&reports), expected_kinds);
    for report in &reports {
        assert_eq!(report.payload, tricky(2), "{}", report.who);
        assert_eq!(
            Value::Object(report.context.clone()),
            json!({"user_id": "u-1", "language": "en-gb", "custom_key": "c"}),
            "{}",
            report.who
        );
        assert_eq!(
            report.call_id_stack,
            vec![python_call_id.clone(), report.call_id.clone()]
        );
    }

    for container in &containers {
        container.stop().await;
    }
    cleanup(
        &uri,
        &[
            names::service_pool_queue(&source, event, &pool, "handle"),
            names::singleton_queue(&source, event),
        ],
        &[event_exchange(&source)],
    )
    .await;
}

#[tokio::test]
async fn rust_dispatches_reach_python_handlers() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let Some(python) = python() else { return };
    let config = config(&uri, &[]);
    let (source, event, stop) = (unique("rssrc"), "thing", "stop");
    let (pool, bcast) = (unique("py_pool"), unique("py_bcast"));

    let mut pool_py = PythonProcess::spawn(
        &python,
        "events_handler.py",
        &uri,
        &[&pool, &source, event, stop, "service_pool"],
    );
    let mut bcast_py = PythonProcess::spawn(
        &python,
        "events_handler.py",
        &uri,
        &[&bcast, &source, event, stop, "broadcast"],
    );
    pool_py.wait_for_line("ready", PYTHON_START).await;
    bcast_py.wait_for_line("ready", PYTHON_START).await;

    let emitter = run(crate::support::events::emitter(&source), &config).await;
    let context: ContextData =
        json!({"user_id": "u-1", "custom_key": "c", "call_id_stack": ["caller.method.0"]})
            .as_object()
            .unwrap()
            .clone();
    let emit_call_id = entrypoint_hook(&emitter, "emit")
        .unwrap()
        .context_data(context)
        .call(vec![json!(event), tricky(1)], Default::default())
        .await
        .unwrap()
        .unwrap();
    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatcher
        .dispatch(&source, event, &tricky(2))
        .await
        .unwrap();

    for peer in [&mut pool_py, &mut bcast_py] {
        let mut by_id = BTreeMap::new();
        for _ in 0..2 {
            let (payload, context) = python_event(&peer.next_line(EXPECT).await);
            by_id.insert(payload["id"].as_i64().unwrap(), (payload, context));
        }
        let (payload, context) = &by_id[&1];
        assert_eq!(payload, &tricky(1));
        assert_eq!(context["user_id"], "u-1");
        assert_eq!(context["custom_key"], "c");
        let python_call_id = context["call_id"].as_str().unwrap();
        assert_eq!(
            context["call_id_stack"],
            json!(["caller.method.0", emit_call_id, python_call_id]),
            "the stack arrives as a list and grows by the python worker"
        );
        let (payload, context) = &by_id[&2];
        assert_eq!(payload, &tricky(2));
        assert_eq!(
            context["call_id_stack"],
            json!([context["call_id"]]),
            "standalone: no headers"
        );
        assert!(context.get("user_id").is_none());
    }

    dispatcher
        .dispatch(&source, stop, &json!(null))
        .await
        .unwrap();
    assert_eq!(pool_py.finish(EXPECT).await, 0);
    assert_eq!(bcast_py.finish(EXPECT).await, 0);
    emitter.stop().await;
    cleanup(
        &uri,
        &[names::service_pool_queue(&source, event, &pool, "handle")],
        &[event_exchange(&source)],
    )
    .await;
}

#[tokio::test]
async fn rust_and_python_instances_share_a_service_pool() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let Some(python) = python() else { return };
    let config = config(&uri, &[]);
    let (source, event, stop, service) = (unique("src"), "job", "stop", unique("shared"));
    const EVENTS: i64 = 20;

    let mut peer = PythonProcess::spawn(
        &python,
        "events_handler.py",
        &uri,
        &[&service, &source, event, stop],
    );
    peer.wait_for_line("ready", PYTHON_START).await;
    let (tx, mut inbox) = mpsc::unbounded_channel();
    // Declares the very queue the Python instance declared: a difference in flags would be
    // refused by the broker and fail this start.
    let rust = run(
        Service::new(service.as_str()).entrypoint(event_handler(
            &source,
            event,
            "handle",
            recorder("rust", &tx),
        )),
        &config,
    )
    .await;

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    for id in 0..EVENTS {
        dispatcher
            .dispatch(&source, event, &json!({"id": id}))
            .await
            .unwrap();
    }
    let (mut by_rust, mut by_python) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + EXPECT;
    while (by_rust.len() + by_python.len()) < EVENTS as usize {
        tokio::select! {
            report = inbox.recv() => by_rust.push(report.unwrap().payload["id"].as_i64().unwrap()),
            line = peer.next_line(EXPECT) => by_python.push(python_event(&line).0["id"].as_i64().unwrap()),
            () = tokio::time::sleep_until(deadline) => panic!("rust got {by_rust:?}, python got {by_python:?}"),
        }
    }
    by_rust.extend(
        stragglers(&mut inbox)
            .await
            .iter()
            .map(|r| r.payload["id"].as_i64().unwrap()),
    );

    assert!(
        !by_rust.is_empty() && !by_python.is_empty(),
        "both share the work: rust {by_rust:?}, python {by_python:?}"
    );
    let mut all: Vec<i64> = by_rust.iter().chain(&by_python).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..EVENTS).collect::<Vec<_>>(),
        "every event once, no duplicates"
    );

    dispatcher
        .dispatch(&source, stop, &json!(null))
        .await
        .unwrap();
    assert_eq!(peer.finish(EXPECT).await, 0);
    rust.stop().await;
    cleanup(
        &uri,
        &[names::service_pool_queue(
            &source, event, &service, "handle",
        )],
        &[event_exchange(&source)],
    )
    .await;
}
