//! Conformance tests through the SDK test kit, with real loopback sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use nagare_core::{ChunkWriter, EventTime};
use nagare_forward::handshake::{ClientCredentials, check_pong, encode_ping, parse_helo};
use nagare_forward::{Compression, decode_ack, encode_message, encode_packed_forward};
use nagare_plugin_sdk::LogLevel;
use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::testkit::{TestInput, TestKit};

use super::nagare_plugin_module;

const WAIT: Duration = Duration::from_secs(10);

fn start(kit: &TestKit, extra: &str) -> (TestInput, SocketAddr) {
    let text = format!("bind 127.0.0.1\nport 0\n{extra}");
    let mut input = kit
        .input("forward", &text)
        .unwrap_or_else(|e| panic!("config: {e}"));
    input.start().unwrap_or_else(|e| panic!("start: {e}"));
    let addr = kit
        .host()
        .messages(LogLevel::INFO)
        .iter()
        .rev()
        .find_map(|m| m.split("local=").nth(1).and_then(|a| a.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no listening line in {:?}", kit.host().logs()));
    (input, addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
    let _ = s.set_read_timeout(Some(WAIT));
    s
}

fn chunk(n: u32) -> Vec<u8> {
    let mut w = ChunkWriter::new();
    for i in 0..n {
        let rec = Value::Map(vec![("i".into(), i.into())]);
        let _ = w.append_value(EventTime::new(1_700_000_000 + i, 0), &rec);
    }
    w.into_bytes()
}

/// Reads one msgpack value (bounded by the socket timeout).
fn read_value(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut b = [0u8; 512];
    loop {
        if let Ok(n) = nagare_core::value_len(&buf) {
            buf.truncate(n);
            return Some(buf);
        }
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
}

/// The id of the next ack on `s` (bounded by the socket timeout).
fn read_ack_id(s: &mut TcpStream) -> Option<String> {
    read_value(s)
        .and_then(|v| decode_ack(&v).ok())
        .and_then(|a| a.as_str().map(str::to_owned))
}

/// Writes to socket `i` a PackedForward request of `c` (`records` entries) tagged `t{i}`,
/// asking for ack `ack{i}` when `acks`, each from a thread of its own: a request not
/// admitted is not read, so its write may wait. The threads say whether their write went
/// through.
fn write_packed_each(
    socks: &[TcpStream],
    c: &[u8],
    records: u32,
    acks: bool,
) -> Vec<std::thread::JoinHandle<bool>> {
    socks
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.try_clone().unwrap_or_else(|e| panic!("clone: {e}"));
            let mut req = Vec::new();
            let ack = format!("ack{i}");
            encode_packed_forward(
                &mut req,
                &format!("t{i}"),
                c,
                records,
                Compression::Text,
                acks.then_some(ack.as_str()),
            );
            std::thread::spawn(move || s.write_all(&req).is_ok())
        })
        .collect()
}

fn at_eof(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    matches!(s.read(&mut b), Ok(0))
        || matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[test]
fn packed_forward_is_emitted_then_acked() {
    let kit = TestKit::new(nagare_plugin_module());
    let (mut input, addr) = start(&kit, "add_tag_prefix in\nsource_address_key src");
    let mut s = connect(addr);
    let c = chunk(3);
    let mut req = Vec::new();
    encode_packed_forward(
        &mut req,
        "app.log",
        &c,
        3,
        Compression::Text,
        Some("QUJD\n"),
    );
    s.write_all(&req).unwrap_or_default();
    let ack = read_value(&mut s).and_then(|v| decode_ack(&v).ok());
    assert_eq!(
        ack.and_then(|a| a.as_str().map(str::to_owned)).as_deref(),
        Some("QUJD\n")
    );
    let batches = input.emitter().batches();
    assert_eq!(batches.len(), 1, "emitted before the ack");
    assert_eq!(
        (batches[0].tag.as_str(), batches[0].records),
        ("in.app.log", 3)
    );
    let entries = batches[0].entries().unwrap_or_default();
    assert_eq!(entries.len(), 3);
    assert_eq!(
        entries[2].1,
        Value::Map(vec![
            ("i".into(), 2.into()),
            ("src".into(), "127.0.0.1".into())
        ])
    );

    // A Message without an ack request on the same connection, then gzip with an ack.
    let mut m = Vec::new();
    let rec = nagare_core::record::encode_record(&Value::Map(vec![("m".into(), 1.into())]))
        .unwrap_or_default();
    encode_message(&mut m, "one", EventTime::new(5, 0), &rec, None);
    let gz = Compression::Gzip.compress(&c);
    encode_packed_forward(&mut m, "gz", &gz, 3, Compression::Gzip, Some("Z\n"));
    s.write_all(&m).unwrap_or_default();
    assert!(read_value(&mut s).is_some_and(|v| decode_ack(&v).is_ok()));
    let tags: Vec<String> = input
        .emitter()
        .batches()
        .iter()
        .map(|b| b.tag.clone())
        .collect();
    assert_eq!(tags, ["in.app.log", "in.one", "in.gz"]);
    // Requests that asked for an ack went through the durable emit; the one that did not
    // was only offered (fsynced later, with its chunk).
    let durable: Vec<bool> = input
        .emitter()
        .batches()
        .iter()
        .map(|b| b.durable)
        .collect();
    assert_eq!(durable, [true, false, true]);
    input.stop().unwrap_or_default();
}

#[test]
fn json_request_gets_json_ack() {
    let kit = TestKit::new(nagare_plugin_module());
    let (mut input, addr) = start(&kit, "");
    let mut s = connect(addr);
    s.write_all(br#"["j.t", 1700000000, {"a": 1}, {"chunk": "xyz"}]"#)
        .unwrap_or_default();
    let mut got = Vec::new();
    let mut b = [0u8; 64];
    while !got.ends_with(b"}") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    assert_eq!(got, br#"{"ack":"xyz"}"#);
    assert_eq!(
        input
            .emitter()
            .batches()
            .first()
            .map(|b| b.tag.clone())
            .as_deref(),
        Some("j.t")
    );
    input.stop().unwrap_or_default();
}

#[test]
fn failed_emit_closes_without_ack_and_broken_stream_closes_only_that_connection() {
    let kit = TestKit::new(nagare_plugin_module());
    let (mut input, addr) = start(&kit, "");
    input.emitter().set_full(true);
    let mut s = connect(addr);
    let mut req = Vec::new();
    encode_packed_forward(&mut req, "t", &chunk(1), 1, Compression::Text, Some("id"));
    s.write_all(&req).unwrap_or_default();
    assert!(at_eof(&mut s), "closed without an ack");
    input.emitter().set_full(false);

    let mut bad = connect(addr);
    let mut good = connect(addr);
    bad.write_all(&[0xc1]).unwrap_or_default();
    assert!(at_eof(&mut bad));
    good.write_all(&req).unwrap_or_default();
    assert!(read_value(&mut good).is_some_and(|v| decode_ack(&v).is_ok()));
    let warns = kit.host().messages(LogLevel::WARN);
    assert!(warns.iter().any(|w| w.contains("emit failed")), "{warns:?}");
    input.stop().unwrap_or_default();
}

#[test]
fn udp_heartbeat_is_answered() {
    let kit = TestKit::new(nagare_plugin_module());
    let (mut input, addr) = start(&kit, "");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let _ = u.set_read_timeout(Some(WAIT));
    u.send_to(&[0], addr).unwrap_or_default();
    let mut b = [9u8; 4];
    let got = u
        .recv_from(&mut b)
        .map(|(n, _)| b[..n].to_vec())
        .unwrap_or_default();
    assert_eq!(got, [0]);
    input.stop().unwrap_or_default();
}

#[test]
fn security_handshake() {
    let kit = TestKit::new(nagare_plugin_module());
    let sec = "<security>\n self_hostname server\n shared_key k1\n</security>";
    let (mut input, addr) = start(&kit, sec);
    for (key, ok) in [("k1", true), ("wrong", false)] {
        let mut s = connect(addr);
        let helo = read_value(&mut s)
            .and_then(|v| parse_helo(&v).ok())
            .unwrap_or_else(|| panic!("no HELO"));
        let creds = ClientCredentials {
            hostname: "client".into(),
            shared_key: key.into(),
            ..Default::default()
        };
        let ping =
            encode_ping(&helo, &creds, "0123456789abcdef0123456789abcdef").unwrap_or_default();
        s.write_all(&ping).unwrap_or_default();
        let pong = read_value(&mut s).unwrap_or_default();
        assert_eq!(
            check_pong(&pong, &helo, &creds, "0123456789abcdef0123456789abcdef").is_ok(),
            ok,
            "key {key}"
        );
        if ok {
            let mut req = Vec::new();
            encode_packed_forward(&mut req, "sec", &chunk(1), 1, Compression::Text, Some("a"));
            s.write_all(&req).unwrap_or_default();
            assert!(read_value(&mut s).is_some_and(|v| decode_ack(&v).is_ok()));
        } else {
            assert!(at_eof(&mut s));
        }
    }
    assert_eq!(input.emitter().batches().len(), 1);
    input.stop().unwrap_or_default();
}

#[test]
fn config_table() {
    let kit = TestKit::new(nagare_plugin_module());
    let check = |text: &str, expect: Result<(), &str>| {
        let got = kit
            .input("forward", text)
            .map(drop)
            .map_err(|e| e.message.to_string());
        match (got, expect) {
            (Ok(()), Ok(())) => {}
            (Err(g), Err(want)) => assert!(g.contains(want), "{text:?}: {g}"),
            (g, w) => panic!("{text:?}: got {g:?}, want {w:?}"),
        }
    };
    check("", Ok(()));
    check(
        "port 24225\nchunk_size_limit 8m\nchunk_size_warn_limit 1m\nskip_invalid_event false",
        Ok(()),
    );
    check("port abc", Err("port"));
    check("chunk_size_limit lots", Err("chunk_size_limit"));
    check(
        "<security>\n self_hostname a\n shared_key b\n <client>\n network 10.0.0.0/8\n </client>\n</security>",
        Ok(()),
    );
    check(
        "<security>\n self_hostname a\n shared_key b\n <client>\n network nope\n </client>\n</security>",
        Err("address format is invalid"),
    );
    check(
        "<security>\n self_hostname a\n shared_key b\n <client>\n </client>\n</security>",
        Err("must be specified"),
    );
    check(
        "<security>\n shared_key b\n</security>",
        Err("self_hostname"),
    );
}

#[test]
fn exact_resend_is_acked_without_emitting_also_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("nagare-in-forward-dedupe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let conf = format!("dedupe_path {}", dir.display());
    let send = |addr: SocketAddr, tag: &str, id: &str| -> Option<String> {
        let mut s = connect(addr);
        let mut req = Vec::new();
        encode_packed_forward(&mut req, tag, &chunk(2), 2, Compression::Text, Some(id));
        s.write_all(&req).ok()?;
        read_value(&mut s)
            .and_then(|v| decode_ack(&v).ok())
            .and_then(|a| a.as_str().map(str::to_owned))
    };
    let kit = TestKit::new(nagare_plugin_module());
    let (mut input, addr) = start(&kit, &conf);
    // (tag, id, acked, emitted batches so far)
    let check = |input: &TestInput, addr, tag: &str, id: &str, batches: usize| {
        assert_eq!(
            send(addr, tag, id).as_deref(),
            Some(id),
            "{tag} {id}: acked"
        );
        assert_eq!(input.emitter().batches().len(), batches, "{tag} {id}");
    };
    check(&input, addr, "a", "id1\n", 1);
    check(&input, addr, "a", "id1\n", 1); // resend: acked, not emitted
    check(&input, addr, "b", "id1\n", 2); // same id under another tag is another request
    check(&input, addr, "a", "id2\n", 3);
    // A failed emit is not recorded: the resend is emitted.
    input.emitter().set_full(true);
    assert_eq!(send(addr, "a", "id3\n"), None, "no ack when emit fails");
    input.emitter().set_full(false);
    check(&input, addr, "a", "id3\n", 4);
    assert_eq!(kit.host().metric("resends"), Some(1.0));
    input.stop().unwrap_or_default();

    // A new instance on the same directory (a restart) still knows the accepted ids.
    let kit2 = TestKit::new(nagare_plugin_module());
    let (mut again, addr2) = start(&kit2, &conf);
    check(&again, addr2, "a", "id1\n", 0);
    check(&again, addr2, "a", "id3\n", 0);
    check(&again, addr2, "a", "id4\n", 1);
    again.stop().unwrap_or_default();
    let infos = kit2.host().messages(LogLevel::INFO);
    assert!(infos.iter().any(|m| m.contains("holds 4 ids")), "{infos:?}");
    let _ = std::fs::remove_dir_all(&dir);

    // Without dedupe_path the feature is off, and says so.
    let kit3 = TestKit::new(nagare_plugin_module());
    let (mut plain, addr3) = start(&kit3, "");
    check(&plain, addr3, "a", "x\n", 1);
    check(&plain, addr3, "a", "x\n", 2);
    plain.stop().unwrap_or_default();
    assert!(
        kit3.host()
            .messages(LogLevel::INFO)
            .iter()
            .any(|m| m.contains("dedupe is disabled"))
    );
}

#[test]
fn the_resend_window_defaults_to_the_hosts_root_dir() {
    let root = std::env::temp_dir().join(format!("nagare-in-forward-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let kit = TestKit::new(nagare_plugin_module());
    let (mut input, _addr) = start(&kit, &format!("@root_dir {}", root.display()));
    input.stop().unwrap_or_default();
    let infos = kit.host().messages(LogLevel::INFO);
    let line = infos
        .iter()
        .find(|m| m.contains("resend window"))
        .unwrap_or_else(|| panic!("dedupe should be on: {infos:?}"));
    assert!(
        line.contains(&root.join("worker0").display().to_string()),
        "{line}"
    );
    assert!(line.contains("dedupe"), "{line}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn large_requests_wait_unread_for_admission_while_the_buffer_is_full() {
    let c = chunk(6000);
    // Large enough to be captured, and two of them pass the 150 KiB limit.
    assert!(
        c.len() >= 64 * 1024 && 2 * c.len() > 150 * 1024,
        "{}",
        c.len()
    );
    // (request_memory_limit, acks asked, emits waiting at once on the full buffer)
    for (limit, acks, waiting) in [("150k", true, 1), ("150k", false, 1), ("0", true, 3)] {
        let kit = TestKit::new(nagare_plugin_module());
        let (mut input, addr) = start(&kit, &format!("request_memory_limit {limit}"));
        input.emitter().set_held(true);
        let socks: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
        let writers = write_packed_each(&socks, &c, 6000, acks);
        assert!(
            input.emitter().wait_for_waiting(waiting, WAIT),
            "limit {limit}: {} waiting",
            input.emitter().waiting()
        );
        // The others stay out while the first waits (they would be here in milliseconds).
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(input.emitter().waiting(), waiting, "limit {limit}");
        assert!(input.emitter().batches().is_empty());
        input.emitter().set_held(false);
        assert!(input.emitter().wait_for_batches(3, WAIT), "limit {limit}");
        for w in writers {
            assert!(w.join().unwrap_or(false), "limit {limit}: a write failed");
        }
        let mut tags: Vec<(String, u32)> = input
            .emitter()
            .batches()
            .iter()
            .map(|b| (b.tag.clone(), b.records))
            .collect();
        tags.sort();
        assert_eq!(
            tags,
            [
                ("t0".into(), 6000),
                ("t1".into(), 6000),
                ("t2".into(), 6000)
            ]
        );
        if acks {
            for (i, mut s) in socks.into_iter().enumerate() {
                assert_eq!(read_ack_id(&mut s), Some(format!("ack{i}")));
            }
        }
        input.stop().unwrap_or_default();
    }
}

#[test]
fn connections_held_back_by_a_full_buffer_hold_no_thread_and_no_ack() {
    let kit = TestKit::new(nagare_plugin_module());
    let (mut input, addr) = start(&kit, "");
    input.emitter().set_held(true);
    let mut record = Vec::new();
    nagare_plugin_sdk::rmpv::encode::write_value(
        &mut record,
        &Value::Map(vec![("k".into(), "v".into())]),
    )
    .unwrap_or_else(|e| panic!("encode: {e}"));
    // Half of them ask for an ack; every connection has a tag of its own.
    let mut socks: Vec<(TcpStream, Option<String>)> = (0..8)
        .map(|i| {
            let mut s = connect(addr);
            let ack = (i % 2 == 0).then(|| format!("ack{i}"));
            let mut req = Vec::new();
            encode_message(
                &mut req,
                &format!("t{i}"),
                EventTime::new(1_700_000_000, 0),
                &record,
                ack.as_deref(),
            );
            s.write_all(&req).unwrap_or_else(|e| panic!("write: {e}"));
            (s, ack)
        })
        .collect();
    assert!(
        input.emitter().wait_for_waiting(8, WAIT),
        "{} waiting",
        input.emitter().waiting()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        input.emitter().emits_waiting(),
        0,
        "a connection waiting for room must not hold a thread in emit"
    );
    assert!(input.emitter().batches().is_empty());
    for (s, ack) in &mut socks {
        if ack.is_some() {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap_or_default();
            let mut b = [0u8; 16];
            assert!(
                matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "no ack while the buffer is full"
            );
            s.set_read_timeout(Some(WAIT)).unwrap_or_default();
        }
    }
    input.emitter().set_held(false);
    assert!(input.emitter().wait_for_batches(8, WAIT));
    let mut got: Vec<(String, bool)> = input
        .emitter()
        .batches()
        .iter()
        .map(|b| (b.tag.clone(), b.durable))
        .collect();
    got.sort();
    let want: Vec<(String, bool)> = (0..8).map(|i| (format!("t{i}"), i % 2 == 0)).collect();
    assert_eq!(
        got, want,
        "acked requests through the durable emit, the others offered"
    );
    for (mut s, ack) in socks {
        if let Some(id) = ack {
            assert_eq!(read_ack_id(&mut s), Some(id));
        }
    }
    input.stop().unwrap_or_default();
}

#[test]
fn with_many_connections_smaller_requests_are_admitted_before_they_are_read() {
    // 64 KiB shared by 8 connections: reads of 8 KiB, and requests larger than that are
    // admitted first. Three ~20 KB requests fit; the other five wait unread.
    let c = chunk(1100);
    assert!((16 * 1024..32 * 1024).contains(&c.len()), "{}", c.len());
    let kit = TestKit::new(nagare_plugin_module());
    let (mut input, addr) = start(&kit, "request_memory_limit 64k");
    input.emitter().set_held(true);
    let socks: Vec<TcpStream> = (0..8).map(|_| connect(addr)).collect();
    // Every connection is open (and counted) before any request arrives.
    std::thread::sleep(Duration::from_millis(200));
    let writers = write_packed_each(&socks, &c, 1100, true);
    assert!(input.emitter().wait_for_waiting(3, WAIT));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        input.emitter().waiting(),
        3,
        "only the admitted requests were read"
    );
    input.emitter().set_held(false);
    assert!(input.emitter().wait_for_batches(8, WAIT));
    for w in writers {
        assert!(w.join().unwrap_or(false));
    }
    for (i, mut s) in socks.into_iter().enumerate() {
        assert_eq!(read_ack_id(&mut s), Some(format!("ack{i}")));
    }
    input.stop().unwrap_or_default();
}

#[test]
fn a_peer_stalled_in_the_middle_of_a_large_request_gives_its_admission_back() {
    let c = chunk(6000);
    let kit = TestKit::new(nagare_plugin_module());
    let (mut input, addr) = start(&kit, "request_memory_limit 100k");
    let mut req = Vec::new();
    encode_packed_forward(&mut req, "stalled", &c, 6000, Compression::Text, Some("s"));
    // The head and half the payload, then nothing (the connection stays open).
    let mut stalled = connect(addr);
    stalled
        .write_all(&req[..req.len() / 2])
        .unwrap_or_else(|e| panic!("write: {e}"));
    std::thread::sleep(Duration::from_millis(200));
    // Another large request: admitted once the stalled one gives its share back.
    let mut other = connect(addr);
    let mut req2 = Vec::new();
    encode_packed_forward(&mut req2, "other", &c, 6000, Compression::Text, Some("o"));
    let writer = {
        let mut s = other.try_clone().unwrap_or_else(|e| panic!("clone: {e}"));
        std::thread::spawn(move || s.write_all(&req2).is_ok())
    };
    assert_eq!(read_ack_id(&mut other).as_deref(), Some("o"));
    assert!(writer.join().unwrap_or(false));
    // The stalled request is still whole when its rest comes.
    stalled
        .write_all(&req[req.len() / 2..])
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(read_ack_id(&mut stalled).as_deref(), Some("s"));
    let tags: Vec<(String, u32)> = input
        .emitter()
        .batches()
        .iter()
        .map(|b| (b.tag.clone(), b.records))
        .collect();
    assert_eq!(tags, [("other".into(), 6000), ("stalled".into(), 6000)]);
    input.stop().unwrap_or_default();
}
