//! Nameko's `rpc` example: service `service_x` calls service `service_y` through an
//! `RpcProxy`, so `remote_method(value)` returns `"<value>-x-y"`.
//!
//! It needs RabbitMQ. Run both services in one process with `cargo run -p nameko-cli -- run
//! rpc` (or one each: `run rpc:service_x` and `run rpc:service_y`, in two terminals or on two
//! machines), then:
//!
//! ```text
//! $ cargo run -p nameko-cli -- call service_x.remote_method '["hellø"]'
//! "hellø-x-y"
//! ```
//!
//! From Rust code outside any service, the standalone client does the same, and `call_async`
//! runs calls in parallel (the documentation's `standalone_rpc.py` and `async_rpc.py`):
//!
//! ```no_run
//! use nameko_core::Config;
//! use nameko_rpc::ClusterRpcClient;
//!
//! # async fn example() -> Result<(), nameko_rpc::RpcError> {
//! let client = ClusterRpcClient::connect(&Config::new()).await?;
//! let result: String = client.call("service_x", "remote_method", ("hellø",)).await?;
//! assert_eq!(result, "hellø-x-y");
//!
//! let hello = client.call_async::<String>("service_x", "remote_method", ("hello",)).await?;
//! let world = client.call_async::<String>("service_x", "remote_method", ("world",)).await?;
//! // ... do other work while both are in flight ...
//! assert_eq!(hello.result().await?, "hello-x-y");
//! assert_eq!(world.result().await?, "world-x-y");
//! client.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! The Python original:
//!
//! ```python
//! class ServiceY:
//!     name = "service_y"
//!
//!     @rpc
//!     def append_identifier(self, value):
//!         return u"{}-y".format(value)
//!
//! class ServiceX:
//!     name = "service_x"
//!
//!     y = RpcProxy("service_y")
//!
//!     @rpc
//!     def remote_method(self, value):
//!         res = u"{}-x".format(value)
//!         return self.y.append_identifier(res)
//! ```

use nameko_core::{AnyService, Config, RemoteError, Service, Worker};
use nameko_rpc::{RpcProxy, rpc};

/// Both services: `service_x` and `service_y`.
pub fn services(config: &Config) -> [AnyService; 2] {
    [service_x(config).into(), service_y(config).into()]
}

/// `service_x`: `remote_method(value)`, with a proxy to `service_y` under the name `y`.
pub fn service_x(_config: &Config) -> Service<ServiceX> {
    service_x_with(RpcProxy::new("service_y"))
}

/// `service_x` calling `service_y` through `y`: a real proxy, or a test double.
pub fn service_x_with(y: RpcProxy) -> Service<ServiceX> {
    Service::with_state("service_x", |deps| ServiceX {
        y: deps.add("y", y),
    })
    .entrypoint(rpc("remote_method", remote_method))
}

/// `service_y`: `append_identifier(value)`.
/// The state of `service_x`: Nameko's `y = RpcProxy("service_y")`.
#[derive(Debug)]
pub struct ServiceX {
    y: RpcProxy,
}

/// `service_y`, which appends its identifier.
pub fn service_y(_config: &Config) -> Service {
    Service::new("service_y").entrypoint(rpc("append_identifier", append_identifier))
}

async fn append_identifier(_worker: Worker, value: String) -> Result<String, RemoteError> {
    Ok(format!("{value}-y"))
}

/// A remote error from `service_y` reaches this method's caller with its own type.
async fn remote_method(worker: Worker<ServiceX>, value: String) -> Result<String, RemoteError> {
    let res = format!("{value}-x");
    let y = &worker.service().y;
    Ok(y.call(&worker, "append_identifier", (res,)).await?)
}

#[cfg(test)]
mod tests {
    use nameko_core::testing::worker_factory;

    use super::*;

    #[tokio::test]
    async fn service_y_appends_its_identifier() {
        let worker = worker_factory(&service_y(&Config::new())).worker("append_identifier");
        assert_eq!(
            append_identifier(worker, "hello-x".to_owned())
                .await
                .unwrap(),
            "hello-x-y"
        );
    }

    #[tokio::test]
    async fn service_x_calls_service_y_with_its_own_suffix() {
        let y = RpcProxy::stub("service_y", |method, args| {
            assert_eq!(method, "append_identifier");
            Ok(format!("{}-stubbed", args.args[0].as_str().unwrap_or_default()).into())
        });
        let worker = worker_factory(&service_x_with(y)).worker("remote_method");
        assert_eq!(
            remote_method(worker, "hello".to_owned()).await.unwrap(),
            "hello-x-stubbed"
        );
    }

    #[tokio::test]
    async fn service_x_passes_on_a_remote_error() {
        let y = RpcProxy::stub("service_y", |_, _| {
            Err(RemoteError::new("ValueError", "builtins.ValueError", "no"))
        });
        let worker = worker_factory(&service_x_with(y)).worker("remote_method");
        let error = remote_method(worker, "hello".to_owned()).await.unwrap_err();
        assert_eq!(error.exc_type, "ValueError");
    }

    #[test]
    fn service_x_declares_its_proxy() {
        let x = service_x(&Config::new());
        assert_eq!(x.dependency_names().collect::<Vec<_>>(), ["y"]);
        assert_eq!(x.entrypoint_names().collect::<Vec<_>>(), ["remote_method"]);
    }
}
