//! The process-wide registry of servers: one listener per bind address, shared by every service
//! that registers routes on it.
//!
//! Python Nameko gives each container its own `WebServer`, so two services in one runner bind
//! the same address twice and the kernel splits connections between them (about half the
//! requests get a 404). Here each service [registers](WebServer::register) its routes on the
//! one server of its address, a clash between services is an error at registration, and the
//! server stops when the last [`Registration`] does. Port `0` is never shared: each such
//! registration gets a fresh ephemeral port, reported by [`Registration::local_addr`], on which
//! others can then register by number.
//!
//! The registry is a std mutex over a map, because `Registration::drop` must leave it
//! synchronously; registrations themselves are serialised by an async lock, so two services
//! starting together on one address share a listener instead of racing to bind it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use super::route::{Route, RouteHandler};
use super::serve::serve;
use super::settings::ServerConfig;
use crate::error::{Error, Result};
use crate::router::Router;

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerState {
    /// Accepting connections.
    Serving,
    /// The listener is closed; in-flight requests are finishing.
    Draining,
    /// Every connection is closed.
    Stopped,
}

/// A route in the shared table, tagged with the registration that owns it.
#[derive(Clone)]
pub(super) struct Tagged {
    registration: u64,
    pub(super) handler: Arc<dyn RouteHandler>,
}

/// What one server's registrations, accept loop and requests share.
pub(super) struct Shared {
    pub(super) local_addr: SocketAddr,
    pub(super) config: ServerConfig,
    /// Read on every request and written only when a service comes or goes; a std lock is
    /// fine because it is never held across an `.await`.
    router: RwLock<Router<Tagged>>,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) state: watch::Sender<ServerState>,
}

impl Shared {
    pub(super) fn router(&self) -> std::sync::RwLockReadGuard<'_, Router<Tagged>> {
        self.router.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn router_mut(&self) -> std::sync::RwLockWriteGuard<'_, Router<Tagged>> {
        self.router.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A server in the process-wide registry.
pub(super) struct Slot {
    pub(super) server: Arc<Shared>,
    users: usize,
    /// The last user left: the listener is closing, and a new registration must wait for the
    /// port before binding it again.
    closing: bool,
}

/// The servers of this process by local address. A std mutex: it guards map updates only,
/// never across an `.await`, and `Registration::drop` needs it synchronously.
static SERVERS: Mutex<BTreeMap<SocketAddr, Slot>> = Mutex::new(BTreeMap::new());

/// Serialises registrations, so two services starting together on one address share a
/// listener instead of racing to bind it.
static REGISTERING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

static NEXT_REGISTRATION: AtomicU64 = AtomicU64::new(0);

pub(super) fn servers() -> MutexGuard<'static, BTreeMap<SocketAddr, Slot>> {
    SERVERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handle on a running server, for watching it; it does not keep the server running.
#[derive(Clone)]
pub struct WebServer {
    shared: Arc<Shared>,
}

impl fmt::Debug for WebServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebServer")
            .field("local_addr", &self.shared.local_addr)
            .field("state", &self.state())
            .finish()
    }
}

impl WebServer {
    /// Adds `routes` to the server at `config.address`, starting it if this process has none
    /// there yet. Fails on a route clash (with these routes or another service's), on a bad
    /// address, or when the address cannot be bound.
    pub async fn register(config: &ServerConfig, routes: Vec<Route>) -> Result<Registration> {
        let address = config.address.resolve().await?;
        let id = NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed);
        let routes: Vec<_> = routes
            .into_iter()
            .map(|route| {
                let tagged = Tagged {
                    registration: id,
                    handler: route.handler,
                };
                (route.methods, route.rule, tagged)
            })
            .collect();
        loop {
            let registering = REGISTERING.lock().await;
            if address.port() != 0 {
                let closing = {
                    let mut servers = servers();
                    match servers.get_mut(&address) {
                        Some(slot) if !slot.closing => {
                            slot.server.router_mut().add_all(routes)?;
                            slot.users += 1;
                            return Ok(Registration::new(slot.server.clone(), id));
                        }
                        Some(slot) => Some(WebServer {
                            shared: slot.server.clone(),
                        }),
                        None => None,
                    }
                };
                if let Some(previous) = closing {
                    drop(registering);
                    previous.stopped_accepting().await;
                    continue;
                }
            }
            // A clash among these routes is found before anything is bound.
            let mut router = Router::new();
            router.add_all(routes)?;
            let bind_error = |source| Error::Bind {
                address: address.to_string(),
                source,
            };
            let listener = TcpListener::bind(address).await.map_err(bind_error)?;
            let local_addr = listener.local_addr().map_err(bind_error)?;
            let shared = Arc::new(Shared {
                local_addr,
                config: config.clone(),
                router: RwLock::new(router),
                shutdown: watch::Sender::new(false),
                state: watch::Sender::new(ServerState::Serving),
            });
            servers().insert(
                local_addr,
                Slot {
                    server: shared.clone(),
                    users: 1,
                    closing: false,
                },
            );
            info!(address = %local_addr, "web server listening");
            tokio::spawn(serve(listener, shared.clone()));
            return Ok(Registration::new(shared, id));
        }
    }

    /// The address the server listens on, with the actual port when `0` was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Where the server is in its life.
    pub fn state(&self) -> ServerState {
        *self.shared.state.borrow()
    }

    /// Waits until the listener is closed and no new connection is accepted.
    pub async fn stopped_accepting(&self) {
        self.wait_for(ServerState::Draining).await;
    }

    /// Waits until every connection is closed.
    pub async fn stopped(&self) {
        self.wait_for(ServerState::Stopped).await;
    }

    async fn wait_for(&self, state: ServerState) {
        let mut states = self.shared.state.subscribe();
        // The sender lives in `shared`, which `self` keeps alive, so this cannot fail.
        let _ = states.wait_for(|s| *s >= state).await;
    }
}

/// One service's membership of a server: its routes stay routed while this lives.
///
/// Dropping it removes the routes as [`stop`](Registration::stop) does, without waiting.
pub struct Registration {
    server: WebServer,
    id: u64,
    registered: bool,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("server", &self.server)
            .field("registered", &self.registered)
            .finish()
    }
}

impl Registration {
    fn new(shared: Arc<Shared>, id: u64) -> Self {
        Self {
            server: WebServer { shared },
            id,
            registered: true,
        }
    }

    /// The address the server listens on, with the actual port when `0` was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The server these routes are on.
    pub fn server(&self) -> &WebServer {
        &self.server
    }

    /// Removes these routes (their paths answer `404` from now on). The last registration of
    /// a server also stops it: the listener closes, in-flight requests finish within the
    /// shutdown timeout, and this returns once every connection is closed.
    pub async fn stop(mut self) {
        if self.leave() {
            self.server.stopped().await;
        }
    }

    /// Removes the routes; true when this was the server's last user.
    fn leave(&mut self) -> bool {
        if !std::mem::replace(&mut self.registered, false) {
            return false;
        }
        let shared = &self.server.shared;
        let mut servers = servers();
        shared
            .router_mut()
            .retain(|route| route.registration != self.id);
        let Some(slot) = servers
            .get_mut(&shared.local_addr)
            .filter(|slot| Arc::ptr_eq(&slot.server, shared))
        else {
            return false;
        };
        slot.users = slot.users.saturating_sub(1);
        if slot.users > 0 {
            return false;
        }
        slot.closing = true;
        shared.shutdown.send_replace(true);
        true
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.leave();
    }
}
