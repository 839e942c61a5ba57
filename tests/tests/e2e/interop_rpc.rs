//! RPC between Rust and real Python Nameko 2.14.1, in both directions.
//!
//! - A Python `ClusterRpcProxy` calls a Rust service (`tests/python/rpc_client.py`): positional,
//!   keyword and mixed arguments, `call_async`, a remote error with its type, and
//!   `MethodNotFound` / `IncorrectSignature` arriving as Python's own exceptions; the Rust
//!   handler sees the Python caller's context data.
//! - A Rust client calls a Python service (`tests/python/rpc_service.py`): results, a remote error
//!   with its Python type, an unknown method, an unknown service.
//! - A Rust service calls the Python service through `RpcProxy`, and the Python worker sees the
//!   whole `call_id_stack` and the caller's context.
//!
//! The Python scripts print the lines these tests wait for and exit by themselves.

use std::time::Duration;

use nameko_core::{ContextData, RemoteError, Service, ServiceContainer, Worker};
use nameko_rpc::{Args, ClusterRpcClient, RpcError, RpcProxy, rpc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::raw::delete_rpc_queues;
use crate::support::{PythonProcess, broker_uri, config, python, unique};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct EchoArgs {
    a: Value,
    b: Option<Value>,
}

async fn echo(_: Worker, args: EchoArgs) -> Result<Value, RemoteError> {
    Ok(json!({"a": args.a, "b": args.b}))
}

async fn fail(_: Worker, _: ()) -> Result<(), RemoteError> {
    Err(
        RemoteError::new("ValueError", "builtins.ValueError", "('bad', 7)")
            .with_args([json!("bad"), json!(7)]),
    )
}

async fn whoami(worker: Worker, _: ()) -> Result<Value, RemoteError> {
    Ok(json!({
        "user_id": worker.user_id(),
        "language": worker.language(),
        "custom_key": worker.data().get("custom_key"),
        "call_id_stack": worker.call_id_stack(),
    }))
}

async fn within<F: IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("timed out waiting")
}

#[tokio::test]
async fn a_python_client_calls_a_rust_service() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let Some(python) = python() else { return };
    let config = config(&uri, &[]);
    let name = unique("rust_for_python");
    let service = ServiceContainer::new(
        Service::new(name.as_str())
            .entrypoint(rpc("echo", echo))
            .entrypoint(rpc("fail", fail))
            .entrypoint(rpc("whoami", whoami)),
        config,
    )
    .unwrap();
    within(service.start()).await.unwrap();

    let mut client = PythonProcess::spawn(&python, "rpc_client.py", &uri, &[&name]);
    let mut passed = Vec::new();
    loop {
        let line = client.next_line(WAIT).await;
        let line = line.trim();
        assert!(!line.starts_with("fail"), "python client: {line}");
        if line == "done" {
            break;
        }
        if let Some(check) = line.strip_prefix("ok ") {
            passed.push(check.to_owned());
        }
    }
    assert_eq!(
        passed,
        [
            "positional",
            "keyword",
            "mixed",
            "default",
            "call_async",
            "remote_error",
            "method_not_found",
            "incorrect_signature",
            "too_many_arguments",
            "context_data",
        ]
    );
    assert_eq!(client.finish(WAIT).await, 0);
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn a_rust_client_calls_a_python_service() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let Some(python) = python() else { return };
    let config = config(&uri, &[]);
    let name = unique("python_for_rust");
    let mut service = PythonProcess::spawn(&python, "rpc_service.py", &uri, &[&name]);
    service.wait_for_line("ready", WAIT).await;

    let client = within(ClusterRpcClient::connect(&config)).await.unwrap();
    let got: Value = within(client.call(
        &name,
        "echo",
        Args::new(vec![json!(1)]).kwarg("b", json!([1, "x"])),
    ))
    .await
    .unwrap();
    assert_eq!(got, json!({"a": 1, "b": [1, "x"]}));
    let got: Value = within(client.call(&name, "echo", json!({"a": "k"})))
        .await
        .unwrap();
    assert_eq!(got, json!({"a": "k", "b": null}));

    let err = within(client.call::<Value>(&name, "fail", ()))
        .await
        .unwrap_err();
    let RpcError::Remote { error, .. } = err else {
        panic!("remote error expected: {err:?}")
    };
    assert_eq!(error.exc_type, "ValueError");
    assert_eq!(error.exc_path, "builtins.ValueError");
    assert_eq!(error.exc_args, vec![json!("bad"), json!("7")]);
    assert_eq!(error.value, "('bad', 7)");

    let err = within(client.call::<Value>(&name, "no_such_method", ()))
        .await
        .unwrap_err();
    assert_eq!(
        err.remote(),
        Some(&RemoteError::method_not_found("no_such_method"))
    );
    let err = within(client.call::<Value>(&name, "echo", ()))
        .await
        .unwrap_err();
    assert_eq!(
        err.remote(),
        Some(&RemoteError::incorrect_signature(
            "echo() missing 1 required positional argument: 'a'"
        ))
    );

    let nowhere = unique("nowhere");
    let err = within(client.call::<Value>(&nowhere, "echo", ()))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::UnknownService { .. }), "{err:?}");

    let _: Value = within(client.call(&name, "shutdown", ())).await.unwrap();
    assert_eq!(service.finish(WAIT).await, 0);
    client.stop().await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn a_rust_service_calls_a_python_service_through_rpc_proxy() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let Some(python) = python() else { return };
    let config = config(&uri, &[]);
    let py_name = unique("python_callee");
    let rust_name = unique("rust_caller");
    let mut python_service = PythonProcess::spawn(&python, "rpc_service.py", &uri, &[&py_name]);
    python_service.wait_for_line("ready", WAIT).await;

    struct CallsPython {
        python: RpcProxy,
    }
    async fn relay(worker: Worker<CallsPython>, _: ()) -> anyhow::Result<Value> {
        let python = worker.service().python.bind(&worker);
        let seen: Value = python.call("whoami", ()).await?;
        let echoed: Value = python.call("echo", (1,)).await?;
        Ok(json!({"seen": seen, "echoed": echoed}))
    }
    async fn relay_failure(worker: Worker<CallsPython>, _: ()) -> Result<(), RemoteError> {
        let python = &worker.service().python;
        python.call::<()>(&worker, "fail", ()).await?;
        Ok(())
    }
    let service = ServiceContainer::new(
        Service::with_state(rust_name.as_str(), |deps| CallsPython {
            python: deps.add("python", RpcProxy::new(py_name.as_str())),
        })
        .entrypoint(rpc("relay", relay))
        .entrypoint(rpc("relay_failure", relay_failure)),
        config.clone(),
    )
    .unwrap();
    within(service.start()).await.unwrap();

    let mut context = ContextData::new();
    context.insert("user_id".into(), json!("u-rs"));
    context.insert("custom_key".into(), json!("c"));
    let client = within(ClusterRpcClient::connect(&config))
        .await
        .unwrap()
        .with_context_data(context);
    let answer: Value = within(client.call(&rust_name, "relay", ())).await.unwrap();
    assert_eq!(answer["echoed"], json!({"a": 1, "b": null}));
    let seen = &answer["seen"];
    let stack: Vec<&str> = seen["call_id_stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(stack.len(), 3, "{stack:?}");
    assert!(stack[0].starts_with("standalone_rpc_client."), "{stack:?}");
    assert!(
        stack[1].starts_with(&format!("{rust_name}.relay.")),
        "{stack:?}"
    );
    assert!(
        stack[2].starts_with(&format!("{py_name}.whoami.")),
        "{stack:?}"
    );
    assert_eq!(seen["context_data"]["user_id"], "u-rs");
    assert_eq!(seen["context_data"]["custom_key"], "c");

    // Python's error travels through the Rust service with its type.
    let err = within(client.call::<()>(&rust_name, "relay_failure", ()))
        .await
        .unwrap_err();
    let RpcError::Remote { error, .. } = err else {
        panic!("remote error expected: {err:?}")
    };
    assert_eq!(error.exc_type, "ValueError");
    assert_eq!(error.exc_path, "builtins.ValueError");

    let _: Value = within(client.call(&py_name, "shutdown", ())).await.unwrap();
    assert_eq!(python_service.finish(WAIT).await, 0);
    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&py_name, &rust_name]).await;
}
