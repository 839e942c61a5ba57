//! The server's settings: where it listens and how patient it is, read from a service's config.
//!
//! Nameko reads only `WEB_SERVER_ADDRESS`; a server facing the open network also needs a body
//! limit, a header read timeout and a shutdown deadline, so those are keys of their own with
//! defaults that suit a service behind a proxy or not. They are read once, when a service sets
//! up, so a mistaken value fails the service at start and names the key, worded as the core
//! words its own configuration errors. When several services share an address, the settings of
//! the first to register apply.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

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

    pub(super) async fn resolve(&self) -> Result<SocketAddr> {
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
