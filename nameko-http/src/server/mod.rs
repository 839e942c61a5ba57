//! The web server: one hyper HTTP/1.1 listener per bind address per process, and the plumbing
//! the `http` entrypoint builds on.
//!
//! A service author needs none of this: [`http`](crate::http) entrypoints add the container's
//! [`WebServerExtension`] themselves, and it registers their routes. It is public for what
//! sits beside a service: finding the port a `WEB_SERVER_ADDRESS` of `0` was given
//! ([`WebServerExtension::local_addr`]), and serving [`Route`]s of plain
//! `Fn(Request) -> impl Future` handlers without a container ([`WebServer::register`]).
//!
//! One concept per file: `settings.rs` ([`ServerConfig`] and [`BindAddress`], read from a
//! service's config), `route.rs` (a [`Route`] and its [`RouteHandler`]), `registry.rs` (the
//! process-wide table of servers by address, [`WebServer`] and [`Registration`]), `serve.rs`
//! (the accept loop and the graceful stop), `dispatch.rs` (one request: routing, the body,
//! panics, the response's last touches) and `extension.rs` (the container's side, Nameko's
//! `WebServer` shared extension). The url rules and the route table the server dispatches
//! through are re-exported here too ([`Rule`], [`Methods`], [`Router`]), since a [`Route`] is
//! built from them.

mod dispatch;
mod extension;
mod registry;
mod route;
mod serve;
pub(crate) mod settings;

pub use crate::method::Methods;
pub use crate::router::{Lookup, Router};
pub use crate::rule::{Converter, Rule};
pub use extension::WebServerExtension;
pub use registry::{Registration, ServerState, WebServer};
pub use route::{BoxFuture, Route, RouteHandler};
pub use settings::{BindAddress, ServerConfig};
