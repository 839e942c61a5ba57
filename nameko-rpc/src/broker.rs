//! How the RPC extensions reach the broker from a service's [`Config`].
//!
//! Every RPC piece (the request consumer, the reply listener, the standalone clients) needs the
//! same two things: the broker settings Nameko reads from config (`AMQP_URI`, `HEARTBEAT`,
//! `LOGIN_METHOD`, `AMQP_SSL`) and the process's shared connections, one for consuming and one
//! for publishing, so that many services in one process cost two lapin threads rather than two
//! per extension.

use nameko_amqp::{Connection, ConnectionConfig, ConnectionRole};
use nameko_core::Config;

use crate::error::RpcError;

/// The broker settings of a config.
///
/// Only JSON is spoken, so a config asking for another `serializer` fails here, when a service
/// or client starts, rather than on its first message.
pub(crate) fn connection_config(config: &Config) -> Result<ConnectionConfig, RpcError> {
    config.serializer()?;
    let mut settings =
        ConnectionConfig::parse(&config.amqp_uri()?)?.with_heartbeat(config.heartbeat()?);
    if let Some(method) = config.login_method()? {
        settings = settings.with_login_method(&method)?;
    }
    if let Some(ssl) = config.amqp_ssl()? {
        settings = settings.with_amqp_ssl(&ssl)?;
    }
    Ok(settings)
}

/// The process's shared consuming and publishing connections for these settings.
pub(crate) async fn connections(
    settings: &ConnectionConfig,
) -> Result<(Connection, Connection), RpcError> {
    let consuming = Connection::shared(settings, ConnectionRole::Consumer).await?;
    let publishing = Connection::shared(settings, ConnectionRole::Publisher).await?;
    Ok((consuming, publishing))
}
