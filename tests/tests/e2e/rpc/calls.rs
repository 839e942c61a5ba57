//! Calls between services and from clients: context data and the call id stack, `RpcProxy`,
//! remote errors with their types, unknown services, timeouts and `call_async`.

use std::time::Duration;

use nameko_core::{ContextData, RemoteError, Service, Worker};
use nameko_rpc::{RpcError, RpcProxy, rpc};
use serde_json::{Value, json};

use crate::support::raw::{Raw, delete_rpc_queues};
use crate::support::rpc::{
    Gate, ServiceX, WAIT, assert_call_id_stack, client, held, hello, remote, start, whoami, within,
};
use crate::support::{broker_uri, config, unique};

#[tokio::test]
async fn context_data_and_call_id_stack_reach_the_handler() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_context");
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("whoami", whoami)),
        &config,
    )
    .await;
    let mut context = ContextData::new();
    context.insert("user_id".into(), json!("u-1"));
    context.insert("language".into(), json!("en-gb"));
    context.insert("custom_key".into(), json!("c"));
    let client = client(&config).await.with_context_data(context);

    let seen: Value = within(client.call(&name, "whoami", ())).await.unwrap();
    assert_eq!(seen["user_id"], "u-1");
    assert_eq!(seen["language"], "en-gb");
    assert_eq!(seen["custom_key"], "c");
    assert_call_id_stack(
        &seen,
        &["standalone_rpc_client.", &format!("{name}.whoami.")],
    );
    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn rpc_proxy_calls_another_service_with_the_workers_context() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let x = unique("service_x");
    let y = unique("service_y");

    async fn append_identifier(worker: Worker, value: String) -> Result<Value, RemoteError> {
        Ok(json!({
            "value": format!("{value}-y"),
            "user_id": worker.user_id(),
            "call_id_stack": worker.call_id_stack(),
        }))
    }
    async fn remote_method(worker: Worker<ServiceX>, value: String) -> anyhow::Result<Value> {
        let y = worker.service().y.bind(&worker);
        let mut answer: Value = y.call("append_identifier", (value,)).await?;
        let appended = format!("{}-x", answer["value"].as_str().unwrap_or_default());
        answer["value"] = json!(appended);
        Ok(answer)
    }
    async fn concurrent(
        worker: Worker<ServiceX>,
        values: Vec<String>,
    ) -> anyhow::Result<Vec<String>> {
        let y = worker.service().y.bind(&worker);
        let mut calls = Vec::new();
        for value in &values {
            calls.push(y.call_async::<Value>("append_identifier", (value,)).await?);
        }
        let mut out = Vec::new();
        for call in calls.into_iter().rev() {
            out.push(call.await?["value"].as_str().unwrap_or_default().to_owned());
        }
        Ok(out)
    }

    let service_y = start(
        Service::new(y.as_str()).entrypoint(rpc("append_identifier", append_identifier)),
        &config,
    )
    .await;
    let service_x = start(
        ServiceX::service(&x, &y)
            .entrypoint(rpc("remote_method", remote_method))
            .entrypoint(rpc("concurrent", concurrent)),
        &config,
    )
    .await;
    let mut context = ContextData::new();
    context.insert("user_id".into(), json!("u-9"));
    let client = client(&config).await.with_context_data(context);

    let answer: Value = within(client.call(&x, "remote_method", ("value",)))
        .await
        .unwrap();
    assert_eq!(answer["value"], "value-y-x");
    assert_eq!(answer["user_id"], "u-9");
    assert_call_id_stack(
        &answer,
        &[
            "standalone_rpc_client.",
            &format!("{x}.remote_method."),
            &format!("{y}.append_identifier."),
        ],
    );

    let many: Vec<String> = within(client.call(&x, "concurrent", (vec!["a", "b", "c"],)))
        .await
        .unwrap();
    assert_eq!(many, ["c-y", "b-y", "a-y"]);

    // One reply queue serves every proxy of the container, and it is declared as Nameko does.
    let raw = Raw::new(&uri, "nameko-rpc").await;
    assert_eq!(
        raw.topology
            .inspect_queue(&format!("rpc-{x}"))
            .await
            .unwrap()
            .map(|q| q.consumer_count),
        Some(1)
    );

    client.stop().await;
    within(service_x.stop()).await;
    within(service_y.stop()).await;
    delete_rpc_queues(&uri, &[&x, &y]).await;
}

#[tokio::test]
async fn remote_errors_propagate_through_a_proxy_with_their_type() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let x = unique("service_x");
    let y = unique("service_y");
    let nowhere = unique("nowhere");

    async fn raises(_: Worker, _: ()) -> Result<(), RemoteError> {
        Err(RemoteError::new("Boom", "service_y.Boom", "bang"))
    }
    struct Callers {
        y: RpcProxy,
        nowhere: RpcProxy,
    }
    async fn via_anyhow(worker: Worker<Callers>, _: ()) -> anyhow::Result<()> {
        let y = &worker.service().y;
        y.call::<()>(&worker, "raises", ()).await?;
        Ok(())
    }
    async fn via_remote_error(worker: Worker<Callers>, _: ()) -> Result<(), RemoteError> {
        let y = &worker.service().y;
        y.call::<()>(&worker, "raises", ()).await?;
        Ok(())
    }
    async fn unknown(worker: Worker<Callers>, _: ()) -> Result<(), RemoteError> {
        let nowhere = &worker.service().nowhere;
        nowhere.call::<()>(&worker, "anything", ()).await?;
        Ok(())
    }

    let service_y = start(
        Service::new(y.as_str()).entrypoint(rpc("raises", raises)),
        &config,
    )
    .await;
    let service_x = start(
        Service::with_state(x.as_str(), |deps| Callers {
            y: deps.add("y", RpcProxy::new(y.as_str())),
            nowhere: deps.add("nowhere", RpcProxy::new(nowhere.as_str())),
        })
        .entrypoint(rpc("via_anyhow", via_anyhow))
        .entrypoint(rpc("via_remote_error", via_remote_error))
        .entrypoint(rpc("unknown", unknown)),
        &config,
    )
    .await;
    let client = client(&config).await;
    for method in ["via_anyhow", "via_remote_error"] {
        let err = remote(within(client.call::<()>(&x, method, ())).await.unwrap_err());
        assert_eq!(
            err,
            RemoteError::new("Boom", "service_y.Boom", "bang"),
            "{method}"
        );
    }
    let err = remote(
        within(client.call::<()>(&x, "unknown", ()))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.exc_type, "UnknownService");
    assert_eq!(err.exc_path, "nameko.exceptions.UnknownService");
    assert_eq!(err.value, format!("Unknown service `{nowhere}`"));

    client.stop().await;
    within(service_x.stop()).await;
    within(service_y.stop()).await;
    delete_rpc_queues(&uri, &[&x, &y]).await;
}

#[tokio::test]
async fn unknown_service_fails_fast_instead_of_hanging() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let client = client(&config).await;
    let nowhere = unique("nowhere");
    let started = tokio::time::Instant::now();
    let err = within(client.call::<Value>(&nowhere, "method", ()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::UnknownService { service, .. } if *service == nowhere),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = within(client.call_async::<Value>(&nowhere, "method", ()))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::UnknownService { .. }), "{err:?}");
    client.stop().await;
}

#[tokio::test]
async fn a_call_times_out_and_its_late_reply_is_dropped() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_slow");
    let (gate, mut arrived) = Gate::new();
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("slow", held("a", gate.clone()))),
        &config,
    )
    .await;
    let client = client(&config)
        .await
        .with_timeout(Some(Duration::from_millis(300)));

    let err = within(client.call::<String>(&name, "slow", ("late",)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::Timeout { timeout, .. } if *timeout == Duration::from_millis(300)),
        "{err:?}"
    );
    let remote_form = nameko_core::IntoRemoteError::into_remote_error(err);
    assert_eq!(remote_form.exc_type, "RpcTimeout");
    assert_eq!(within(arrived.recv()).await.unwrap(), "late");

    // The late reply goes to the same reply queue and is dropped; the next call is unaffected.
    let patient = client.clone().with_timeout(Some(WAIT));
    let next = patient
        .call_async::<String>(&name, "slow", ("next",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "next");
    gate.release(2);
    assert_eq!(within(next).await.unwrap(), "a:next");

    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn call_async_results_come_back_in_any_order() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_async");
    let (gate, mut arrived) = Gate::new();
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("held", held("a", gate.clone())))
            .entrypoint(rpc("hello", hello)),
        &config,
    )
    .await;
    let client = client(&config).await;

    let slow = client
        .call_async::<String>(&name, "held", ("slow",))
        .await
        .unwrap();
    assert_eq!(within(arrived.recv()).await.unwrap(), "slow");
    let fast = client
        .call_async::<String>(&name, "hello", ("fast",))
        .await
        .unwrap();
    let other = client
        .call_async::<String>(&name, "hello", ("other",))
        .await
        .unwrap();
    // The later calls finish while the first is still held.
    assert_eq!(within(other.result()).await.unwrap(), "Hello, other!");
    assert_eq!(within(fast).await.unwrap(), "Hello, fast!");
    gate.release(1);
    assert_eq!(within(slow).await.unwrap(), "a:slow");

    // Many calls in flight on one client from many tasks.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = client.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let greeting: String = client.call(&name, "hello", (i.to_string(),)).await.unwrap();
            assert_eq!(greeting, format!("Hello, {i}!"));
        }));
    }
    for task in tasks {
        within(task).await.unwrap();
    }

    client.stop().await;
    let err = client
        .call::<String>(&name, "hello", ("x",))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Stopped), "{err:?}");
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}
