//! The three handler types across instances and services: `service_pool` gives each event to
//! one instance per service and method, `singleton` to one handler of all, `broadcast` to every
//! instance, and with stable identifiers keeps events for an instance that is down.

use std::collections::BTreeMap;

use nameko_core::Service;
use nameko_events::{
    BroadcastIdentifier, HandlerType, StandaloneDispatcher, event_exchange, event_handler, names,
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::support::events::{
    by_who, dispatch_ids, ids, recorder, run, stragglers, take, take_until,
};
use crate::support::{broker_uri, cleanup, config, unique};

#[tokio::test]
async fn service_pool_gives_each_event_to_one_instance_per_service_and_method() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event) = (unique("src"), "thing");
    let (a, b) = (unique("pool_a"), unique("pool_b"));
    let (tx, mut inbox) = mpsc::unbounded_channel();

    let service_a = |instance: &str| {
        Service::new(a.as_str())
            .entrypoint(event_handler(
                &source,
                event,
                "first",
                recorder(&format!("a.first/{instance}"), &tx),
            ))
            .entrypoint(event_handler(
                &source,
                event,
                "second",
                recorder(&format!("a.second/{instance}"), &tx),
            ))
    };
    let service_b = |instance: &str| {
        Service::new(b.as_str()).entrypoint(event_handler(
            &source,
            event,
            "handle",
            recorder(&format!("b.handle/{instance}"), &tx),
        ))
    };
    let mut containers = Vec::new();
    for instance in ["1", "2"] {
        containers.push(run(service_a(instance), &config).await);
        containers.push(run(service_b(instance), &config).await);
    }

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 6).await;
    let mut reports = take(&mut inbox, 3 * 6).await;
    dispatcher
        .dispatch(&source, event, &json!({"id": 99}))
        .await
        .unwrap();
    reports.extend(
        take_until(&mut inbox, |got| {
            got.iter().filter(|r| r.payload["id"] == 99).count() == 3
        })
        .await,
    );
    reports.extend(stragglers(&mut inbox).await);

    let mut per_pool: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for report in &reports {
        let pool = report.who.split('/').next().unwrap();
        per_pool
            .entry(pool)
            .or_default()
            .push(report.payload["id"].as_i64().unwrap());
    }
    for ids in per_pool.values_mut() {
        ids.sort_unstable();
    }
    let each = vec![0, 1, 2, 3, 4, 5, 99];
    assert_eq!(
        per_pool,
        BTreeMap::from([
            ("a.first", each.clone()),
            ("a.second", each.clone()),
            ("b.handle", each)
        ]),
        "every (service, method) handles every event exactly once"
    );

    for container in &containers {
        container.stop().await;
    }
    cleanup(
        &uri,
        &[
            names::service_pool_queue(&source, event, &a, "first"),
            names::service_pool_queue(&source, event, &a, "second"),
            names::service_pool_queue(&source, event, &b, "handle"),
        ],
        &[event_exchange(&source)],
    )
    .await;
}

#[tokio::test]
async fn singleton_gives_each_event_to_exactly_one_handler_of_all_services() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event) = (unique("src"), "thing");
    let (tx, mut inbox) = mpsc::unbounded_channel();

    let mut containers = Vec::new();
    for service in [unique("single_a"), unique("single_b")] {
        for instance in ["1", "2"] {
            let handler = event_handler(
                &source,
                event,
                "handle",
                recorder(&format!("{service}/{instance}"), &tx),
            )
            .handler_type(HandlerType::Singleton);
            containers.push(run(Service::new(service.as_str()).entrypoint(handler), &config).await);
        }
    }

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 8).await;
    let mut reports = take(&mut inbox, 8).await;
    dispatcher
        .dispatch(&source, event, &json!({"id": 99}))
        .await
        .unwrap();
    reports.extend(take_until(&mut inbox, |got| got.iter().any(|r| r.payload["id"] == 99)).await);
    reports.extend(stragglers(&mut inbox).await);
    assert_eq!(
        ids(&reports),
        vec![0, 1, 2, 3, 4, 5, 6, 7, 99],
        "each event handled once overall"
    );

    for container in &containers {
        container.stop().await;
    }
    cleanup(
        &uri,
        &[names::singleton_queue(&source, event)],
        &[event_exchange(&source)],
    )
    .await;
}

#[tokio::test]
async fn broadcast_gives_each_event_to_every_instance() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let (source, event) = (unique("src"), "thing");
    let (tx, mut inbox) = mpsc::unbounded_channel();

    let mut containers = Vec::new();
    let mut everyone = Vec::new();
    for service in [unique("bcast_a"), unique("bcast_b")] {
        for instance in ["1", "2"] {
            let who = format!("{service}/{instance}");
            let handler = event_handler(&source, event, "handle", recorder(&who, &tx))
                .handler_type(HandlerType::broadcast())
                .reliable_delivery(false);
            containers.push(run(Service::new(service.as_str()).entrypoint(handler), &config).await);
            everyone.push(who);
        }
    }

    let dispatcher = StandaloneDispatcher::new(&config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 3).await;
    let mut reports = take(&mut inbox, 4 * 3).await;
    reports.extend(stragglers(&mut inbox).await);
    let expected: BTreeMap<String, Vec<i64>> = everyone
        .iter()
        .map(|who| (who.clone(), vec![0, 1, 2]))
        .collect();
    assert_eq!(
        by_who(&reports),
        expected,
        "every instance handles every event once"
    );

    for container in &containers {
        container.stop().await;
    }
    cleanup(&uri, &[], &[event_exchange(&source)]).await;
}

#[tokio::test]
async fn broadcast_with_stable_identifiers_keeps_events_while_an_instance_is_down() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let (source, event, service) = (unique("src"), "thing", unique("bcast"));
    let (tx, mut inbox) = mpsc::unbounded_channel();
    let instance = |who: &str, identifier: BroadcastIdentifier| {
        Service::new(service.as_str()).entrypoint(
            event_handler(&source, event, "handle", recorder(who, &tx))
                .handler_type(HandlerType::Broadcast(identifier)),
        )
    };
    let one_config = config(&uri, &["NODE_ID=node-one"]);
    let two_config = config(&uri, &[]);
    let one = run(
        instance("one", BroadcastIdentifier::Config("NODE_ID".into())),
        &one_config,
    )
    .await;
    let two = run(
        instance("two", BroadcastIdentifier::Fixed("node-two".into())),
        &two_config,
    )
    .await;

    one.stop().await;
    let dispatcher = StandaloneDispatcher::new(&two_config).unwrap();
    dispatch_ids(&dispatcher, &source, event, 2).await;
    let while_down = take(&mut inbox, 2).await;
    assert_eq!(
        by_who(&while_down),
        BTreeMap::from([("two".to_owned(), vec![0, 1])])
    );

    let again = run(
        instance("one again", BroadcastIdentifier::Config("NODE_ID".into())),
        &one_config,
    )
    .await;
    let caught_up = take(&mut inbox, 2).await;
    assert_eq!(
        by_who(&caught_up),
        BTreeMap::from([("one again".to_owned(), vec![0, 1])])
    );

    again.stop().await;
    two.stop().await;
    cleanup(
        &uri,
        &[
            names::broadcast_queue(&source, event, &service, "handle", "node-one"),
            names::broadcast_queue(&source, event, &service, "handle", "node-two"),
        ],
        &[event_exchange(&source)],
    )
    .await;
}
