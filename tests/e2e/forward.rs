//! The Forward pipeline end to end: senders (Python's `fluent-logger` and raw frames written
//! byte by byte from the spec, `fluentd-reference.md` §1) → `in_forward` → `out_stdout`, with
//! the exact lines printed, acks, heartbeats, broken input, limits, source params, many
//! connections, the drain at SIGTERM and the `<security>` handshake.
//!
//! Every wait is bounded (the harness polls; sockets have read timeouts) and only loopback is
//! used. Ordering: requests on one connection are emitted in order and one `stdout` output
//! prints its queue in order, so after [`Client::sync`] (a last request whose ack came back)
//! and its line on stdout, everything sent earlier on that connection has been printed.

use crate::harness::{self, Nagare};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

/// 2026-11-26 12:00:00 UTC.
pub(crate) const T0: u32 = 1_795_694_400;

/// The record `{"k":"v"}`.
pub(crate) const KV: &[u8] = &[0x81, 0xa1, b'k', 0xa1, b'v'];

/// A catch-all stdout `<match>`.
const STDOUT: &str = "<match **>\n  @type stdout\n</match>\n";

/// Raw msgpack pieces, written from the format spec (no encoder library on the sending side).
pub(crate) mod mp {
    /// Concatenates pieces.
    pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// `fixarray` header.
    pub fn arr(n: u8) -> Vec<u8> {
        assert!(n < 16);
        vec![0x90 | n]
    }

    /// `fixmap` header.
    pub fn map(n: u8) -> Vec<u8> {
        assert!(n < 16);
        vec![0x80 | n]
    }

    /// A str in its smallest format (fixstr, str8, str16).
    pub fn s(text: &str) -> Vec<u8> {
        let b = text.as_bytes();
        let mut out = match b.len() {
            n if n < 32 => vec![0xa0 | n as u8],
            n if n < 256 => vec![0xd9, n as u8],
            n => {
                let n = u16::try_from(n).expect("short string");
                let [hi, lo] = n.to_be_bytes();
                vec![0xda, hi, lo]
            }
        };
        out.extend_from_slice(b);
        out
    }

    /// str8 (0xd9), whatever the length.
    pub fn str8(b: &[u8]) -> Vec<u8> {
        let mut out = vec![0xd9, u8::try_from(b.len()).expect("str8 length")];
        out.extend_from_slice(b);
        out
    }

    /// str32 (0xdb + u32 BE), as Fluentd's out_forward writes PackedForward entries.
    pub fn str32(b: &[u8]) -> Vec<u8> {
        let mut out = vec![0xdb];
        out.extend_from_slice(&u32::try_from(b.len()).expect("len").to_be_bytes());
        out.extend_from_slice(b);
        out
    }

    /// bin8 (0xc4) or bin32 (0xc6) for longer blobs.
    pub fn bin(b: &[u8]) -> Vec<u8> {
        let mut out = match u8::try_from(b.len()) {
            Ok(n) => vec![0xc4, n],
            Err(_) => {
                let mut h = vec![0xc6];
                h.extend_from_slice(&u32::try_from(b.len()).expect("len").to_be_bytes());
                h
            }
        };
        out.extend_from_slice(b);
        out
    }

    /// uint32 (0xce).
    pub fn u32(v: u32) -> Vec<u8> {
        let mut out = vec![0xce];
        out.extend_from_slice(&v.to_be_bytes());
        out
    }

    /// EventTime as fixext8: `D7 00 sec nsec`.
    pub fn et_fixext8(sec: u32, nsec: u32) -> Vec<u8> {
        let mut out = vec![0xd7, 0x00];
        out.extend_from_slice(&sec.to_be_bytes());
        out.extend_from_slice(&nsec.to_be_bytes());
        out
    }

    /// EventTime as ext8: `C7 08 00 sec nsec`.
    pub fn et_ext8(sec: u32, nsec: u32) -> Vec<u8> {
        let mut out = vec![0xc7, 0x08, 0x00];
        out.extend_from_slice(&sec.to_be_bytes());
        out.extend_from_slice(&nsec.to_be_bytes());
        out
    }

    /// `{"n": <positive fixint or uint32>}`.
    pub fn rec_n(n: u32) -> Vec<u8> {
        let v = if n < 128 { vec![n as u8] } else { u32(n) };
        cat(&[&map(1), &s("n"), &v])
    }

    /// An option map `{"chunk": id}`.
    pub fn chunk_opt(id: &str) -> Vec<u8> {
        cat(&[&map(1), &s("chunk"), &s(id)])
    }
}

/// The stdout time prefix of `T0 + sec` and `nsec`.
fn at(sec: u32, nsec: u32) -> String {
    assert!(sec < 60);
    format!("2026-11-26 12:00:{sec:02}.{nsec:09} +0000")
}

/// One expected stdout line.
pub(crate) fn line(sec: u32, nsec: u32, tag: &str, json: &str) -> String {
    format!("{} {tag}: {json}", at(sec, nsec))
}

/// Starts nagare with one forward source on a free port (`source` adds params) and `matches`.
pub(crate) fn start(source: &str, matches: &str) -> (Nagare, u16) {
    let port = harness::free_port();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n{source}</source>\n{matches}"
    );
    let mut n = Nagare::start(&conf);
    n.wait_port(port);
    (n, port)
}

/// Like [`start`], but waits for the "listening" log line instead of probing the port: with
/// `<security>` a probe that leaves without reading HELO is a reset the server warns about.
fn start_without_probe(source: &str, matches: &str) -> (Nagare, u16) {
    let port = harness::free_port();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n{source}</source>\n{matches}"
    );
    let mut n = Nagare::start(&conf);
    n.wait_stderr(&format!("local=127.0.0.1:{port}"));
    (n, port)
}

/// A raw Forward client: writes bytes, reads whole msgpack (or JSON) replies.
pub(crate) struct Client {
    s: TcpStream,
    pending: Vec<u8>,
}

impl Client {
    pub(crate) fn connect(port: u16) -> Client {
        Client {
            s: harness::connect(port),
            pending: Vec::new(),
        }
    }

    pub(crate) fn local_port(&self) -> u16 {
        self.s.local_addr().expect("local addr").port()
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to nagare");
    }

    /// Reads more bytes into `pending`; `false` at end of stream (or a reset).
    pub(crate) fn fill(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match self.s.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.pending
                    .extend_from_slice(buf.get(..n).unwrap_or_default());
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no reply from nagare within the read timeout")
            }
            Err(_) => false,
        }
    }

    /// The next complete msgpack reply as its raw bytes; `None` when the server closed.
    pub(crate) fn read_raw(&mut self) -> Option<Vec<u8>> {
        loop {
            let mut cur = std::io::Cursor::new(&self.pending[..]);
            if rmpv::decode::read_value(&mut cur).is_ok() {
                let n = usize::try_from(cur.position()).expect("position");
                return Some(self.pending.drain(..n).collect());
            }
            if !self.fill() {
                assert!(
                    self.pending.is_empty(),
                    "connection closed after a partial reply {:02x?}",
                    self.pending
                );
                return None;
            }
        }
    }

    /// Reads one msgpack ack and returns its id's bytes; checks the reply is exactly the
    /// minimal encoding of `{"ack": id}` (what Fluentd's msgpack writer produces).
    pub(crate) fn ack(&mut self) -> Vec<u8> {
        let raw = self.read_raw().expect("an ack, but the connection closed");
        let v = rmpv::decode::read_value(&mut &raw[..]).expect("msgpack");
        let id = match &v {
            rmpv::Value::Map(m) if m.len() == 1 => match m.first() {
                Some((rmpv::Value::String(k), rmpv::Value::String(id)))
                    if k.as_str() == Some("ack") =>
                {
                    id.as_bytes().to_vec()
                }
                _ => panic!("not an ack: {v:?}"),
            },
            _ => panic!("not an ack: {v:?}"),
        };
        let text = std::str::from_utf8(&id).expect("utf-8 ack id");
        assert_eq!(raw, mp::cat(&[&mp::map(1), &mp::s("ack"), &mp::s(text)]));
        id
    }

    /// The next JSON reply, as its raw bytes.
    pub(crate) fn read_json(&mut self) -> Option<Vec<u8>> {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&self.pending)
                .into_iter::<serde_json::Value>();
            match it.next() {
                Some(Ok(_)) => {
                    let n = it.byte_offset();
                    return Some(self.pending.drain(..n).collect());
                }
                Some(Err(e)) if !e.is_eof() => panic!("invalid JSON reply: {e}"),
                _ => {}
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Waits until the server closes the connection (EOF or reset), bounded.
    pub(crate) fn expect_closed(&mut self) {
        while self.fill() {}
    }

    /// Sends `["sync.end", T0, {"end": id}, {"chunk": id}]`, checks its ack and waits for its
    /// line: everything sent before on this connection is then on stdout. Returns stdout's
    /// lines without the sync line.
    pub(crate) fn sync(&mut self, n: &mut Nagare, id: &str) -> Vec<String> {
        let rec = mp::cat(&[&mp::map(1), &mp::s("end"), &mp::s(id)]);
        self.send(&mp::cat(&[
            &mp::arr(4),
            &mp::s("sync.end"),
            &mp::u32(T0),
            &rec,
            &mp::chunk_opt(id),
        ]));
        assert_eq!(self.ack(), id.as_bytes());
        // `sync.end` may be renamed (add_tag_prefix) or extended (source keys): match loosely.
        let needle = format!("sync.end: {{\"end\":\"{id}\"");
        let path = n.stdout_path.clone();
        n.wait_for(
            || {
                let s = std::fs::read_to_string(&path).unwrap_or_default();
                s.lines().any(|l| l.contains(&needle)).then(|| {
                    s.lines()
                        .filter(|l| !l.contains("sync.end: "))
                        .map(str::to_string)
                        .collect()
                })
            },
            &format!("the sync line {needle:?}"),
        )
    }
}

/// A Message-mode request `[tag, T0, {"k":"v"}, {"chunk": id}]`.
pub(crate) fn message_with_chunk(tag: &str, id: &str) -> Vec<u8> {
    mp::cat(&[
        &mp::arr(4),
        &mp::s(tag),
        &mp::u32(T0),
        KV,
        &mp::chunk_opt(id),
    ])
}

// ---------------------------------------------------------------------------------------
// Python's fluent-logger
// ---------------------------------------------------------------------------------------

#[test]
fn fluent_logger_sync_nanosecond_and_async_senders() {
    let (mut n, port) = start("", STDOUT);
    let out = harness::python(&format!(
        r#"
from fluent import sender, asyncsender
s = sender.FluentSender("app", host="127.0.0.1", port={port})
assert s.emit_with_time("int", {T0}, {{"k": "v", "n": 1}}), s.last_error
ns = sender.FluentSender("app", host="127.0.0.1", port={port}, nanosecond_precision=True)
assert ns.emit_with_time("nano", {T0} + 1.5, {{"k": "v"}}), ns.last_error
assert s.emit("now", {{"list": [1, 2], "nested": {{"a": None}}}}), s.last_error
s.close(); ns.close()
a = asyncsender.FluentSender("app", host="127.0.0.1", port={port})
a.emit_with_time("async", {T0} + 2, {{"k": "v"}})
a.close()
print("sent")
"#
    ));
    assert_eq!(out.trim(), "sent");
    let mut lines = n.wait_stdout_lines(4);
    lines.sort_by_key(|l| l.split_once(" app.").map(|(_, r)| r.to_string()));
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], line(2, 0, "app.async", r#"{"k":"v"}"#));
    assert_eq!(lines[1], line(0, 0, "app.int", r#"{"k":"v","n":1}"#));
    assert_eq!(lines[2], line(1, 500_000_000, "app.nano", r#"{"k":"v"}"#));
    // `emit` stamps the current time (whole seconds without nanosecond_precision).
    let (time, rest) = lines[3].split_at(lines[3].find(" app.").expect("a tag"));
    assert_eq!(rest, r#" app.now: {"list":[1,2],"nested":{"a":null}}"#);
    assert!(
        time.ends_with(".000000000 +0000")
            && time.len() == "2026-11-26 12:00:00.000000000 +0000".len(),
        "{time}"
    );
    assert_eq!(n.stop(), 0);
}

// ---------------------------------------------------------------------------------------
// Raw frames, every mode
// ---------------------------------------------------------------------------------------

#[test]
fn message_mode_with_int_fixext8_and_ext8_times() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    // [tag, int, record]
    c.send(&mp::cat(&[&mp::arr(3), &mp::s("m.int"), &mp::u32(T0), KV]));
    // [tag, EventTime fixext8, record, option]
    let opt = mp::cat(&[&mp::map(1), &mp::s("size"), &[0x01]]);
    c.send(&mp::cat(&[
        &mp::arr(4),
        &mp::s("m.fixext8"),
        &mp::et_fixext8(T0 + 1, 123_456_789),
        KV,
        &opt,
    ]));
    // [tag, EventTime ext8, record]
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("m.ext8"),
        &mp::et_ext8(T0 + 2, 999_999_999),
        KV,
    ]));
    // A positive fixint time and a str8 tag.
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::str8(b"m.str8"),
        &mp::u32(T0 + 3),
        &mp::rec_n(7),
    ]));
    let lines = c.sync(&mut n, "s1");
    assert_eq!(
        lines,
        vec![
            line(0, 0, "m.int", r#"{"k":"v"}"#),
            line(1, 123_456_789, "m.fixext8", r#"{"k":"v"}"#),
            line(2, 999_999_999, "m.ext8", r#"{"k":"v"}"#),
            line(3, 0, "m.str8", r#"{"n":7}"#),
        ]
    );
}

#[test]
fn forward_mode_entries_with_mixed_times() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    let entries = mp::cat(&[
        &mp::arr(3),
        &mp::arr(2),
        &mp::u32(T0),
        &mp::rec_n(1),
        &mp::arr(2),
        &mp::et_fixext8(T0 + 1, 5),
        &mp::rec_n(2),
        &mp::arr(2),
        &mp::et_ext8(T0 + 2, 6),
        &mp::rec_n(3),
    ]);
    c.send(&mp::cat(&[&mp::arr(2), &mp::s("fw"), &entries]));
    // With an option map.
    let one = mp::cat(&[&mp::arr(1), &mp::arr(2), &mp::u32(T0 + 4), KV]);
    let opt = mp::cat(&[&mp::map(1), &mp::s("size"), &[0x01]]);
    c.send(&mp::cat(&[&mp::arr(3), &mp::s("fw.opt"), &one, &opt]));
    assert_eq!(
        c.sync(&mut n, "s2"),
        vec![
            line(0, 0, "fw", r#"{"n":1}"#),
            line(1, 5, "fw", r#"{"n":2}"#),
            line(2, 6, "fw", r#"{"n":3}"#),
            line(4, 0, "fw.opt", r#"{"k":"v"}"#),
        ]
    );
}

/// The concatenated `[time, record]` entries `{"n": first..first+count}` at `T0 + i`.
pub(crate) fn packed_entries(first: u32, count: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        out.extend(mp::arr(2));
        out.extend(mp::et_fixext8(T0 + (i % 60), i));
        out.extend(mp::rec_n(first + i));
    }
    out
}

/// The stdout lines for [`packed_entries`].
fn packed_lines(tag: &str, first: u32, count: u32) -> Vec<String> {
    (0..count)
        .map(|i| line(i % 60, i, tag, &format!("{{\"n\":{}}}", first + i)))
        .collect()
}

#[test]
fn packed_forward_entries_as_bin_str8_and_str32() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    let e = packed_entries(0, 3);
    c.send(&mp::cat(&[&mp::arr(2), &mp::s("p.bin"), &mp::bin(&e)]));
    c.send(&mp::cat(&[&mp::arr(2), &mp::s("p.str8"), &mp::str8(&e)]));
    // Fluentd's out_forward layout: 0x93, tag, 0xdb + u32 + chunk, {"size": n, "compressed": "text"}.
    let opt = mp::cat(&[
        &mp::map(2),
        &mp::s("size"),
        &[0x03],
        &mp::s("compressed"),
        &mp::s("text"),
    ]);
    c.send(&mp::cat(&[
        &[0x93],
        &mp::s("p.str32"),
        &mp::str32(&e),
        &opt,
    ]));
    // A bin32 blob with many entries.
    let big = packed_entries(100, 300);
    c.send(&mp::cat(&[
        &mp::arr(2),
        &mp::s("p.big"),
        &[0xc6],
        &u32::try_from(big.len()).expect("len").to_be_bytes(),
        &big,
    ]));
    let mut expect = packed_lines("p.bin", 0, 3);
    expect.extend(packed_lines("p.str8", 0, 3));
    expect.extend(packed_lines("p.str32", 0, 3));
    expect.extend(packed_lines("p.big", 100, 300));
    assert_eq!(c.sync(&mut n, "s3"), expect);
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b).expect("gzip");
    enc.finish().expect("gzip")
}

#[test]
fn compressed_packed_forward_with_two_gzip_members() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    let e = packed_entries(0, 4);
    // Two gzip members, cut inside the third entry: the entries are the concatenation.
    let cut = e.len() / 2 + 3;
    let blob = mp::cat(&[&gzip(&e[..cut]), &gzip(&e[cut..])]);
    let opt = mp::cat(&[
        &mp::map(3),
        &mp::s("size"),
        &[0x04],
        &mp::s("compressed"),
        &mp::s("gzip"),
        &mp::s("chunk"),
        &mp::s("gz1"),
    ]);
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("gz"),
        &mp::bin(&blob),
        &opt,
    ]));
    assert_eq!(c.ack(), b"gz1");
    assert_eq!(c.sync(&mut n, "s4"), packed_lines("gz", 0, 4));
}

#[test]
fn fluent_bit_v5_metadata_times() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    let meta = mp::cat(&[&mp::map(1), &mp::s("otel"), &[0x01]]);
    // Forward mode: [[[EventTime, {meta}], record]]
    let fw = mp::cat(&[
        &mp::arr(1),
        &mp::arr(2),
        &mp::arr(2),
        &mp::et_fixext8(T0 + 1, 42),
        &meta,
        KV,
    ]);
    c.send(&mp::cat(&[&mp::arr(2), &mp::s("fb.fw"), &fw]));
    // PackedForward: entries [[EventTime, {}], record], one with an empty metadata map.
    let entries = mp::cat(&[
        &mp::arr(2),
        &mp::arr(2),
        &mp::et_fixext8(T0 + 2, 7),
        &mp::map(0),
        &mp::rec_n(1),
        &mp::arr(2),
        &mp::arr(2),
        &mp::et_ext8(T0 + 3, 8),
        &meta,
        &mp::rec_n(2),
    ]);
    c.send(&mp::cat(&[
        &mp::arr(2),
        &mp::s("fb.packed"),
        &mp::bin(&entries),
    ]));
    assert_eq!(
        c.sync(&mut n, "s5"),
        vec![
            line(1, 42, "fb.fw", r#"{"k":"v"}"#),
            line(2, 7, "fb.packed", r#"{"n":1}"#),
            line(3, 8, "fb.packed", r#"{"n":2}"#),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Acks and heartbeats
// ---------------------------------------------------------------------------------------

#[test]
fn ack_echoes_the_chunk_byte_for_byte_and_only_when_asked() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    // No chunk: no reply. The next reply on this connection is the ack of the later request.
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("a.noack"),
        &mp::u32(T0),
        KV,
    ]));
    // Fluentd's out_forward: Base64.encode64(16 random bytes) ends with "\n".
    let fluentd_id = "q83vEjRWeJCrze8SNFZ4kA==\n";
    c.send(&message_with_chunk("a.fluentd", fluentd_id));
    assert_eq!(c.ack(), fluentd_id.as_bytes());
    // Every mode acks; a str8-encoded chunk option is echoed with the same bytes.
    let id = "AAECAwQFBgcICQoLDA0ODw==";
    let opt = mp::cat(&[&mp::map(1), &mp::s("chunk"), &mp::str8(id.as_bytes())]);
    let fw = mp::cat(&[&mp::arr(1), &mp::arr(2), &mp::u32(T0), KV]);
    c.send(&mp::cat(&[&mp::arr(3), &mp::s("a.forward"), &fw, &opt]));
    assert_eq!(c.ack(), id.as_bytes());
    let packed = mp::cat(&[&mp::arr(2), &mp::u32(T0), KV]);
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("a.packed"),
        &mp::bin(&packed),
        &mp::chunk_opt("p-1"),
    ]));
    assert_eq!(c.ack(), b"p-1");
    // A request whose events are all invalid is still acked (skip_invalid_event).
    let bad = mp::cat(&[&mp::arr(1), &mp::arr(2), &mp::s("not a time"), KV]);
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("a.invalid"),
        &bad,
        &mp::chunk_opt("inv"),
    ]));
    assert_eq!(c.ack(), b"inv");
    let lines = c.sync(&mut n, "s6");
    assert_eq!(
        lines,
        vec![
            line(0, 0, "a.noack", r#"{"k":"v"}"#),
            line(0, 0, "a.fluentd", r#"{"k":"v"}"#),
            line(0, 0, "a.forward", r#"{"k":"v"}"#),
            line(0, 0, "a.packed", r#"{"k":"v"}"#),
        ]
    );
    assert!(n.stderr().contains("skip invalid event"), "{}", n.stderr());
}

#[test]
fn nil_heartbeat_is_ignored_and_the_connection_kept() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    c.send(&[0xc0]);
    c.send(&message_with_chunk("hb.after", "h1"));
    assert_eq!(
        c.ack(),
        b"h1",
        "nothing answers the nil; the next reply is the ack"
    );
    c.send(&[0xc0, 0xc0]);
    assert_eq!(
        c.sync(&mut n, "s7"),
        vec![line(0, 0, "hb.after", r#"{"k":"v"}"#)]
    );
}

#[test]
fn udp_heartbeat_is_answered() {
    let (_n, port) = start("", STDOUT);
    let u = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    u.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    // UDP may drop a datagram even on loopback: a few bounded tries.
    let mut reply = None;
    for _ in 0..10 {
        u.send_to(&[0x00], ("127.0.0.1", port)).expect("send");
        let mut buf = [0xffu8; 16];
        if let Ok((len, from)) = u.recv_from(&mut buf) {
            reply = Some((buf[..len].to_vec(), from.port()));
            break;
        }
    }
    assert_eq!(reply, Some((vec![0x00], port)));
}

#[test]
fn json_requests_get_json_acks() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    c.send(format!(r#"["json.msg",{T0},{{"k":"v","f":1.5}},{{"chunk":"j1"}}]"#).as_bytes());
    assert_eq!(c.read_json().expect("a JSON ack"), br#"{"ack":"j1"}"#);
    // A second request on the same connection, split across writes, Forward mode.
    let fw = format!(
        r#" ["json.fw",[[{},{{"n":1}}],[{},{{"n":2}}]],{{"chunk":"j2"}}]"#,
        T0 + 1,
        T0 + 2
    );
    let (a, b) = fw.as_bytes().split_at(10);
    c.send(a);
    c.send(b);
    assert_eq!(c.read_json().expect("a JSON ack"), br#"{"ack":"j2"}"#);
    let lines = n.wait_stdout_lines(3);
    assert_eq!(
        lines,
        vec![
            line(0, 0, "json.msg", r#"{"k":"v","f":1.5}"#),
            line(1, 0, "json.fw", r#"{"n":1}"#),
            line(2, 0, "json.fw", r#"{"n":2}"#),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Broken input and limits
// ---------------------------------------------------------------------------------------

#[test]
fn malformed_msgpack_closes_only_that_connection_and_names_the_peer() {
    let (mut n, port) = start("", STDOUT);
    let mut good = Client::connect(port);
    good.send(&message_with_chunk("ok.before", "g1"));
    assert_eq!(good.ack(), b"g1");

    let mut bad = Client::connect(port);
    let bad_port = bad.local_port();
    // A valid event, then 0xc1 (a marker msgpack never uses).
    bad.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("bad.first"),
        &mp::u32(T0),
        KV,
        &[0xc1, 0x00],
    ]));
    bad.expect_closed();
    let log = n.wait_stderr(&format!("127.0.0.1:{bad_port}"));
    assert!(log.contains("unexpected error on reading data"), "{log}");

    // The other connection still works, and a new one too.
    good.send(&message_with_chunk("ok.after", "g2"));
    assert_eq!(good.ack(), b"g2");
    let lines = good.sync(&mut n, "s8");
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            line(0, 0, "bad.first", r#"{"k":"v"}"#),
            line(0, 0, "ok.after", r#"{"k":"v"}"#),
            line(0, 0, "ok.before", r#"{"k":"v"}"#),
        ]
    );
    let mut fresh = Client::connect(port);
    fresh.send(&message_with_chunk("ok.fresh", "g3"));
    assert_eq!(fresh.ack(), b"g3");
    n.assert_alive();
}

#[test]
fn a_request_that_is_not_an_array_is_ignored_and_the_connection_stays_open() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    c.send(&[0x81, 0xa1, b'a', 0x01]); // {"a": 1}
    c.send(&mp::s("just a string"));
    c.send(&[0x2a]); // 42
    c.send(&message_with_chunk("after.broken", "b1"));
    assert_eq!(c.ack(), b"b1");
    assert_eq!(
        c.sync(&mut n, "s9"),
        vec![line(0, 0, "after.broken", r#"{"k":"v"}"#)]
    );
    let log = n.wait_stderr("incoming chunk is broken");
    let peer = format!("127.0.0.1:{}", c.local_port());
    assert!(
        log.contains(&peer),
        "the warning names the peer {peer}: {log}"
    );
}

#[test]
fn chunk_size_limit_drops_an_oversized_request_without_an_ack() {
    let (mut n, port) = start(
        "  chunk_size_limit 200\n  chunk_size_warn_limit 100\n",
        STDOUT,
    );
    let mut c = Client::connect(port);
    let big = packed_entries(0, 40);
    assert!(big.len() > 200);
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("big"),
        &mp::bin(&big),
        &mp::chunk_opt("too-big"),
    ]));
    c.send(&message_with_chunk("small", "fits"));
    assert_eq!(c.ack(), b"fits", "the oversized request is dropped unacked");
    // Between the warn limit and the limit: only a warning.
    let medium = mp::cat(&[
        &mp::arr(3),
        &mp::s("medium"),
        &mp::bin(&packed_entries(0, 6)),
        &mp::chunk_opt("warned"),
    ]);
    assert!((101..200).contains(&medium.len()), "{}", medium.len());
    c.send(&medium);
    assert_eq!(c.ack(), b"warned");
    let mut expect = vec![line(0, 0, "small", r#"{"k":"v"}"#)];
    expect.extend(packed_lines("medium", 0, 6));
    assert_eq!(c.sync(&mut n, "s10"), expect);
    let log = n.wait_stderr("larger than 'chunk_size_limit', dropped");
    assert!(log.contains("tag=\"big\""), "{log}");
    let log = n.wait_stderr("larger than 'chunk_size_warn_limit'");
    assert!(log.contains("tag=\"medium\""), "{log}");
}

/// The streaming decoder: a request written one byte per write (with TCP_NODELAY) is the same
/// request; so are two requests in a single write.
#[test]
fn requests_split_into_single_bytes_or_joined_in_one_write() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    c.s.set_nodelay(true).expect("nodelay");
    let opt = mp::cat(&[
        &mp::map(2),
        &mp::s("size"),
        &[0x03],
        &mp::s("chunk"),
        &mp::s("bytewise"),
    ]);
    let req = mp::cat(&[
        &[0x93],
        &mp::s("split"),
        &mp::str32(&packed_entries(0, 3)),
        &opt,
    ]);
    for b in &req {
        c.send(std::slice::from_ref(b));
    }
    assert_eq!(c.ack(), b"bytewise");
    let joined = mp::cat(&[
        &message_with_chunk("joined.a", "j-a"),
        &message_with_chunk("joined.b", "j-b"),
    ]);
    c.send(&joined);
    assert_eq!(c.ack(), b"j-a");
    assert_eq!(c.ack(), b"j-b");
    let mut expect = packed_lines("split", 0, 3);
    expect.push(line(0, 0, "joined.a", r#"{"k":"v"}"#));
    expect.push(line(0, 0, "joined.b", r#"{"k":"v"}"#));
    assert_eq!(c.sync(&mut n, "s13"), expect);
}

#[test]
fn broken_gzip_closes_the_connection_without_an_ack() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    let port_c = c.local_port();
    let mut blob = gzip(&packed_entries(0, 3));
    // Damage the deflate stream (past the 10-byte header) and the CRC.
    for b in blob.iter_mut().skip(10) {
        *b ^= 0x5a;
    }
    let opt = mp::cat(&[
        &mp::map(2),
        &mp::s("compressed"),
        &mp::s("gzip"),
        &mp::s("chunk"),
        &mp::s("bad-gz"),
    ]);
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("gz.bad"),
        &mp::bin(&blob),
        &opt,
    ]));
    assert_eq!(
        c.read_raw(),
        None,
        "closed without an ack: the client retries"
    );
    n.wait_stderr(&format!("127.0.0.1:{port_c}"));
    let mut other = Client::connect(port);
    assert_eq!(other.sync(&mut n, "s14"), Vec::<String>::new());
}

#[test]
fn time_zero_means_now_and_a_nil_record_is_skipped() {
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    // Message mode with time 0, and Forward mode with an EventTime of zero.
    c.send(&mp::cat(&[&mp::arr(3), &mp::s("zero.int"), &[0x00], KV]));
    let fw = mp::cat(&[&mp::arr(1), &mp::arr(2), &mp::et_fixext8(0, 0), KV]);
    c.send(&mp::cat(&[&mp::arr(2), &mp::s("zero.et"), &fw]));
    // [tag, time, nil]: nothing to emit.
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("nil.rec"),
        &mp::u32(T0),
        &[0xc0],
    ]));
    let lines = c.sync(&mut n, "s15");
    assert_eq!(lines.len(), 2, "{lines:?}");
    let this_year = {
        // Seconds since the epoch now, as the printed date must be close to it.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        1970 + now / 31_556_952
    };
    for (l, tag) in lines.iter().zip(["zero.int", "zero.et"]) {
        assert!(l.ends_with(&format!(" {tag}: {{\"k\":\"v\"}}")), "{l}");
        let year: u64 = l.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
        assert!(year.abs_diff(this_year) <= 1, "time 0 became now: {l}");
    }
}

#[test]
fn source_hostname_key_adds_the_resolved_peer_name() {
    let (mut n, port) = start("  source_hostname_key host\n", STDOUT);
    let mut c = Client::connect(port);
    c.send(&mp::cat(&[&mp::arr(3), &mp::s("named"), &mp::u32(T0), KV]));
    let lines = c.sync(&mut n, "s16");
    // What the system resolver says for 127.0.0.1 (the address itself when it has no name).
    let name = harness::python(
        "import socket\ntry:\n    print(socket.gethostbyaddr('127.0.0.1')[0])\nexcept OSError:\n    print('127.0.0.1')\n",
    );
    let name = name.trim();
    assert_eq!(
        lines,
        vec![line(
            0,
            0,
            "named",
            &format!(r#"{{"k":"v","host":"{name}"}}"#)
        )]
    );
}

// ---------------------------------------------------------------------------------------
// Source parameters
// ---------------------------------------------------------------------------------------

#[test]
fn tag_add_tag_prefix_and_source_address_key() {
    let (p1, p2) = (harness::free_port(), harness::free_port());
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {p1}\n  tag fixed.tag\n</source>\n\
         <source>\n  @type forward\n  bind 127.0.0.1\n  port {p2}\n  add_tag_prefix pre\n  source_address_key src\n</source>\n{STDOUT}"
    );
    let mut n = Nagare::start(&conf);
    n.wait_port(p1).wait_port(p2);
    let mut a = Client::connect(p1);
    a.send(&message_with_chunk("incoming.one", "t1"));
    assert_eq!(a.ack(), b"t1");
    let mut b = Client::connect(p2);
    let e = packed_entries(0, 2);
    b.send(&mp::cat(&[&mp::arr(2), &mp::s("app.x"), &mp::bin(&e)]));
    let lines = b.sync(&mut n, "s11");
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            line(0, 0, "fixed.tag", r#"{"k":"v"}"#),
            line(0, 0, "pre.app.x", r#"{"n":0,"src":"127.0.0.1"}"#),
            line(1, 1, "pre.app.x", r#"{"n":1,"src":"127.0.0.1"}"#),
        ]
    );
}

#[test]
fn deny_keepalive_closes_after_the_first_request() {
    let (mut n, port) = start("  deny_keepalive true\n", STDOUT);
    let mut c = Client::connect(port);
    c.send(&message_with_chunk("once", "k1"));
    assert_eq!(c.ack(), b"k1");
    c.expect_closed();
    let lines = n.wait_stdout_lines(1);
    assert_eq!(lines, vec![line(0, 0, "once", r#"{"k":"v"}"#)]);
}

#[test]
fn out_null_through_a_config() {
    let matches = "<match drop.**>\n  @type null\n</match>\n<match **>\n  @type stdout\n</match>\n";
    let (mut n, port) = start("", matches);
    let mut c = Client::connect(port);
    c.send(&message_with_chunk("drop.me", "n1"));
    assert_eq!(c.ack(), b"n1");
    c.send(&message_with_chunk("keep.me", "n2"));
    assert_eq!(c.ack(), b"n2");
    assert_eq!(
        c.sync(&mut n, "s12"),
        vec![line(0, 0, "keep.me", r#"{"k":"v"}"#)]
    );
    assert_eq!(n.stop(), 0);
}

// ---------------------------------------------------------------------------------------
// Load and shutdown
// ---------------------------------------------------------------------------------------

#[test]
fn many_concurrent_connections_all_arrive() {
    const THREADS: usize = 10;
    const PER_THREAD: usize = 50;
    const EVENTS: u32 = 3;
    let (mut n, port) = start("", STDOUT);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<(usize, Client)> = (0..PER_THREAD)
                    .map(|i| (t * PER_THREAD + i, Client::connect(port)))
                    .collect();
                // All connections are open before any sends.
                barrier.wait();
                for (id, c) in &mut conns {
                    let mut entries = mp::arr(EVENTS as u8);
                    for e in 0..EVENTS {
                        entries.extend(mp::arr(2));
                        entries.extend(mp::u32(T0 + e));
                        entries.extend(mp::rec_n(e));
                    }
                    let tag = format!("conn.{id}");
                    c.send(&mp::cat(&[
                        &mp::arr(3),
                        &mp::s(&tag),
                        &entries,
                        &mp::chunk_opt(&tag),
                    ]));
                }
                for (id, c) in &mut conns {
                    assert_eq!(c.ack(), format!("conn.{id}").as_bytes());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client thread failed");
    }
    let total = THREADS * PER_THREAD * EVENTS as usize;
    let mut lines = n.wait_stdout_lines(total);
    lines.sort();
    let mut expect: Vec<String> = (0..THREADS * PER_THREAD)
        .flat_map(|id| {
            (0..EVENTS).map(move |e| line(e, 0, &format!("conn.{id}"), &format!("{{\"n\":{e}}}")))
        })
        .collect();
    expect.sort();
    assert_eq!(lines.len(), expect.len());
    assert!(lines == expect, "every event arrives exactly once");
    assert_eq!(n.stop(), 0);
}

#[test]
fn large_requests_of_many_connections_through_a_full_buffer_all_arrive_once() {
    // PackedForward requests of about 72 KB (read into buffers of their own) from 8
    // connections at once; request_memory_limit admits two or three at a time, and a small
    // blocking buffer keeps the admitted ones waiting for room.
    const CONNS: u32 = 8;
    const REQS: u32 = 2;
    const EVENTS: u32 = 4000;
    let (mut n, port) = start(
        "  request_memory_limit 250k\n",
        "<match **>\n  @type stdout\n  <buffer>\n    @type memory\n    chunk_limit_size 256k\n    total_limit_size 512k\n    overflow_action block\n    flush_interval 0.2s\n  </buffer>\n</match>\n",
    );
    let entries = packed_entries(0, EVENTS);
    assert!(entries.len() > 64 * 1024, "{}", entries.len());
    let workers: Vec<_> = (0..CONNS)
        .map(|c| {
            let entries = entries.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(port);
                let tag = format!("big.{c}");
                for r in 0..REQS {
                    client.send(&mp::cat(&[
                        &[0x93],
                        &mp::s(&tag),
                        &mp::bin(&entries),
                        &mp::chunk_opt(&format!("{tag}.{r}")),
                    ]));
                }
                for r in 0..REQS {
                    assert_eq!(client.ack(), format!("{tag}.{r}").as_bytes());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client thread failed");
    }
    let total = (CONNS * REQS * EVENTS) as usize;
    let mut lines = n.wait_stdout_lines(total);
    lines.sort();
    let mut expect: Vec<String> = (0..CONNS)
        .flat_map(|c| (0..REQS).map(move |_| c))
        .flat_map(|c| packed_lines(&format!("big.{c}"), 0, EVENTS))
        .collect();
    expect.sort();
    assert_eq!(lines.len(), expect.len());
    assert!(lines == expect, "every event arrives exactly once");
    assert_eq!(n.stop(), 0);
}

#[test]
fn sigterm_drains_every_acked_event_before_exiting_zero() {
    const REQUESTS: u32 = 60;
    const PER_REQUEST: u32 = 100;
    let (mut n, port) = start("", STDOUT);
    let mut c = Client::connect(port);
    // Pipeline every request, then collect the acks: the events are queued in the output
    // (acks come after emit, not after printing) when SIGTERM arrives.
    let mut all = Vec::new();
    for r in 0..REQUESTS {
        let e = packed_entries(r * PER_REQUEST, PER_REQUEST);
        all.extend(mp::cat(&[
            &mp::arr(3),
            &mp::s("drain"),
            &mp::bin(&e),
            &mp::chunk_opt(&format!("d{r}")),
        ]));
    }
    c.send(&all);
    for r in 0..REQUESTS {
        assert_eq!(c.ack(), format!("d{r}").as_bytes());
    }
    assert_eq!(n.stop(), 0, "stderr:\n{}", n.stderr());
    let lines: Vec<String> = n.stdout().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), (REQUESTS * PER_REQUEST) as usize);
    let expect: Vec<String> = (0..REQUESTS)
        .flat_map(|r| packed_lines("drain", r * PER_REQUEST, PER_REQUEST))
        .collect();
    assert!(lines == expect, "every acked event printed, in order");
    let log = n.stderr();
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(!log.contains("lost"), "{log}");
}

/// The same drain, deterministic: a 1 h flush interval keeps every acked event in the buffer
/// (stdout stays empty) until SIGTERM flushes it (`flush_at_shutdown`, out_stdout's default).
#[test]
fn sigterm_flushes_events_held_in_an_interval_buffer() {
    let matches = "<match **>\n  @type stdout\n  <buffer>\n    flush_mode interval\n    \
                   flush_interval 1h\n  </buffer>\n</match>\n";
    let (mut n, port) = start("", matches);
    let mut c = Client::connect(port);
    for r in 0..5u32 {
        let e = packed_entries(r * 10, 10);
        let id = format!("h{r}");
        c.send(&mp::cat(&[
            &mp::arr(3),
            &mp::s("held"),
            &mp::bin(&e),
            &mp::chunk_opt(&id),
        ]));
        assert_eq!(c.ack(), id.as_bytes());
    }
    assert_eq!(n.stdout(), "", "nothing is flushed before the interval");
    assert_eq!(n.stop(), 0, "stderr:\n{}", n.stderr());
    let lines: Vec<String> = n.stdout().lines().map(str::to_string).collect();
    let expect: Vec<String> = (0..5)
        .flat_map(|r| packed_lines("held", r * 10, 10))
        .collect();
    assert_eq!(lines, expect);
}

// ---------------------------------------------------------------------------------------
// <security>
// ---------------------------------------------------------------------------------------

/// A Python client doing HELO/PING/PONG with hashlib, then sending one event when allowed.
fn handshake_client(port: u16, key: &str) -> serde_json::Value {
    handshake_user(port, key, "", "")
}

/// [`handshake_client`] with `<user>` credentials (digested with HELO's auth salt).
fn handshake_user(port: u16, key: &str, user: &str, password: &str) -> serde_json::Value {
    let out = harness::python(&format!(
        r#"
import socket, msgpack, hashlib, json
s = socket.create_connection(("127.0.0.1", {port}))
s.settimeout(20)
u = msgpack.Unpacker(raw=False)
def read():
    while True:
        for v in u:
            return v
        d = s.recv(4096)
        if not d:
            return None
        u.feed(d)
helo = read()
nonce = helo[1]["nonce"]
salt = "0123456789abcdef0123456789abcdef"
me = "client.example"
digest = hashlib.sha512((salt + me).encode() + nonce + {key:?}.encode()).hexdigest()
auth = helo[1]["auth"]
user, pw = {user:?}, ""
if auth:
    pw = hashlib.sha512(auth + user.encode() + {password:?}.encode()).hexdigest()
else:
    user = ""
s.sendall(msgpack.packb(["PING", me, salt, digest, user, pw]))
pong = read()
out = {{"helo": helo[0], "helo_keys": sorted(helo[1].keys()), "nonce_len": len(nonce),
       "auth_len": len(auth),
       "keepalive": helo[1]["keepalive"], "pong": pong[:4]}}
if pong[1]:
    out["pong_digest_ok"] = pong[4] == hashlib.sha512((salt + pong[3]).encode() + nonce + {key:?}.encode()).hexdigest()
    s.sendall(msgpack.packb(["sec.app", {T0}, {{"k": "v"}}, {{"chunk": "sec1"}}]))
    out["ack"] = read()
else:
    out["pong_tail"] = pong[4:]
    try:
        out["closed"] = read() is None
    except ConnectionResetError:
        out["closed"] = True
print(json.dumps(out))
"#
    ));
    serde_json::from_str(out.trim()).expect("the client's JSON")
}

#[test]
fn security_handshake_with_the_right_and_a_wrong_shared_key() {
    let (mut n, port) = start_without_probe(SECURITY, STDOUT);

    let ok = handshake_client(port, "s3cr3t");
    assert_eq!(ok["helo"], "HELO");
    assert_eq!(
        ok["helo_keys"],
        serde_json::json!(["auth", "keepalive", "nonce"])
    );
    assert_eq!(ok["nonce_len"], 16);
    assert_eq!(ok["auth_len"], 0, "no user_auth: empty auth");
    assert_eq!(ok["keepalive"], true);
    assert_eq!(
        ok["pong"],
        serde_json::json!(["PONG", true, "", "server.example"])
    );
    assert_eq!(ok["pong_digest_ok"], true, "{ok}");
    assert_eq!(ok["ack"], serde_json::json!({"ack": "sec1"}));
    assert_eq!(
        n.wait_stdout_lines(1),
        vec![line(0, 0, "sec.app", r#"{"k":"v"}"#)]
    );

    let bad = handshake_client(port, "wrong");
    assert_eq!(
        bad["pong"],
        serde_json::json!(["PONG", false, "shared_key mismatch", ""])
    );
    assert_eq!(bad["pong_tail"], serde_json::json!([""]));
    assert_eq!(bad["closed"], true, "{bad}");
    n.wait_stderr("shared_key mismatch");
    assert_eq!(
        n.stdout().lines().count(),
        1,
        "nothing from the refused client"
    );
}

const SECURITY: &str =
    "  <security>\n    self_hostname server.example\n    shared_key s3cr3t\n  </security>\n";

/// Regression: a client that leaves in the middle of the handshake (a TCP probe, a load
/// balancer health check) is warned about under the same rate-limit category as a refused
/// handshake, so a "shared_key mismatch" in the next 10 s is never logged at all.
#[test]
fn a_handshake_reset_does_not_silence_a_later_shared_key_mismatch() {
    let port = harness::free_port();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n{SECURITY}</source>\n{STDOUT}"
    );
    // -v: the reset is logged at debug (a peer leaving is not a warning); wait for it so the
    // mismatch below certainly comes after it.
    let mut n = Nagare::start_with(&conf, &["-v"]);
    n.wait_stderr(&format!("local=127.0.0.1:{port}"));
    // A probe: wait for HELO, leave it partly unread and close (the kernel sends a reset).
    let mut probe = harness::connect(port);
    let mut one = [0u8; 1];
    probe.read_exact(&mut one).expect("the first byte of HELO");
    drop(probe);
    n.wait_stderr("went away");
    let bad = handshake_client(port, "wrong");
    assert_eq!(bad["closed"], true, "{bad}");
    n.wait_stderr("shared_key mismatch");
}

#[test]
fn security_user_auth_checks_the_password_digest() {
    let security = "  <security>\n    self_hostname server.example\n    shared_key s3cr3t\n    \
                    user_auth true\n    <user>\n      username alice\n      password pw1\n    \
                    </user>\n  </security>\n";
    let (mut n, port) = start_without_probe(security, STDOUT);
    let ok = handshake_user(port, "s3cr3t", "alice", "pw1");
    assert_eq!(ok["auth_len"], 16, "a 16-byte auth salt: {ok}");
    assert_eq!(
        ok["pong"],
        serde_json::json!(["PONG", true, "", "server.example"])
    );
    assert_eq!(ok["pong_digest_ok"], true, "{ok}");
    assert_eq!(ok["ack"], serde_json::json!({"ack": "sec1"}));

    let bad = handshake_user(port, "s3cr3t", "alice", "nope");
    assert_eq!(
        bad["pong"],
        serde_json::json!(["PONG", false, "username/password mismatch", ""])
    );
    assert_eq!(bad["closed"], true, "{bad}");
    assert_eq!(
        n.wait_stdout_lines(1),
        vec![line(0, 0, "sec.app", r#"{"k":"v"}"#)]
    );
}
