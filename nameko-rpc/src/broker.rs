//! How the RPC extensions reach the broker from a service's [`Config`].
//!
//! Every RPC piece (the request consumer, the reply listener, the standalone clients) reads its
//! broker from [`AmqpSettings`], the same reading every other AMQP extension uses, and takes the
//! process's shared connections, one for consuming and one for publishing, so that a service
//! with RPC and events, or many services in one process, cost two lapin threads rather than two
//! per extension. The one key of RPC's own, `rpc_exchange`, is read here.

use nameko_amqp::{AmqpSettings, Connection, ConnectionConfig, ConnectionRole};
use nameko_core::{Config, ConfigError};

use crate::error::RpcError;

/// The RPC exchange unless `rpc_exchange` names another.
pub const DEFAULT_RPC_EXCHANGE: &str = "nameko-rpc";

/// The broker connection settings of a config.
pub(crate) fn connection_config(config: &Config) -> Result<ConnectionConfig, RpcError> {
    Ok(AmqpSettings::from_config(config)?.connection().clone())
}

/// How many unacknowledged deliveries an RPC consumer may hold.
pub(crate) fn prefetch_count(config: &Config) -> Result<u16, RpcError> {
    Ok(AmqpSettings::from_config(config)?.prefetch_count())
}

/// `rpc_exchange`: the RPC exchange's name, default `nameko-rpc`.
pub(crate) fn rpc_exchange(config: &Config) -> Result<String, ConfigError> {
    Ok(config
        .get_as::<String>("rpc_exchange", "an exchange name")?
        .unwrap_or_else(|| DEFAULT_RPC_EXCHANGE.to_owned()))
}

/// The process's shared consuming and publishing connections for these settings.
pub(crate) async fn connections(
    settings: &ConnectionConfig,
) -> Result<(Connection, Connection), RpcError> {
    let consuming = Connection::shared(settings, ConnectionRole::Consumer).await?;
    let publishing = Connection::shared(settings, ConnectionRole::Publisher).await?;
    Ok((consuming, publishing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_has_nameko_s_default_and_a_clear_error() {
        let mut config = Config::new();
        assert_eq!(rpc_exchange(&config).unwrap(), "nameko-rpc");
        config.set("rpc_exchange", "other");
        assert_eq!(rpc_exchange(&config).unwrap(), "other");
        config.set("rpc_exchange", 5);
        let error = rpc_exchange(&config).unwrap_err().to_string();
        assert!(error.contains("`rpc_exchange`"), "{error}");
    }

    #[test]
    fn rpc_reads_the_broker_as_every_extension_does() {
        let mut config = Config::new();
        config.set("AMQP_URI", "amqp://broker/?heartbeat=15");
        assert_eq!(connection_config(&config).unwrap().heartbeat(), 15);
        config.set("serializer", "pickle");
        assert!(connection_config(&config).is_err());
    }
}
