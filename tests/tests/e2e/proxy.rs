//! `FaultProxy`: a TCP proxy between the code under test and the broker that breaks the network
//! on command, so fault tests can show what a service does when production breaks it.
//!
//! Each accepted connection gets its own upstream connection to the broker and a task that
//! copies bytes both ways; a test steers every connection at once through the proxy's methods:
//!
//! - [`FaultProxy::drop_connections`] closes every connection now: a network cut, a broker
//!   restart, as the client sees it;
//! - [`FaultProxy::stall`] stops reading until [`FaultProxy::heal`]: bytes wait, as on a
//!   congested network, and flow again when healed;
//! - [`FaultProxy::blackhole`] reads and throws away every byte, in both directions, while the
//!   sockets stay open: a peer gone silent, which only missed heartbeats reveal. Healing closes
//!   the connections that lost bytes (their AMQP streams are broken, as after a TCP reset);
//! - [`FaultProxy::go_down`] closes every connection and refuses new ones until healed: a
//!   broker that is down.
//!
//! New connections follow the current mode. The proxy also tells which local ports its
//! upstream connections use, which is how the broker names them (`rabbitmqctl
//! list_connections`), so a test can have the broker close exactly the connections of the code
//! under test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// What the proxy does with bytes, and with new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pass bytes on.
    Forward,
    /// Hold bytes back (stop reading) until the mode changes.
    Stall,
    /// Read and discard bytes.
    Blackhole,
    /// Close new connections at once.
    Down,
}

/// A proxy in front of the broker; see the module docs. Dropping it closes every connection.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    _accepting: AbortOnDropHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    links: Mutex<HashMap<u64, Link>>,
    next_id: AtomicU64,
    /// Connections accepted and linked to the broker since the start.
    linked: AtomicUsize,
    /// Open connections, for waiting on a count.
    open: watch::Sender<usize>,
}

struct Link {
    cut: CancellationToken,
    upstream_port: u16,
    /// Bytes were thrown away: the AMQP stream on this connection is broken.
    damaged: Arc<AtomicBool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultProxy {
    /// A proxy on a free local port in front of `upstream`, forwarding.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            mode: watch::Sender::new(Mode::Forward),
            links: Mutex::default(),
            next_id: AtomicU64::new(0),
            linked: AtomicUsize::new(0),
            open: watch::Sender::new(0),
        });
        let accepting = tokio::spawn(accept(listener, shared.clone()));
        Self {
            address,
            shared,
            _accepting: AbortOnDropHandle::new(accepting),
        }
    }

    /// A proxy in front of the broker of `broker_uri`.
    pub async fn for_broker(broker_uri: &str) -> Self {
        let parsed = nameko_amqp::AmqpUri::parse(broker_uri).expect("broker uri");
        let upstream = tokio::net::lookup_host((parsed.host(), parsed.port()))
            .await
            .expect("resolve broker")
            .find(SocketAddr::is_ipv4)
            .expect("an ipv4 broker address");
        Self::start(upstream).await
    }

    /// `broker_uri` with the proxy's address in place of the broker's, and `connection_timeout`
    /// set to `connect_timeout`, so reconnect attempts into a blackhole give up quickly.
    pub fn uri(&self, broker_uri: &str, connect_timeout: Duration) -> String {
        let (scheme, rest) = broker_uri.split_once("://").expect("uri has a scheme");
        let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(path_start);
        let userinfo = authority
            .rsplit_once('@')
            .map(|(userinfo, _)| format!("{userinfo}@"))
            .unwrap_or_default();
        let path = if path.is_empty() { "/%2f" } else { path };
        let separator = if path.contains('?') { '&' } else { '?' };
        format!(
            "{scheme}://{userinfo}{}{path}{separator}connection_timeout={}",
            self.address,
            connect_timeout.as_millis()
        )
    }

    /// Close every connection now; new ones are accepted as before.
    pub fn drop_connections(&self) {
        for link in lock(&self.shared.links).values() {
            link.cut.cancel();
        }
    }

    /// Hold every byte back until [`FaultProxy::heal`].
    pub fn stall(&self) {
        self.shared.mode.send_replace(Mode::Stall);
    }

    /// Discard every byte until [`FaultProxy::heal`].
    pub fn blackhole(&self) {
        self.shared.mode.send_replace(Mode::Blackhole);
    }

    /// Close every connection and refuse new ones until [`FaultProxy::heal`].
    pub fn go_down(&self) {
        self.shared.mode.send_replace(Mode::Down);
        self.drop_connections();
    }

    /// Forward again. Connections that lost bytes in a blackhole are closed.
    pub fn heal(&self) {
        self.shared.mode.send_replace(Mode::Forward);
        for link in lock(&self.shared.links).values() {
            if link.damaged.load(Ordering::Acquire) {
                link.cut.cancel();
            }
        }
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        *self.shared.open.borrow()
    }

    /// How many connections were accepted and linked to the broker since the start.
    pub fn linked_connections(&self) -> usize {
        self.shared.linked.load(Ordering::Acquire)
    }

    /// Waits until exactly `count` connections are open; panics after `timeout`.
    pub async fn wait_for_open(&self, count: usize, timeout: Duration) {
        let mut open = self.shared.open.subscribe();
        let reached = tokio::time::timeout(timeout, open.wait_for(|open| *open == count)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "expected {count} open connections through the proxy within {timeout:?}, found {}",
            self.open_connections()
        );
    }

    /// The local ports of the upstream connections open now: the broker's `peer_port`s.
    pub fn upstream_ports(&self) -> Vec<u16> {
        lock(&self.shared.links)
            .values()
            .map(|link| link.upstream_port)
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.drop_connections();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *shared.mode.borrow() == Mode::Down {
            drop(client);
            continue;
        }
        tokio::spawn(link(client, shared.clone()));
    }
}

async fn link(client: TcpStream, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let Ok(upstream_address) = upstream.local_addr() else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::AcqRel);
    let cut = CancellationToken::new();
    let damaged = Arc::new(AtomicBool::new(false));
    lock(&shared.links).insert(
        id,
        Link {
            cut: cut.clone(),
            upstream_port: upstream_address.port(),
            damaged: damaged.clone(),
        },
    );
    shared.linked.fetch_add(1, Ordering::AcqRel);
    shared.open.send_modify(|open| *open += 1);
    // A cut that came while this link was being set up must still close it.
    if *shared.mode.borrow() == Mode::Down {
        cut.cancel();
    }

    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let mut mode = shared.mode.subscribe();
    tokio::select! {
        () = pump(&mut client_read, &mut upstream_write, mode.clone(), &damaged) => {}
        () = pump(&mut upstream_read, &mut client_write, mode.clone(), &damaged) => {}
        () = cut.cancelled() => {}
    }
    // In a blackhole nothing gets through, not even one side hanging up: the other side must
    // find out by itself (missed heartbeats), so its socket stays open until healed or cut.
    if *mode.borrow_and_update() == Mode::Blackhole {
        tokio::select! {
            _ = mode.wait_for(|mode| *mode != Mode::Blackhole) => {}
            () = cut.cancelled() => {}
        }
    }
    // Dropping the halves closes both sockets.
    lock(&shared.links).remove(&id);
    shared.open.send_modify(|open| *open -= 1);
}

/// Copies bytes one way, as the mode says, until either side closes.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    damaged: &AtomicBool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // While stalled, do not even read: the sender's bytes back up as on a stalled network.
        if mode.wait_for(|mode| *mode != Mode::Stall).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let count = match read {
            Ok(0) | Err(_) => return,
            Ok(count) => count,
        };
        loop {
            let current = *mode.borrow_and_update();
            match current {
                Mode::Forward | Mode::Down => {
                    if to.write_all(&buffer[..count]).await.is_err() {
                        return;
                    }
                    break;
                }
                Mode::Blackhole => {
                    damaged.store(true, Ordering::Release);
                    break;
                }
                Mode::Stall => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
