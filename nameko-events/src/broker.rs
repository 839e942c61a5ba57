//! The broker side shared by dispatchers and handlers: connection settings read from a Nameko
//! config, and a confirmed publishing channel that is reopened when it dies.
//!
//! A publishing channel dies for good when the broker closes it, for example after a publish
//! to an exchange that does not exist (404), which happens to Nameko too when an auto-delete
//! event exchange lost its last binding. kombu recovers by retrying on a fresh channel; so does
//! [`Publishing`]: it hands out its publisher while the channel is open and opens a new one
//! (on the process's shared publishing connection) when it is not. Callers retry a failed
//! publish once when it failed because the channel closed under it.

use std::sync::Arc;

use nameko_amqp::{
    Connection, ConnectionConfig, ConnectionRole, PublishError, PublishOptions, Publisher, Topology,
};
use nameko_core::Config;

use crate::error::Result;

/// Connection settings from a Nameko config: `AMQP_URI`, and `HEARTBEAT` and `LOGIN_METHOD`
/// when set (otherwise the URI's own parameters or Nameko's defaults apply).
pub(crate) fn connection_config(config: &Config) -> Result<ConnectionConfig> {
    let mut settings =
        ConnectionConfig::parse(&config.amqp_uri()?).map_err(nameko_amqp::Error::from)?;
    if config.get("HEARTBEAT").is_some() {
        settings = settings.with_heartbeat(config.heartbeat()?);
    }
    if let Some(method) = config.login_method()? {
        settings = settings.with_login_method(&method)?;
    }
    Ok(settings)
}

/// A confirmed publisher that reopens its channel when the broker closed it. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Publishing {
    settings: ConnectionConfig,
    /// Held while a dead channel is replaced, so concurrent publishers open one, not several.
    publisher: Arc<tokio::sync::Mutex<Option<Publisher>>>,
}

impl Publishing {
    pub(crate) fn new(settings: ConnectionConfig) -> Self {
        Self {
            settings,
            publisher: Arc::default(),
        }
    }

    async fn connection(&self) -> Result<Connection> {
        Ok(Connection::shared(&self.settings, ConnectionRole::Publisher).await?)
    }

    /// The open publisher, opening a channel (and the shared connection) when needed.
    pub(crate) async fn publisher(&self) -> Result<Publisher> {
        let mut current = self.publisher.lock().await;
        if let Some(publisher) = current.as_ref().filter(|p| p.is_open()) {
            return Ok(publisher.clone());
        }
        let publisher = Publisher::new(&self.connection().await?).await?;
        *current = Some(publisher.clone());
        Ok(publisher)
    }

    /// A declaration channel on the publishing connection.
    pub(crate) async fn topology(&self) -> Result<Topology> {
        Ok(Topology::new(&self.connection().await?).await?)
    }

    /// Publishes once and waits for the broker's confirm. `Ok(Err(_))` is a failure after
    /// which the channel is gone, worth one retry on a fresh channel; `Err(_)` is final.
    pub(crate) async fn publish_once(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        options: PublishOptions,
    ) -> Result<std::result::Result<(), PublishError>> {
        let publisher = self.publisher().await?;
        match publisher
            .publish(exchange, routing_key, body, options)
            .await
        {
            Ok(()) => Ok(Ok(())),
            Err(error) if !publisher.is_open() => Ok(Err(error)),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_config() {
        let mut config = Config::new();
        config.set("AMQP_URI", "pyamqp://guest:guest@broker:5673/?heartbeat=15");
        assert_eq!(connection_config(&config).unwrap().heartbeat(), 15);
        config.set("HEARTBEAT", 30);
        assert_eq!(connection_config(&config).unwrap().heartbeat(), 30);
        config.set("LOGIN_METHOD", "NOPE");
        assert!(connection_config(&config).is_err());
        config.set("AMQP_URI", "redis://x");
        assert!(connection_config(&config).is_err());
    }
}
