//! Broker discovery: find an AMQP broker that answers, or start a local RabbitMQ, or say exactly
//! what to do.
//!
//! "Answers" means more than an open port: the probe sends the AMQP 0-9-1 protocol header and
//! waits for the first byte of the broker's reply (RabbitMQ sends Connection.Start). A port held
//! by something else, or a RabbitMQ still booting with its listener open, would otherwise pass the
//! probe and fail the tests later with a far less helpful message. The URI is parsed by hand
//! because only host and port are needed and xtask keeps its dependencies to anyhow. Passwords
//! never reach the output: every URI printed goes through [`mask_password`].

use std::{
    env,
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// The broker used when `AMQP_URI` is not set: a RabbitMQ with default settings on this machine.
pub(crate) const DEFAULT_URI: &str = "amqp://guest:guest@localhost:5672";

/// How long one probe waits for the connect and for the first byte of the reply.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a freshly started RabbitMQ gets to answer; a cold start of the Erlang VM takes a while.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The pause between two probes of a starting broker.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The AMQP 0-9-1 protocol header a client sends first.
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Where a broker should listen, as read from an AMQP URI.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BrokerAddr {
    /// Host name or IP address, without IPv6 brackets.
    pub(crate) host: String,
    /// The explicit port, or the scheme's default.
    pub(crate) port: u16,
}

impl BrokerAddr {
    /// Whether a broker at this address could be one started on this machine.
    fn is_local(&self) -> bool {
        matches!(self.host.as_str(), "localhost" | "::1" | "0.0.0.0" | "::")
            || self.host.starts_with("127.")
    }
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Returns the URI of a broker that answers: `AMQP_URI` or [`DEFAULT_URI`], starting
/// `rabbitmq-server -detached` first when nothing answers at a local address.
pub(crate) fn ensure() -> Result<String> {
    let uri = env::var("AMQP_URI")
        .ok()
        .filter(|uri| !uri.is_empty())
        .unwrap_or_else(|| DEFAULT_URI.to_owned());
    let shown = mask_password(&uri);
    let addr = parse_uri(&uri).with_context(|| format!("cannot use AMQP_URI `{shown}`"))?;

    let refusal = match probe(&addr, PROBE_TIMEOUT) {
        Ok(()) => {
            eprintln!("broker: {shown} answers");
            return Ok(uri);
        }
        Err(refusal) => refusal,
    };
    let how_to_fix = "install RabbitMQ (e.g. `apt-get install rabbitmq-server`) and start it with \
                      `rabbitmq-server -detached`, or set AMQP_URI to a reachable broker";
    let Some(server) = find_on_path("rabbitmq-server") else {
        bail!(
            "no AMQP broker answers at {shown} ({refusal:#}) and `rabbitmq-server` is not on \
             PATH: {how_to_fix}"
        );
    };
    if !addr.is_local() {
        bail!(
            "no AMQP broker answers at {shown} ({refusal:#}); a local rabbitmq-server cannot \
             serve {addr}, which is not this machine: start the broker there or set AMQP_URI to \
             a reachable broker"
        );
    }

    eprintln!(
        "broker: nothing answers at {shown} ({refusal:#}); starting `{} -detached`",
        server.display()
    );
    let status = Command::new(&server)
        .arg("-detached")
        .status()
        .with_context(|| format!("could not run `{} -detached`", server.display()))?;
    if !status.success() {
        bail!(
            "`{} -detached` failed ({status}); look at the RabbitMQ logs (usually \
             /var/log/rabbitmq/), or {how_to_fix}",
            server.display()
        );
    }

    let started = Instant::now();
    loop {
        match probe(&addr, PROBE_TIMEOUT) {
            Ok(()) => {
                eprintln!(
                    "broker: rabbitmq-server answers at {shown} after {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(uri);
            }
            Err(refusal) if started.elapsed() >= START_TIMEOUT => bail!(
                "started `rabbitmq-server -detached` but nothing answered at {shown} within \
                 {}s ({refusal:#}); check `rabbitmq-diagnostics status` and the RabbitMQ logs \
                 (usually /var/log/rabbitmq/), or set AMQP_URI to a reachable broker",
                START_TIMEOUT.as_secs()
            ),
            // A synchronous tool waiting for an external daemon has nothing else to do; the
            // probe itself is the event being waited for.
            Err(_) => thread::sleep(POLL_INTERVAL),
        }
    }
}

/// Connects to `addr` and checks that the peer replies to the AMQP protocol header.
pub(crate) fn probe(addr: &BrokerAddr, timeout: Duration) -> Result<()> {
    let candidates = (addr.host.as_str(), addr.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", addr.host))?;
    let mut last_error = None;
    for candidate in candidates {
        match probe_one(candidate, timeout) {
            Ok(()) => return Ok(()),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{} resolves to no address", addr.host)))
}

fn probe_one(socket: std::net::SocketAddr, timeout: Duration) -> Result<()> {
    let mut stream = TcpStream::connect_timeout(&socket, timeout)
        .with_context(|| format!("cannot connect to {socket}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream
        .write_all(PROTOCOL_HEADER)
        .with_context(|| format!("cannot send the AMQP protocol header to {socket}"))?;
    let mut first = [0_u8; 1];
    match stream.read(&mut first) {
        Ok(0) => bail!("{socket} closed the connection without answering the AMQP protocol header"),
        Ok(_) => Ok(()),
        Err(error) => Err(error).with_context(|| {
            format!(
                "{socket} accepted the connection but did not answer the AMQP protocol header \
                 within {}s",
                timeout.as_secs_f64()
            )
        }),
    }
}

/// The parts of an AMQP URI that matter here. `userinfo` ends at the last `@` so that a password
/// containing an unescaped `@` is still treated as part of the password (and masked).
struct UriParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    hostport: &'a str,
    /// The vhost, query and fragment, starting with their delimiter.
    tail: &'a str,
}

fn split_uri(uri: &str) -> Option<UriParts<'_>> {
    let (scheme, rest) = uri.split_once("://")?;
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    let (userinfo, after_userinfo) = match rest[..before_query].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let host_end = after_userinfo
        .find(['/', '?', '#'])
        .unwrap_or(after_userinfo.len());
    Some(UriParts {
        scheme,
        userinfo,
        hostport: &after_userinfo[..host_end],
        tail: &after_userinfo[host_end..],
    })
}

/// Reads host and port from an `amqp://`, `pyamqp://` or `amqps://` URI (kombu's schemes), with
/// 5672 or, for TLS, 5671 as the default port and `localhost` as the default host.
pub(crate) fn parse_uri(uri: &str) -> Result<BrokerAddr> {
    let Some(parts) = split_uri(uri) else {
        bail!("expected a URI such as amqp://user:password@host:5672/vhost, found no `://`");
    };
    let default_port = match parts.scheme.to_ascii_lowercase().as_str() {
        "amqp" | "pyamqp" => 5672,
        "amqps" => 5671,
        other => bail!("expected scheme amqp, pyamqp or amqps, found `{other}`"),
    };
    let (host, port) = if let Some(bracketed) = parts.hostport.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            bail!(
                "expected `]` to close the IPv6 address in `{}`",
                parts.hostport
            );
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => bail!("expected `:port` after the IPv6 address, found `{after}`"),
            },
        };
        (host, port)
    } else {
        match parts.hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (parts.hostport, None),
        }
    };
    let port = match port {
        None | Some("") => default_port,
        Some(port) => port
            .parse::<u16>()
            .with_context(|| format!("expected a port number from 1 to 65535, found `{port}`"))?,
    };
    if port == 0 {
        bail!("expected a port number from 1 to 65535, found `0`");
    }
    let host = if host.is_empty() { "localhost" } else { host };
    Ok(BrokerAddr {
        host: host.to_owned(),
        port,
    })
}

/// The URI with its password replaced by `***`, fit for logs. A string that is not a URI is
/// replaced entirely, since there is no telling where a password in it would be.
pub(crate) fn mask_password(uri: &str) -> String {
    let Some(parts) = split_uri(uri) else {
        return "<AMQP_URI that is not a URI>".to_owned();
    };
    let userinfo = match parts.userinfo {
        None => String::new(),
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@"),
            None => format!("{userinfo}@"),
        },
    };
    format!(
        "{}://{userinfo}{}{}",
        parts.scheme, parts.hostport, parts.tail
    )
}

/// The first executable file called `name` in PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &std::path::Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn addr(host: &str, port: u16) -> BrokerAddr {
        BrokerAddr {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn parses_host_and_port_from_every_scheme() {
        assert_eq!(
            parse_uri("amqp://guest:guest@localhost:5672").unwrap(),
            addr("localhost", 5672)
        );
        assert_eq!(
            parse_uri("pyamqp://guest:guest@rabbit.example/").unwrap(),
            addr("rabbit.example", 5672)
        );
        assert_eq!(
            parse_uri("amqps://u:p@10.0.0.7/vhost?heartbeat=10").unwrap(),
            addr("10.0.0.7", 5671)
        );
        assert_eq!(
            parse_uri("AMQP://broker:1234/%2f").unwrap(),
            addr("broker", 1234)
        );
        assert_eq!(parse_uri("amqp://").unwrap(), addr("localhost", 5672));
        assert_eq!(
            parse_uri("amqp://guest:guest@[::1]:5673/").unwrap(),
            addr("::1", 5673)
        );
        assert_eq!(parse_uri("amqp://[::1]").unwrap(), addr("::1", 5672));
    }

    #[test]
    fn a_password_with_an_at_sign_is_not_taken_for_the_host() {
        assert_eq!(
            parse_uri("amqp://guest:p@ss@host:5672/").unwrap(),
            addr("host", 5672)
        );
    }

    #[test]
    fn rejects_what_is_not_an_amqp_uri() {
        for (uri, expected) in [
            ("localhost:5672", "found no `://`"),
            ("http://localhost:5672", "found `http`"),
            ("amqp://host:notaport/", "found `notaport`"),
            ("amqp://host:70000/", "found `70000`"),
            ("amqp://host:0/", "found `0`"),
            ("amqp://[::1/", "expected `]`"),
        ] {
            let error = format!("{:#}", parse_uri(uri).unwrap_err());
            assert!(error.contains(expected), "{uri}: {error}");
        }
    }

    #[test]
    fn masks_the_password_and_nothing_else() {
        assert_eq!(
            mask_password("amqp://guest:guest@localhost:5672/vhost?x=1"),
            "amqp://guest:***@localhost:5672/vhost?x=1"
        );
        assert_eq!(
            mask_password("amqp://guest:p@ss/word@host/"),
            "amqp://guest:***@host/"
        );
        assert_eq!(mask_password("amqp://user@host"), "amqp://user@host");
        assert_eq!(mask_password("amqp://host:5672"), "amqp://host:5672");
        assert!(!mask_password("guest:secret").contains("secret"));
    }

    #[test]
    fn a_peer_that_answers_the_header_is_a_broker() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut header = [0_u8; 8];
            socket.read_exact(&mut header).unwrap();
            socket.write_all(b"\x01\x00\x00").unwrap();
            header
        });
        probe(&addr("127.0.0.1", port), Duration::from_secs(5)).unwrap();
        assert_eq!(&peer.join().unwrap(), PROTOCOL_HEADER);
    }

    #[test]
    fn a_peer_that_stays_silent_is_not_a_broker() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            // Hold the connection open until the client gives up, then see it go.
            let mut rest = Vec::new();
            socket.read_to_end(&mut rest).unwrap();
        });
        let error = probe(&addr("127.0.0.1", port), Duration::from_millis(200)).unwrap_err();
        assert!(
            format!("{error:#}").contains("did not answer the AMQP protocol header"),
            "{error:#}"
        );
        peer.join().unwrap();
    }

    #[test]
    fn a_peer_that_hangs_up_is_not_a_broker() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut header = [0_u8; 8];
            socket.read_exact(&mut header).unwrap();
        });
        let error = probe(&addr("127.0.0.1", port), Duration::from_secs(5)).unwrap_err();
        peer.join().unwrap();
        assert!(
            format!("{error:#}").contains("closed the connection"),
            "{error:#}"
        );
    }

    #[test]
    fn a_closed_port_is_not_a_broker() {
        // Binding then dropping a listener yields a port that nothing listens on.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = probe(&addr("127.0.0.1", port), Duration::from_secs(5)).unwrap_err();
        assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");
    }

    #[test]
    fn only_loopback_addresses_are_local() {
        assert!(addr("localhost", 5672).is_local());
        assert!(addr("127.0.0.1", 5672).is_local());
        assert!(addr("::1", 5672).is_local());
        assert!(!addr("rabbit.example", 5672).is_local());
    }
}
