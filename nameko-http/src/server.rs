//! The web server: one hyper HTTP/1.1 listener per bind address per process.
//!
//! Python Nameko gives each container its own `WebServer`, so two services in one runner bind
//! the same address twice and the kernel splits connections between them (about half the
//! requests get a 404). Here a process-wide registry keeps one listener per address: each
//! service [registers](WebServer::register) its routes on it, a clash between services is an
//! error at registration, and the server stops when the last [`Registration`] does. Port `0`
//! is never shared: each such registration gets a fresh ephemeral port, reported by
//! [`Registration::local_addr`], on which others can then register by number.
//!
//! The hyper setup follows what a server facing the open network needs: HTTP/1.1 only (Nameko
//! speaks nothing else, and HTTP/2 sniffing would wait on silent clients forever), keep-alive,
//! a header read timeout (it also closes idle keep-alive connections), bodies collected up to a
//! limit before the handler runs (`413` beyond it, `400` when reading fails). The service
//! function never fails: every error, a handler's panic included, is turned into a response,
//! because an `Err` would abort the connection. hyper answers neither `HEAD` for `GET` routes
//! nor `405` with `Allow`, so the dispatcher does both. Status lines carry werkzeug's capitalised
//! reason phrases (`HTTP/1.1 404 NOT FOUND`), so responses read as a Python service's do.
//!
//! Stopping is graceful: the listener closes at once, idle connections are closed, in-flight
//! requests finish, and whatever still runs at the shutdown deadline is dropped.

use std::any::Any;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::ext::ReasonPhrase;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::error::{Error, Result};
use crate::method::Methods;
use crate::request::Request;
use crate::response::{self, IntoResponse, Response};
use crate::router::{Lookup, Router};
use crate::rule::Rule;

/// The configuration key of the bind address, as in Nameko: `[address:]port`.
pub const WEB_SERVER_ADDRESS: &str = "WEB_SERVER_ADDRESS";
/// Where the server listens unless `WEB_SERVER_ADDRESS` says otherwise.
pub const DEFAULT_WEB_SERVER_ADDRESS: &str = "0.0.0.0:8000";
/// The configuration key of the request body limit, a positive number of bytes (not in Nameko,
/// whose server reads bodies of any size).
pub const WEB_MAX_BODY_SIZE: &str = "WEB_MAX_BODY_SIZE";
/// The configuration key of the header read timeout, a positive number of seconds.
pub const WEB_HEADER_READ_TIMEOUT: &str = "WEB_HEADER_READ_TIMEOUT";
/// The configuration key of the shutdown deadline, a positive number of seconds.
pub const WEB_SHUTDOWN_TIMEOUT: &str = "WEB_SHUTDOWN_TIMEOUT";

/// Where the server listens: Nameko's `[address:]port`, by default `0.0.0.0:8000`.
///
/// The address is an IPv4 address or a host name (Nameko's format has no room for IPv6
/// colons); without one the server listens on all interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindAddress {
    host: String,
    port: u16,
}

impl BindAddress {
    /// Parses `[address:]port`.
    pub fn parse(address: &str) -> Result<Self> {
        let bad = || Error::BindAddress {
            address: address.to_owned(),
        };
        let (host, port) = match address.split_once(':') {
            Some(("", _)) => return Err(bad()),
            Some((host, port)) => (host, port),
            None => ("0.0.0.0", address),
        };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let port = port.parse().map_err(|_| bad())?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// `WEB_SERVER_ADDRESS` of a config, `0.0.0.0:8000` when absent (a bare port number counts).
    pub fn from_config(config: &nameko_core::Config) -> Result<Self> {
        match config.get(WEB_SERVER_ADDRESS) {
            None | Some(serde_json::Value::Null) => Self::parse(DEFAULT_WEB_SERVER_ADDRESS),
            Some(serde_json::Value::String(address)) => Self::parse(address),
            Some(serde_json::Value::Number(port)) if port.is_u64() => {
                Self::parse(&port.to_string())
            }
            Some(other) => Err(Error::Config(config.invalid(
                WEB_SERVER_ADDRESS,
                "`[address:]port`",
                other,
            ))),
        }
    }

    /// The host part: an IP address or a name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port; `0` asks for an ephemeral one.
    pub fn port(&self) -> u16 {
        self.port
    }

    async fn resolve(&self) -> Result<SocketAddr> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let resolve_error = |source| Error::Resolve {
            address: self.to_string(),
            source,
        };
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(resolve_error)?
            .next()
            .ok_or_else(|| {
                resolve_error(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address found",
                ))
            })
    }
}

impl Default for BindAddress {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 8000,
        }
    }
}

impl FromStr for BindAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// How a server listens and how patient it is.
///
/// When several services share an address, the settings of the first to register apply.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where to listen.
    pub address: BindAddress,
    /// The largest request body read, in bytes; a larger one is answered with `413`.
    pub max_body_size: usize,
    /// How long a client may take to send a request's headers, which also bounds how long an
    /// idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// How long a stop waits for in-flight requests before dropping their connections.
    pub shutdown_timeout: Duration,
}

impl ServerConfig {
    /// The default body limit: 1 MiB.
    pub const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;
    /// The default header read timeout: 30 seconds, hyper's own default.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default shutdown deadline: 30 seconds.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

    /// The defaults, listening on `address`.
    pub fn new(address: BindAddress) -> Self {
        Self {
            address,
            max_body_size: Self::DEFAULT_MAX_BODY_SIZE,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new(BindAddress::default())
    }
}

impl ServerConfig {
    /// The settings a service's configuration gives: [`WEB_SERVER_ADDRESS`] (default
    /// `0.0.0.0:8000`), [`WEB_MAX_BODY_SIZE`] in bytes, and [`WEB_HEADER_READ_TIMEOUT`] and
    /// [`WEB_SHUTDOWN_TIMEOUT`] in seconds (fractions allowed); absent keys keep the defaults.
    pub fn from_config(config: &nameko_core::Config) -> Result<Self> {
        let mut server = Self::new(BindAddress::from_config(config)?);
        const BYTES: &str = "a positive number of bytes";
        match config.get_as::<usize>(WEB_MAX_BODY_SIZE, BYTES)? {
            Some(0) => return Err(invalid_setting(config, WEB_MAX_BODY_SIZE, BYTES, 0)),
            Some(size) => server.max_body_size = size,
            None => {}
        }
        if let Some(timeout) = seconds(config, WEB_HEADER_READ_TIMEOUT)? {
            server.header_read_timeout = timeout;
        }
        if let Some(timeout) = seconds(config, WEB_SHUTDOWN_TIMEOUT)? {
            server.shutdown_timeout = timeout;
        }
        Ok(server)
    }
}

/// A positive, finite number of seconds under `key`, if set.
fn seconds(config: &nameko_core::Config, key: &str) -> Result<Option<Duration>> {
    const SECONDS: &str = "a positive number of seconds";
    let Some(secs) = config.get_as::<f64>(key, SECONDS)? else {
        return Ok(None);
    };
    match Duration::try_from_secs_f64(secs) {
        Ok(duration) if !duration.is_zero() => Ok(Some(duration)),
        _ => Err(invalid_setting(config, key, SECONDS, secs)),
    }
}

/// The core's error for a key of the right kind but out of range, worded as the core words it.
fn invalid_setting(
    config: &nameko_core::Config,
    key: &str,
    expected: &str,
    found: impl fmt::Display,
) -> Error {
    Error::Config(nameko_core::ConfigError::Invalid {
        origin: config.source().map_or_else(
            || "defaults and overrides".to_owned(),
            |path| path.display().to_string(),
        ),
        key: key.to_owned(),
        expected: expected.to_owned(),
        found: format!("the number `{found}`"),
    })
}

/// A boxed, sendable future, as returned by [`RouteHandler::call`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What runs a request for a route.
///
/// Object-safe so that one table can hold the handlers of several services; any
/// `Fn(Request) -> impl Future<Output = impl IntoResponse>` closure is one.
pub trait RouteHandler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, request: Request) -> BoxFuture<Response>;
}

impl<F, Fut> RouteHandler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoResponse,
{
    fn call(&self, request: Request) -> BoxFuture<Response> {
        let future = self(request);
        Box::pin(async move { future.await.into_response() })
    }
}

/// One route to register: methods, rule and handler.
#[derive(Clone)]
pub struct Route {
    methods: Methods,
    rule: Rule,
    handler: Arc<dyn RouteHandler>,
}

impl Route {
    /// A route from parsed methods and rule.
    pub fn new(methods: Methods, rule: Rule, handler: impl RouteHandler) -> Self {
        Self::shared(methods, rule, Arc::new(handler))
    }

    /// A route whose handler is already shared.
    pub fn shared(methods: Methods, rule: Rule, handler: Arc<dyn RouteHandler>) -> Self {
        Self {
            methods,
            rule,
            handler,
        }
    }

    /// A route from Nameko's method string and url rule, as `http("GET,POST", "/x")` takes.
    pub fn parse(methods: &str, rule: &str, handler: impl RouteHandler) -> Result<Self> {
        Ok(Self::new(
            Methods::parse(methods)?,
            Rule::parse(rule)?,
            handler,
        ))
    }

    /// The methods.
    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Route({} {})", self.methods, self.rule)
    }
}

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
struct Tagged {
    registration: u64,
    handler: Arc<dyn RouteHandler>,
}

struct Shared {
    local_addr: SocketAddr,
    config: ServerConfig,
    /// Read on every request and written only when a service comes or goes; a std lock is
    /// fine because it is never held across an `.await`.
    router: RwLock<Router<Tagged>>,
    shutdown: watch::Sender<bool>,
    state: watch::Sender<ServerState>,
}

impl Shared {
    fn router(&self) -> std::sync::RwLockReadGuard<'_, Router<Tagged>> {
        self.router.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn router_mut(&self) -> std::sync::RwLockWriteGuard<'_, Router<Tagged>> {
        self.router.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A server in the process-wide registry.
struct Slot {
    server: Arc<Shared>,
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

fn servers() -> MutexGuard<'static, BTreeMap<SocketAddr, Slot>> {
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

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
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

async fn dispatch(
    shared: Arc<Shared>,
    remote: SocketAddr,
    request: hyper::Request<Incoming>,
) -> Result<Response, Infallible> {
    let method = request.method().clone();
    let found = match shared.router().lookup(&method, request.uri().path()) {
        Lookup::Match(route, values) => Ok((route.handler.clone(), values)),
        Lookup::MethodNotAllowed { allow } => Err(response::method_not_allowed(&allow)),
        Lookup::NotFound => Err(response::not_found()),
    };
    let response = match found {
        Err(response) => response,
        Ok((handler, values)) => match read_body(request, shared.config.max_body_size).await {
            Err(response) => response,
            Ok((head, body)) => {
                let request = Request::new(head, body)
                    .with_path_values(values)
                    .with_remote_addr(remote);
                call(handler.as_ref(), request).await
            }
        },
    };
    Ok(finish(&method, response))
}

/// Collects the body up to `limit` bytes; the error is the response to send instead.
async fn read_body(
    request: hyper::Request<Incoming>,
    limit: usize,
) -> Result<(Parts, Bytes), Response> {
    let (head, body) = request.into_parts();
    let too_large = || {
        let mut response = response::payload_too_large(limit);
        // The rest of the body is never read, so the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    // A declared length over the limit is refused before reading anything.
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((head, collected.to_bytes())),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err(response::bad_request(
            "BadRequest",
            &format!("cannot read the request body: {error}"),
        )),
    }
}

/// Runs a handler, turning a panic into a `500` for this request alone.
async fn call(handler: &dyn RouteHandler, request: Request) -> Response {
    match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(request))) {
        Ok(future) => CatchUnwind { future }.await,
        Err(panic) => panic_response(panic),
    }
}

struct CatchUnwind {
    future: BoxFuture<Response>,
}

impl Future for CatchUnwind {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let future = &mut self.future;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(panic_response(panic)),
        }
    }
}

fn panic_response(panic: Box<dyn Any + Send>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the handler panicked".to_owned());
    error!(panic = %message, "http handler panicked");
    response::server_error("Panic", &message)
}

/// Last touches before a response is written.
fn finish(method: &Method, mut response: Response) -> Response {
    let exact = response.body().size_hint().exact();
    // A `Content-Length` that disagrees with the body makes hyper abort the connection; the
    // body is the truth, and hyper writes its length itself.
    if let (Some(length), Some(declared)) = (exact, response.headers().get(header::CONTENT_LENGTH))
        && declared.to_str().ok().and_then(|v| v.parse::<u64>().ok()) != Some(length)
    {
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    // Werkzeug writes reason phrases in capitals (`403 FORBIDDEN`); so do we, so that status
    // lines read as a Python service's do. A reason the response chose itself is kept.
    if response.extensions().get::<ReasonPhrase>().is_none()
        && let Some(reason) = response.status().canonical_reason()
        && reason.bytes().any(|b| b.is_ascii_lowercase())
        && let Ok(reason) = ReasonPhrase::try_from(reason.to_ascii_uppercase())
    {
        response.extensions_mut().insert(reason);
    }
    if *method == Method::HEAD {
        // Keep the headers of the `GET` response, with the length of the body it would send.
        if let Some(length) = exact
            && response.status() != StatusCode::NO_CONTENT
        {
            response
                .headers_mut()
                .entry(header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(length));
        }
        *response.body_mut() = response::empty();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use nameko_core::Config;

    #[test]
    fn settings_come_from_the_service_config() {
        let defaults = ServerConfig::from_config(&Config::new()).unwrap();
        assert_eq!(
            defaults.address,
            BindAddress::parse("0.0.0.0:8000").unwrap()
        );
        assert_eq!(defaults.max_body_size, ServerConfig::DEFAULT_MAX_BODY_SIZE);

        let mut config = Config::new();
        config.set(WEB_SERVER_ADDRESS, 9000);
        config.set(WEB_MAX_BODY_SIZE, 16);
        config.set(WEB_HEADER_READ_TIMEOUT, 0.5);
        config.set(WEB_SHUTDOWN_TIMEOUT, 2);
        let server = ServerConfig::from_config(&config).unwrap();
        assert_eq!(server.address.to_string(), "0.0.0.0:9000");
        assert_eq!(server.max_body_size, 16);
        assert_eq!(server.header_read_timeout, Duration::from_millis(500));
        assert_eq!(server.shutdown_timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_settings_are_errors_naming_the_key() {
        let error = |key: &str, value: serde_json::Value| {
            let mut config = Config::new();
            config.set(key, value);
            ServerConfig::from_config(&config).unwrap_err().to_string()
        };
        assert_eq!(
            error(WEB_SERVER_ADDRESS, "localhost:http".into()),
            "misconfigured bind address `localhost:http`: expected `[address:]port`"
        );
        assert_eq!(
            error(WEB_MAX_BODY_SIZE, 0.into()),
            "config defaults and overrides: key `WEB_MAX_BODY_SIZE` must be a positive number of bytes, found the number `0`"
        );
        assert!(error(WEB_MAX_BODY_SIZE, "lots".into()).contains("key `WEB_MAX_BODY_SIZE`"));
        assert_eq!(
            error(WEB_HEADER_READ_TIMEOUT, (-1).into()),
            "config defaults and overrides: key `WEB_HEADER_READ_TIMEOUT` must be a positive number of seconds, found the number `-1`"
        );
        assert!(error(WEB_SHUTDOWN_TIMEOUT, 0.into()).contains("key `WEB_SHUTDOWN_TIMEOUT`"));
        assert!(error(WEB_SERVER_ADDRESS, serde_json::json!([1])).contains("WEB_SERVER_ADDRESS"));
    }
}
