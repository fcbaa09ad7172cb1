//! `in_forward` (`@type forward`): the Forward protocol v1 server.
//!
//! TCP on `bind:port` plus a UDP heartbeat responder on the same port, on the plugin's own
//! tokio runtime (a `.so` cannot share the host's). Every event mode of the protocol is
//! accepted (Message, Forward, PackedForward, CompressedPackedForward with gzip or zstd, JSON,
//! v1.5 metadata times); events are emitted as canonical chunks, and acks are written only
//! after the host's `emit` returned `Ok`. The codec lives in `nagare-forward`; this crate is
//! sockets, configuration and logging ([`server`]).
//!
//! Parameters (Fluentd's names and defaults): `bind` (0.0.0.0), `port` (24224), `tag`,
//! `add_tag_prefix`, `chunk_size_limit`, `chunk_size_warn_limit`, `skip_invalid_event`
//! (true), `source_address_key`, `source_hostname_key`, `deny_keepalive` (false),
//! `linger_timeout`, `decompression_size_limit` (256m), and `<security>` with
//! `self_hostname`, `shared_key`, `user_auth`, `allow_anonymous_source`, `<user>`,
//! `<client>`.
//!
//! nagare addition, the resend window ([`dedupe`]): `dedupe_path` (a directory; unset means
//! disabled, with an info log), `dedupe_window_size` (65536 ids), `dedupe_window_age` (1h).
//! When set, a request whose `chunk` option and tag were already accepted is acked again
//! without being emitted, so a client resending after a lost ack (out_forward with
//! `require_ack_response`) creates no duplicate downstream. **Guarantee:** every request this
//! instance acked is recognised as a resend for as long as it is in the window, across
//! crashes and restarts (the id is fsynced after `emit` returned `Ok` and before the ack is
//! written); a crash between `emit` and that fsync can still yield one duplicate, of a request
//! that was never acked. See [`dedupe`] for the details.
//!
//! nagare addition, `request_memory_limit` (8m; 0 turns it off): PackedForward requests of
//! 8 KiB and more (what out_forward, Fluentd and Fluent Bit send) are read into buffers of
//! their own, and these may hold at most this many bytes across the instance's connections,
//! from the request's header until the host accepted its events. A request that would pass
//! it waits, unread (the sender's writes then wait too), until earlier ones are accepted; one
//! larger than the limit is admitted alone. Each connection reads at most the limit divided
//! by the connections open (4 to 64 KiB) at a time. So connections waiting on a full buffer
//! hold about this much, and twice it in reads and small requests, however many there
//! are. See [`server`].

pub mod dedupe;
pub mod rdns;
pub mod server;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use nagare_forward::DecoderConfig;
use nagare_forward::handshake::{ClientRule, Network, Security, User};
use nagare_plugin_sdk::config::{Interval, Size};
use nagare_plugin_sdk::runtime::PluginRuntime;
use nagare_plugin_sdk::{ConfigNode, Emitter, Input, PluginContext, Result, error, export_plugins};
use serde::Deserialize;
use tokio::sync::watch;

/// The least time between two warnings of one kind about peers (the rest are counted).
const WARN_INTERVAL: Duration = Duration::from_secs(10);

use crate::server::{Metrics, Settings, Shared};

/// How long `stop` waits for connections to finish their current request.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn default_bind() -> String {
    "0.0.0.0".into()
}

fn default_port() -> u16 {
    24224
}

fn default_true() -> bool {
    true
}

fn default_decompression_limit() -> Size {
    Size(nagare_forward::decoder::DEFAULT_DECOMPRESSION_LIMIT)
}

/// `in_forward`'s parameters.
#[derive(Debug, Deserialize)]
pub struct ForwardConfig {
    /// Address to listen on.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// TCP port (and UDP heartbeat port).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Replaces the incoming tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Prefixes the tag with `"<prefix>."`.
    #[serde(default)]
    pub add_tag_prefix: Option<String>,
    /// Drop requests larger than this.
    #[serde(default)]
    pub chunk_size_limit: Option<Size>,
    /// Warn about requests larger than this.
    #[serde(default)]
    pub chunk_size_warn_limit: Option<Size>,
    /// Drop invalid events (time not int/EventTime, record not a map, tag not a string).
    #[serde(default = "default_true")]
    pub skip_invalid_event: bool,
    /// Add the sender's IP address to every record under this key.
    #[serde(default)]
    pub source_address_key: Option<String>,
    /// Add the sender's host name (reverse DNS) to every record under this key.
    #[serde(default)]
    pub source_hostname_key: Option<String>,
    /// Close each connection after its first request.
    #[serde(default)]
    pub deny_keepalive: bool,
    /// SO_LINGER seconds for accepted sockets (unset: the OS default).
    #[serde(default)]
    pub linger_timeout: Option<u64>,
    /// Largest decompressed size of a compressed request.
    #[serde(default = "default_decompression_limit")]
    pub decompression_size_limit: Size,
    /// The handshake section.
    #[serde(default)]
    pub security: Option<SecurityConfig>,
    /// Directory of the resend window (see [`dedupe`]); unset: `<system> root_dir`'s
    /// `worker0/<@id>/dedupe` when a root_dir is set, else resends are not detected.
    #[serde(default)]
    pub dedupe_path: Option<String>,
    /// `<system> root_dir`, handed over by the host.
    #[serde(rename = "@root_dir", default)]
    pub root_dir: Option<String>,
    /// Most request ids the resend window keeps.
    #[serde(default = "default_dedupe_window_size")]
    pub dedupe_window_size: usize,
    /// Oldest request id the resend window keeps.
    #[serde(default = "default_dedupe_window_age")]
    pub dedupe_window_age: Interval,
    /// Most bytes requests of 8 KiB and more, being received or waiting to be accepted, may
    /// hold across all connections; it also sizes each connection's reads (0: no limit).
    #[serde(default = "default_request_memory_limit")]
    pub request_memory_limit: Size,
}

fn default_request_memory_limit() -> Size {
    Size(server::DEFAULT_REQUEST_MEMORY_LIMIT)
}

fn default_dedupe_window_size() -> usize {
    65_536
}

fn default_dedupe_window_age() -> Interval {
    Interval(Duration::from_secs(3600))
}

/// `<security>`.
#[derive(Debug, Deserialize)]
pub struct SecurityConfig {
    /// Our host name in PONG.
    pub self_hostname: String,
    /// The shared key.
    pub shared_key: String,
    /// Require `<user>` credentials.
    #[serde(default)]
    pub user_auth: bool,
    /// Accept clients not listed in `<client>`.
    #[serde(default = "default_true")]
    pub allow_anonymous_source: bool,
    /// `<user>` sections.
    #[serde(default)]
    pub user: Vec<UserConfig>,
    /// `<client>` sections.
    #[serde(default)]
    pub client: Vec<ClientConfig>,
}

/// `<user>`.
#[derive(Debug, Deserialize)]
pub struct UserConfig {
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: String,
}

/// `<client>`.
#[derive(Debug, Deserialize)]
pub struct ClientConfig {
    /// A host name or address (resolved at configure time).
    #[serde(default)]
    pub host: Option<String>,
    /// A network, `10.0.0.0/8`.
    #[serde(default)]
    pub network: Option<String>,
    /// A shared key for this client.
    #[serde(default)]
    pub shared_key: Option<String>,
    /// Usernames allowed from this client.
    #[serde(default)]
    pub users: Vec<String>,
}

impl SecurityConfig {
    fn build(&self, location: &str) -> Result<Security> {
        let mut clients = Vec::with_capacity(self.client.len());
        for c in &self.client {
            let network = match (&c.host, &c.network) {
                (Some(_), Some(_)) => {
                    return Err(error::config_error(format!(
                        "{location}: both of 'host' and 'network' are specified for client"
                    )));
                }
                (None, None) => {
                    return Err(error::config_error(format!(
                        "{location}: either of 'host' and 'network' must be specified for client"
                    )));
                }
                (Some(h), None) => resolve(h).map(Network::host).ok_or_else(|| {
                    error::config_error(format!("{location}: host '{h}' cannot be resolved"))
                })?,
                (None, Some(n)) => Network::parse(n).ok_or_else(|| {
                    error::config_error(format!(
                        "{location}: network '{n}' address format is invalid"
                    ))
                })?,
            };
            clients.push(ClientRule {
                network,
                shared_key: c.shared_key.clone(),
                users: c.users.clone(),
            });
        }
        Ok(Security {
            self_hostname: self.self_hostname.clone(),
            shared_key: self.shared_key.clone(),
            user_auth: self.user_auth,
            allow_anonymous_source: self.allow_anonymous_source,
            users: self
                .user
                .iter()
                .map(|u| User {
                    username: u.username.clone(),
                    password: u.password.clone(),
                })
                .collect(),
            clients,
        })
    }
}

fn resolve(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    (host, 0).to_socket_addrs().ok()?.next().map(|a| a.ip())
}

/// A running server.
struct Running {
    runtime: PluginRuntime,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The `forward` input.
pub struct Forward {
    ctx: PluginContext,
    conf: ForwardConfig,
    security: Option<Arc<Security>>,
    running: Option<Running>,
}

impl Forward {
    fn settings(&self) -> Settings {
        let c = &self.conf;
        Settings {
            decoder: DecoderConfig {
                chunk_size_limit: c.chunk_size_limit.map(|s| s.0),
                chunk_size_warn_limit: c.chunk_size_warn_limit.map(|s| s.0),
                decompression_size_limit: c.decompression_size_limit.0,
                skip_invalid_event: c.skip_invalid_event,
                tag: c.tag.clone(),
                add_tag_prefix: c.add_tag_prefix.clone(),
                allow_json: self.security.is_none(),
                admit_captures: c.request_memory_limit.0 > 0,
                ..DecoderConfig::default()
            },
            security: self.security.clone(),
            deny_keepalive: c.deny_keepalive,
            source_address_key: c.source_address_key.clone(),
            source_hostname_key: c.source_hostname_key.clone(),
            linger: c.linger_timeout.map(Duration::from_secs),
        }
    }
}

impl Input for Forward {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        let conf: ForwardConfig = ctx.config(config)?;
        let security = match &conf.security {
            Some(s) => Some(Arc::new(s.build(config.location.as_str())?)),
            None => None,
        };
        Ok(Forward {
            ctx: ctx.clone(),
            conf,
            security,
            running: None,
        })
    }

    fn start(&mut self, emitter: Emitter) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let runtime = PluginRuntime::acquire()?;
        let addr = format!("{}:{}", self.conf.bind, self.conf.port);
        let (listener, udp) = runtime
            .block_on(async {
                let listener = tokio::net::TcpListener::bind(&addr).await?;
                let local: SocketAddr = listener.local_addr()?;
                let udp = tokio::net::UdpSocket::bind(local).await?;
                std::io::Result::Ok((listener, udp))
            })?
            .map_err(|e| error::config_error(format!("forward: cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| error::internal(e.to_string()))?;
        nagare_plugin_sdk::info!(
            self.ctx,
            "listening port port={} bind=\"{}\" local={local}",
            self.conf.port,
            self.conf.bind
        );
        let dedupe_dir = self.conf.dedupe_path.clone().or_else(|| {
            self.conf.root_dir.as_ref().map(|r| {
                std::path::Path::new(r)
                    .join("worker0")
                    .join(self.ctx.plugin_id().replace(['/', '\\'], "_"))
                    .join("dedupe")
                    .display()
                    .to_string()
            })
        });
        let dedupe = match &dedupe_dir {
            Some(dir) => {
                let w = dedupe::Window::open(
                    std::path::Path::new(dir),
                    self.conf.dedupe_window_size,
                    self.conf.dedupe_window_age.0,
                )
                .map_err(|e| error::config_error(format!("forward: {e}")))?;
                nagare_plugin_sdk::info!(
                    self.ctx,
                    "resend window {} holds {} ids (size {}, age {:?})",
                    w.path().display(),
                    w.len(),
                    w.capacity(),
                    w.max_age()
                );
                Some(Arc::new(w))
            }
            None => {
                nagare_plugin_sdk::info!(
                    self.ctx,
                    "resend dedupe is disabled: set dedupe_path (or <system> root_dir) to ack exact resends without emitting them twice"
                );
                None
            }
        };
        let shared = Arc::new(Shared {
            settings: self.settings(),
            emitter,
            log: self.ctx.logger().clone(),
            limiter: nagare_plugin_sdk::log_limiter::KeyedLogLimiter::new(WARN_INTERVAL),
            metrics: Metrics {
                events: self.ctx.counter("emit_records", "events emitted"),
                requests: self.ctx.counter("requests", "event requests received"),
                invalid: self.ctx.counter("invalid_events", "invalid events dropped"),
                dropped: self
                    .ctx
                    .counter("dropped_requests", "requests dropped (oversized or broken)"),
                resends: self
                    .ctx
                    .counter("resends", "exact resends acked again without emitting"),
            },
            dedupe,
            admission: server::Admission::new(self.conf.request_memory_limit.0),
        });
        let (tx, rx) = watch::channel(false);
        let tasks = vec![
            runtime.spawn(server::accept_loop(listener, shared.clone(), rx.clone()))?,
            runtime.spawn(server::heartbeat_loop(udp, shared, rx))?,
        ];
        self.running = Some(Running {
            runtime,
            shutdown: tx,
            tasks,
        });
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        let _ = running.shutdown.send(true);
        let tasks = running.tasks;
        let joined = running.runtime.block_on(async move {
            tokio::time::timeout(STOP_TIMEOUT, async move {
                for t in tasks {
                    let _ = t.await;
                }
            })
            .await
        })?;
        if joined.is_err() {
            nagare_plugin_sdk::warn!(
                self.ctx,
                "forward: connections did not finish within {STOP_TIMEOUT:?}"
            );
        }
        Ok(())
    }
}

export_plugins! {
    inputs: ["forward" => Forward],
}

#[cfg(test)]
mod tests;
