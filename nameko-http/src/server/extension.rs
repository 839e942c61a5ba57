//! The container's side of the web server: Nameko's `WebServer` shared extension.
//!
//! One per container, whatever its number of `http` entrypoints. Each entrypoint hands it a
//! route at setup; at start, once every entrypoint is set up, it registers them all at once with
//! the process-wide [`WebServer`] for the container's `WEB_SERVER_ADDRESS`, so a clash among
//! them or with another service refuses the whole service, and two services of one runner on one
//! address share a listener instead of splitting its connections (Python Nameko's misrouting).
//!
//! It follows the container's stop order: the entrypoints stop first (their routes answer `503`
//! from then on), the container waits for running workers, whose responses are then written,
//! and only then does this extension leave the server; the last service on an address closes
//! the listener and waits for its connections to finish. A kill leaves at once.
//!
//! The settings come from the container's configuration through
//! [`ServerConfig::from_config`]; when services share an address, the first one's apply.

use std::fmt;
use std::mem;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nameko_core::{BoxError, Container, Extension, SharedExtension};
use tracing::info;

use super::registry::{Registration, WebServer};
use super::route::Route;
use super::settings::ServerConfig;
use crate::router::Router;

/// The key under which the container keeps its one instance.
const SHARING_KEY: &str = "web_server";

/// The web server shared extension of one container; see the module documentation.
///
/// Obtain it with [`WebServerExtension::of`]; the `http` entrypoints add it themselves.
#[derive(Default)]
pub struct WebServerExtension {
    /// A std mutex: it is only taken to edit the state, never across an `.await`.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    config: Option<ServerConfig>,
    /// Collected at setup, handed to the server at start.
    routes: Vec<Route>,
    registration: Option<Registration>,
    /// Kept after the registration is released, so it can still be read.
    local_addr: Option<SocketAddr>,
}

impl WebServerExtension {
    /// The container's instance, made the first time it is asked for.
    ///
    /// Ask for it while the container runs: a finished container has let go of its extensions,
    /// and would make a new, empty one.
    pub fn of(container: &Container) -> Arc<Self> {
        container.shared_extension(SHARING_KEY, Self::default)
    }

    /// The address the container's routes are served on, with the actual port when
    /// `WEB_SERVER_ADDRESS` asked for port `0`; `None` before start or without `http` routes.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.state().local_addr
    }

    pub(crate) fn add_route(&self, route: Route) {
        self.state().routes.push(route);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every edit is a single assignment or push, so a poisoned lock holds no half-made state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_registration(&self) -> Option<Registration> {
        self.state().registration.take()
    }
}

impl fmt::Debug for WebServerExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("WebServerExtension")
            .field("routes", &state.routes)
            .field("local_addr", &state.local_addr)
            .field("registered", &state.registration.is_some())
            .finish()
    }
}

impl Extension for WebServerExtension {
    /// Reads the settings and refuses routes of this container that clash with each other, so
    /// both mistakes fail at setup, before anything is bound.
    async fn setup(&self, container: &Container) -> Result<(), BoxError> {
        let config = ServerConfig::from_config(container.config())?;
        let mut state = self.state();
        let mut router = Router::new();
        router.add_all(
            state
                .routes
                .iter()
                .map(|route| (route.methods().clone(), route.rule().clone(), ())),
        )?;
        state.config = Some(config);
        Ok(())
    }

    async fn start(&self, container: &Container) -> Result<(), BoxError> {
        let (config, routes) = {
            let mut state = self.state();
            (state.config.clone(), mem::take(&mut state.routes))
        };
        if routes.is_empty() {
            return Ok(());
        }
        let config = match config {
            Some(config) => config,
            None => ServerConfig::from_config(container.config())?,
        };
        let registration = WebServer::register(&config, routes).await?;
        let local_addr = registration.local_addr();
        info!(service = container.service_name(), address = %local_addr, "serving http");
        let mut state = self.state();
        state.local_addr = Some(local_addr);
        state.registration = Some(registration);
        Ok(())
    }

    async fn stop(&self) {
        if let Some(registration) = self.take_registration() {
            registration.stop().await;
        }
    }

    async fn kill(&self) {
        drop(self.take_registration());
    }
}

impl SharedExtension for WebServerExtension {}
