//! The TCP/UDP server: one task per connection on the plugin's own tokio runtime.
//!
//! Per connection: optional `<security>` handshake, then requests are decoded as bytes
//! arrive. An event batch is first offered to the host with `try_emit`, on the worker: a
//! buffer with room takes it at once (no thread hand-off per request). A full buffer
//! (`overflow_action block`) hands it back, and the connection's task waits for room by
//! polling the host's probe (`Emitter::would_wait`), holding no thread; the socket is not read
//! meanwhile, so a full buffer pushes back on the sender. A request that asks for an ack
//! waits for room the same way, then emits with the blocking `emit` on a blocking thread,
//! which now waits only for the fsync. With a resend window the whole check–emit–record
//! sequence runs on a blocking thread (it writes to disk). The ack is written only after
//! the batch was accepted. A failed emit or a broken stream closes the connection without
//! an ack (the client retries).
//!
//! Memory across connections: a PackedForward request of [`ADMIT_FROM`] (8 KiB) or more is
//! read into a buffer of its own (the decoder's capture), and that buffer is reserved only
//! once [`Admission`] admits its size against `request_memory_limit`; the admission is given
//! back when the request was handled (accepted, dropped or the connection closed). While a
//! request waits for admission its connection is not read. A full buffer downstream
//! therefore holds back at most that many bytes of such requests whatever the number of
//! connections. Each connection reads at most its share of the limit at a time
//! ([`Admission::share`]: the limit / connections open, 4 to 64 KiB), so smaller requests
//! and reads stay near twice the limit in all too. A connection that
//! receives nothing for [`ADMISSION_IDLE`] in the middle of an admitted request gives its
//! admission back, so a peer that died mid-request cannot stall the others. Like Fluentd's
//! blocking emit and Fluent Bit's paused input, the limit is the instance's: once large
//! requests for a full buffer hold it all, large requests for other outputs wait too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nagare_core::msgpack::{Head, read_head};
use nagare_core::{ChunkReader, ChunkWriter, record::set_str_fields};
use nagare_forward::{
    AckId, Decoder, DecoderConfig, Encoding, ForwardError, Frame, Request, Security,
    ServerHandshake, encode_ack,
};
use nagare_plugin_sdk::{Counter, Emitter, ErrorKind, Logger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

use nagare_plugin_sdk::log_limiter::KeyedLogLimiter;

/// First pause of a connection waiting for room in a full buffer ([`Connection::wait_for_room`]).
const ROOM_POLL_MIN: Duration = Duration::from_millis(1);

/// Longest pause between two looks for room: how late, at most, a waiting connection sees
/// it (Fluentd's blocking emit looks once a second). A thousand waiting connections look
/// ten thousand times a second, each look a few atomic reads.
const ROOM_POLL_MAX: Duration = Duration::from_millis(100);

/// Bytes read from a socket at a time.
const READ_SIZE: usize = 64 * 1024;

/// Default `request_memory_limit`: room for some fifty requests of Fluent Bit's and
/// out_forward's usual size at once, and a quarter of the memory bound a default file buffer
/// gets (`total_limit_size` + 32 MB).
pub const DEFAULT_REQUEST_MEMORY_LIMIT: u64 = 8 * 1024 * 1024;

/// How long a connection may keep an admission while no byte of its request arrives: then
/// it gives the admission back (and goes on reading the request, outside the limit), so a
/// peer that died in the middle of a request does not hold the others back.
pub const ADMISSION_IDLE: Duration = Duration::from_secs(5);

/// Admission of large requests against `request_memory_limit`, counted in KiB: first come,
/// first served (a request too large for what is free waits, and so do the ones after it).
///
/// It also sizes what a connection may read outside it: with `n` connections open, each
/// reads at most [`Admission::share`] (the limit / n, between [`MIN_SHARE`] and
/// [`READ_SIZE`]) at a time, and every PackedForward request larger than that or than
/// [`ADMIT_FROM`] is captured, and so admitted before it is read. What connections hold
/// outside the limit, a read and requests smaller than [`ADMIT_FROM`] each, then stays
/// near twice the limit in all, however many connections there are.
pub struct Admission {
    permits: tokio::sync::Semaphore,
    /// The limit in KiB: what a request larger than the limit takes (all of it).
    total: u32,
    /// Connections open now.
    open: std::sync::atomic::AtomicUsize,
}

/// The smallest read share: below this, reads cost more than the memory they save.
pub const MIN_SHARE: usize = 4 * 1024;

/// PackedForward requests from this size on are admitted before they are read, whatever
/// the share: connections that opened while few others were open read large shares, and a
/// request held while the buffer is full must not be outside the limit for that.
pub const ADMIT_FROM: usize = 8 * 1024;

/// Counts a connection of an [`Admission`] as open while it lives.
pub struct Open<'a>(&'a Admission);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Admission {
    /// `None` for a limit of 0 (no limit).
    pub fn new(limit: u64) -> Option<Admission> {
        let total = u32::try_from(limit.div_ceil(1024)).unwrap_or(u32::MAX >> 4);
        // tokio's semaphore holds at most usize::MAX >> 3 permits; far more than u32 here.
        (total > 0).then(|| Admission {
            permits: tokio::sync::Semaphore::new(total as usize),
            total,
            open: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Counts one more open connection until the guard is dropped.
    fn open(&self) -> Open<'_> {
        self.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Open(self)
    }

    /// What one connection reads at a time, and the smallest PackedForward payload that is
    /// admitted before it is read: the limit shared by the connections open now.
    pub fn share(&self) -> usize {
        let open = self.open.load(std::sync::atomic::Ordering::Relaxed).max(1);
        (self.total as usize * 1024 / open).clamp(MIN_SHARE, READ_SIZE)
    }

    /// Waits until `bytes` fit (or everything is free, for a request larger than the limit).
    async fn admit(&self, bytes: usize) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.permits.acquire_many(self.kib(bytes)).await.ok()
    }

    /// [`admit`](Self::admit) when `bytes` fit now (and no one waits before them).
    fn try_admit(&self, bytes: usize) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.permits.try_acquire_many(self.kib(bytes)).ok()
    }

    fn kib(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total)
    }
}

/// What a server needs besides its sockets.
pub struct Settings {
    /// Decoder settings (limits, tag rewriting, invalid events, JSON).
    pub decoder: DecoderConfig,
    /// `<security>`: handshake on every connection.
    pub security: Option<Arc<Security>>,
    /// Close after the first request.
    pub deny_keepalive: bool,
    /// Adds the peer address to every record under this key.
    pub source_address_key: Option<String>,
    /// Adds the peer host name to every record under this key.
    pub source_hostname_key: Option<String>,
    /// SO_LINGER for accepted sockets.
    pub linger: Option<Duration>,
}

/// Metric handles.
pub struct Metrics {
    /// Events emitted.
    pub events: Counter,
    /// Event requests handled.
    pub requests: Counter,
    /// Invalid events dropped.
    pub invalid: Counter,
    /// Requests dropped (oversized, broken).
    pub dropped: Counter,
    /// Exact resends acked again without emitting.
    pub resends: Counter,
}

/// State shared by every connection of one instance.
pub struct Shared {
    /// Settings.
    pub settings: Settings,
    /// Where batches go.
    pub emitter: Emitter,
    /// The log bridge.
    pub log: Logger,
    /// Rate limits for per-peer warnings.
    pub limiter: KeyedLogLimiter,
    /// Metrics.
    pub metrics: Metrics,
    /// The resend window (`dedupe_path`), if enabled.
    pub dedupe: Option<Arc<crate::dedupe::Window>>,
    /// `request_memory_limit`, unless 0.
    pub admission: Option<Admission>,
}

impl Shared {
    fn warn(&self, category: &'static str, msg: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.limiter.admit(category) {
            let note = nagare_plugin_sdk::log_limiter::suppressed_note(suppressed);
            nagare_plugin_sdk::warn!(self.log, "{msg}{note}");
        }
    }
}

/// What became of an event request.
enum Emitted {
    /// Emitted; `interrupted`: an earlier run was emitting the same request when it stopped.
    Events { records: u32, interrupted: bool },
    /// An exact resend of an accepted request: not emitted.
    Resend,
}

/// Why a connection was closed early.
#[derive(Debug)]
enum Close {
    Io(std::io::Error),
    Protocol(ForwardError),
    Emit(String),
    Auth(String),
    Handshake(&'static str),
}

impl Close {
    /// The rate-limit bucket of this kind of close.
    fn category(&self) -> &'static str {
        match self {
            Close::Io(_) => "close_io",
            Close::Protocol(_) => "close_protocol",
            Close::Emit(_) => "close_emit",
            Close::Auth(_) => "close_auth",
            Close::Handshake(_) => "close_handshake",
        }
    }
}

/// Whether an I/O error only says the peer left.
fn is_peer_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
    )
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Io(e) => write!(f, "i/o error: {e}"),
            Close::Protocol(e) => write!(f, "unexpected error on reading data: {e}"),
            Close::Emit(e) => write!(f, "emit failed, closing without ack: {e}"),
            Close::Auth(r) => write!(f, "handshake refused: {r}"),
            Close::Handshake(r) => write!(f, "handshake failed: {r}"),
        }
    }
}

impl From<std::io::Error> for Close {
    fn from(e: std::io::Error) -> Self {
        Close::Io(e)
    }
}

impl From<ForwardError> for Close {
    fn from(e: ForwardError) -> Self {
        Close::Protocol(e)
    }
}

/// Accepts connections until `shutdown` flips, then waits for every connection task.
/// Reads what the connection has into the decoder: straight into a large PackedForward
/// payload's own buffer, with no zeroing, while one is being received (see
/// `Decoder::payload_buf`), else into the decoder's buffer. Cancel-safe: a read that did not
/// complete took nothing from the stream.
async fn read_some(
    stream: &mut TcpStream,
    decoder: &mut Decoder,
    size: usize,
) -> std::io::Result<usize> {
    if let Some((payload, lacking)) = decoder.payload_buf() {
        use bytes::BufMut;
        return stream.read_buf(&mut payload.limit(lacking)).await;
    }
    let room = decoder.read_buf(size);
    // A share smaller than a full read is a cap (many connections are open); otherwise the
    // whole room the buffer has grown to is read into, as few calls as a request needs.
    let n = if size < READ_SIZE {
        room.len().min(size)
    } else {
        room.len()
    };
    let n = stream.read(room.get_mut(..n).unwrap_or_default()).await?;
    decoder.commit(n);
    Ok(n)
}

pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    conns.spawn(connection(stream, peer, shared.clone(), shutdown.clone()));
                }
                Err(e) => {
                    shared.warn("accept", format_args!("forward: accept failed: {e}"));
                    // Out of descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Answers UDP heartbeats (`0x00` back to the sender) until `shutdown` flips.
pub async fn heartbeat_loop(
    sock: UdpSocket,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = [0u8; 128];
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            res = sock.recv_from(&mut buf) => match res {
                Ok((_, peer)) => {
                    if let Err(e) = sock.send_to(&[0u8], peer).await {
                        shared.warn("heartbeat", format_args!("forward: heartbeat reply to {peer} failed: {e}"));
                    }
                }
                Err(e) => shared.warn("heartbeat", format_args!("forward: heartbeat receive failed: {e}")),
            },
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    if let Some(l) = shared.settings.linger {
        #[allow(deprecated)]
        let _ = stream.set_linger(Some(l));
    }
    let _ = stream.set_nodelay(true);
    nagare_plugin_sdk::trace!(shared.log, "forward: accepted connection from {peer}");
    let mut conn = Connection {
        peer,
        hostname: None,
        shared: shared.clone(),
        shutdown,
    };
    match conn.run(&mut stream).await {
        Ok(()) => nagare_plugin_sdk::trace!(shared.log, "forward: closed connection from {peer}"),
        // A peer that resets or leaves is ordinary (health checks, probes, clients going
        // away): debug. Everything else is warned, rate-limited per kind, so one noisy kind
        // cannot hide another (a reset must not silence a shared_key mismatch).
        Err(Close::Io(e)) if is_peer_gone(&e) => {
            nagare_plugin_sdk::debug!(shared.log, "forward: connection from {peer} went away: {e}")
        }
        Err(e) => shared.warn(
            e.category(),
            format_args!("forward: closing connection from {peer}: {e}"),
        ),
    }
    let _ = stream.shutdown().await;
}

struct Connection {
    peer: SocketAddr,
    hostname: Option<String>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
}

impl Connection {
    /// Reads into the decoder's own buffer; `false` at end of stream or shutdown.
    async fn fill(&mut self, stream: &mut TcpStream, decoder: &mut Decoder) -> Result<bool, Close> {
        if *self.shutdown.borrow() {
            return Ok(false);
        }
        let size = self
            .shared
            .admission
            .as_ref()
            .map_or(READ_SIZE, Admission::share);
        let n = tokio::select! {
            _ = self.shutdown.changed() => return Ok(false),
            n = read_some(stream, decoder, size) => n?,
        };
        if n == 0 {
            if decoder.in_request() {
                nagare_plugin_sdk::debug!(
                    self.shared.log,
                    "forward: {} closed in the middle of a request",
                    self.peer
                );
            }
            return Ok(false);
        }
        Ok(true)
    }

    async fn run(&mut self, stream: &mut TcpStream) -> Result<(), Close> {
        let mut cfg = self.shared.settings.decoder.clone();
        // Coalesced Message batches: never with deny_keepalive (one request, then close); with
        // the resend window, an acked request comes alone so a resend skips only itself.
        cfg.coalesce_messages &= !self.shared.settings.deny_keepalive;
        cfg.coalesce_acked &= self.shared.dedupe.is_none();
        let mut decoder = Decoder::new(cfg);
        if let Some(sec) = self.shared.settings.security.clone() {
            decoder.force_msgpack();
            if !self.handshake(stream, &mut decoder, &sec).await? {
                return Ok(());
            }
        }
        let shared = self.shared.clone();
        let _open = shared.admission.as_ref().map(Admission::open);
        // What the large request being received holds of `request_memory_limit`.
        let mut admitted = None;
        loop {
            loop {
                match decoder.next_request()? {
                    None => break,
                    Some(req) => {
                        let req = req.into_owned();
                        self.handle(stream, &mut decoder, req).await?;
                        // That was the admitted request (a capture is always the next one):
                        // accepted or dropped, its memory is free.
                        drop(admitted.take());
                    }
                }
                if self.shared.settings.deny_keepalive {
                    return Ok(());
                }
            }
            if let Some(admission) = shared.admission.as_ref() {
                // Requests larger than a read, or than ADMIT_FROM, are admitted before they
                // are read.
                decoder.set_capture_min(admission.share().min(ADMIT_FROM));
            }
            if let (Some(bytes), Some(admission)) =
                (decoder.capture_pending(), shared.admission.as_ref())
            {
                // Not a byte more is read (nor reserved) until the request fits; a wait for
                // admission may be long, so the read buffer goes back first.
                admitted = match admission.try_admit(bytes) {
                    Some(p) => Some(p),
                    None => {
                        decoder.compact();
                        tokio::select! {
                            _ = self.shutdown.changed() => return Ok(()),
                            p = admission.admit(bytes) => p,
                        }
                    }
                };
                decoder.admit_capture();
            }
            let more = if admitted.is_some() {
                match tokio::time::timeout(ADMISSION_IDLE, self.fill(stream, &mut decoder)).await {
                    Ok(more) => more?,
                    Err(_) => {
                        // The read was cancelled before it took anything (see `read_some`).
                        drop(admitted.take());
                        nagare_plugin_sdk::debug!(
                            shared.log,
                            "forward: {} sent nothing for {ADMISSION_IDLE:?} in the middle of a large request: its request_memory_limit share is given back",
                            self.peer
                        );
                        true
                    }
                }
            } else {
                self.fill(stream, &mut decoder).await?
            };
            if !more {
                return Ok(());
            }
        }
    }

    /// HELO, PING check, PONG. `false` when the peer went away.
    async fn handshake(
        &mut self,
        stream: &mut TcpStream,
        decoder: &mut Decoder,
        sec: &Security,
    ) -> Result<bool, Close> {
        let hs = ServerHandshake::new(sec, !self.shared.settings.deny_keepalive);
        stream.write_all(&hs.helo()).await?;
        let ping = loop {
            match decoder.next_frame()? {
                Some(Frame::Value(v)) => break v.to_vec(),
                Some(Frame::Oversized { .. }) => {
                    return Err(Close::Handshake("PING larger than chunk_size_limit"));
                }
                None => {
                    if !self.fill(stream, decoder).await? {
                        return Ok(false);
                    }
                }
            }
        };
        let out = hs.check_ping(sec, &ping, self.peer.ip());
        stream.write_all(&out.pong).await?;
        match out.result {
            Ok(auth) => {
                nagare_plugin_sdk::debug!(
                    self.shared.log,
                    "forward: {} authenticated as {}",
                    self.peer,
                    auth.hostname
                );
                Ok(true)
            }
            Err(reason) => Err(Close::Auth(reason)),
        }
    }

    async fn handle(
        &mut self,
        stream: &mut TcpStream,
        decoder: &mut Decoder,
        req: Request<'static>,
    ) -> Result<(), Close> {
        let shared = self.shared.clone();
        let batch = match req {
            Request::Heartbeat => return Ok(()),
            Request::Broken { reason, size } => {
                shared.metrics.dropped.inc();
                shared.warn(
                    "broken",
                    format_args!("forward: {reason} (host: {}, size: {size})", self.peer),
                );
                return Ok(());
            }
            Request::Oversized { tag, size, limit } => {
                shared.metrics.dropped.inc();
                shared.warn(
                    "oversized",
                    format_args!(
                        "forward: Input chunk size is larger than 'chunk_size_limit', dropped: tag={:?} host={} limit={limit} size={size}",
                        tag.unwrap_or_default(),
                        self.peer
                    ),
                );
                return Ok(());
            }
            Request::Events(b) => b,
        };
        if batch.over_warn_limit {
            shared.warn(
                "warn_limit",
                format_args!(
                    "forward: Input chunk size is larger than 'chunk_size_warn_limit': tag={:?} host={} limit={} size={}",
                    batch.tag,
                    self.peer,
                    shared.settings.decoder.chunk_size_warn_limit.unwrap_or_default(),
                    batch.request_size
                ),
            );
        }
        if batch.invalid > 0 {
            shared.metrics.invalid.add(f64::from(batch.invalid));
            let first = batch
                .first_invalid
                .map(|e| e.to_string())
                .unwrap_or_default();
            shared.warn(
                "invalid",
                format_args!(
                    "forward: skip invalid event: host={} tag={:?} count={} first: {first}",
                    self.peer, batch.tag, batch.invalid
                ),
            );
        }
        let ack = batch.chunk_option.clone();
        let encoding = batch.encoding;
        shared.metrics.requests.inc();
        if batch.records > 0 {
            let records = batch.records;
            let tag = batch.tag;
            let data = batch.chunk.into_owned();
            let fields = self.source_fields().await;
            let (data, records) = match &fields {
                Some(f) => add_fields(&data, f).unwrap_or((data, records)),
                None => (data, records),
            };
            let key = shared
                .dedupe
                .as_ref()
                .and(ack.as_ref())
                .and_then(|id| crate::dedupe::key(&tag, &id.0));
            let emitted = match (shared.dedupe.clone().zip(key), ack.is_some()) {
                // An ack promises the sender its events are durable: the blocking emit (it
                // waits for the fsync), off the reactor, once there is room — waited for
                // here, by this task, not in a thread.
                (None, true) => {
                    self.wait_for_room(decoder, &tag, records).await?;
                    blocking_emit(&shared.emitter, tag, data, records).await
                }
                // No ack asked, so nothing is promised about durability (Fluentd's
                // at-most-once for such requests): the batch is offered without blocking, on
                // this worker, and a buffer with room takes it at once — written to the chunk
                // file, fsynced with its chunk (no thread hand-off and no fsync per request).
                // A full buffer hands it back: it is offered again once there is room.
                (None, false) => {
                    let mut offer = (tag, data, records);
                    loop {
                        let (tag, data, records) = offer;
                        match shared.emitter.try_emit(&tag, data, records) {
                            Ok(()) => {
                                break Ok(Ok(Emitted::Events {
                                    records,
                                    interrupted: false,
                                }));
                            }
                            Err(rej)
                                if rej.error.kind == ErrorKind::RETRYABLE
                                    && !rej.data.is_empty() =>
                            {
                                if self.wait_for_room(decoder, &rej.tag, rej.records).await? {
                                    offer = (rej.tag, rej.data, rej.records);
                                    continue;
                                }
                                // Refused without a wait (overflow_action throw_exception,
                                // or drop_oldest_chunk): the blocking emit says why, or
                                // makes room.
                                break blocking_emit(
                                    &shared.emitter,
                                    rej.tag,
                                    rej.data,
                                    rej.records,
                                )
                                .await;
                            }
                            Err(rej) => break Ok(Err(rej.error.to_string())),
                        }
                    }
                }
                (Some((window, key)), _) => {
                    self.wait_for_room(decoder, &tag, records).await?;
                    let emitter = shared.emitter.clone();
                    tokio::task::spawn_blocking(move || {
                        // Resend check (the id marked as being emitted), emit, then the id
                        // recorded as accepted and made durable — all before the ack.
                        let pending = match window.begin(Some(key)).map_err(|e| e.to_string())? {
                            crate::dedupe::Begin::Resend => return Ok(Emitted::Resend),
                            crate::dedupe::Begin::New(p) => Some(p),
                        };
                        let interrupted = pending
                            .as_ref()
                            .is_some_and(crate::dedupe::Pending::interrupted);
                        emitter
                            .emit(&tag, data, records)
                            .map_err(|e| e.to_string())?;
                        if let Some(p) = pending {
                            p.commit().map_err(|e| {
                                format!(
                                    "emitted, but the resend window could not record the id: {e}"
                                )
                            })?;
                        }
                        Ok(Emitted::Events {
                            records,
                            interrupted,
                        })
                    })
                    .await
                }
            };
            let chunk_id = || ack.as_ref().map(ToString::to_string).unwrap_or_default();
            match emitted {
                Ok(Ok(Emitted::Events {
                    records,
                    interrupted,
                })) => {
                    shared.metrics.events.add(f64::from(records));
                    if interrupted {
                        // Once per request an earlier run left half done: not rate-limited.
                        nagare_plugin_sdk::warn!(
                            shared.log,
                            "forward: possible duplicate: chunk {} from {} was being emitted when an earlier run stopped, with no record that the emit completed; emitted again (records={records})",
                            chunk_id(),
                            self.peer
                        );
                    }
                }
                Ok(Ok(Emitted::Resend)) => {
                    shared.metrics.resends.inc();
                    nagare_plugin_sdk::debug!(
                        shared.log,
                        "forward: resend of an accepted chunk {} from {}: acked again, not emitted",
                        chunk_id(),
                        self.peer
                    );
                }
                Ok(Err(e)) => return Err(Close::Emit(e)),
                Err(e) => return Err(Close::Emit(format!("emit task failed: {e}"))),
            }
        }
        if let Some(id) = ack {
            self.write_ack(stream, &id, encoding).await?;
        }
        Ok(())
    }

    /// Returns once a batch tagged `tag` would be taken without waiting for room, polling the
    /// host's probe ([`Emitter::would_wait`]) with a pause that grows from [`ROOM_POLL_MIN`]
    /// to [`ROOM_POLL_MAX`]; `true` if it had to wait. A connection held back by a full
    /// buffer so holds its request and this task, not a thread; its decoder gives back the
    /// read buffer first, and the socket is not read meanwhile (the sender is pushed back).
    /// Shutdown ends the wait with the connection closed, the `records` unaccepted and
    /// unacked.
    async fn wait_for_room(
        &mut self,
        decoder: &mut Decoder,
        tag: &str,
        records: u32,
    ) -> Result<bool, Close> {
        let mut pause = ROOM_POLL_MIN;
        let mut waited = false;
        while self.shared.emitter.would_wait(tag) {
            if !waited {
                waited = true;
                // The wait may be long and every connection may be in it: keep the
                // request, not the buffer that was grown to read it.
                decoder.compact();
            }
            if *self.shutdown.borrow() {
                return Err(Close::Emit(format!(
                    "shutting down while the buffer for tag {tag:?} is full: {records} events not accepted (no ack)"
                )));
            }
            tokio::select! {
                _ = self.shutdown.changed() => {}
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(ROOM_POLL_MAX);
        }
        Ok(waited)
    }

    async fn write_ack(
        &self,
        stream: &mut TcpStream,
        id: &AckId,
        encoding: Encoding,
    ) -> Result<(), Close> {
        stream.write_all(&encode_ack(id, encoding)).await?;
        Ok(())
    }

    /// The `(key, value)` pairs to add to every record, if configured.
    async fn source_fields(&mut self) -> Option<Vec<(String, String)>> {
        let s = &self.shared.settings;
        let mut fields = Vec::new();
        if let Some(k) = &s.source_address_key {
            fields.push((k.clone(), self.peer.ip().to_canonical().to_string()));
        }
        if let Some(k) = s.source_hostname_key.clone() {
            if self.hostname.is_none() {
                let ip: IpAddr = self.peer.ip();
                let name = tokio::task::spawn_blocking(move || crate::rdns::hostname_of(ip)).await;
                self.hostname = Some(name.unwrap_or_else(|_| ip.to_string()));
            }
            fields.push((k, self.hostname.clone().unwrap_or_default()));
        }
        (!fields.is_empty()).then_some(fields)
    }
}

/// The blocking `emit` of a batch (it waits for the fsync), on a blocking thread.
async fn blocking_emit(
    emitter: &Emitter,
    tag: String,
    data: Vec<u8>,
    records: u32,
) -> Result<Result<Emitted, String>, tokio::task::JoinError> {
    let emitter = emitter.clone();
    tokio::task::spawn_blocking(move || {
        emitter
            .emit(&tag, data, records)
            .map(|()| Emitted::Events {
                records,
                interrupted: false,
            })
            .map_err(|e| e.to_string())
    })
    .await
}

/// Rewrites every record of a canonical chunk with `fields` set.
pub fn add_fields(chunk: &[u8], fields: &[(String, String)]) -> Option<(Vec<u8>, u32)> {
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut w = ChunkWriter::with_capacity(chunk.len() + chunk.len() / 4);
    let mut rec = Vec::new();
    for entry in ChunkReader::new(chunk) {
        let Ok(e) = entry else { continue };
        if !matches!(read_head(e.record), Ok((Head::Map(_), _))) {
            continue;
        }
        rec.clear();
        set_str_fields(e.record, &pairs, &mut rec).ok()?;
        w.append_raw_unchecked(e.time, &rec).ok()?;
    }
    let records = w.records();
    Some((w.into_bytes(), records))
}
