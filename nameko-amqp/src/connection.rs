//! `Connection`: a cheap-clone handle on one lapin connection, and the process-wide registry
//! that shares connections between extensions.
//!
//! lapin runs an OS thread per connection and hands every frame to it, so a connection per
//! extension would cost a thread each on a small machine. Instead every extension that asks
//! [`Connection::shared`] for the same settings and [`ConnectionRole`] gets the same
//! connection: one for consuming and one for publishing, as Nameko keeps consumers and
//! producers on separate connections so that a blocked publisher never stalls heartbeats on
//! the consumer side. Work is spread over channels instead.
//!
//! The registry holds connections weakly: a connection lives as long as some publisher,
//! consumer or handle uses it, and closes when the last one is dropped. A connection that has
//! closed or failed is replaced by a fresh one on the next `shared` call. The registry is also
//! keyed by the caller's tokio runtime, so independent runtimes in one process (tests, or two
//! applications) never share, and so never close or break, each other's connections.
//!
//! Every connection's bookkeeping (lapin's heartbeat timer, acknowledgements, channel
//! closes) runs on one small runtime of this crate's own, the broker runtime, not on the
//! application's: a handler that blocks its worker thread (a CPU-bound loop, a blocking call)
//! would otherwise hold back heartbeats until the broker dropped the connection and redelivered
//! the very request that was being worked on. lapin reads and writes the socket on a thread of
//! its own either way.
//!
//! lapin's automatic recovery (`enable_auto_recover`) is deliberately off: it is young code,
//! recovers channels the broker closed on purpose, and replays declarations behind the caller's
//! back. Recovery is explicit instead: [`Connection::reconnect`] hands out a working connection
//! with the same settings, and the [`RecoveringConsumer`](crate::RecoveringConsumer) and
//! [`Publisher`](crate::Publisher) use it when theirs has failed. Opening a connection, TCP and
//! AMQP handshake together, is bounded by [`ConnectionConfig::connect_timeout`], so a broker that
//! accepts connections but never answers is a failure, not a hang.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use lapin::ConnectionProperties;
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::SASLMechanism;
use tokio_util::task::AbortOnDropHandle;

use crate::error::{Error, Result, UriError, connect_hint};
use crate::tls::{self, TlsOptions};
use crate::uri::{AmqpUri, Scheme};

/// Which shared connection an extension wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionRole {
    /// Queue consumers: RPC entrypoints, event handlers, reply listeners.
    Consumer,
    /// Publishers: RPC requests and replies, events.
    Publisher,
}

impl ConnectionRole {
    fn as_str(self) -> &'static str {
        match self {
            Self::Consumer => "consumer",
            Self::Publisher => "publisher",
        }
    }
}

impl fmt::Display for ConnectionRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to open a connection: the broker address plus the settings Nameko reads
/// from its config (`HEARTBEAT`, `LOGIN_METHOD`, `AMQP_SSL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    uri: AmqpUri,
    /// How to set up TLS, when the URI is `amqps://` or `AMQP_SSL` asked for it.
    tls: Option<TlsOptions>,
    /// Seconds between heartbeats, proposed to the broker (which may lower it).
    heartbeat: u16,
    login_method: Option<SASLMechanism>,
    /// Shown by the broker's management tools, so operators can tell what a connection is.
    name: String,
    /// Bounds TCP connect plus AMQP handshake, so a silent peer cannot hang a (re)connect.
    connect_timeout: Duration,
}

impl ConnectionConfig {
    /// Nameko's default `HEARTBEAT`, in seconds.
    pub const DEFAULT_HEARTBEAT: u16 = 60;
    /// The connection name sent to the broker unless another is set.
    pub const DEFAULT_NAME: &'static str = "nameko-rs";
    /// How long opening a connection may take unless the URI's `connection_timeout` says
    /// otherwise: RabbitMQ's own handshake timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Settings for this broker with Nameko's defaults: the URI's `heartbeat` parameter or
    /// 60 seconds, the URI's login method or PLAIN, the name `nameko-rs`, and the URI's
    /// `connection_timeout` or [`Self::DEFAULT_CONNECT_TIMEOUT`] to open a connection.
    #[must_use]
    pub fn new(uri: AmqpUri) -> Self {
        Self {
            heartbeat: uri.heartbeat().unwrap_or(Self::DEFAULT_HEARTBEAT),
            login_method: uri.login_method(),
            connect_timeout: uri
                .connection_timeout()
                .unwrap_or(Self::DEFAULT_CONNECT_TIMEOUT),
            tls: (uri.scheme() == Scheme::Amqps).then(TlsOptions::new),
            uri,
            name: Self::DEFAULT_NAME.to_owned(),
        }
    }

    /// Speak TLS to the broker with these options (Nameko's `AMQP_SSL`). An `amqp://` URI
    /// becomes `amqps://`, on port 5671 unless it named a port, as kombu does.
    #[must_use]
    pub fn with_tls(mut self, options: TlsOptions) -> Self {
        self.uri = self.uri.with_tls();
        self.tls = Some(options);
        self
    }

    /// Apply Nameko's `AMQP_SSL` value: nothing for `null` or `false`, TLS for `true` or a
    /// mapping of options (see [`TlsOptions::from_amqp_ssl`]).
    pub fn with_amqp_ssl(self, value: &serde_json::Value) -> Result<Self> {
        Ok(match TlsOptions::from_amqp_ssl(value)? {
            Some(options) => self.with_tls(options),
            None => self,
        })
    }

    /// The TLS options, when the connection speaks TLS.
    #[must_use]
    pub fn tls(&self) -> Option<&TlsOptions> {
        self.tls.as_ref()
    }

    /// Parse an `AMQP_URI` value and apply the defaults of [`ConnectionConfig::new`].
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        AmqpUri::parse(uri).map(Self::new)
    }

    /// Use this heartbeat (Nameko's `HEARTBEAT`, seconds). lapin cannot turn heartbeats off:
    /// 0 means "whatever the broker proposes".
    #[must_use]
    pub fn with_heartbeat(mut self, seconds: u16) -> Self {
        self.heartbeat = seconds;
        self
    }

    /// Use this SASL mechanism (Nameko's `LOGIN_METHOD`: `PLAIN`, `AMQPLAIN`, `EXTERNAL`...).
    pub fn with_login_method(mut self, method: &str) -> Result<Self> {
        self.login_method = Some(
            method
                .parse()
                .map_err(|_| Error::LoginMethod(method.to_owned()))?,
        );
        Ok(self)
    }

    /// Give up opening a connection (TCP connect and AMQP handshake) after this long.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Send this connection name to the broker instead of `nameko-rs`.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The broker address.
    #[must_use]
    pub fn uri(&self) -> &AmqpUri {
        &self.uri
    }

    /// The heartbeat in seconds.
    #[must_use]
    pub fn heartbeat(&self) -> u16 {
        self.heartbeat
    }

    /// The connection name sent to the broker.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long opening a connection may take.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// lapin's connection settings for a connection with this display name (lapin's own
    /// recovery stays off: see the module docs).
    fn properties(&self, display_name: &str) -> ConnectionProperties {
        ConnectionProperties::default().with_connection_name(display_name.into())
    }

    /// Everything that makes two connections interchangeable, password included; never shown.
    fn registry_key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{:?}",
            self.uri.to_lapin(Some(self.heartbeat), self.login_method),
            self.name,
            self.tls
        )
    }
}

impl From<AmqpUri> for ConnectionConfig {
    fn from(uri: AmqpUri) -> Self {
        Self::new(uri)
    }
}

/// A handle on one open broker connection. Cloning is cheap and every clone is the same
/// connection.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    lapin: lapin::Connection,
    config: ConnectionConfig,
    role: Option<ConnectionRole>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        tracing::debug!(broker = %self.config.uri, role = ?self.role, "releasing broker connection");
    }
}

type RegistryKey = (String, ConnectionRole, tokio::runtime::Id);
type Slot = Arc<tokio::sync::Mutex<Weak<Inner>>>;

/// The runtime every connection's bookkeeping runs on (see the module docs): one worker
/// thread, started on first use and kept for the life of the process. `None` if the thread could
/// not be started, in which case connections fall back to the caller's runtime.
fn broker_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("nameko-amqp")
                .enable_all()
                .build()
                .inspect_err(|error| {
                    tracing::warn!(
                        %error,
                        "could not start the broker runtime; connections run their heartbeats on the application's runtime"
                    );
                })
                .ok()
        })
        .as_ref()
}

/// The shared connections of this process. The outer lock is only held to find a slot; each
/// slot's async lock is held while its connection is (re)opened, so concurrent callers wait
/// for one connection instead of opening several.
fn registry() -> &'static Mutex<HashMap<RegistryKey, Slot>> {
    static REGISTRY: OnceLock<Mutex<HashMap<RegistryKey, Slot>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

impl Connection {
    /// Open a connection of its own, not shared with anyone.
    pub async fn connect(config: &ConnectionConfig) -> Result<Self> {
        Self::open(config, None).await
    }

    /// The connection of this process for these settings and this role, opened on first use
    /// and replaced when it has closed or failed.
    ///
    /// ```no_run
    /// # async fn example() -> nameko_amqp::Result<()> {
    /// use nameko_amqp::{Connection, ConnectionConfig, ConnectionRole};
    ///
    /// let config = ConnectionConfig::parse("pyamqp://guest:guest@localhost")?.with_heartbeat(60);
    /// let a = Connection::shared(&config, ConnectionRole::Consumer).await?;
    /// let b = Connection::shared(&config, ConnectionRole::Consumer).await?;
    /// assert!(a.same_connection(&b));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shared(config: &ConnectionConfig, role: ConnectionRole) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::NoRuntime)?
            .id();
        let slot = {
            let mut slots = registry()
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            // Forget slots nobody uses: their connection is gone and no caller is opening one.
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .try_lock()
                        .map_or(true, |connection| connection.strong_count() > 0)
            });
            slots
                .entry((config.registry_key(), role, runtime))
                .or_default()
                .clone()
        };
        let mut current = slot.lock().await;
        if let Some(inner) = current.upgrade() {
            if inner.lapin.status().connected() {
                return Ok(Self { inner });
            }
            tracing::info!(
                broker = %config.uri,
                %role,
                state = ?inner.lapin.status(),
                "shared broker connection is no longer open, opening a new one"
            );
        }
        let connection = Self::open(config, Some(role)).await?;
        *current = Arc::downgrade(&connection.inner);
        Ok(connection)
    }

    async fn open(config: &ConnectionConfig, role: Option<ConnectionRole>) -> Result<Self> {
        let address = config.uri.redacted();
        let tls = match &config.tls {
            Some(options) => options.load().await?,
            None => OwnedTLSConfig::default(),
        };
        let display_name = match role {
            Some(role) => format!("{} {role}", config.name),
            None => config.name.clone(),
        };
        let uri = config
            .uri
            .to_lapin(Some(config.heartbeat), config.login_method);
        let connect = tls::connect(uri, config.properties(&display_name), tls);
        // lapin keeps the runtime it connects on for the connection's life: connect on the
        // broker runtime, so that heartbeats never wait for the application's threads.
        let runtime = match broker_runtime() {
            Some(runtime) => runtime.handle().clone(),
            None => tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?,
        };
        let connecting = AbortOnDropHandle::new(runtime.spawn(connect));
        let connected = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(failed)) => Err(lapin::Error::from(std::io::Error::other(
                failed.to_string(),
            ))),
            Err(_) => {
                return Err(Error::ConnectTimedOut {
                    address,
                    timeout: config.connect_timeout,
                });
            }
        };
        let lapin = connected.map_err(|source| Error::Connect {
            address: address.clone(),
            hint: connect_hint(&source, config.login_method),
            source,
        })?;
        tracing::info!(
            broker = %address,
            name = %display_name,
            heartbeat = lapin.configuration().heartbeat(),
            "connected to broker"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                lapin,
                config: config.clone(),
                role,
            }),
        })
    }

    /// A working connection with the same settings and role as this one: this very connection
    /// while it is open; otherwise, for a shared connection, the registry's current one (opened
    /// now if nobody has replaced it yet), and for a private one a new private connection.
    ///
    /// This is how consumers and publishers recover after the broker went away: they all ask,
    /// and the registry makes sure a process opens one replacement, not one per asker.
    pub async fn reconnect(&self) -> Result<Connection> {
        if self.is_open() {
            return Ok(self.clone());
        }
        match self.inner.role {
            Some(role) => Self::shared(&self.inner.config, role).await,
            None => Self::connect(&self.inner.config).await,
        }
    }

    /// Open a new channel on this connection.
    pub async fn create_channel(&self) -> Result<lapin::Channel> {
        self.inner
            .lapin
            .create_channel()
            .await
            .map_err(|source| Error::amqp("channel.open", source))
    }

    /// Whether the connection is open and usable.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.inner.lapin.status().connected()
    }

    /// Whether both handles are the same broker connection.
    #[must_use]
    pub fn same_connection(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The settings this connection was opened with.
    #[must_use]
    pub fn config(&self) -> &ConnectionConfig {
        &self.inner.config
    }

    /// The role it was opened for, when it came from [`Connection::shared`].
    #[must_use]
    pub fn role(&self) -> Option<ConnectionRole> {
        self.inner.role
    }

    /// The heartbeat the broker agreed to, in seconds.
    #[must_use]
    pub fn negotiated_heartbeat(&self) -> u16 {
        self.inner.lapin.configuration().heartbeat()
    }

    /// The underlying lapin connection, for what this crate does not wrap.
    #[must_use]
    pub fn lapin(&self) -> &lapin::Connection {
        &self.inner.lapin
    }

    /// Close the connection for every holder (reply code 200). Closing one that is no longer
    /// open does nothing. A shared connection closed this way is replaced on the next
    /// [`Connection::shared`] call.
    pub async fn close(&self) -> Result<()> {
        if !self.is_open() {
            return Ok(());
        }
        self.inner
            .lapin
            .close(200, "OK".into())
            .await
            .map_err(|source| Error::amqp("connection.close", source))
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("broker", &self.inner.config.uri)
            .field("role", &self.inner.role)
            .field("status", self.inner.lapin.status())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_follow_nameko() {
        let config = ConnectionConfig::parse("pyamqp://guest:guest@localhost").unwrap();
        assert_eq!(config.heartbeat(), 60);
        assert_eq!(config.name(), "nameko-rs");
        let config = ConnectionConfig::parse("amqp://h/?heartbeat=15").unwrap();
        assert_eq!(config.heartbeat(), 15);
        assert_eq!(config.with_heartbeat(30).heartbeat(), 30);
    }

    #[test]
    fn login_methods() {
        let config = ConnectionConfig::parse("amqp://h").unwrap();
        let external = config.clone().with_login_method("EXTERNAL").unwrap();
        assert_eq!(external.login_method, Some(SASLMechanism::External));
        assert_eq!(
            config
                .clone()
                .with_login_method("amqplain")
                .unwrap()
                .login_method,
            Some(SASLMechanism::AMQPlain)
        );
        let error = config.with_login_method("GSSAPI").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("unknown login method `GSSAPI`"),
            "{error}"
        );
    }

    #[test]
    fn registry_key_separates_what_matters() {
        let base = ConnectionConfig::parse("amqp://u:p@h/v").unwrap();
        let key = base.registry_key();
        assert_eq!(
            key,
            ConnectionConfig::parse("pyamqp://u:p@h:5672/v")
                .unwrap()
                .registry_key()
        );
        for other in [
            ConnectionConfig::parse("amqp://u:other@h/v").unwrap(),
            ConnectionConfig::parse("amqp://u:p@h/w").unwrap(),
            base.clone().with_heartbeat(10),
            base.clone().with_name("other"),
            base.clone().with_login_method("EXTERNAL").unwrap(),
        ] {
            assert_ne!(other.registry_key(), key);
        }
    }

    #[test]
    fn amqp_ssl_turns_tls_on() {
        let plain = ConnectionConfig::parse("amqp://u:p@h/v").unwrap();
        assert_eq!(plain.tls(), None);
        let amqps = ConnectionConfig::parse("amqps://u:p@h/v").unwrap();
        assert_eq!(amqps.tls(), Some(&TlsOptions::new()));
        let ssl = plain
            .clone()
            .with_amqp_ssl(&serde_json::json!({"ca_certs": "/ca.pem"}))
            .unwrap();
        assert_eq!(ssl.uri().to_string(), "amqps://u:***@h:5671/v");
        assert_eq!(
            ssl.tls().and_then(TlsOptions::ca_certs),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert_ne!(ssl.registry_key(), amqps.registry_key());
        let off = plain
            .clone()
            .with_amqp_ssl(&serde_json::json!(false))
            .unwrap();
        assert_eq!(off, plain);
        assert!(
            plain
                .with_amqp_ssl(&serde_json::json!({"cert_reqs": 0}))
                .is_err()
        );
    }

    #[tokio::test]
    async fn amqps_failures_name_the_redacted_address() {
        let config = ConnectionConfig::parse("amqps://u:secret@127.0.0.1:1/v").unwrap();
        let error = Connection::connect(&config).await.unwrap_err();
        assert!(matches!(error, Error::Connect { .. }), "{error}");
        assert!(
            error.to_string().contains("amqps://u:***@127.0.0.1:1/v"),
            "{error}"
        );
        assert!(!error.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn connect_failure_names_the_redacted_address() {
        let config = ConnectionConfig::parse("amqp://u:secret@127.0.0.1:1/v").unwrap();
        let error = Connection::connect(&config).await.unwrap_err();
        assert!(matches!(error, Error::Connect { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains("amqp://u:***@127.0.0.1:1/v"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
