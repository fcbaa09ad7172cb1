//! Conformance and interop tests through the SDK test kit, against loopback sinks: a Rust
//! sink built on `nagare_forward`'s server-side decoder (in test threads), and a Python sink
//! (an independent msgpack implementation) for interop. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abi_stable::std_types::{RSlice, RStr};
use nagare_core::{ChunkWriter, EventTime, UniqueId};
use nagare_forward::{
    Compression, Decoder, DecoderConfig, Request, Security, ServerHandshake, chunk_option_for,
    encode_ack, encode_packed_forward,
};
use nagare_plugin_sdk::LogLevel;
use nagare_plugin_sdk::api::{ChunkFormat, ChunkRef, ErrorKind, PluginError};
use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::testkit::{TestKit, TestOutput};

use super::nagare_plugin_module;

const WAIT: Duration = Duration::from_secs(10);

/// How a sink answers ack requests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AckMode {
    Ack,
    Never,
    Wrong,
}

/// One request the sink decoded.
#[derive(Clone, Debug)]
struct Got {
    tag: String,
    records: u32,
    entries: Vec<u8>,
    chunk: Option<String>,
}

#[derive(Default)]
struct SinkState {
    got: Mutex<Vec<Got>>,
    raw: Mutex<Vec<u8>>,
    conns: AtomicUsize,
    stop: AtomicBool,
}

/// A Forward server in test threads.
struct Sink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    threads: Vec<JoinHandle<()>>,
}

impl Sink {
    fn start(mode: AckMode, security: Option<Security>) -> Sink {
        Self::start_on("127.0.0.1:0", mode, security, false)
    }

    fn start_on(bind: &str, mode: AckMode, security: Option<Security>, udp: bool) -> Sink {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let state = Arc::new(SinkState::default());
        let mut threads = Vec::new();
        if udp {
            let sock = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("udp bind: {e}"));
            let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
            let st = state.clone();
            threads.push(std::thread::spawn(move || {
                let mut b = [0u8; 64];
                while !st.stop.load(Ordering::SeqCst) {
                    if let Ok((_, peer)) = sock.recv_from(&mut b) {
                        let _ = sock.send_to(&[0], peer);
                    }
                }
            }));
        }
        let st = state.clone();
        let security = security.map(Arc::new);
        threads.push(std::thread::spawn(move || {
            let _ = listener.set_nonblocking(true);
            let mut conns = Vec::new();
            while !st.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, peer)) => {
                        st.conns.fetch_add(1, Ordering::SeqCst);
                        let (st, sec) = (st.clone(), security.clone());
                        conns.push(std::thread::spawn(move || serve(s, peer, &st, mode, sec)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        }));
        Sink {
            addr,
            state,
            threads,
        }
    }

    fn got(&self) -> Vec<Got> {
        self.state.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    fn raw(&self) -> Vec<u8> {
        self.state.raw.lock().map(|g| g.clone()).unwrap_or_default()
    }

    fn conns(&self) -> usize {
        self.state.conns.load(Ordering::SeqCst)
    }

    fn stop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    mut s: TcpStream,
    peer: SocketAddr,
    st: &SinkState,
    mode: AckMode,
    security: Option<Arc<Security>>,
) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut dec = Decoder::new(DecoderConfig::default());
    let mut buf = vec![0u8; 64 * 1024];
    let mut hs = security.as_ref().map(|sec| {
        let hs = ServerHandshake::new(sec, true);
        let _ = s.write_all(&hs.helo());
        dec.force_msgpack();
        hs
    });
    while !st.stop.load(Ordering::SeqCst) {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        let bytes = &buf[..n];
        if let Ok(mut raw) = st.raw.lock() {
            raw.extend_from_slice(bytes);
        }
        dec.feed(bytes);
        if let (Some(h), Some(sec)) = (&hs, &security) {
            match dec.next_frame() {
                Ok(Some(nagare_forward::Frame::Value(v))) => {
                    let out = h.check_ping(sec, v, peer.ip());
                    let _ = s.write_all(&out.pong);
                    if out.result.is_err() {
                        return;
                    }
                    hs = None;
                    if let Ok(mut raw) = st.raw.lock() {
                        raw.clear();
                    }
                }
                Ok(_) => continue,
                Err(_) => return,
            }
        }
        loop {
            match dec.next_request() {
                Ok(Some(Request::Events(b))) => {
                    let chunk = b
                        .chunk_option
                        .as_ref()
                        .and_then(|a| a.as_str().map(str::to_owned));
                    if let Ok(mut g) = st.got.lock() {
                        g.push(Got {
                            tag: b.tag.clone(),
                            records: b.records,
                            entries: b.chunk.to_vec(),
                            chunk: chunk.clone(),
                        });
                    }
                    if let Some(id) = &b.chunk_option {
                        match mode {
                            AckMode::Ack => {
                                let _ = s.write_all(&encode_ack(id, b.encoding));
                            }
                            AckMode::Wrong => {
                                let other = nagare_forward::AckId(b"bm9wZQ==\n".to_vec());
                                let _ = s.write_all(&encode_ack(&other, b.encoding));
                            }
                            AckMode::Never => {}
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// A port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().map(|a| a.port()).unwrap_or(1)
}

fn entries(n: u32) -> ChunkWriter {
    let mut w = ChunkWriter::new();
    for i in 0..n {
        let rec = Value::Map(vec![("i".into(), i.into()), ("msg".into(), "hello".into())]);
        let _ = w.append_value(EventTime::new(1_700_000_000 + i, 5), &rec);
    }
    w
}

fn write_chunk(
    out: &TestOutput,
    tag: &str,
    id: [u8; 16],
    w: &ChunkWriter,
) -> Result<(), PluginError> {
    out.write_chunk(ChunkRef {
        tag: RStr::from(tag),
        chunk_id: id,
        records: w.records(),
        format: ChunkFormat::MSGPACK_STREAM,
        data: RSlice::from(w.as_bytes()),
        variables: RSlice::from(&[][..]),
    })
}

fn server(addr: SocketAddr, extra: &str) -> String {
    format!(
        "<server>\n host 127.0.0.1\n port {}\n {extra}\n</server>\n",
        addr.port()
    )
}

fn output(kit: &TestKit, text: &str) -> TestOutput {
    let mut out = kit
        .output("forward", text)
        .unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    out.start().unwrap_or_else(|e| panic!("start: {e}"));
    out
}

/// A started output to the one node at `addr`, with acks and no heartbeat, and `extra`
/// parameter lines (each ending in a newline).
fn acked_output(kit: &TestKit, addr: SocketAddr, extra: &str) -> TestOutput {
    output(
        kit,
        &format!(
            "heartbeat_type none\nrequire_ack_response true\n{extra}{}",
            server(addr, "")
        ),
    )
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn packed_forward_on_the_wire_is_byte_exact() {
    let kit = TestKit::new(nagare_plugin_module());
    let sink = Sink::start(AckMode::Ack, None);
    let mut out = output(
        &kit,
        &format!("heartbeat_type none\n{}", server(sink.addr, "")),
    );
    let w = entries(3);
    write_chunk(&out, "app.log", [7; 16], &w).unwrap_or_else(|e| panic!("{e}"));
    wait_until("the request", || !sink.got().is_empty());
    let mut want = Vec::new();
    encode_packed_forward(
        &mut want,
        "app.log",
        w.as_bytes(),
        3,
        Compression::Text,
        None,
    );
    wait_until("all bytes", || sink.raw().len() >= want.len());
    assert_eq!(sink.raw(), want);
    let got = sink.got();
    assert_eq!(
        (got[0].tag.as_str(), got[0].records, got[0].chunk.clone()),
        ("app.log", 3, None)
    );
    assert_eq!(got[0].entries, w.as_bytes());
    out.stop().unwrap_or_default();
    assert_eq!(kit.host().metric("write_count"), Some(1.0));
    assert_eq!(kit.host().metric("emit_records"), Some(3.0));
}

#[test]
fn require_ack_sends_the_chunk_id_and_waits_for_the_matching_ack() {
    let kit = TestKit::new(nagare_plugin_module());
    let sink = Sink::start(AckMode::Ack, None);
    let mut out = acked_output(&kit, sink.addr, "");
    let id = UniqueId::generate();
    let w = entries(2);
    write_chunk(&out, "acked", id.0, &w).unwrap_or_else(|e| panic!("{e}"));
    let got = sink.got();
    assert_eq!(got.len(), 1, "delivered before write returned");
    assert_eq!(
        got[0].chunk.as_deref(),
        Some(chunk_option_for(&id).as_str())
    );
    assert!(got[0].chunk.as_deref().is_some_and(|c| c.ends_with('\n')));
    // The same chunk retried carries the same id (what in_forward's dedupe relies on).
    write_chunk(&out, "acked", id.0, &w).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sink.got()[1].chunk, got[0].chunk);
    // An unbuffered chunk (zero id) gets a fresh id per attempt.
    write_chunk(&out, "acked", [0; 16], &w).unwrap_or_else(|e| panic!("{e}"));
    write_chunk(&out, "acked", [0; 16], &w).unwrap_or_else(|e| panic!("{e}"));
    let g = sink.got();
    assert_ne!(g[2].chunk, g[3].chunk);
    out.stop().unwrap_or_default();
}

#[test]
fn ack_mismatch_and_ack_timeout_are_resent_without_a_retry_step() {
    let check = |mode: AckMode, expect: &str| {
        let kit = TestKit::new(nagare_plugin_module());
        let sink = Sink::start(mode, None);
        let mut out = acked_output(&kit, sink.addr, "ack_response_timeout 1\n");
        let err = write_chunk(&out, "t", [1; 16], &entries(1)).err();
        let err = err.unwrap_or_else(|| panic!("{mode:?}: write succeeded"));
        assert_eq!(err.kind, ErrorKind::RESEND, "{mode:?}");
        assert!(err.message.contains(expect), "{mode:?}: {}", err.message);
        assert_eq!(sink.got().len(), 1, "{mode:?}: the data did arrive");
        assert_eq!(kit.host().metric("ack_failures"), Some(1.0));
        out.stop().unwrap_or_default();
    };
    check(AckMode::Wrong, "are different");
    check(AckMode::Never, "no ack response within");
}

#[test]
fn failed_send_fails_over_to_the_next_node() {
    let kit = TestKit::new(nagare_plugin_module());
    let sink = Sink::start(AckMode::Ack, None);
    let dead: SocketAddr = format!("127.0.0.1:{}", dead_port())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = output(
        &kit,
        &format!(
            "heartbeat_type none\nrequire_ack_response true\n{}{}",
            server(dead, ""),
            server(sink.addr, "")
        ),
    );
    for i in 0..12u8 {
        write_chunk(&out, "fo", [i; 16], &entries(1)).unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    assert_eq!(sink.got().len(), 12);
    out.stop().unwrap_or_default();

    // With no node left the write is retryable and names the last error.
    let mut only_dead = output(&kit, &format!("heartbeat_type none\n{}", server(dead, "")));
    let err = write_chunk(&only_dead, "fo", [1; 16], &entries(1)).err();
    assert!(
        err.as_ref().is_some_and(|e| e.kind == ErrorKind::RETRYABLE && e.message.contains("connect failed")),
        "{err:?}"
    );
    only_dead.stop().unwrap_or_default();
}

#[test]
fn weights_spread_writes_like_fluentd() {
    let kit = TestKit::new(nagare_plugin_module());
    let a = Sink::start(AckMode::Ack, None);
    let b = Sink::start(AckMode::Ack, None);
    let z = Sink::start(AckMode::Ack, None);
    let mut out = output(
        &kit,
        &format!(
            "heartbeat_type none\nrequire_ack_response true\n{}{}{}",
            server(a.addr, "weight 30"),
            server(b.addr, "weight 10"),
            server(z.addr, "weight 0")
        ),
    );
    // The array holds 3:1 repeated 3 times (12 slots); one full cycle hits each slot once.
    for i in 0..12u8 {
        write_chunk(&out, "w", [i; 16], &entries(1)).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!((a.got().len(), b.got().len(), z.got().len()), (9, 3, 0));
    out.stop().unwrap_or_default();
}

#[test]
fn standby_is_promoted_when_the_regular_node_is_detached() {
    let kit = TestKit::new(nagare_plugin_module());
    let standby = Sink::start(AckMode::Ack, None);
    let dead: SocketAddr = format!("127.0.0.1:{}", dead_port())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = output(
        &kit,
        &format!(
            "heartbeat_interval 0.05\nhard_timeout 0.3\nrecover_wait 0.2\nrequire_ack_response true\n{}{}",
            server(dead, ""),
            server(standby.addr, "standby true")
        ),
    );
    // Until the detector detaches the dead node the standby is not used.
    let first = write_chunk(&out, "sb", [1; 16], &entries(1));
    assert!(first.is_err() || !standby.got().is_empty());
    let deadline = Instant::now() + WAIT;
    while write_chunk(&out, "sb", [2; 16], &entries(1)).is_err() {
        assert!(
            Instant::now() < deadline,
            "standby never promoted: {:?}",
            kit.host().logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(standby.got().iter().any(|g| g.tag == "sb"));
    let warns = kit.host().messages(LogLevel::WARN);
    assert!(
        warns
            .iter()
            .any(|w| w.contains("detached forwarding server")),
        "{warns:?}"
    );
    assert!(
        warns.iter().any(|w| w.contains("using standby node")),
        "{warns:?}"
    );
    out.stop().unwrap_or_default();
}

#[test]
fn udp_heartbeats_keep_a_node_and_their_absence_detaches_it() {
    let kit = TestKit::new(nagare_plugin_module());
    let with_udp = Sink::start_on("127.0.0.1:0", AckMode::Ack, None, true);
    let without = Sink::start(AckMode::Ack, None);
    let conf = "heartbeat_type udp\nheartbeat_interval 0.05\nhard_timeout 0.3\nphi_failure_detector false\n";
    let mut good = output(&kit, &format!("{conf}{}", server(with_udp.addr, "")));
    let mut bad = output(&kit, &format!("{conf}{}", server(without.addr, "")));
    // The node without a UDP responder is detached after hard_timeout.
    wait_until("detach", || {
        kit.host()
            .messages(LogLevel::WARN)
            .iter()
            .any(|w| w.contains("hard_timeout=true"))
    });
    let err = write_chunk(&bad, "u", [1; 16], &entries(1)).err();
    assert!(err.is_some_and(|e| e.message.contains("no nodes are available")));
    write_chunk(&good, "u", [1; 16], &entries(1)).unwrap_or_else(|e| panic!("{e}"));
    wait_until("delivery", || with_udp.got().len() == 1);
    good.stop().unwrap_or_default();
    bad.stop().unwrap_or_default();
}

#[test]
fn gzip_sends_compressed_packed_forward() {
    let kit = TestKit::new(nagare_plugin_module());
    let sink = Sink::start(AckMode::Ack, None);
    let mut out = acked_output(&kit, sink.addr, "compress gzip\n");
    let w = entries(50);
    write_chunk(&out, "gz", [3; 16], &w).unwrap_or_else(|e| panic!("{e}"));
    // An already-gzipped buffer chunk goes out untouched.
    let gz = nagare_forward::compress::gzip(w.as_bytes());
    out.write_chunk(ChunkRef {
        tag: RStr::from("gz2"),
        chunk_id: [4; 16],
        records: 50,
        format: ChunkFormat::MSGPACK_STREAM_GZIP,
        data: RSlice::from(gz.as_slice()),
        variables: RSlice::from(&[][..]),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let got = sink.got();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|g| g.entries == w.as_bytes() && g.records == 50)
    );
    let raw = sink.raw();
    assert!(
        raw.windows(gz.len()).any(|win| win == gz.as_slice()),
        "gzip bytes sent as is"
    );
    assert!(raw.windows(4).any(|win| win == b"gzip"));
    out.stop().unwrap_or_default();
}

#[test]
fn keepalive_reuses_one_connection() {
    let kit = TestKit::new(nagare_plugin_module());
    let sink = Sink::start(AckMode::Ack, None);
    let mut out = acked_output(&kit, sink.addr, "keepalive true\n");
    for i in 0..5u8 {
        write_chunk(&out, "ka", [i; 16], &entries(1)).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!((sink.got().len(), sink.conns()), (5, 1));
    out.stop().unwrap_or_default();

    let sink2 = Sink::start(AckMode::Ack, None);
    let mut plain = output(
        &kit,
        &format!(
            "heartbeat_type none\nrequire_ack_response true\n{}",
            server(sink2.addr, "")
        ),
    );
    for i in 0..3u8 {
        write_chunk(&plain, "ka", [i; 16], &entries(1)).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(sink2.conns(), 3);
    plain.stop().unwrap_or_default();
}

#[test]
fn security_handshake_with_shared_keys() {
    let security = Security {
        self_hostname: "server".into(),
        shared_key: "k1".into(),
        allow_anonymous_source: true,
        ..Security::default()
    };
    let kit = TestKit::new(nagare_plugin_module());
    let sink = Sink::start(AckMode::Ack, Some(security));
    let sec = "<security>\n self_hostname client\n shared_key k1\n</security>\n";
    let mut out = acked_output(&kit, sink.addr, sec);
    write_chunk(&out, "sec", [1; 16], &entries(2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sink.got().len(), 1);
    out.stop().unwrap_or_default();
    // A per-server shared_key overrides the section's: a wrong one fails the handshake.
    let mut bad = output(
        &kit,
        &format!(
            "heartbeat_type none\n{sec}{}",
            server(sink.addr, "shared_key nope")
        ),
    );
    let err = write_chunk(&bad, "sec", [2; 16], &entries(1)).err();
    assert!(
        err.as_ref().is_some_and(
            |e| e.kind == ErrorKind::RETRYABLE && e.message.contains("handshake failed")
        ),
        "{err:?}"
    );
    bad.stop().unwrap_or_default();
}

#[test]
fn verify_connection_at_startup() {
    let kit = TestKit::new(nagare_plugin_module());
    let sink = Sink::start(AckMode::Ack, None);
    let mut ok = kit
        .output(
            "forward",
            &format!(
                "verify_connection_at_startup true\n{}",
                server(sink.addr, "")
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ok.start().is_ok());
    ok.stop().unwrap_or_default();
    let dead: SocketAddr = format!("127.0.0.1:{}", dead_port())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut bad = kit
        .output(
            "forward",
            &format!("verify_connection_at_startup true\n{}", server(dead, "")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let err = bad.start().err();
    assert!(err.is_some_and(|e| e.message.contains("connect failed")));
}

#[test]
fn config_table() {
    let kit = TestKit::new(nagare_plugin_module());
    let check = |text: &str, expect: Result<(), &str>| {
        let got = kit
            .output("forward", text)
            .map(drop)
            .map_err(|e| e.message.to_string());
        match (got, expect) {
            (Ok(()), Ok(())) => {}
            (Err(g), Err(want)) => assert!(g.contains(want), "{text:?}: {g}"),
            (g, w) => panic!("{text:?}: got {g:?}, want {w:?}"),
        }
    };
    let srv = "<server>\n host 127.0.0.1\n</server>";
    check(srv, Ok(()));
    check("", Err("at least one <server>"));
    check(
        &format!("transport tls\n{srv}"),
        Err("transport tls is not supported"),
    );
    check(&format!("host 127.0.0.1\n{srv}"), Err("obsoleted"));
    check(
        &format!("heartbeat_type udp\ndns_round_robin true\n{srv}"),
        Err("dns_round_robin"),
    );
    check(
        &format!("heartbeat_type bogus\n{srv}"),
        Err("heartbeat_type"),
    );
    check(&format!("compress zstd\n{srv}"), Err("compress"));
    check(&format!("ack_response_timeout 0\n{srv}"), Err("positive"));
    check(
        "<server>\n host 127.0.0.1\n weight -1\n</server>",
        Err("weight"),
    );
    check("<server>\n port 1\n</server>", Err("host"));
    check(
        "heartbeat_type tcp\nsend_timeout 5s\nconnect_timeout 1\nkeepalive true\nkeepalive_timeout 10s\nexpire_dns_cache 0\n<server>\n host localhost\n name n1\n standby true\n weight 10\n</server>\n<security>\n self_hostname me\n shared_key k\n</security>",
        Ok(()),
    );
    check(
        "<server>\n host nonexistent.invalid\n</server>",
        Err("cannot resolve"),
    );
    check(
        "ignore_network_errors_at_startup true\n<server>\n host nonexistent.invalid\n</server>",
        Ok(()),
    );
    check(
        "heartbeat_type none\n<server>\n host nonexistent.invalid\n</server>",
        Ok(()),
    );
}

/// A Python sink (msgpack-python): prints one JSON line per request, acks or not.
const PY_SINK: &str = r#"
import json, socket, sys
import msgpack
mode, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(8)
srv.settimeout(20)
print("READY %d" % srv.getsockname()[1], flush=True)
while True:
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        break
    conn.settimeout(20)
    up = msgpack.Unpacker(raw=True)
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            up.feed(data)
            for msg in up:
                tag, entries, opt = msg[0], msg[1], msg[2]
                ev = msgpack.Unpacker(raw=False, ext_hook=lambda c, d: msgpack.ExtType(c, d))
                ev.feed(entries)
                recs = [r for _, r in ev]
                chunk = opt.get(b"chunk")
                print(json.dumps({"tag": tag.decode(), "n": len(recs), "first": recs[0] if recs else None,
                                  "size": opt.get(b"size"), "chunk": chunk.decode() if chunk else None}), flush=True)
                if chunk is not None and mode == "ack":
                    conn.sendall(msgpack.packb({"ack": chunk.decode()}))
    except socket.timeout:
        pass
    conn.close()
"#;

struct PySink {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl PySink {
    /// `None` when python3 with msgpack is not installed.
    fn start(mode: &str, port: u16) -> Option<PySink> {
        let mut child = Command::new("python3")
            .args(["-c", PY_SINK, mode, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take()?;
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        reader.read_line(&mut first).ok()?;
        let Some(port) = first
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if let Ok(mut v) = l.lock() {
                    v.push(line);
                }
            }
        });
        Some(PySink { child, port, lines })
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for PySink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn interop_with_a_python_sink_ack_and_never_ack() {
    let Some(never) = PySink::start("never", 0) else {
        // CI installs the Python peers (.ci/run): there, a missing one is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with msgpack is not available, and CI must run this interop test"
        );
        eprintln!("python3 with msgpack not available: skipping");
        return;
    };
    let port = never.port;
    let kit = TestKit::new(nagare_plugin_module());
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = acked_output(&kit, addr, "ack_response_timeout 1\n");
    let id = UniqueId::generate();
    let w = entries(4);
    // The sink never acks: the chunk is to be resent (the host writes it again).
    let err = write_chunk(&out, "py.tag", id.0, &w).err();
    assert!(err.is_some_and(|e| e.kind == ErrorKind::RESEND));
    wait_until("python saw the attempt", || !never.lines().is_empty());
    drop(never);
    // A good sink appears on the same port; the retry (same chunk id) is delivered and acked.
    let good = PySink::start("ack", port).unwrap_or_else(|| panic!("python sink restart"));
    let deadline = Instant::now() + WAIT;
    while let Err(e) = write_chunk(&out, "py.tag", id.0, &w) {
        assert!(Instant::now() < deadline, "retry never delivered: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until("python's line", || !good.lines().is_empty());
    let lines = good.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let want_chunk = chunk_option_for(&id).replace('\n', "\\n");
    assert!(
        lines[0].contains(r#""tag": "py.tag", "n": 4"#),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(r#""first": {"i": 0, "msg": "hello"}"#),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&format!(r#""size": 4, "chunk": "{want_chunk}""#)),
        "{}",
        lines[0]
    );
    out.stop().unwrap_or_default();
}

/// `payload` in a temp file laid out as a file buffer stores it: `pieces` frames, each a
/// junk header (0xc1 is never a msgpack byte) before a piece of the payload (cut
/// mid-entry), and a stale tail; the pieces' `(offset, len)` in payload order.
fn chunk_file(payload: &[u8], pieces: usize) -> (std::fs::File, Vec<(u64, u64)>) {
    let step = payload.len().div_ceil(pieces).max(1);
    let mut bytes = Vec::new();
    let mut ranges = Vec::new();
    for (k, piece) in payload.chunks(step).enumerate() {
        bytes.extend_from_slice(&[0xc1; 11]);
        bytes.push(k as u8);
        ranges.push((bytes.len() as u64, piece.len() as u64));
        bytes.extend_from_slice(piece);
    }
    bytes.extend_from_slice(&[0xc1; 64]);
    let mut file = tempfile::tempfile().expect("temp file");
    file.write_all(&bytes).expect("write the chunk file");
    (file, ranges)
}

/// How a connection to a [`silent_receiver`] went: what it read, and how the connection
/// ended (`Ok` for an orderly close, else the read error).
type Silent = (Vec<u8>, std::io::Result<()>);

/// A receiver that never answers: it reads each connection to its end, one after the other,
/// and reports it (for [`WAIT`], or until the report's receiver is dropped). Connections
/// closed without a byte are skipped: another test's heartbeat to its `dead_port` may land
/// on this port.
fn silent_receiver() -> (SocketAddr, std::sync::mpsc::Receiver<Silent>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + WAIT;
        let mut buf = vec![0u8; 64 * 1024];
        while Instant::now() < deadline {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(WAIT));
            let mut got = Vec::new();
            let end = loop {
                match s.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break Err(e),
                }
            };
            if (!got.is_empty() || end.is_err()) && tx.send((got, end)).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

fn chunk_formats(out: &TestOutput) -> Vec<u8> {
    out.control(nagare_plugin_sdk::api::CHUNK_FORMATS_OP, &[])
        .unwrap_or_else(|e| panic!("chunk_formats.v1: {e}"))
}

#[test]
fn file_ranges_chunk_goes_out_as_the_same_packed_forward_and_is_acked() {
    let w = entries(3000);
    let id = UniqueId::generate();
    let option = chunk_option_for(&id);
    let mut want = Vec::new();
    encode_packed_forward(
        &mut want,
        "app.log",
        w.as_bytes(),
        w.records(),
        Compression::Text,
        Some(&option),
    );
    let (file, ranges) = chunk_file(w.as_bytes(), 7);
    assert_eq!(ranges.len(), 7);
    let mut raws = Vec::new();
    for ranged in [false, true] {
        let kit = TestKit::new(nagare_plugin_module());
        let sink = Sink::start(AckMode::Ack, None);
        let mut out = acked_output(&kit, sink.addr, "");
        let written = if ranged {
            out.write_file_ranges("app.log", id.0, &file, &ranges, w.records())
        } else {
            write_chunk(&out, "app.log", id.0, &w)
        };
        written.unwrap_or_else(|e| panic!("ranged {ranged}: {e}"));
        // Acked: the sink had decoded it (and answered) before write returned.
        let got = sink.got();
        assert_eq!(
            got.len(),
            1,
            "ranged {ranged}: delivered before write returned"
        );
        assert_eq!(got[0].tag, "app.log");
        assert_eq!(got[0].records, 3000);
        assert_eq!(got[0].chunk.as_deref(), Some(option.as_str()));
        assert!(got[0].entries == w.as_bytes(), "ranged {ranged}: entries");
        let raw = sink.raw();
        assert!(raw == want, "ranged {ranged}: the request is byte-exact");
        raws.push(raw);
        out.stop().unwrap_or_default();
        assert_eq!(kit.host().metric("write_count"), Some(1.0));
        assert_eq!(kit.host().metric("emit_records"), Some(3000.0));
        assert_eq!(kit.host().metric("ack_failures"), Some(0.0));
    }
    assert!(raws[0] == raws[1], "ranges and bytes give the same request");
}

#[test]
fn file_ranges_with_keepalive_reuse_the_acked_connection() {
    let kit = TestKit::new(nagare_plugin_module());
    let sink = Sink::start(AckMode::Ack, None);
    let mut out = acked_output(&kit, sink.addr, "keepalive true\n");
    let w = entries(40);
    let (file, ranges) = chunk_file(w.as_bytes(), 3);
    for i in 0..3u8 {
        out.write_file_ranges("ka", [i + 1; 16], &file, &ranges, 40)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let got = sink.got();
    assert_eq!((got.len(), sink.conns()), (3, 1));
    assert!(got.iter().all(|g| g.entries == w.as_bytes()));
    out.stop().unwrap_or_default();
}

#[test]
fn accepts_file_ranges_only_with_acks_and_without_gzip() {
    let kit = TestKit::new(nagare_plugin_module());
    let srv = server(
        format!("127.0.0.1:{}", dead_port())
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
        "",
    );
    let bytes_only = [0x92, 0, 1];
    let with_ranges = [0x93, 0, 1, 2];
    for (conf, want) in [
        ("", &bytes_only[..]),
        ("require_ack_response false", &bytes_only),
        ("require_ack_response true", &with_ranges),
        ("require_ack_response true\ncompress text", &with_ranges),
        ("require_ack_response true\ncompress gzip", &bytes_only),
        ("compress gzip", &bytes_only),
        ("compress text", &bytes_only),
    ] {
        let out = kit
            .output("forward", &format!("heartbeat_type none\n{conf}\n{srv}"))
            .unwrap_or_else(|e| panic!("{conf:?}: {e}"));
        assert_eq!(chunk_formats(&out), want, "{conf:?}");
    }
}

#[test]
fn file_ranges_never_acked_is_resent_and_resets_the_connection() {
    let w = entries(500);
    let id = UniqueId::generate();
    let option = chunk_option_for(&id);
    let mut want = Vec::new();
    encode_packed_forward(
        &mut want,
        "t",
        w.as_bytes(),
        w.records(),
        Compression::Text,
        Some(&option),
    );
    let (file, ranges) = chunk_file(w.as_bytes(), 4);
    for ranged in [false, true] {
        let kit = TestKit::new(nagare_plugin_module());
        let (addr, rx) = silent_receiver();
        let mut out = acked_output(&kit, addr, "ack_response_timeout 1\n");
        let start = Instant::now();
        let err = if ranged {
            out.write_file_ranges("t", id.0, &file, &ranges, w.records())
        } else {
            write_chunk(&out, "t", id.0, &w)
        }
        .err()
        .unwrap_or_else(|| panic!("ranged {ranged}: write succeeded without an ack"));
        assert!(start.elapsed() < WAIT, "bounded by ack_response_timeout");
        assert_eq!(err.kind, ErrorKind::RESEND, "ranged {ranged}: {err}");
        assert!(
            err.message.contains("no ack response within"),
            "ranged {ranged}: {}",
            err.message
        );
        assert_eq!(kit.host().metric("ack_failures"), Some(1.0));
        let (got, end) = rx.recv_timeout(WAIT).expect("the receiver finished");
        assert!(got == want, "ranged {ranged}: the whole request arrived");
        // Pages `sendfile` queued must never go out after write returned: the connection
        // given up on is reset, not closed (the bytes path closes it as usual).
        match (ranged, end) {
            (false, Ok(())) => {}
            (true, Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            (r, end) => panic!("ranged {r}: the connection ended with {end:?}"),
        }
        out.stop().unwrap_or_default();
    }
}

#[test]
fn a_range_past_the_end_of_the_file_fails_the_send_and_resets_the_connection() {
    let kit = TestKit::new(nagare_plugin_module());
    let (addr, rx) = silent_receiver();
    let mut out = acked_output(&kit, addr, "ack_response_timeout 1\n");
    let w = entries(50);
    let (file, mut ranges) = chunk_file(w.as_bytes(), 2);
    let file_len = file.metadata().expect("metadata").len();
    ranges.push((file_len - 4, 100));
    let err = out
        .write_file_ranges("t", [0; 16], &file, &ranges, 50)
        .err()
        .unwrap_or_else(|| panic!("a short chunk file was sent"));
    assert_eq!(err.kind, ErrorKind::RETRYABLE, "{err}");
    assert!(err.message.contains("not sent"), "{}", err.message);
    assert!(
        err.message.contains("the file ends after 4 of 100 bytes"),
        "{}",
        err.message
    );
    // Each slot of the weight array (six for one node) tried it, each connection reset.
    for attempt in 0..6 {
        let (got, end) = rx.recv_timeout(WAIT).expect("the receiver read an attempt");
        // What arrived (if the reset did not discard it first) is less than the request.
        assert!(
            got.len() < w.as_bytes().len() + 100,
            "{attempt}: {}",
            got.len()
        );
        assert!(
            matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{attempt}: {end:?}"
        );
    }
    assert_eq!(kit.host().metric("ack_failures"), Some(0.0));
    out.stop().unwrap_or_default();
}

#[test]
fn an_empty_chunk_sends_nothing() {
    let kit = TestKit::new(nagare_plugin_module());
    for compress in ["text", "gzip"] {
        let sink = Sink::start(AckMode::Ack, None);
        let mut out = acked_output(&kit, sink.addr, &format!("compress {compress}\n"));
        let (file, _) = chunk_file(b"", 1);
        let writes = [
            (
                "bytes",
                write_chunk(&out, "e", [1; 16], &ChunkWriter::new()),
            ),
            (
                "no ranges",
                out.write_file_ranges("e", [0; 16], &file, &[], 0),
            ),
            (
                "empty ranges",
                out.write_file_ranges("e", [0; 16], &file, &[(3, 0), (7, 0)], 0),
            ),
        ];
        for (what, written) in writes {
            written.unwrap_or_else(|e| panic!("compress {compress}, {what}: {e}"));
        }
        // With acks on, anything sent would have been received and acked by now.
        assert!(sink.raw().is_empty(), "compress {compress}: nothing sent");
        assert!(sink.got().is_empty(), "compress {compress}: nothing sent");
        out.stop().unwrap_or_default();
    }
}

/// Writes `w` as one chunk on another thread and waits at most `limit` for it: were a
/// socket timeout ignored, the write would block for minutes (a connect) or for ever (a
/// write nobody reads), and the test fails here instead of hanging. The write's result and
/// how long it took.
fn write_within(
    out: &Arc<TestOutput>,
    w: ChunkWriter,
    limit: Duration,
) -> (Result<(), PluginError>, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let out = out.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        let res = write_chunk(&out, "t", [9; 16], &w);
        let _ = tx.send((res, start.elapsed()));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("the write did not return within {limit:?}: {e}"))
}

/// A listener whose accept queue is full, so a further connect's SYN is dropped and the
/// connect hangs: std listens with a backlog of 128 and nothing accepts, so connections are
/// opened until one times out. The listener and the connections that fill it; `None` when
/// connects do not hang that way here.
fn full_listener() -> Option<(TcpListener, Vec<TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut fill = Vec::new();
    for _ in 0..512 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Some((listener, fill)),
            Err(e) => {
                eprintln!("filling the accept queue: {e}");
                return None;
            }
        }
    }
    None
}

#[test]
fn connect_timeout_bounds_a_connect_that_hangs() {
    let Some((listener, _fill)) = full_listener() else {
        eprintln!("cannot make a loopback connect hang here: skipping");
        return;
    };
    let addr = listener.local_addr().expect("addr");
    let kit = TestKit::new(nagare_plugin_module());
    let out = Arc::new(output(
        &kit,
        &format!(
            "heartbeat_type none\nconnect_timeout 0.5\n{}",
            server(addr, "")
        ),
    ));
    // Each of the weight array's six slots (one node) tries a connect, so ~3 s in all; the
    // OS default would be minutes per connect.
    let (res, took) = write_within(&out, entries(1), Duration::from_secs(5));
    let err = res
        .err()
        .unwrap_or_else(|| panic!("write succeeded with no connection"));
    assert_eq!(err.kind, ErrorKind::RETRYABLE, "{err}");
    assert!(
        err.message.contains("connect failed") && err.message.contains("timed out"),
        "{}",
        err.message
    );
    assert!(
        took >= Duration::from_millis(500),
        "waited for the timeout: {took:?}"
    );
    assert_eq!(kit.host().metric("write_count"), Some(0.0));
}

#[test]
fn send_timeout_bounds_a_write_nobody_reads() {
    // Accepted by the kernel (the backlog has room) but never read: once the socket
    // buffers are full each write blocks.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let kit = TestKit::new(nagare_plugin_module());
    let out = Arc::new(output(
        &kit,
        &format!(
            "heartbeat_type none\nrequire_ack_response false\nsend_timeout 0.25\n{}",
            server(addr, "")
        ),
    ));
    // 16 MiB: far more than loopback's send buffer (4 MiB at most by default) and the
    // unread receive buffer hold.
    let mut w = ChunkWriter::new();
    let big = "x".repeat(1 << 20);
    for i in 0..16u32 {
        let rec = Value::Map(vec![("msg".into(), big.as_str().into())]);
        w.append_value(EventTime::new(1_700_000_000 + i, 0), &rec)
            .expect("append");
    }
    // Each of the six slots connects and writes until a write times out (each write blocks
    // for up to `send_timeout`; the ones that fill the buffers return short): ~0.75 s per
    // slot here, ~4.5 s in all.
    let (res, took) = write_within(&out, w, Duration::from_secs(10));
    let err = res
        .err()
        .unwrap_or_else(|| panic!("16 MiB were sent to a peer that never reads"));
    assert_eq!(err.kind, ErrorKind::RETRYABLE, "{err}");
    assert!(err.message.contains("send failed"), "{}", err.message);
    assert!(
        took >= Duration::from_millis(250),
        "waited for the timeout: {took:?}"
    );
    assert_eq!(kit.host().metric("write_count"), Some(0.0));
    drop(listener);
}
