//! How a request's arguments reach a handler, and what becomes of requests that cannot: Nameko's
//! `(args, kwargs)` bound by position or by name, Nameko's errors for bad requests, answered
//! without a worker, and bad input that never takes the service down.

use std::sync::{Arc, Mutex};

use nameko_amqp::PublishOptions;
use nameko_core::testing::entrypoint_hook;
use nameko_core::{ContainerState, RemoteError, Service, Worker};
use nameko_rpc::{Args, ServiceRpcClient, rpc};
use serde_json::{Value, json};

use crate::support::raw::{Raw, delete_rpc_queues, next, text};
use crate::support::rpc::{client, echo, fail, hello, remote, start, within};
use crate::support::{broker_uri, config, unique};

#[tokio::test]
async fn positional_and_keyword_arguments_bind_alike() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_args");
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("echo", echo))
            .entrypoint(rpc("hello", hello)),
        &config,
    )
    .await;
    let client = client(&config).await;

    let both: Value = within(client.call(
        &name,
        "echo",
        Args::new(vec![json!(1)]).kwarg("b", json!([1, "x"])),
    ))
    .await
    .unwrap();
    assert_eq!(both, json!({"a": 1, "b": [1, "x"]}));
    let positional: Value = within(client.call(&name, "echo", (1, 2))).await.unwrap();
    assert_eq!(positional, json!({"a": 1, "b": 2}));
    let keyword: Value = within(client.call(&name, "echo", json!({"a": "k"})))
        .await
        .unwrap();
    assert_eq!(keyword, json!({"a": "k", "b": null}));

    let greeting: String = within(client.call(&name, "hello", ("Matt",)))
        .await
        .unwrap();
    assert_eq!(greeting, "Hello, Matt!");
    let by_name: String = within(client.call(&name, "hello", json!({"name": "Matt"})))
        .await
        .unwrap();
    assert_eq!(by_name, "Hello, Matt!");

    let single = ServiceRpcClient::connect(name.as_str(), &config)
        .await
        .unwrap();
    let greeting: String = within(single.call("hello", "Ann")).await.unwrap();
    assert_eq!(greeting, "Hello, Ann!");

    client.stop().await;
    single.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn bad_requests_get_nameko_errors_without_a_worker() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_bad_calls");
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("echo", echo))
            .entrypoint(rpc("fail", fail).expected_exceptions(["ValueError"])),
        &config,
    )
    .await;
    let mut workers = service.container().subscribe_workers();
    let client = client(&config).await;

    let missing = remote(
        within(client.call::<Value>(&name, "nope", ()))
            .await
            .unwrap_err(),
    );
    assert_eq!(missing, RemoteError::method_not_found("nope"));

    let signature = remote(
        within(client.call::<Value>(&name, "echo", ()))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        signature,
        RemoteError::incorrect_signature("echo() missing 1 required positional argument: 'a'")
    );
    let extra = remote(
        within(client.call::<Value>(&name, "echo", (1, 2, 3)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        extra.value,
        "echo() takes from 1 to 2 positional arguments but 3 were given"
    );
    let unexpected = remote(
        within(client.call::<Value>(&name, "echo", json!({"a": 1, "zz": 2})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        unexpected.value,
        "echo() got an unexpected keyword argument 'zz'"
    );
    let twice = remote(
        within(client.call::<Value>(
            &name,
            "echo",
            Args::new(vec![json!(1)]).kwarg("a", json!(2)),
        ))
        .await
        .unwrap_err(),
    );
    assert_eq!(twice.value, "echo() got multiple values for argument 'a'");
    assert!(
        workers.try_recv().is_err(),
        "MethodNotFound and IncorrectSignature run no worker"
    );

    let value_error = within(client.call::<Value>(&name, "fail", ()))
        .await
        .unwrap_err();
    assert_eq!(value_error.exc_type(), Some("ValueError"));
    let value_error = remote(value_error);
    assert_eq!(value_error.exc_path, "builtins.ValueError");
    assert_eq!(value_error.exc_args, vec![json!("bad"), json!("7")]);
    assert_eq!(value_error.value, "('bad', 7)");

    // The service keeps serving.
    let ok: Value = within(client.call(&name, "echo", (5,))).await.unwrap();
    assert_eq!(ok, json!({"a": 5, "b": null}));
    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn bad_input_never_takes_the_service_down() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let exchange = unique("rpc_exchange");
    let config = config(&uri, &[&format!("rpc_exchange={exchange}")]);
    let name = unique("rpc_robust");
    let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    let recorded = seen.clone();
    let record = move |_: Worker, value: Value| {
        let recorded = recorded.clone();
        async move {
            recorded.lock().unwrap().push(value.clone());
            Ok::<_, RemoteError>(value)
        }
    };
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("record", record)),
        &config,
    )
    .await;
    let raw = Raw::new(&uri, &exchange).await;
    let reply_key = uuid::Uuid::new_v4().to_string();
    let mut replies = raw.listen(&reply_key).await;
    let key = format!("{name}.record");
    let request = |correlation_id: &str| PublishOptions {
        correlation_id: Some(correlation_id.to_owned()),
        reply_to: Some(reply_key.clone()),
        ..PublishOptions::default()
    };

    // 1. No reply_to: no reply is possible, so it is rejected without requeue and never run.
    raw.publish(
        &key,
        br#"{"args": ["no reply_to"], "kwargs": {}}"#,
        PublishOptions::default(),
    )
    .await;

    // 2. No content_type: read as JSON and answered normally.
    raw.publish(
        &key,
        br#"{"args": ["no content type"], "kwargs": {}}"#,
        PublishOptions {
            content_type: String::new(),
            content_encoding: String::new(),
            ..request("no-content-type")
        },
    )
    .await;
    let reply = next(&mut replies).await;
    assert_eq!(reply.correlation_id(), Some("no-content-type"));
    assert_eq!(
        text(&reply),
        r#"{"result": "no content type", "error": null}"#
    );

    // 3. A body that is not JSON, 4. not an object, 5. without kwargs, 6. args not a list,
    // 7. an unknown kombu type, 8. pickle: MalformedRequest replies.
    let malformed: [(&str, &[u8], &str); 6] = [
        ("not-json", b"{not json", "cannot decode the request body"),
        ("a-list", b"[1, 2]", "found a list"),
        (
            "no-kwargs",
            br#"{"args": []}"#,
            "Message missing `args` or `kwargs`",
        ),
        (
            "args-string",
            br#"{"args": "ab", "kwargs": {}}"#,
            "`args` to be a list",
        ),
        (
            "unknown-kombu-type",
            br#"{"args": [{"__type__": "pickle", "__value__": "x"}], "kwargs": {}}"#,
            "unknown kombu type",
        ),
        ("pickle", b"\x80\x04K\x01.", "unsupported content type"),
    ];
    for (id, body, expected) in malformed {
        let mut options = request(id);
        if id == "pickle" {
            options.content_type = "application/x-python-serialize".into();
            options.content_encoding = "binary".into();
        }
        raw.publish(&key, body, options).await;
        let reply = next(&mut replies).await;
        assert_eq!(reply.correlation_id(), Some(id));
        let reply: Value = serde_json::from_slice(reply.body()).unwrap();
        assert_eq!(reply["result"], Value::Null, "{id}");
        assert_eq!(reply["error"]["exc_type"], "MalformedRequest", "{id}");
        assert_eq!(
            reply["error"]["exc_path"], "nameko.exceptions.MalformedRequest",
            "{id}"
        );
        let value = reply["error"]["value"].as_str().unwrap();
        assert!(value.contains(expected), "{id}: {value}");
    }

    // 9. kombu's typed wrappers arrive unwrapped; 10. NaN arrives as null.
    raw.publish(
        &key,
        br#"{"args": [{"when": {"__type__": "datetime", "__value__": "2024-01-02T03:04:05"}, "n": NaN}], "kwargs": {}}"#,
        request("kombu"),
    )
    .await;
    let reply = next(&mut replies).await;
    assert_eq!(reply.correlation_id(), Some("kombu"));
    assert_eq!(
        text(&reply),
        r#"{"result": {"when": "2024-01-02T03:04:05", "n": null}, "error": null}"#
    );

    // The service still answers a good call, and the request without reply_to was never run.
    let client = client(&config).await;
    let ok: String = within(client.call(&name, "record", ("still here",)))
        .await
        .unwrap();
    assert_eq!(ok, "still here");
    assert_eq!(service.state(), ContainerState::Running);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.contains(&json!("no reply_to")), "{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
    client.stop().await;
    within(service.stop()).await;
    // Once the service is gone nothing is left in its queue: the request without reply_to was
    // dropped, not requeued (which would loop it forever).
    let queue = raw
        .topology
        .inspect_queue(&format!("rpc-{name}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queue.message_count, 0, "nothing requeued or left behind");
    delete_rpc_queues(&uri, &[&name]).await;
    raw.topology.delete_exchange(&exchange).await.unwrap();
}

#[tokio::test]
async fn entrypoint_hook_binds_arguments_like_the_wire() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_hook");
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("echo", echo)),
        &config,
    )
    .await;
    let hook = entrypoint_hook(&service, "echo").unwrap();
    let result = within(hook.call(vec![json!(1)], json!({"b": 2}).as_object().unwrap().clone()))
        .await
        .unwrap();
    assert_eq!(result.unwrap(), json!({"a": 1, "b": 2}));
    let wrong = within(hook.call(vec![], Default::default())).await.unwrap();
    assert_eq!(
        wrong.unwrap_err(),
        RemoteError::incorrect_signature("echo() missing 1 required positional argument: 'a'")
    );
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}
