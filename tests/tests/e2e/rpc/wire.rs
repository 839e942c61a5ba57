//! What goes over the wire is Python Nameko's: the messages nameko-rs sends match the golden
//! ones captured from Python Nameko 2.14.1, it answers Python's requests byte for byte, and it
//! declares one queue and consumer per service, as Nameko does.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use nameko_amqp::{PublishOptions, QueueSpec};
use nameko_core::{ContextData, Service};
use nameko_rpc::{Args, RpcProxy, rpc};
use serde_json::{Value, json};

use crate::support::golden::{golden_pair, python_headers};
use crate::support::raw::{Raw, delete_rpc_queues, next, text};
use crate::support::rpc::{client, dispatch, echo, fail, hello, start, whoami, within};
use crate::support::{broker_uri, config, unique};

#[tokio::test]
async fn rust_messages_match_the_golden_messages() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let exchange = unique("rpc_exchange");
    let config = config(&uri, &[&format!("rpc_exchange={exchange}")]);
    let name = unique("golden");
    let service = start(
        Service::new(name.as_str()).entrypoint(rpc("echo", echo)),
        &config,
    )
    .await;
    let raw = Raw::new(&uri, &exchange).await;
    let mut spy = raw.listen("#").await;

    let mut context = ContextData::new();
    context.insert("user_id".into(), json!("u-1"));
    context.insert("language".into(), json!("en-gb"));
    context.insert("custom_key".into(), json!("c"));
    let client = client(&config).await.with_context_data(context);
    let result: Value = within(client.call(
        &name,
        "echo",
        Args::new(vec![json!(1)]).kwarg("b", json!([1, "x"])),
    ))
    .await
    .unwrap();
    assert_eq!(result, json!({"a": 1, "b": [1, "x"]}));

    let (golden_request, golden_reply) = golden_pair("rpc call with positional and keyword args");
    let request = next(&mut spy).await;
    assert_eq!(request.exchange(), exchange);
    assert_eq!(request.routing_key(), format!("{name}.echo"));
    assert_eq!(text(&request), golden_request["body"].as_str().unwrap());
    let props = request.properties();
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        props.content_encoding().as_ref().map(|s| s.as_str()),
        Some("utf-8")
    );
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(props.priority(), &Some(0));
    let correlation_id = request.correlation_id().unwrap().to_owned();
    uuid::Uuid::parse_str(&correlation_id).expect("correlation id is a uuid");
    let reply_to = request.reply_to().unwrap().to_owned();
    uuid::Uuid::parse_str(&reply_to).expect("reply_to is a bare uuid");
    assert!(client.reply_queue().ends_with(&reply_to));
    assert_eq!(
        client.reply_queue(),
        format!("rpc.reply-standalone_rpc_client-{reply_to}")
    );
    let headers = request.headers().unwrap().inner();
    assert_eq!(headers.len(), 4, "{headers:?}");
    for key in ["nameko.user_id", "nameko.language", "nameko.custom_key"] {
        assert!(
            matches!(headers.get(key), Some(AMQPValue::LongString(_))),
            "{key}"
        );
    }
    let Some(AMQPValue::FieldArray(stack)) = headers.get("nameko.call_id_stack") else {
        panic!("call_id_stack is a field array: {headers:?}");
    };
    let [AMQPValue::LongString(entry)] = stack.as_slice() else {
        panic!("one entry of long string: {stack:?}");
    };
    let entry = String::from_utf8_lossy(entry.as_bytes()).into_owned();
    let parts: Vec<&str> = entry.split('.').collect();
    assert_eq!(parts[0], "standalone_rpc_client", "{entry}");
    assert_eq!(parts.len(), 3, "{entry}");
    uuid::Uuid::parse_str(parts[1]).unwrap();
    uuid::Uuid::parse_str(parts[2]).unwrap();

    let reply = next(&mut spy).await;
    assert_eq!(reply.exchange(), exchange);
    assert_eq!(reply.routing_key(), reply_to);
    assert_eq!(text(&reply), golden_reply);
    assert_eq!(reply.correlation_id(), Some(correlation_id.as_str()));
    assert_eq!(
        reply.headers(),
        Some(&FieldTable::default()),
        "replies carry no context"
    );
    assert_eq!(reply.reply_to(), None);
    let props = reply.properties();
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        props.content_encoding().as_ref().map(|s| s.as_str()),
        Some("utf-8")
    );
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(props.priority(), &Some(0));

    // Each call of a standalone client has a fresh call id with the same client id.
    let _: Value = within(client.call(&name, "echo", (2,))).await.unwrap();
    let again = next(&mut spy).await;
    let Some(AMQPValue::FieldArray(stack)) =
        again.headers().unwrap().inner().get("nameko.call_id_stack")
    else {
        panic!("call_id_stack");
    };
    let AMQPValue::LongString(second) = &stack.as_slice()[0] else {
        panic!()
    };
    let second = String::from_utf8_lossy(second.as_bytes()).into_owned();
    assert_ne!(second, entry);
    assert_eq!(second.split('.').nth(1), Some(parts[1]));
    let _ = next(&mut spy).await;

    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
    raw.topology.delete_exchange(&exchange).await.unwrap();
}

#[tokio::test]
async fn rust_answers_the_golden_python_requests_byte_for_byte() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("golden");
    let service = start(
        Service::new(name.as_str())
            .entrypoint(rpc("echo", echo))
            .entrypoint(rpc("fail", fail))
            .entrypoint(rpc("dispatch", dispatch)),
        &config,
    )
    .await;
    let raw = Raw::new(&uri, "nameko-rpc").await;
    let reply_key = uuid::Uuid::new_v4().to_string();
    let mut replies = raw.listen(&reply_key).await;

    for step in [
        "rpc call with positional and keyword args",
        "rpc call whose handler raises",
        "rpc call to a method that does not exist",
        "rpc call with a missing argument",
        "rpc call whose handler dispatches an event",
    ] {
        let (request, expected_reply) = golden_pair(step);
        let routing_key = request["routing_key"]
            .as_str()
            .unwrap()
            .replacen("golden", &name, 1);
        let correlation_id = request["properties"]["correlation_id"].as_str().unwrap();
        let options = PublishOptions {
            mandatory: true,
            headers: python_headers(&request),
            correlation_id: Some(correlation_id.to_owned()),
            reply_to: Some(reply_key.clone()),
            ..PublishOptions::default()
        };
        raw.publish(
            &routing_key,
            request["body"].as_str().unwrap().as_bytes(),
            options,
        )
        .await;
        let reply = next(&mut replies).await;
        assert_eq!(reply.correlation_id(), Some(correlation_id), "{step}");
        assert_eq!(text(&reply), expected_reply, "{step}");
    }
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}

#[tokio::test]
async fn one_queue_and_consumer_serve_every_method_declared_like_nameko() {
    let Some(uri) = broker_uri().await else {
        return;
    };
    let config = config(&uri, &[]);
    let name = unique("rpc_topology");
    let service = start(
        Service::new(name.as_str())
            .dependency("self_proxy", RpcProxy::new(name.as_str()))
            .entrypoint(rpc("echo", echo))
            .entrypoint(rpc("hello", hello))
            .entrypoint(rpc("whoami", whoami)),
        &config,
    )
    .await;
    let raw = Raw::new(&uri, "nameko-rpc").await;
    let queue = raw
        .topology
        .inspect_queue(&format!("rpc-{name}"))
        .await
        .unwrap()
        .expect("rpc queue exists");
    assert_eq!(queue.consumer_count, 1);
    // Redeclaring with Nameko's exact flags succeeds; the broker would refuse anything else.
    raw.topology
        .declare_queue(&QueueSpec::durable(format!("rpc-{name}")))
        .await
        .expect("rpc queue declared as Nameko declares it");

    let client = client(&config).await;
    let reply_queue = client.reply_queue().to_owned();
    raw.topology
        .declare_queue(
            &QueueSpec::durable(&reply_queue).with_expires(Duration::from_millis(300_000)),
        )
        .await
        .expect("reply queue declared as Nameko declares it");
    client.stop().await;
    within(service.stop()).await;
    delete_rpc_queues(&uri, &[&name]).await;
}
