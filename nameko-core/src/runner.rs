//! The service runner: several services in one process, started, stopped and watched together.
//!
//! As Nameko's `ServiceRunner`: one container per service name; start, stop and kill act on all
//! containers at once; [`ServiceRunner::wait`] returns when all have ended, or at the first
//! container failure, after stopping the rest, with that failure. [`ServiceRunner::run_until_signal`]
//! is what `nameko run` does: SIGTERM or Ctrl-C stops gracefully; a second Ctrl-C kills.

use tokio::task::JoinSet;

use crate::config::Config;
use crate::container::ServiceContainer;
use crate::error::RunnerError;
use crate::service::AnyService;

/// Runs several services in one process.
#[derive(Debug, Default)]
pub struct ServiceRunner {
    config: Config,
    containers: Vec<ServiceContainer>,
}

impl ServiceRunner {
    /// A runner whose services all read `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            containers: Vec::new(),
        }
    }

    /// Adds a service; its container is built now, so configuration errors surface here.
    pub fn add_service(&mut self, service: impl Into<AnyService>) -> Result<(), RunnerError> {
        let service = service.into();
        if self
            .containers
            .iter()
            .any(|c| c.service_name() == service.name())
        {
            return Err(RunnerError::DuplicateService(service.name().to_owned()));
        }
        let container = ServiceContainer::new(service, self.config.clone())?;
        self.containers.push(container);
        Ok(())
    }

    /// The containers, in the order their services were added.
    pub fn containers(&self) -> &[ServiceContainer] {
        &self.containers
    }

    /// The container of one service.
    pub fn container(&self, service_name: &str) -> Option<&ServiceContainer> {
        self.containers
            .iter()
            .find(|c| c.service_name() == service_name)
    }

    /// The names of the services, in the order they were added.
    pub fn service_names(&self) -> Vec<&str> {
        self.containers.iter().map(|c| c.service_name()).collect()
    }

    /// Starts every container at once. If one fails to start, all are killed and its error
    /// returned.
    pub async fn start(&self) -> Result<(), RunnerError> {
        let mut starting = JoinSet::new();
        for container in &self.containers {
            let container = container.clone();
            starting.spawn(async move { container.start().await });
        }
        let mut first_error = None;
        while let Some(joined) = starting.join_next().await {
            if let Ok(Err(err)) = joined {
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            Some(err) => {
                self.kill().await;
                Err(err.into())
            }
            None => Ok(()),
        }
    }

    /// Stops every container gracefully, all at once.
    pub async fn stop(&self) {
        let mut stopping = JoinSet::new();
        for container in &self.containers {
            let container = container.clone();
            stopping.spawn(async move { container.stop().await });
        }
        while stopping.join_next().await.is_some() {}
    }

    /// Kills every container, all at once.
    pub async fn kill(&self) {
        let mut killing = JoinSet::new();
        for container in &self.containers {
            let container = container.clone();
            killing.spawn(async move { container.kill().await });
        }
        while killing.join_next().await.is_some() {}
    }

    /// Waits until every container has ended. The first container failure stops the others and
    /// is returned.
    pub async fn wait(&self) -> Result<(), RunnerError> {
        let mut waiting = JoinSet::new();
        for container in &self.containers {
            let container = container.clone();
            waiting.spawn(async move { container.wait().await });
        }
        while let Some(joined) = waiting.join_next().await {
            if let Ok(Err(err)) = joined {
                tracing::error!(error = %err, "a service failed; stopping the others");
                self.stop().await;
                return Err(err.into());
            }
        }
        Ok(())
    }

    /// Serves until a signal or a failure: the first SIGTERM or Ctrl-C stops gracefully, a second
    /// Ctrl-C kills. The runner must already be started.
    pub async fn run_until_signal(&self) -> Result<(), RunnerError> {
        let wait = self.wait();
        tokio::pin!(wait);
        tokio::select! {
            result = &mut wait => return result,
            () = shutdown_signal() => {}
        }
        tracing::info!("stopping services (press Ctrl-C again to kill)");
        let stop = self.stop();
        tokio::pin!(stop);
        tokio::select! {
            () = &mut stop => {}
            _ = tokio::signal::ctrl_c() => {
                tracing::warn!("killing services");
                self.kill().await;
            }
        }
        wait.await
    }
}

/// Resolves on Ctrl-C, or on SIGTERM where there is such a thing.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
