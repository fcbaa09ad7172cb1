//! One `<server>`: name resolution with Fluentd's DNS cache rules, TCP connections (optionally
//! kept alive in a small pool), the `<security>` handshake, one request and its ack, and the
//! node's availability ([`Health`]).
//!
//! Everything here is blocking std I/O bounded by timeouts: `connect_timeout` for connects,
//! `send_timeout` for writes and handshake reads, `ack_response_timeout` for the ack. The host
//! calls `write` on its own worker threads, never on a reactor, so blocking is the right tool.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nagare_forward::handshake::{
    ClientCredentials, check_pong, encode_ping, generate_salt, parse_helo,
};
use nagare_forward::{HandshakeError, decode_ack};
use rand::seq::SliceRandom;

use crate::detector::{DetectorConfig, Health, Transition};
use crate::wire::{ReadError, Reader};
use nagare_core::io::write_all_parts;
use nagare_plugin_sdk::FileRanges;

/// Locks a mutex, ignoring poisoning (the data stays consistent: no invariant spans a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One PackedForward request: its head (array, tag, entries' bin header), the entries, and
/// its option map.
pub struct Request<'a> {
    /// Everything before the entries.
    pub head: &'a [u8],
    /// The entries.
    pub entries: Entries<'a>,
    /// The option map after them.
    pub option: &'a [u8],
}

/// Where a request's entries are.
pub enum Entries<'a> {
    /// In memory.
    Bytes(&'a [u8]),
    /// In the host's buffer file, copied to the socket from the page cache (`sendfile`).
    File(&'a FileRanges<'a>),
}

/// Idle kept-alive connections kept per node.
pub const POOL_LIMIT: usize = 16;

/// A `<server>` section, resolved into what a node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// `name`, or `host:port`.
    pub name: String,
    /// `host`.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// `weight`.
    pub weight: u32,
    /// `standby`.
    pub standby: bool,
    /// Handshake identity when `<security>` is configured.
    pub credentials: Option<ClientCredentials>,
}

/// Connection settings shared by every node of an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSettings {
    /// `connect_timeout` (`None`: the OS default).
    pub connect_timeout: Option<Duration>,
    /// `send_timeout`: bounds each write and each handshake read.
    pub send_timeout: Duration,
    /// `ack_response_timeout`.
    pub ack_timeout: Duration,
    /// `keepalive`.
    pub keepalive: bool,
    /// `keepalive_timeout` (`None`: keep as long as the server does).
    pub keepalive_timeout: Option<Duration>,
    /// `expire_dns_cache` (`None`: resolve once; zero: every time).
    pub expire_dns_cache: Option<Duration>,
    /// `dns_round_robin`: a random address of the host instead of the first.
    pub dns_round_robin: bool,
}

/// Why talking to a node failed. Every variant names the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The host name does not resolve.
    #[error("server '{node}': cannot resolve {host}: {reason}")]
    Resolve {
        /// The node's name.
        node: String,
        /// The host.
        host: String,
        /// The resolver's message.
        reason: String,
    },
    /// TCP connect failed.
    #[error("server '{node}' ({addr}): connect failed: {source}")]
    Connect {
        /// The node's name.
        node: String,
        /// The address tried.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The `<security>` handshake failed.
    #[error("server '{node}': handshake failed: {reason}")]
    Handshake {
        /// The node's name.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing the request failed or timed out (`send_timeout`).
    #[error("server '{node}': send failed: {source}")]
    Send {
        /// The node's name.
        node: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// No ack within `ack_response_timeout`.
    #[error("server '{node}': no ack response within {timeout:?}")]
    AckTimeout {
        /// The node's name.
        node: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The server closed the connection before acking.
    #[error("server '{node}': connection closed before the ack")]
    AckClosed {
        /// The node's name.
        node: String,
    },
    /// The ack names another chunk.
    #[error(
        "server '{node}': ack in response and chunk id in sent data are different (sent {sent:?}, got {got:?})"
    )]
    AckMismatch {
        /// The node's name.
        node: String,
        /// The `chunk` option sent.
        sent: String,
        /// The `ack` received.
        got: String,
    },
    /// The reply is not an ack.
    #[error("server '{node}': invalid ack response: {reason}")]
    AckInvalid {
        /// The node's name.
        node: String,
        /// What was wrong.
        reason: String,
    },
}

impl NodeError {
    /// Whether the node should be marked unavailable (Fluentd's `disable!` on a missing ack or
    /// a connection closed while waiting for it).
    pub fn disables_node(&self) -> bool {
        matches!(
            self,
            NodeError::AckTimeout { .. } | NodeError::AckClosed { .. }
        )
    }
}

/// An open connection to a node, past the handshake.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    reader: Reader,
    since: Instant,
}

impl Conn {
    /// Makes dropping this connection reset it: pages of the host's chunk file sent with
    /// `sendfile` that are still queued are discarded, never sent after `write` returned
    /// (the host may then overwrite them). Best effort: where the option cannot be set, the
    /// connection is closed as usual.
    pub fn reset_on_close(&self) {
        let _ = nagare_plugin_sdk::file_ranges::reset_on_close(&self.stream);
    }
}

#[derive(Debug, Default)]
struct Dns {
    addr: Option<SocketAddr>,
    at: Option<Instant>,
    resolved_once: bool,
}

/// One forwarding destination.
#[derive(Debug)]
pub struct Node {
    /// Its configuration.
    pub spec: ServerSpec,
    /// `heartbeat_type none`: always available, heartbeats do nothing.
    pub always_available: bool,
    health: Mutex<Health>,
    dns: Mutex<Dns>,
    pool: Mutex<Vec<Conn>>,
}

impl Node {
    /// A node, available, its last heartbeat at `now`.
    pub fn new(
        spec: ServerSpec,
        detector: &DetectorConfig,
        now: f64,
        always_available: bool,
    ) -> Self {
        Node {
            spec,
            always_available,
            health: Mutex::new(Health::new(detector, now)),
            dns: Mutex::new(Dns::default()),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Whether the load balancer may use it.
    pub fn available(&self) -> bool {
        self.always_available || lock(&self.health).available
    }

    /// Marks it unavailable until heartbeats bring it back (no-op with `heartbeat_type none`).
    pub fn disable(&self) {
        if !self.always_available {
            lock(&self.health).disable();
        }
    }

    /// A heartbeat (`detect`) or a successful send (`!detect`) at `now`.
    pub fn heartbeat(&self, detector: &DetectorConfig, now: f64, detect: bool) -> Transition {
        if self.always_available {
            return Transition::None;
        }
        lock(&self.health).heartbeat(detector, now, detect)
    }

    /// The periodic failure check at `now`.
    pub fn tick(&self, detector: &DetectorConfig, now: f64) -> Transition {
        if self.always_available {
            return Transition::None;
        }
        let t = lock(&self.health).tick(detector, now);
        if t.changed() {
            // Fluentd expires the cached address of a detached node.
            lock(&self.dns).addr = None;
            self.clear_pool();
        }
        t
    }

    /// Whether its name was resolved at least once.
    pub fn resolved_once(&self) -> bool {
        lock(&self.dns).resolved_once
    }

    /// The address to use, honouring `expire_dns_cache` and `dns_round_robin`.
    pub fn resolve(&self, s: &ConnSettings) -> Result<SocketAddr, NodeError> {
        let mut dns = lock(&self.dns);
        let fresh = match (dns.addr, dns.at, s.expire_dns_cache) {
            (Some(a), _, None) => Some(a),
            (Some(a), Some(at), Some(ttl)) if !ttl.is_zero() && at.elapsed() < ttl => Some(a),
            _ => None,
        };
        if let Some(a) = fresh {
            return Ok(a);
        }
        let err = |reason: String| NodeError::Resolve {
            node: self.spec.name.clone(),
            host: self.spec.host.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = (self.spec.host.as_str(), self.spec.port)
            .to_socket_addrs()
            .map_err(|e| err(e.to_string()))?
            .collect();
        let pick = if s.dns_round_robin {
            addrs.choose(&mut rand::thread_rng()).copied()
        } else {
            addrs.first().copied()
        };
        let addr = pick.ok_or_else(|| err("no address".into()))?;
        dns.addr = Some(addr);
        dns.at = Some(Instant::now());
        dns.resolved_once = true;
        Ok(addr)
    }

    /// The cached address, if any (to match UDP heartbeat replies).
    pub fn cached_addr(&self) -> Option<SocketAddr> {
        lock(&self.dns).addr
    }

    /// A plain TCP connect (a `transport` heartbeat, or the first step of [`Node::connect`]).
    pub fn tcp_connect(&self, s: &ConnSettings) -> Result<TcpStream, NodeError> {
        let addr = self.resolve(s)?;
        let res = match s.connect_timeout {
            Some(t) if !t.is_zero() => TcpStream::connect_timeout(&addr, t),
            _ => TcpStream::connect(addr),
        };
        res.map_err(|source| NodeError::Connect {
            node: self.spec.name.clone(),
            addr,
            source,
        })
    }

    /// A new connection, past the handshake when `<security>` is configured.
    pub fn connect(&self, s: &ConnSettings) -> Result<Conn, NodeError> {
        let stream = self.tcp_connect(s)?;
        let _ = stream.set_nodelay(true);
        let send = |source| NodeError::Send {
            node: self.spec.name.clone(),
            source,
        };
        stream
            .set_write_timeout(Some(s.send_timeout))
            .map_err(send)?;
        stream
            .set_read_timeout(Some(s.send_timeout))
            .map_err(send)?;
        let mut conn = Conn {
            stream,
            reader: Reader::default(),
            since: Instant::now(),
        };
        if let Some(creds) = &self.spec.credentials {
            self.handshake(&mut conn, creds)?;
        }
        Ok(conn)
    }

    fn handshake(&self, conn: &mut Conn, creds: &ClientCredentials) -> Result<(), NodeError> {
        let fail = |reason: String| NodeError::Handshake {
            node: self.spec.name.clone(),
            reason,
        };
        let helo = conn
            .reader
            .read_value(&mut conn.stream)
            .map_err(|e| fail(format!("waiting for HELO: {e}")))?;
        let helo = parse_helo(&helo).map_err(|e| fail(e.to_string()))?;
        let salt = generate_salt();
        let ping = encode_ping(&helo, creds, &salt).map_err(|e| fail(e.to_string()))?;
        conn.stream
            .write_all(&ping)
            .map_err(|e| fail(format!("sending PING: {e}")))?;
        let pong = conn
            .reader
            .read_value(&mut conn.stream)
            .map_err(|e| fail(format!("waiting for PONG: {e}")))?;
        check_pong(&pong, &helo, creds, &salt).map_err(|e| match e {
            HandshakeError::Rejected(r) => fail(format!("authentication failed: {r}")),
            other => fail(other.to_string()),
        })
    }

    /// A connection to send on: an idle pooled one that is still open (`keepalive`), or a new one.
    pub fn checkout(&self, s: &ConnSettings) -> Result<Conn, NodeError> {
        if s.keepalive {
            loop {
                let Some(conn) = lock(&self.pool).pop() else {
                    break;
                };
                let expired = s
                    .keepalive_timeout
                    .is_some_and(|t| conn.since.elapsed() >= t);
                if !expired && still_open(&conn.stream) {
                    return Ok(conn);
                }
            }
        }
        self.connect(s)
    }

    /// Returns a healthy connection to the pool (`keepalive`), or closes it.
    pub fn checkin(&self, s: &ConnSettings, conn: Conn) {
        if s.keepalive && !conn.reader.has_leftover() {
            let mut pool = lock(&self.pool);
            if pool.len() < POOL_LIMIT {
                pool.push(conn);
                return;
            }
        }
        let _ = conn.stream.shutdown(Shutdown::Both);
    }

    /// Drops every pooled connection.
    pub fn clear_pool(&self) {
        lock(&self.pool).clear();
    }

    /// Writes one request on `conn`.
    pub fn send(&self, conn: &mut Conn, req: &Request<'_>) -> Result<(), NodeError> {
        let sent = match req.entries {
            Entries::Bytes(entries) => {
                write_all_parts(&mut conn.stream, &[req.head, entries, req.option])
            }
            Entries::File(ranges) => {
                let sent = write_all_parts(&mut conn.stream, &[req.head])
                    .and_then(|()| ranges.send_to(&conn.stream).map(drop))
                    .and_then(|()| write_all_parts(&mut conn.stream, &[req.option]));
                if sent.is_err() {
                    conn.reset_on_close();
                }
                sent
            }
        };
        sent.and_then(|()| std::io::Write::flush(&mut conn.stream))
            .map_err(|source| NodeError::Send {
                node: self.spec.name.clone(),
                source,
            })
    }

    /// Waits for the ack of `chunk` (at most `ack_timeout`).
    pub fn read_ack(
        &self,
        conn: &mut Conn,
        chunk: &str,
        s: &ConnSettings,
    ) -> Result<(), NodeError> {
        let node = || self.spec.name.clone();
        conn.stream
            .set_read_timeout(Some(s.ack_timeout))
            .map_err(|source| NodeError::Send {
                node: node(),
                source,
            })?;
        let raw = conn
            .reader
            .read_value(&mut conn.stream)
            .map_err(|e| match e {
                ReadError::Timeout => NodeError::AckTimeout {
                    node: node(),
                    timeout: s.ack_timeout,
                },
                ReadError::Closed => NodeError::AckClosed { node: node() },
                other => NodeError::AckInvalid {
                    node: node(),
                    reason: other.to_string(),
                },
            })?;
        let _ = conn.stream.set_read_timeout(Some(s.send_timeout));
        let got = decode_ack(&raw).map_err(|e| NodeError::AckInvalid {
            node: node(),
            reason: e.to_string(),
        })?;
        if got.0 != chunk.as_bytes() {
            return Err(NodeError::AckMismatch {
                node: node(),
                sent: chunk.to_owned(),
                got: String::from_utf8_lossy(&got.0).into_owned(),
            });
        }
        Ok(())
    }
}

/// Whether an idle connection is still usable: not closed or reset by the server, and no
/// unexpected bytes pending.
fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let open = matches!(stream.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && open
}
