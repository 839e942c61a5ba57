//! The accept loop of one server, and its graceful stop.
//!
//! The hyper setup follows what a server facing the open network needs: HTTP/1.1 only (Nameko
//! speaks nothing else, and HTTP/2 sniffing would wait on silent clients forever), keep-alive,
//! and a header read timeout, which also closes idle keep-alive connections. A failed accept
//! (typically out of file descriptors) backs off instead of spinning.
//!
//! Stopping is graceful: the listener closes at once, idle connections are closed, in-flight
//! requests finish, and whatever still runs at the shutdown deadline is dropped. A guard leaves
//! the registry and marks the server stopped however the loop ends, even when its runtime shuts
//! down under it.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::dispatch::dispatch;
use super::registry::{ServerState, Shared, servers};

/// Leaves the registry and marks the server stopped however `serve` ends, even when its
/// runtime shuts down under it.
struct ServeGuard {
    shared: Arc<Shared>,
}

impl ServeGuard {
    fn forget_address(&self) {
        let mut servers = servers();
        let ours = servers
            .get(&self.shared.local_addr)
            .is_some_and(|slot| Arc::ptr_eq(&slot.server, &self.shared));
        if ours {
            servers.remove(&self.shared.local_addr);
        }
    }
}

impl Drop for ServeGuard {
    fn drop(&mut self) {
        self.forget_address();
        self.shared.state.send_replace(ServerState::Stopped);
    }
}

pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let guard = ServeGuard {
        shared: shared.clone(),
    };
    // Declared after the guard so that it is dropped first: the port must be free before the
    // address leaves the registry.
    let listener = listener;
    let mut shutdown = shared.shutdown.subscribe();
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_read_timeout)
        .keep_alive(true)
        // A client may close its write side once its request is sent (`nc -N`, scripts); it
        // still waits for the answer, which hyper would otherwise drop on the end of input.
        .half_close(true);

    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(%remote, %error, "cannot set TCP_NODELAY");
                }
                let service_shared = shared.clone();
                let service =
                    service_fn(move |request| dispatch(service_shared.clone(), remote, request));
                let connection =
                    graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        debug!(%remote, %error, "http connection ended with an error");
                    }
                });
            }
            Err(error) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!(address = %shared.local_addr, %error, "cannot accept a connection");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
        }
    }

    drop(listener);
    guard.forget_address();
    shared.state.send_replace(ServerState::Draining);
    debug!(address = %shared.local_addr, "web server draining");
    let deadline = shared.config.shutdown_timeout;
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            address = %shared.local_addr,
            timeout = ?deadline,
            "requests still running at the shutdown deadline; dropping their connections"
        );
    }
    connections.shutdown().await;
    info!(address = %shared.local_addr, "web server stopped");
}
