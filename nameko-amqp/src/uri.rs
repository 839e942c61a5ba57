//! `AmqpUri`: the broker address as Nameko configs write it (`AMQP_URI`).
//!
//! Nameko hands its URI to kombu, so existing config files say `pyamqp://`, leave the path out,
//! or write the default vhost as `/`, `//` or `/%2f`. lapin's own parser rejects `pyamqp`, reads
//! a bare trailing `/` as the empty vhost, and replaces IP-address hosts with `localhost`, so
//! this module parses the text itself with kombu's rules and builds lapin's `AMQPUri` from the
//! parts. Because the address ends up in logs and error messages, the type never prints its
//! password: `Display` and `Debug` show `***` in its place.

use std::fmt;
use std::str::FromStr;

use lapin::uri::{
    AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo, SASLMechanism,
};

use crate::error::UriError;

/// The two AMQP transports: plain TCP and TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `amqp://` (and kombu's alias `pyamqp://`), default port 5672.
    Amqp,
    /// `amqps://`, AMQP over TLS, default port 5671.
    Amqps,
}

impl Scheme {
    /// The port a URI of this scheme uses when it names none.
    #[must_use]
    pub fn default_port(self) -> u16 {
        match self {
            Self::Amqp => 5672,
            Self::Amqps => 5671,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Amqp => "amqp",
            Self::Amqps => "amqps",
        }
    }
}

/// The frame size asked for when the URI names none: RabbitMQ's own default (128 KiB).
///
/// Left to negotiate freely, lapin grows each connection's read and write buffers to 32 frames of
/// its largest offer and fills them with zeros, so an idle service holds about 8 MiB per
/// connection resident; asking for the broker's default frame size up front keeps an idle service
/// under 10 MB without changing what goes over the wire.
pub const DEFAULT_FRAME_MAX: u32 = 131_072;

/// A parsed broker address.
///
/// Parse with [`AmqpUri::parse`] or `str::parse`. Missing parts take kombu's defaults: user
/// and password `guest`, host `localhost`, port 5672 (5671 for `amqps`), vhost `/`.
///
/// ```
/// use nameko_amqp::AmqpUri;
///
/// let uri = AmqpUri::parse("pyamqp://guest:secret@rabbit/%2f").unwrap();
/// assert_eq!(uri.host(), "rabbit");
/// assert_eq!(uri.port(), 5672);
/// assert_eq!(uri.vhost(), "/");
/// assert_eq!(uri.to_string(), "amqp://guest:***@rabbit:5672/%2f");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUri {
    scheme: Scheme,
    username: String,
    password: String,
    host: String,
    port: u16,
    /// The URI named no port, so turning TLS on moves it to 5671 as kombu does.
    default_port: bool,
    vhost: String,
    /// `?heartbeat=` in the URI; the connection settings decide whether it wins.
    heartbeat: Option<u16>,
    /// `?connection_timeout=` in milliseconds, passed to lapin as is.
    connection_timeout: Option<u64>,
    /// `?frame_max=`, passed to lapin as is; [`DEFAULT_FRAME_MAX`] when the URI names none.
    frame_max: Option<u32>,
    /// `?channel_max=`, passed to lapin as is.
    channel_max: Option<u16>,
    /// `?login_method=` (kombu's name) or `?auth_mechanism=` (lapin's name).
    login_method: Option<SASLMechanism>,
}

impl AmqpUri {
    /// Parse a Nameko/kombu broker URI.
    ///
    /// Accepted schemes are `amqp`, `amqps` and `pyamqp` (read as `amqp`). The vhost follows
    /// kombu: no path, `/`, `//` and `/%2f` all mean `/`; `/name` means `name`. Query
    /// parameters `heartbeat`, `connection_timeout`, `frame_max`, `channel_max` and
    /// `login_method` (or `auth_mechanism`) are read; others are ignored with a warning, as
    /// kombu passes them to transports this crate does not have.
    ///
    /// An `@` anywhere after the host is refused ([`UriError::MisplacedAt`]): it means a user
    /// name or password with an unencoded `/` or `?`, whose first part would otherwise be read
    /// as a host and port and end up in logs and error messages.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let (scheme_text, rest) = text.split_once("://").ok_or(UriError::MissingScheme)?;
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "amqp" | "pyamqp" => Scheme::Amqp,
            "amqps" => Scheme::Amqps,
            _ => {
                return Err(UriError::UnsupportedScheme {
                    scheme: scheme_text.to_owned(),
                });
            }
        };
        if rest.contains('#') {
            return Err(UriError::Fragment);
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(slash) => before_query.split_at(slash),
            None => (before_query, ""),
        };
        if authority.contains(';') || authority.contains(',') {
            return Err(UriError::Failover);
        }
        // `amqp://user:pa/ss@host` would otherwise connect to host `user`, and a later error or
        // log line would show `pa` as the port: a password must never be read as an address.
        if rest[authority.len()..].contains('@') {
            return Err(UriError::MisplacedAt);
        }

        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            Some(userinfo) => {
                let (user, pass) = match userinfo.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (userinfo, None),
                };
                (
                    non_empty(percent_decode(user, "username")?),
                    pass.map(|p| percent_decode(p, "password"))
                        .transpose()?
                        .and_then(non_empty),
                )
            }
            None => (None, None),
        };

        let (host, port) = split_host_port(hostport)?;
        let explicit_port = port.is_some_and(|port| !port.is_empty());
        let host = non_empty(percent_decode(host, "host")?).unwrap_or_else(|| "localhost".into());
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => {
                    return Err(UriError::InvalidPort {
                        port: port.to_owned(),
                    });
                }
            },
        };

        // kombu drops one leading slash and unquotes the rest; an empty result means `/`.
        let path = path.strip_prefix('/').unwrap_or(path);
        let vhost = non_empty(percent_decode(path, "vhost")?).unwrap_or_else(|| "/".into());
        if vhost.len() > 255 {
            return Err(UriError::VhostTooLong { len: vhost.len() });
        }

        let mut uri = Self {
            scheme,
            username: username.unwrap_or_else(|| "guest".into()),
            password: password.unwrap_or_else(|| "guest".into()),
            host,
            default_port: !explicit_port,
            port,
            vhost,
            heartbeat: None,
            connection_timeout: None,
            frame_max: None,
            channel_max: None,
            login_method: None,
        };
        if let Some(query) = query {
            uri.read_query(query)?;
        }
        Ok(uri)
    }

    fn read_query(&mut self, query: &str) -> Result<(), UriError> {
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let invalid = |expected| UriError::InvalidParameter {
                key: key.to_owned(),
                value: value.to_owned(),
                expected,
            };
            match key {
                "heartbeat" => {
                    self.heartbeat = Some(
                        value
                            .parse()
                            .map_err(|_| invalid("seconds from 0 to 65535"))?,
                    );
                }
                "connection_timeout" => {
                    self.connection_timeout =
                        Some(value.parse().map_err(|_| invalid("milliseconds"))?);
                }
                "frame_max" => {
                    self.frame_max = Some(value.parse().map_err(|_| invalid("a byte count"))?);
                }
                "channel_max" => {
                    self.channel_max = Some(
                        value
                            .parse()
                            .map_err(|_| invalid("a number from 0 to 65535"))?,
                    );
                }
                "login_method" | "auth_mechanism" => {
                    self.login_method = Some(value.parse().map_err(|_| {
                        invalid("one of PLAIN, AMQPLAIN, EXTERNAL, ANONYMOUS, RABBIT-CR-DEMO")
                    })?);
                }
                _ => tracing::warn!(parameter = key, "ignoring unknown amqp uri parameter"),
            }
        }
        Ok(())
    }

    /// `amqp` or `amqps`.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The user name (default `guest`).
    #[must_use]
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The host name or address, without IPv6 brackets.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, defaulted from the scheme when the URI names none.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The virtual host, decoded (`/` for the default one).
    #[must_use]
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// The `heartbeat` query parameter, if the URI has one.
    #[must_use]
    pub fn heartbeat(&self) -> Option<u16> {
        self.heartbeat
    }

    /// The `connection_timeout` query parameter (milliseconds, as kombu and lapin read it), if
    /// the URI has one.
    #[must_use]
    pub fn connection_timeout(&self) -> Option<std::time::Duration> {
        self.connection_timeout
            .map(std::time::Duration::from_millis)
    }

    /// The SASL mechanism named by the URI's `login_method` parameter, if any.
    #[must_use]
    pub fn login_method(&self) -> Option<SASLMechanism> {
        self.login_method
    }

    /// The same broker over TLS: `amqps`, and port 5671 unless the URI named a port (what
    /// kombu does when `AMQP_SSL` is set).
    #[must_use]
    pub(crate) fn with_tls(mut self) -> Self {
        if self.default_port {
            self.port = Scheme::Amqps.default_port();
        }
        self.scheme = Scheme::Amqps;
        self
    }

    /// The address with the password replaced by `***`, safe for logs and errors.
    #[must_use]
    pub fn redacted(&self) -> String {
        self.to_string()
    }

    /// What lapin's `Connection::connect_uri` needs, with the given heartbeat (seconds) and
    /// login method in place of the URI's own.
    #[must_use]
    pub fn to_lapin(&self, heartbeat: Option<u16>, login_method: Option<SASLMechanism>) -> AMQPUri {
        AMQPUri {
            scheme: match self.scheme {
                Scheme::Amqp => AMQPScheme::AMQP,
                Scheme::Amqps => AMQPScheme::AMQPS,
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.username.clone(),
                    password: self.password.clone(),
                },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                frame_max: Some(self.frame_max.unwrap_or(DEFAULT_FRAME_MAX)),
                channel_max: self.channel_max,
                heartbeat: heartbeat.or(self.heartbeat),
                connection_timeout: self.connection_timeout,
                auth_mechanism: login_method.or(self.login_method),
            },
        }
    }
}

impl FromStr for AmqpUri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for AmqpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}:***@",
            self.scheme.as_str(),
            percent_encode(&self.username)
        )?;
        // `:` only ever stands in an IPv6 address, which brackets keep apart from the port.
        let host = percent_encode_except(&self.host, b":");
        if self.host.contains(':') {
            write!(f, "[{host}]")?;
        } else {
            f.write_str(&host)?;
        }
        write!(f, ":{}/{}", self.port, percent_encode(&self.vhost))
    }
}

impl fmt::Debug for AmqpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AmqpUri").field(&self.redacted()).finish()
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), UriError> {
    if let Some(bracketed) = hostport.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(UriError::InvalidHost {
                host: hostport.to_owned(),
                reason: "expected `]` after an IPv6 address",
            });
        };
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(UriError::InvalidHost {
                    host: hostport.to_owned(),
                    reason: "expected `:port` or nothing after `]`",
                }),
            },
        };
    }
    Ok(match hostport.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    })
}

/// Unquote `%XX` sequences the way Python's `urllib.parse.unquote` does: malformed sequences
/// stay as written.
fn percent_decode(text: &str, part: &'static str) -> Result<String, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).and_then(|b| hex_value(*b)),
                bytes.get(i + 2).and_then(|b| hex_value(*b)),
            )
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| UriError::NotUtf8 { part })
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Encode everything but unreserved characters, so `/` in a vhost prints as `%2f` (the form
/// Nameko documentation uses).
fn percent_encode(text: &str) -> String {
    percent_encode_except(text, b"")
}

/// Encode everything but unreserved characters and `keep`, so that what is printed parses
/// back to the same parts.
fn percent_encode_except(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || keep.contains(&byte)
        {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AmqpUri {
        AmqpUri::parse(text).unwrap()
    }

    #[test]
    fn defaults_follow_kombu() {
        let uri = parse("amqp://");
        assert_eq!(uri.scheme(), Scheme::Amqp);
        assert_eq!(uri.username(), "guest");
        assert_eq!(uri.password, "guest");
        assert_eq!(uri.host(), "localhost");
        assert_eq!(uri.port(), 5672);
        assert_eq!(uri.vhost(), "/");
    }

    #[test]
    fn pyamqp_is_amqp() {
        let uri = parse("pyamqp://user:pw@broker");
        assert_eq!(uri.scheme(), Scheme::Amqp);
        assert_eq!(uri.username(), "user");
        assert_eq!(uri.password, "pw");
        assert_eq!(uri.host(), "broker");
        assert_eq!(uri.port(), 5672);
    }

    #[test]
    fn tls_moves_only_a_default_port() {
        let uri = parse("amqp://h/v").with_tls();
        assert_eq!((uri.scheme(), uri.port()), (Scheme::Amqps, 5671));
        let uri = parse("amqp://h:5672/v").with_tls();
        assert_eq!((uri.scheme(), uri.port()), (Scheme::Amqps, 5672));
        let uri = parse("amqps://h:1234").with_tls();
        assert_eq!((uri.scheme(), uri.port()), (Scheme::Amqps, 1234));
        assert_eq!(parse("amqps://h").with_tls().port(), 5671);
    }

    #[test]
    fn amqps_defaults_to_port_5671() {
        let uri = parse("amqps://broker");
        assert_eq!(uri.scheme(), Scheme::Amqps);
        assert_eq!(uri.port(), 5671);
        assert_eq!(parse("AMQPS://broker:1234").port(), 1234);
    }

    #[test]
    fn default_vhost_spellings() {
        for text in [
            "amqp://h",
            "amqp://h/",
            "amqp://h//",
            "amqp://h/%2f",
            "amqp://h/%2F",
            "amqp://h:5672/%2f",
            "amqp://h:5672/",
        ] {
            assert_eq!(parse(text).vhost(), "/", "{text}");
        }
    }

    #[test]
    fn named_vhosts() {
        assert_eq!(parse("amqp://h/orders").vhost(), "orders");
        assert_eq!(parse("amqp://h/my%20vhost").vhost(), "my vhost");
        assert_eq!(parse("amqp://h/a/b").vhost(), "a/b");
        assert_eq!(parse("amqp://h/%2fprod").vhost(), "/prod");
    }

    #[test]
    fn percent_encoded_credentials() {
        let uri = parse("amqp://us%40er:p%40ss%3Aword@h");
        assert_eq!(uri.username(), "us@er");
        assert_eq!(uri.password, "p@ss:word");
        // A password with a raw `@` still splits at the last one, as urllib does.
        let uri = parse("amqp://user:p@ss@h");
        assert_eq!(uri.password, "p@ss");
        assert_eq!(uri.host(), "h");
        // Malformed escapes stay as written, as Python's unquote leaves them.
        assert_eq!(parse("amqp://u:100%@h").password, "100%");
    }

    #[test]
    fn ip_hosts_are_kept() {
        // lapin's own parser would turn these into `localhost`.
        let uri = parse("amqp://guest:guest@10.1.2.3:5673/%2f");
        assert_eq!(uri.host(), "10.1.2.3");
        assert_eq!(uri.port(), 5673);
        let uri = parse("amqp://[::1]:5673/v");
        assert_eq!(uri.host(), "::1");
        assert_eq!(uri.port(), 5673);
        assert_eq!(uri.to_string(), "amqp://guest:***@[::1]:5673/v");
        assert_eq!(parse("amqp://[fe80::1]").port(), 5672);
    }

    #[test]
    fn display_and_debug_never_show_the_password() {
        let uri = parse("amqp://guest:topsecret@host:5672/%2f");
        assert_eq!(uri.to_string(), "amqp://guest:***@host:5672/%2f");
        assert_eq!(uri.redacted(), "amqp://guest:***@host:5672/%2f");
        let debug = format!("{uri:?}");
        assert!(!debug.contains("topsecret"), "{debug}");
        assert_eq!(
            parse("pyamqp://u@h/orders").to_string(),
            "amqp://u:***@h:5672/orders"
        );
    }

    #[test]
    fn query_parameters() {
        let uri = parse("amqp://h/?heartbeat=30&login_method=EXTERNAL&connection_timeout=500");
        assert_eq!(uri.heartbeat(), Some(30));
        assert_eq!(uri.login_method(), Some(SASLMechanism::External));
        assert_eq!(uri.vhost(), "/");
        // Unknown parameters are kombu transport options: ignored.
        assert_eq!(parse("amqp://h?foo=bar").heartbeat(), None);
        let lapin = uri.to_lapin(Some(60), None);
        assert_eq!(lapin.query.heartbeat, Some(60));
        assert_eq!(lapin.query.auth_mechanism, Some(SASLMechanism::External));
        assert_eq!(lapin.query.connection_timeout, Some(500));
        assert_eq!(uri.to_lapin(None, None).query.heartbeat, Some(30));
    }

    #[test]
    fn to_lapin_carries_every_part() {
        let lapin = parse("amqps://u:p@10.0.0.1/v").to_lapin(Some(60), Some(SASLMechanism::Plain));
        assert_eq!(lapin.scheme, AMQPScheme::AMQPS);
        assert_eq!(lapin.authority.host, "10.0.0.1");
        assert_eq!(lapin.authority.port, 5671);
        assert_eq!(lapin.authority.userinfo.username, "u");
        assert_eq!(lapin.authority.userinfo.password, "p");
        assert_eq!(lapin.vhost, "v");
        assert_eq!(lapin.query.auth_mechanism, Some(SASLMechanism::Plain));
    }

    #[test]
    fn bad_uris_say_what_is_wrong() {
        assert_eq!(AmqpUri::parse("localhost"), Err(UriError::MissingScheme));
        assert_eq!(
            AmqpUri::parse("redis://localhost"),
            Err(UriError::UnsupportedScheme {
                scheme: "redis".into()
            })
        );
        assert_eq!(
            AmqpUri::parse("amqp://h:port"),
            Err(UriError::InvalidPort {
                port: "port".into()
            })
        );
        assert_eq!(
            AmqpUri::parse("amqp://h:70000"),
            Err(UriError::InvalidPort {
                port: "70000".into()
            })
        );
        assert_eq!(
            AmqpUri::parse("amqp://h:0"),
            Err(UriError::InvalidPort { port: "0".into() })
        );
        assert!(matches!(
            AmqpUri::parse("amqp://[::1/v"),
            Err(UriError::InvalidHost { .. })
        ));
        assert_eq!(AmqpUri::parse("amqp://a;amqp://b"), Err(UriError::Failover));
        assert_eq!(AmqpUri::parse("amqp://u:pa#ss@h"), Err(UriError::Fragment));
        assert_eq!(
            AmqpUri::parse("amqp://u:pa/ss@h"),
            Err(UriError::MisplacedAt)
        );
        assert_eq!(
            AmqpUri::parse("amqp://u:pa?ss@h"),
            Err(UriError::MisplacedAt)
        );
        assert_eq!(AmqpUri::parse("amqp://h/v@x"), Err(UriError::MisplacedAt));
        assert_eq!(parse("amqp://h/v%40x").vhost(), "v@x");
        assert_eq!(
            AmqpUri::parse("amqp://h/%ff"),
            Err(UriError::NotUtf8 { part: "vhost" })
        );
        assert!(matches!(
            AmqpUri::parse(&format!("amqp://h/{}", "v".repeat(256))),
            Err(UriError::VhostTooLong { len: 256 })
        ));
        assert!(matches!(
            AmqpUri::parse("amqp://h/?heartbeat=soon"),
            Err(UriError::InvalidParameter { .. })
        ));
        assert!(matches!(
            AmqpUri::parse("amqp://h/?login_method=KERBEROS"),
            Err(UriError::InvalidParameter { .. })
        ));
    }

    #[test]
    fn errors_never_contain_the_password() {
        let error = AmqpUri::parse("amqp://u:topsecret@h:port").unwrap_err();
        assert!(!error.to_string().contains("topsecret"));
        assert!(error.to_string().starts_with("invalid port `port`"));
        // An unencoded `/` or `?` in a password used to make its first part the "port".
        for text in [
            "amqp://u:top/secret@h",
            "amqp://u:top?secret@h",
            "amqp://u:top?heartbeat=secret@h",
            "amqp://[u:top/secret@h",
        ] {
            let error = AmqpUri::parse(text).unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("top"), "{text}: {shown}");
            assert!(!shown.contains("secret"), "{text}: {shown}");
        }
    }
}
