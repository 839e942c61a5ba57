//! The broker side shared by dispatchers and handlers: connection settings read from a Nameko
//! config, and one confirmed publisher, made on first use.
//!
//! The publisher survives its connection (it reconnects on its next publish, see
//! [`nameko_amqp::Publisher`]) and a channel the broker closed, for example after a publish to
//! an exchange that does not exist (404), which happens to Nameko too when an auto-delete event
//! exchange lost its last binding. kombu retries that on a fresh channel; callers here retry
//! once, after declaring the exchange again. A publish that failed because the connection was
//! lost is not retried: the broker may have the message already, and the caller is told.

use std::sync::Arc;

use nameko_amqp::{
    AmqpSettings, Connection, ConnectionConfig, ConnectionRole, PublishError, PublishOptions,
    Publisher, Topology,
};
use nameko_core::Config;

use crate::error::Result;

/// The reply code of a publish to an exchange that does not exist.
const NOT_FOUND: u16 = 404;

/// The broker connection settings of a config, read as every AMQP extension reads them.
pub(crate) fn connection_config(config: &Config) -> Result<ConnectionConfig> {
    Ok(AmqpSettings::from_config(config)?.connection().clone())
}

/// How many unacknowledged events a handler's consumer may hold.
pub(crate) fn prefetch_count(config: &Config) -> Result<u16> {
    Ok(AmqpSettings::from_config(config)?.prefetch_count())
}

/// `DECLARE_EVENT_EXCHANGES`: unless explicitly `false`, event exchanges are declared.
pub(crate) fn declare_event_exchanges(config: &Config) -> bool {
    config.get("DECLARE_EVENT_EXCHANGES") != Some(&serde_json::Value::Bool(false))
}

/// `AUTO_DELETE_EVENT_EXCHANGES`: declare event exchanges auto-delete (default false).
pub(crate) fn auto_delete_event_exchanges(config: &Config) -> bool {
    config.truthy("AUTO_DELETE_EVENT_EXCHANGES")
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

    /// The publisher, made (with the shared connection) on first use.
    pub(crate) async fn publisher(&self) -> Result<Publisher> {
        let mut current = self.publisher.lock().await;
        if let Some(publisher) = current.as_ref() {
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

    /// Publishes once and waits for the broker's confirm. `Ok(Err(_))` is the broker refusing
    /// the message because the exchange does not exist (404), worth one retry once it has been
    /// declared again; `Err(_)` is final, a lost connection included.
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
            Err(error) if error.reply_code() == Some(NOT_FOUND) => Ok(Err(error)),
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
        config.set("serializer", "pickle");
        assert!(
            connection_config(&config).is_err(),
            "events speak JSON only, as RPC"
        );
    }

    #[test]
    fn exchange_flags_follow_nameko() {
        let mut config = Config::new();
        assert!(declare_event_exchanges(&config));
        assert!(!auto_delete_event_exchanges(&config));
        config.set("DECLARE_EVENT_EXCHANGES", false);
        config.set("AUTO_DELETE_EVENT_EXCHANGES", true);
        assert!(!declare_event_exchanges(&config));
        assert!(auto_delete_event_exchanges(&config));
    }
}
