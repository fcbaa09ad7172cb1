//! `out_forward` (`@type forward`): sends chunks to Fluentd-compatible servers with the
//! Forward protocol v1, as Fluentd's out_forward does.
//!
//! * **Wire.** Each chunk goes out as one PackedForward request with the chunk bytes untouched:
//!   `0x93`, tag, `0xdb` + u32 + entries, `{"size": n, "compressed": "text"|"gzip",
//!   "chunk"?: id}` ([`wire`]). With `compress gzip` the entries are gzipped
//!   (CompressedPackedForward); a chunk the buffer already gzipped is sent as is.
//! * **Load balancing and failover** ([`balancer`]): Fluentd's weight array (weights / GCD,
//!   repeated to ≥ 6× the node count, shuffled with a seed fixed per instance, round robin;
//!   weight 0 never used). A failed send tries the next available node; with none left the
//!   write fails `RETRYABLE` and the host retries the chunk with back-off. Standby nodes are
//!   promoted while regular nodes are detached.
//! * **Failure detection** ([`detector`]): a background thread sends heartbeats every
//!   `heartbeat_interval` (`transport`: a TCP connect; `udp`: a `0x00` datagram answered by the
//!   server; `none`: nodes are always available) and runs Fluentd's phi accrual detector
//!   (`phi_threshold`, `hard_timeout`, `recover_wait`).
//! * **At-least-once** (`require_ack_response`): the request carries `chunk` =
//!   `Base64.encode64(chunk id)` (with Fluentd's trailing `"\n"`), and `write` returns `Ok`
//!   only on the matching `{"ack": ...}`; a timeout (`ack_response_timeout`), a closed
//!   connection or a mismatch is `RESEND`: written again with no retry step, as Fluentd
//!   rolls back without updating the retry state (a timeout or close also marks the node
//!   unavailable until heartbeats bring it back). The chunk id is the buffer's, stable across
//!   retries and restarts, which is what lets `in_forward` (`dedupe_path`) drop exact resends.
//!   Without a buffer chunk id (zero), a fresh id is generated per attempt.
//! * **Connections** ([`node`]): `connect_timeout`, `send_timeout`, `keepalive` with
//!   `keepalive_timeout` (idle connections are probed before reuse), `expire_dns_cache`,
//!   `dns_round_robin`, the `<security>` handshake (`self_hostname`, `shared_key`; per-server
//!   `shared_key`, `username`, `password`).
//! * **Start-up**: `verify_connection_at_startup` fails `start` when a server cannot be
//!   connected to (and authenticated with), as Fluentd does for each node;
//!   `ignore_network_errors_at_startup` turns a name that does not resolve at configure time
//!   into a warning and a detached node.
//!
//! Refused at configure time with a clear error: `transport tls` (not supported yet), the
//! obsoleted top-level `host`/`port`, `compress zstd` (Fluentd's out_forward has no such
//! value either).

pub mod balancer;
pub mod detector;
pub mod node;
pub mod wire;

use std::borrow::Cow;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nagare_core::UniqueId;
use nagare_forward::handshake::ClientCredentials;
use nagare_forward::{Compression, chunk_option_for};
use nagare_plugin_sdk::api::ChunkFormat;
use nagare_plugin_sdk::config::{Interval, Size};
use nagare_plugin_sdk::{
    Chunk, ConfigNode, Counter, Logger, Output, PluginContext, Result, error, export_plugins,
};
use serde::Deserialize;

use crate::balancer::{NodeInfo, RoundRobin, build_weight_array};
use crate::detector::{DetectorConfig, Transition};
use crate::node::{Conn, ConnSettings, Entries, Node, NodeError, Request, ServerSpec, lock};

/// Longest a `transport` heartbeat waits for a connect, so one unreachable server cannot
/// stall the heartbeats of the others for the OS connect timeout (minutes).
pub const HEARTBEAT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Origin of the failure detector's time axis (seconds), so `clear()`'s `last = 0` is far in
/// the past as with Fluentd's wall-clock times.
const CLOCK_BASE: f64 = 1_000_000.0;

fn default_port() -> u16 {
    24224
}
fn default_weight() -> i64 {
    60
}
fn secs(s: f64) -> Interval {
    Interval(Duration::from_secs_f64(s))
}
fn default_send_timeout() -> Interval {
    secs(60.0)
}
fn default_heartbeat_interval() -> Interval {
    secs(1.0)
}
fn default_recover_wait() -> Interval {
    secs(10.0)
}
fn default_hard_timeout() -> Interval {
    secs(60.0)
}
fn default_ack_timeout() -> Interval {
    secs(190.0)
}
fn default_phi_threshold() -> i64 {
    16
}
fn default_true() -> bool {
    true
}
fn default_read_interval() -> i64 {
    50
}
fn default_read_length() -> Size {
    Size(512)
}

/// `transport`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Plain TCP.
    #[default]
    Tcp,
    /// TLS (refused: not supported yet).
    Tls,
}

/// `heartbeat_type`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatType {
    /// A successful TCP connect is a heartbeat.
    #[default]
    Transport,
    /// Deprecated alias of `transport`.
    Tcp,
    /// A `0x00` datagram, answered by the server.
    Udp,
    /// No heartbeats: every node is always available.
    None,
}

/// `compress`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compress {
    /// PackedForward.
    #[default]
    Text,
    /// CompressedPackedForward.
    Gzip,
}

/// A `<server>` section.
#[derive(Debug, Deserialize)]
pub struct ServerConfig {
    /// The IP address or host name of the server.
    pub host: String,
    /// The name used in logs (default `host:port`).
    #[serde(default)]
    pub name: Option<String>,
    /// The port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The shared key of this server (falls back to `<security> shared_key`).
    #[serde(default)]
    pub shared_key: Option<String>,
    /// The username for user authentication.
    #[serde(default)]
    pub username: String,
    /// The password for user authentication.
    #[serde(default)]
    pub password: String,
    /// Use only while regular nodes are down.
    #[serde(default)]
    pub standby: bool,
    /// Load-balancing weight (0: never used).
    #[serde(default = "default_weight")]
    pub weight: i64,
}

/// The `<security>` section.
#[derive(Debug, Deserialize)]
pub struct SecurityConfig {
    /// Our host name in PING.
    pub self_hostname: String,
    /// The shared key.
    pub shared_key: String,
}

/// `out_forward`'s parameters (Fluentd's names and defaults).
#[derive(Debug, Deserialize)]
pub struct ForwardConfig {
    /// `tcp` (`tls` is refused).
    #[serde(default)]
    pub transport: Transport,
    /// Bounds each write of a request (and each handshake read).
    #[serde(default = "default_send_timeout")]
    pub send_timeout: Interval,
    /// Bounds each connect (unset: the OS default).
    #[serde(default)]
    pub connect_timeout: Option<Interval>,
    /// How nodes are checked.
    #[serde(default)]
    pub heartbeat_type: HeartbeatType,
    /// Heartbeat period.
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: Interval,
    /// Heartbeats needed (as time) before a detached node is used again.
    #[serde(default = "default_recover_wait")]
    pub recover_wait: Interval,
    /// Detach a node silent for longer than this.
    #[serde(default = "default_hard_timeout")]
    pub hard_timeout: Interval,
    /// Detach a node whose phi exceeds this.
    #[serde(default = "default_phi_threshold")]
    pub phi_threshold: i64,
    /// Use the phi accrual detector (else only `hard_timeout`).
    #[serde(default = "default_true")]
    pub phi_failure_detector: bool,
    /// At-least-once: wait for the server's ack of every chunk.
    #[serde(default)]
    pub require_ack_response: bool,
    /// How long to wait for an ack.
    #[serde(default = "default_ack_timeout")]
    pub ack_response_timeout: Interval,
    /// Accepted for compatibility (acks are read with blocking timeouts).
    #[serde(default = "default_read_interval")]
    pub read_interval_msec: i64,
    /// Accepted for compatibility.
    #[serde(default = "default_read_length")]
    pub read_length: Size,
    /// Re-resolve host names after this long (0: every time; unset: once).
    #[serde(default)]
    pub expire_dns_cache: Option<Interval>,
    /// Pick a random address of a host name.
    #[serde(default)]
    pub dns_round_robin: bool,
    /// A name that does not resolve at configure time only detaches its node.
    #[serde(default)]
    pub ignore_network_errors_at_startup: bool,
    /// `start` fails when a server cannot be reached.
    #[serde(default)]
    pub verify_connection_at_startup: bool,
    /// `text` or `gzip`.
    #[serde(default)]
    pub compress: Compress,
    /// Reuse connections.
    #[serde(default)]
    pub keepalive: bool,
    /// Close idle kept-alive connections after this long.
    #[serde(default)]
    pub keepalive_timeout: Option<Interval>,
    /// Obsoleted: use `<server>`.
    #[serde(default)]
    pub host: Option<String>,
    /// Obsoleted: use `<server>`.
    #[serde(default)]
    pub port: Option<String>,
    /// The handshake section.
    #[serde(default)]
    pub security: Option<SecurityConfig>,
    /// The destinations.
    #[serde(default)]
    pub server: Vec<ServerConfig>,
}

/// Metric handles, registered once.
struct Metrics {
    chunks: Counter,
    records: Counter,
    failures: Counter,
    ack_failures: Counter,
}

/// State shared by writers and the heartbeat threads.
struct Shared {
    nodes: Vec<Node>,
    rr: Mutex<RoundRobin>,
    seed: u64,
    conn: ConnSettings,
    detector: DetectorConfig,
    heartbeat: HeartbeatType,
    require_ack: bool,
    compress: Compression,
    ignore_network_errors_at_startup: bool,
    log: Logger,
    origin: Instant,
    metrics: Metrics,
}

impl Shared {
    /// Seconds on a monotonic clock (the failure detector's time axis).
    fn now(&self) -> f64 {
        CLOCK_BASE + self.origin.elapsed().as_secs_f64()
    }

    /// Rebuilds the weight array from the nodes' current availability.
    fn rebuild(&self) {
        let infos: Vec<NodeInfo> = self
            .nodes
            .iter()
            .map(|n| NodeInfo {
                weight: n.spec.weight,
                standby: n.spec.standby,
                available: n.available(),
            })
            .collect();
        let w = build_weight_array(&infos, self.seed);
        nagare_plugin_sdk::debug!(
            self.log,
            "rebuilding weight array lost_weight={}",
            w.lost_weight
        );
        for n in w.promoted.iter().filter_map(|&i| self.nodes.get(i)) {
            nagare_plugin_sdk::warn!(
                self.log,
                "using standby node {}:{} weight={}",
                n.spec.host,
                n.spec.port,
                n.spec.weight
            );
        }
        if w.slots.is_empty() {
            nagare_plugin_sdk::warn!(self.log, "No nodes are available");
        }
        lock(&self.rr).set(w.slots);
    }

    fn log_transition(&self, node: &Node, t: Transition) {
        let (host, port, name) = (&node.spec.host, node.spec.port, &node.spec.name);
        match t {
            Transition::None => {}
            Transition::DetachedHardTimeout => nagare_plugin_sdk::warn!(
                self.log,
                "detached forwarding server '{name}' host=\"{host}\" port={port} hard_timeout=true"
            ),
            Transition::DetachedPhi(phi) => nagare_plugin_sdk::warn!(
                self.log,
                "detached forwarding server '{name}' host=\"{host}\" port={port} phi={phi} phi_threshold={}",
                self.detector.phi_threshold
            ),
            Transition::Recovered => nagare_plugin_sdk::warn!(
                self.log,
                "recovered forwarding server '{name}' host=\"{host}\" port={port}"
            ),
        }
    }

    fn apply(&self, node: &Node, t: Transition) {
        if t.changed() {
            self.log_transition(node, t);
            self.rebuild();
        }
    }

    /// Sends one request on the first healthy node in round-robin order
    /// (`select_healthy_node`): each slot of the weight array is tried at most once.
    fn send_to_healthy_node(
        &self,
        req: &Request<'_>,
    ) -> std::result::Result<(usize, Conn), String> {
        let attempts = lock(&self.rr).len();
        let mut last: Option<NodeError> = None;
        for _ in 0..attempts {
            let Some(i) = lock(&self.rr).next_slot() else {
                break;
            };
            let Some(node) = self.nodes.get(i) else {
                continue;
            };
            if !node.available() {
                continue;
            }
            let sent = node
                .checkout(&self.conn)
                .and_then(|mut c| node.send(&mut c, req).map(|()| c));
            match sent {
                Ok(c) => return Ok((i, c)),
                Err(e) => {
                    nagare_plugin_sdk::debug!(self.log, "{e}; trying the next node");
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => e.to_string(),
            None => "no nodes are available".to_owned(),
        })
    }

    /// One heartbeat round (`on_timer`): a heartbeat to every node, then its failure check.
    fn heartbeat_round(&self, udp: Option<&UdpSocket>) {
        for node in &self.nodes {
            let beat = match (self.heartbeat, udp) {
                (HeartbeatType::None, _) => Transition::None,
                (HeartbeatType::Udp, Some(sock)) => {
                    match node.resolve(&self.conn) {
                        Ok(addr) => {
                            if let Err(e) = sock.send_to(&[0u8], addr) {
                                nagare_plugin_sdk::debug!(
                                    self.log,
                                    "failed to send heartbeat packet host=\"{}\" port={} error=\"{e}\"",
                                    node.spec.host,
                                    node.spec.port
                                );
                            }
                        }
                        Err(e) => self.resolve_failed(node, &e),
                    }
                    // The reply, read by the receiver thread, is the heartbeat.
                    Transition::None
                }
                (HeartbeatType::Udp, None) => Transition::None,
                (HeartbeatType::Transport | HeartbeatType::Tcp, _) => {
                    let hb = ConnSettings {
                        connect_timeout: Some(
                            self.conn
                                .connect_timeout
                                .unwrap_or(HEARTBEAT_CONNECT_TIMEOUT)
                                .min(HEARTBEAT_CONNECT_TIMEOUT),
                        ),
                        ..self.conn.clone()
                    };
                    match node.tcp_connect(&hb) {
                        Ok(s) => {
                            drop(s);
                            node.heartbeat(&self.detector, self.now(), true)
                        }
                        Err(e @ NodeError::Resolve { .. }) => {
                            self.resolve_failed(node, &e);
                            Transition::None
                        }
                        Err(e) => {
                            nagare_plugin_sdk::debug!(
                                self.log,
                                "failed to send heartbeat packet: {e}"
                            );
                            Transition::None
                        }
                    }
                }
            };
            self.apply(node, beat);
            self.apply(node, node.tick(&self.detector, self.now()));
        }
    }

    fn resolve_failed(&self, node: &Node, e: &NodeError) {
        if !node.resolved_once() && self.ignore_network_errors_at_startup {
            nagare_plugin_sdk::warn!(self.log, "failed to resolve node name in heartbeating: {e}");
        } else {
            nagare_plugin_sdk::debug!(self.log, "failed to send heartbeat packet: {e}");
        }
    }

    /// Reads UDP heartbeat replies until `stop`, crediting the node they came from.
    fn udp_receiver(&self, sock: &UdpSocket, stop: &Stop) {
        let mut buf = [0u8; 1024];
        let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        while !stop.stopping() {
            let Ok((_, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let from = canon(from);
            if let Some(node) = self
                .nodes
                .iter()
                .find(|n| n.cached_addr().map(canon) == Some(from))
            {
                self.apply(node, node.heartbeat(&self.detector, self.now(), true));
            }
        }
    }
}

/// The stop signal of the background threads.
#[derive(Default)]
struct Stop {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    /// Sleeps up to `d`; `true` when stopping.
    fn wait(&self, d: Duration) -> bool {
        let guard = lock(&self.flag);
        match self.cv.wait_timeout_while(guard, d, |stop| !*stop) {
            Ok((g, _)) => *g,
            Err(p) => *p.into_inner().0,
        }
    }

    fn stopping(&self) -> bool {
        *lock(&self.flag)
    }

    fn stop(&self) {
        *lock(&self.flag) = true;
        self.cv.notify_all();
    }
}

/// The `forward` output.
pub struct Forward {
    ctx: PluginContext,
    shared: Arc<Shared>,
    verify_connection_at_startup: bool,
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
}

fn build(ctx: &PluginContext, conf: ForwardConfig, location: &str) -> Result<Forward> {
    let cfg_err = |m: &str| error::config_error(format!("{location}: {m}"));
    if conf.host.is_some() || conf.port.is_some() {
        return Err(cfg_err(
            "'host' and 'port' are obsoleted in out_forward: use <server> sections instead",
        ));
    }
    if conf.transport == Transport::Tls {
        return Err(cfg_err(
            "transport tls is not supported by nagare's out_forward yet: use tcp (or terminate TLS in a proxy)",
        ));
    }
    if conf.server.is_empty() {
        return Err(cfg_err(
            "forward output plugin requires at least one <server> is required",
        ));
    }
    if conf.ack_response_timeout.0 < Duration::from_secs(1) {
        return Err(cfg_err("ack_response_timeout must be a positive integer"));
    }
    if conf.heartbeat_interval.0.is_zero() {
        return Err(cfg_err("heartbeat_interval must be greater than 0"));
    }
    let mut heartbeat = conf.heartbeat_type;
    if heartbeat == HeartbeatType::Tcp {
        nagare_plugin_sdk::warn!(
            ctx,
            "'heartbeat_type tcp' is deprecated. use 'transport' instead."
        );
        heartbeat = HeartbeatType::Transport;
    }
    if conf.dns_round_robin && heartbeat == HeartbeatType::Udp {
        return Err(cfg_err(
            "forward output heartbeat type must be 'transport' or 'none' to use dns_round_robin option",
        ));
    }
    if !conf.keepalive && conf.keepalive_timeout.is_some() {
        nagare_plugin_sdk::warn!(
            ctx,
            "The value of keepalive_timeout is ignored. if you want to use keepalive, please add `keepalive true` to your conf."
        );
    }
    let hb_secs = conf.heartbeat_interval.0.as_secs_f64();
    let detector = DetectorConfig {
        heartbeat_interval: hb_secs,
        hard_timeout: conf.hard_timeout.0.as_secs_f64(),
        phi_threshold: conf.phi_threshold as f64,
        phi_failure_detector: conf.phi_failure_detector,
        recover_sample_size: conf.recover_wait.0.as_secs_f64() / hb_secs,
    };
    let conn = ConnSettings {
        connect_timeout: conf.connect_timeout.map(|i| i.0),
        send_timeout: conf.send_timeout.0.max(Duration::from_millis(1)),
        ack_timeout: conf.ack_response_timeout.0,
        keepalive: conf.keepalive,
        keepalive_timeout: conf.keepalive_timeout.map(|i| i.0),
        expire_dns_cache: conf.expire_dns_cache.map(|i| i.0),
        dns_round_robin: conf.dns_round_robin,
    };
    let mut nodes = Vec::with_capacity(conf.server.len());
    for s in &conf.server {
        let weight = u32::try_from(s.weight).map_err(|_| {
            cfg_err(&format!(
                "<server> {}: weight must be between 0 and {}, got {}",
                s.host,
                u32::MAX,
                s.weight
            ))
        })?;
        let name = s
            .name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", s.host, s.port));
        let credentials = conf.security.as_ref().map(|sec| ClientCredentials {
            hostname: sec.self_hostname.clone(),
            shared_key: s
                .shared_key
                .clone()
                .unwrap_or_else(|| sec.shared_key.clone()),
            username: Some(s.username.clone()),
            password: Some(s.password.clone()),
        });
        nagare_plugin_sdk::info!(
            ctx,
            "adding forwarding server '{name}' host=\"{}\" port={} weight={weight} plugin_id=\"{}\"",
            s.host,
            s.port,
            ctx.plugin_id()
        );
        let node = Node::new(
            ServerSpec {
                name,
                host: s.host.clone(),
                port: s.port,
                weight,
                standby: s.standby,
                credentials,
            },
            &detector,
            CLOCK_BASE,
            heartbeat == HeartbeatType::None,
        );
        if heartbeat != HeartbeatType::None
            && let Err(e) = node.resolve(&conn)
        {
            if !conf.ignore_network_errors_at_startup {
                return Err(cfg_err(&e.to_string()));
            }
            nagare_plugin_sdk::warn!(ctx, "failed to resolve node name when configured: {e}");
            node.disable();
        }
        nodes.push(node);
    }
    let shared = Shared {
        nodes,
        rr: Mutex::new(RoundRobin::default()),
        seed: rand::random(),
        conn,
        detector,
        heartbeat,
        require_ack: conf.require_ack_response,
        compress: match conf.compress {
            Compress::Text => Compression::Text,
            Compress::Gzip => Compression::Gzip,
        },
        ignore_network_errors_at_startup: conf.ignore_network_errors_at_startup,
        log: ctx.logger().clone(),
        origin: Instant::now(),
        metrics: Metrics {
            chunks: ctx.counter("write_count", "chunks delivered"),
            records: ctx.counter("emit_records", "events delivered"),
            failures: ctx.counter("num_errors", "writes that failed (the host retries them)"),
            ack_failures: ctx.counter("ack_failures", "chunks whose ack was missing or wrong"),
        },
    };
    shared.rebuild();
    Ok(Forward {
        ctx: ctx.clone(),
        shared: Arc::new(shared),
        verify_connection_at_startup: conf.verify_connection_at_startup,
        stop: Arc::new(Stop::default()),
        threads: Vec::new(),
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|e| error::internal(format!("forward: cannot start thread {name}: {e}")))
}

impl Forward {
    /// Starts the heartbeat sender (and the UDP reply reader for `heartbeat_type udp`).
    fn start_heartbeats(&mut self) -> Result<()> {
        if self.shared.heartbeat == HeartbeatType::None || !self.threads.is_empty() {
            return Ok(());
        }
        let udp = if self.shared.heartbeat == HeartbeatType::Udp {
            let v6 = self
                .shared
                .nodes
                .first()
                .and_then(Node::cached_addr)
                .is_some_and(|a| a.is_ipv6());
            let bind = if v6 { "[::]:0" } else { "0.0.0.0:0" };
            let sock = UdpSocket::bind(bind).map_err(|e| {
                error::internal(format!("forward: cannot open the heartbeat socket: {e}"))
            })?;
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .map_err(|e| error::internal(format!("forward: heartbeat socket: {e}")))?;
            Some(Arc::new(sock))
        } else {
            None
        };
        if let Some(sock) = &udp {
            let (sock, shared, stop) = (sock.clone(), self.shared.clone(), self.stop.clone());
            self.threads
                .push(spawn("out_forward_heartbeat_receiver", move || {
                    shared.udp_receiver(&sock, &stop);
                })?);
        }
        let (shared, stop) = (self.shared.clone(), self.stop.clone());
        let interval = Duration::from_secs_f64(self.shared.detector.heartbeat_interval);
        self.threads
            .push(spawn("out_forward_heartbeat_request", move || {
                while !stop.wait(interval) {
                    shared.heartbeat_round(udp.as_deref());
                }
            })?);
        Ok(())
    }

    /// The entries to send and how they are compressed, copying only when the chunk's
    /// encoding differs from `compress`.
    fn entries<'c>(&self, chunk: &'c Chunk<'_>) -> Result<(Cow<'c, [u8]>, Compression)> {
        let bad = |e: &dyn std::fmt::Display| {
            error::unrecoverable(format!(
                "forward: chunk {} (tag {:?}): {e}",
                chunk.id_hex(),
                chunk.tag()
            ))
        };
        match (chunk.format(), self.shared.compress) {
            (ChunkFormat::MSGPACK_STREAM, Compression::Gzip) => Ok((
                Cow::Owned(nagare_forward::compress::gzip(chunk.bytes())),
                Compression::Gzip,
            )),
            (ChunkFormat::MSGPACK_STREAM, _) => {
                Ok((Cow::Borrowed(chunk.bytes()), Compression::Text))
            }
            (ChunkFormat::MSGPACK_STREAM_GZIP, Compression::Gzip) => {
                Ok((Cow::Borrowed(chunk.bytes()), Compression::Gzip))
            }
            (ChunkFormat::MSGPACK_STREAM_GZIP, _) => chunk
                .payload()
                .map(|p| (Cow::Owned(p.to_vec()), Compression::Text))
                .map_err(|e| bad(&e)),
            (ChunkFormat::FILE_RANGES, Compression::Gzip) => chunk
                .payload()
                .map(|p| {
                    (
                        Cow::Owned(nagare_forward::compress::gzip(p)),
                        Compression::Gzip,
                    )
                })
                .map_err(|e| bad(&e)),
            (ChunkFormat::FILE_RANGES, _) => chunk
                .payload()
                .map(|p| (Cow::Borrowed(p), Compression::Text))
                .map_err(|e| bad(&e)),
            (ChunkFormat(other), _) => Err(bad(&format!("unsupported chunk format {other}"))),
        }
    }

    fn shutdown_threads(&mut self) {
        self.stop.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Output for Forward {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        let conf: ForwardConfig = ctx.config(config)?;
        build(ctx, conf, config.location.as_str())
    }

    fn start(&mut self) -> Result<()> {
        if self.verify_connection_at_startup {
            for node in &self.shared.nodes {
                match node.connect(&self.shared.conn) {
                    Ok(c) => node.checkin(&self.shared.conn, c),
                    Err(e) => {
                        nagare_plugin_sdk::error!(
                            self.ctx,
                            "forward's connection setting error: {e}"
                        );
                        return Err(error::unrecoverable(format!(
                            "verify_connection_at_startup: {e}"
                        )));
                    }
                }
            }
        }
        self.start_heartbeats()
    }

    /// With `require_ack_response` and no `compress gzip`, chunks are sent as they are
    /// stored, so a file buffer's chunks go from the page cache to the socket.
    fn accepts_file_ranges(&self) -> bool {
        // The ack is what says the receiver has read the pages `sendfile` queued.
        self.shared.compress == Compression::Text && self.shared.require_ack
    }

    fn write(&self, chunk: Chunk<'_>) -> Result<()> {
        let ranges = match chunk.file_ranges() {
            Some(r) => Some(r.map_err(|e| {
                error::retryable(format!("forward: chunk {}: {e}", chunk.id_hex()))
            })?),
            None => None,
        };
        // Before `entries`: `compress gzip` would make a non-empty request of nothing.
        if ranges
            .as_ref()
            .map_or(chunk.bytes().is_empty(), |r| r.is_empty())
        {
            return Ok(());
        }
        let s = &self.shared;
        let bytes;
        let ranged = ranges.is_some() && s.compress == Compression::Text;
        let (entries, compression) = match &ranges {
            Some(r) if ranged => (Entries::File(r), Compression::Text),
            _ => {
                let (b, c) = self.entries(&chunk)?;
                bytes = b;
                (Entries::Bytes(&bytes), c)
            }
        };
        let len = match &entries {
            Entries::Bytes(b) => b.len(),
            Entries::File(r) => usize::try_from(r.len()).map_err(|_| {
                error::unrecoverable(format!("forward: chunk {} too large", chunk.id_hex()))
            })?,
        };
        if len == 0 {
            return Ok(());
        }
        let ack_id = s.require_ack.then(|| {
            let id = chunk.id();
            let id = if id == [0; 16] {
                UniqueId::generate()
            } else {
                UniqueId(id)
            };
            chunk_option_for(&id)
        });
        let framing = wire::framing(
            chunk.tag(),
            len,
            chunk.records(),
            compression,
            ack_id.as_deref(),
        )
        .map_err(|e| error::unrecoverable(format!("forward: chunk {}: {e}", chunk.id_hex())))?;
        let req = Request {
            head: &framing.head,
            entries,
            option: &framing.option,
        };
        let (i, mut conn) = s.send_to_healthy_node(&req).map_err(|e| {
            s.metrics.failures.inc();
            error::retryable(format!(
                "forward: chunk {} (tag {:?}) not sent: {e}",
                chunk.id_hex(),
                chunk.tag()
            ))
        })?;
        let node = s
            .nodes
            .get(i)
            .ok_or_else(|| error::internal("forward: node index out of range"))?;
        if let Some(id) = &ack_id {
            if let Err(e) = node.read_ack(&mut conn, id, &s.conn) {
                s.metrics.failures.inc();
                s.metrics.ack_failures.inc();
                if ranged {
                    conn.reset_on_close();
                }
                drop(conn);
                if e.disables_node() {
                    nagare_plugin_sdk::warn!(
                        self.ctx,
                        "no response from node. regard it as unavailable. host=\"{}\" port={}: {e}",
                        node.spec.host,
                        node.spec.port
                    );
                    node.disable();
                    node.clear_pool();
                } else {
                    nagare_plugin_sdk::warn!(self.ctx, "{e}");
                }
                // Rolled back without a retry step, as Fluentd does on a timeout, a close
                // or a mismatch: the chunk is written again (to another node when this one
                // was marked unavailable), and a slow receiver does not use up
                // retry_max_times or retry_timeout.
                return Err(error::resend(format!(
                    "forward: chunk {}: {e}",
                    chunk.id_hex()
                )));
            }
            node.checkin(&s.conn, conn);
        } else {
            node.checkin(&s.conn, conn);
            node.heartbeat(&s.detector, s.now(), false);
        }
        s.metrics.chunks.inc();
        s.metrics.records.add(f64::from(chunk.records()));
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.shutdown_threads();
        for n in &self.shared.nodes {
            n.clear_pool();
        }
        Ok(())
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}

export_plugins! {
    outputs: ["forward" => Forward],
}

#[cfg(test)]
mod tests;
