//! `AmqpSettings`: the one translation from a service's [`Config`] to the broker.
//!
//! Every AMQP extension and client (the RPC consumer and proxies, event handlers and
//! dispatchers, the standalone clients, the CLI) reads its broker from here, so they agree on
//! every key, and two extensions of one service ask [`Connection::shared`](crate::Connection::shared)
//! for the same settings and so share one consuming and one publishing connection.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `AMQP_URI` | the broker, kombu's URI forms (`pyamqp://`, `amqps://`, vhost rules) | `amqp://guest:guest@localhost` |
//! | `HEARTBEAT` | AMQP heartbeat, seconds | the URI's `?heartbeat=`, else 60 |
//! | `LOGIN_METHOD` | SASL mechanism (`PLAIN`, `AMQPLAIN`, `EXTERNAL`) | the URI's `?login_method=`, else `PLAIN` |
//! | `AMQP_SSL` | `true` or a mapping of TLS options | off, unless the URI is `amqps://` |
//! | `serializer` | only `json` is spoken | `json` |
//! | `PREFETCH_COUNT` | unacknowledged deliveries a consumer may hold | `max_workers` |
//!
//! `HEARTBEAT` beats the URI's parameter because it is the key Nameko documents; the URI's
//! parameter beats the default because whoever wrote it meant it. Everything is read and checked
//! at once, when an extension sets up, so a bad value fails the service's start and not its first
//! message: a `serializer` other than JSON is refused here for every extension alike.

use nameko_core::Config;
use serde_json::Value;

use crate::connection::ConnectionConfig;
use crate::error::Result;

/// The broker Nameko uses when `AMQP_URI` is not set (Nameko 3's default).
pub const DEFAULT_AMQP_URI: &str = "amqp://guest:guest@localhost";

/// The only serializer spoken: JSON, as Nameko's default `serializer`.
pub const SERIALIZER: &str = "json";

/// A service's broker settings, read from its config in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpSettings {
    connection: ConnectionConfig,
    prefetch_count: u16,
}

impl AmqpSettings {
    /// Reads and checks every broker key of `config` (see the module docs for the keys, their
    /// defaults and precedence).
    pub fn from_config(config: &Config) -> Result<Self> {
        let serializer = config
            .get_as::<String>("serializer", "a serializer name")?
            .unwrap_or_else(|| SERIALIZER.to_owned());
        if serializer != SERIALIZER {
            return Err(config
                .invalid("serializer", "`json`", &Value::String(serializer))
                .into());
        }
        let uri = config
            .get_as::<String>("AMQP_URI", "a broker URI string")?
            .unwrap_or_else(|| DEFAULT_AMQP_URI.to_owned());
        let mut connection = ConnectionConfig::parse(&uri)?;
        if let Some(heartbeat) =
            config.get_as::<u16>("HEARTBEAT", "a number of seconds from 0 to 65535")?
        {
            connection = connection.with_heartbeat(heartbeat);
        }
        if let Some(method) = config.get_as::<String>("LOGIN_METHOD", "a SASL mechanism name")? {
            connection = connection.with_login_method(&method)?;
        }
        match config.get("AMQP_SSL") {
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(ssl @ (Value::Bool(true) | Value::Object(_))) => {
                connection = connection.with_amqp_ssl(ssl)?;
            }
            Some(other) => {
                return Err(config
                    .invalid("AMQP_SSL", "true or a mapping of TLS options", other)
                    .into());
            }
        }
        let prefetch_count =
            match config.get_as::<u16>("PREFETCH_COUNT", "an integer from 1 to 65535")? {
                Some(0) => {
                    return Err(config
                        .invalid(
                            "PREFETCH_COUNT",
                            "an integer from 1 to 65535",
                            &Value::from(0),
                        )
                        .into());
                }
                Some(n) => n,
                // A service holds no more work than it can start.
                None => u16::try_from(config.max_workers()?).unwrap_or(u16::MAX),
            };
        Ok(Self {
            connection,
            prefetch_count,
        })
    }

    /// How to open connections to the broker.
    #[must_use]
    pub fn connection(&self) -> &ConnectionConfig {
        &self.connection
    }

    /// How many unacknowledged deliveries each consumer may hold.
    #[must_use]
    pub fn prefetch_count(&self) -> u16 {
        self.prefetch_count
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings(keys: Value) -> Result<AmqpSettings> {
        let Value::Object(keys) = keys else {
            unreachable!("tests pass objects")
        };
        AmqpSettings::from_config(&Config::from_map(keys))
    }

    #[test]
    fn defaults_are_nameko_s() {
        let settings = settings(json!({})).unwrap();
        assert_eq!(
            settings.connection().uri().redacted(),
            "amqp://guest:***@localhost:5672/%2f"
        );
        assert_eq!(settings.connection().heartbeat(), 60);
        assert_eq!(settings.prefetch_count(), 10);
        assert_eq!(
            AmqpSettings::from_config(&Config::new()).unwrap(),
            settings,
            "an empty config and no keys agree"
        );
    }

    #[test]
    fn heartbeat_key_beats_the_uri_which_beats_the_default() {
        let uri = "pyamqp://guest:guest@broker:5673/?heartbeat=15";
        let from_uri = settings(json!({"AMQP_URI": uri})).unwrap();
        assert_eq!(from_uri.connection().heartbeat(), 15);
        let from_key = settings(json!({"AMQP_URI": uri, "HEARTBEAT": 30})).unwrap();
        assert_eq!(from_key.connection().heartbeat(), 30);
        let plain = settings(json!({"AMQP_URI": "amqp://broker", "HEARTBEAT": 5})).unwrap();
        assert_eq!(plain.connection().heartbeat(), 5);
    }

    #[test]
    fn prefetch_follows_max_workers_unless_set() {
        assert_eq!(
            settings(json!({"max_workers": 3}))
                .unwrap()
                .prefetch_count(),
            3
        );
        let both = settings(json!({"max_workers": 3, "PREFETCH_COUNT": 7})).unwrap();
        assert_eq!(both.prefetch_count(), 7);
        assert!(settings(json!({"PREFETCH_COUNT": 0})).is_err());
    }

    #[test]
    fn bad_values_are_errors_that_name_the_key() {
        for (keys, key) in [
            (json!({"serializer": "pickle"}), "serializer"),
            (json!({"HEARTBEAT": "often"}), "HEARTBEAT"),
            (json!({"AMQP_SSL": "yes"}), "AMQP_SSL"),
            (json!({"AMQP_URI": 5}), "AMQP_URI"),
            (json!({"PREFETCH_COUNT": -1}), "PREFETCH_COUNT"),
        ] {
            let error = settings(keys.clone()).unwrap_err().to_string();
            assert!(error.contains(&format!("`{key}`")), "{keys}: {error}");
        }
        assert!(settings(json!({"LOGIN_METHOD": "NOPE"})).is_err());
        assert!(settings(json!({"AMQP_URI": "redis://x"})).is_err());
        assert!(settings(json!({"serializer": "json"})).is_ok());
    }

    #[test]
    fn amqp_ssl_turns_tls_on() {
        let tls = settings(json!({"AMQP_URI": "amqp://broker", "AMQP_SSL": true})).unwrap();
        assert!(tls.connection().tls().is_some());
        let off = settings(json!({"AMQP_URI": "amqp://broker", "AMQP_SSL": false})).unwrap();
        assert!(off.connection().tls().is_none());
    }
}
