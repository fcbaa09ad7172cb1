//! Decoder tests: a table of requests per mode, then property tests (round trips, arbitrary
//! bytes, every split position).

use std::borrow::Cow;

use nagare_core::msgpack::{write_array_header, write_int, write_map_header, write_str};
use nagare_core::{ChunkWriter, EventTime};
use proptest::prelude::*;

use crate::client::{Compression, encode_forward, encode_message, encode_packed_forward};
use crate::decoder::{Batch, Decoder, DecoderConfig, Encoding, Mode, Request};
use crate::{AckId, ForwardError};

fn owned(r: Request<'_>) -> Request<'static> {
    match r {
        Request::Events(b) => Request::Events(b.into_owned()),
        Request::Heartbeat => Request::Heartbeat,
        Request::Broken { reason, size } => Request::Broken { reason, size },
        Request::Oversized { tag, size, limit } => Request::Oversized { tag, size, limit },
    }
}

/// Feeds `bytes` cut at `cuts` and collects requests until the end or the first error.
fn decode(
    cfg: &DecoderConfig,
    bytes: &[u8],
    cuts: &[usize],
) -> (Vec<Request<'static>>, Option<String>) {
    decode_with(cfg, bytes, cuts, false)
}

/// [`decode`] with the buffer compacted after every read and every request, as in_forward
/// does before a connection waits on a full buffer.
fn decode_compacting(
    cfg: &DecoderConfig,
    bytes: &[u8],
    cuts: &[usize],
) -> (Vec<Request<'static>>, Option<String>) {
    decode_with(cfg, bytes, cuts, true)
}

/// Feeds `bytes` cut at `cuts`, decoding after each piece; with `compact`, compacts the
/// buffer after every piece and every request.
fn decode_with(
    cfg: &DecoderConfig,
    bytes: &[u8],
    cuts: &[usize],
    compact: bool,
) -> (Vec<Request<'static>>, Option<String>) {
    let mut d = Decoder::new(cfg.clone());
    let mut out = Vec::new();
    let mut from = 0;
    let mut points: Vec<usize> = cuts.iter().copied().filter(|&c| c <= bytes.len()).collect();
    points.sort_unstable();
    points.push(bytes.len());
    for to in points {
        d.feed(bytes.get(from..to).unwrap_or_default());
        from = to;
        loop {
            if compact {
                d.compact();
            }
            match d.next_request() {
                Ok(Some(r)) => out.push(owned(r)),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

/// Feeds `bytes` `step` bytes at a time, appending straight to a captured payload whenever
/// [`Decoder::payload_buf`] offers one (`step` bytes whatever the payload lacks, so past its
/// end too), decoding after each piece; a capture waiting to be admitted
/// ([`DecoderConfig::admit_captures`]) is admitted before the next piece, as in_forward does.
fn decode_appending(
    cfg: &DecoderConfig,
    bytes: &[u8],
    step: usize,
) -> (Vec<Request<'static>>, Option<String>) {
    let mut d = Decoder::new(cfg.clone());
    let mut out = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        if d.capture_pending().is_some() {
            assert!(d.admit_capture(), "a pending capture starts when admitted");
        }
        match d.payload_buf() {
            Some((payload, _lacking)) => payload.extend_from_slice(piece),
            None => d.feed(piece),
        }
        loop {
            match d.next_request() {
                Ok(Some(r)) => out.push(owned(r)),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

/// What a stream means, whatever the batching: events in order with their tag and mode,
/// invalid counts, acks where they fall, and the other requests.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Event(String, Mode, Vec<u8>),
    Invalid(String, u32),
    Ack(AckId),
    Other(Request<'static>),
}

fn summary(reqs: &[Request<'static>]) -> Vec<Item> {
    let mut out = Vec::new();
    for r in reqs {
        let Request::Events(b) = r else {
            out.push(Item::Other(r.clone()));
            continue;
        };
        let mut rest = &b.chunk[..];
        let mut n = 0;
        while let Ok(len) = nagare_core::value_len(rest) {
            out.push(Item::Event(b.tag.clone(), b.mode, rest[..len].to_vec()));
            rest = &rest[len..];
            n += 1;
        }
        assert!(rest.is_empty(), "chunk of {b:?} is not whole entries");
        assert_eq!(n, b.records, "records of {b:?}");
        if b.invalid > 0 {
            out.push(Item::Invalid(b.tag.clone(), b.invalid));
        }
        if let Some(a) = &b.chunk_option {
            out.push(Item::Ack(a.clone()));
        }
    }
    out
}

/// The events of a canonical chunk as [`Item`]s.
fn events(tag: &str, mode: Mode, chunk: &[u8]) -> Vec<Item> {
    nagare_core::ChunkReader::new(chunk)
        .filter_map(Result::ok)
        .map(|e| Item::Event(tag.into(), mode, e.raw.to_vec()))
        .collect()
}

fn rec(k: &str, v: i64) -> Vec<u8> {
    let mut out = Vec::new();
    write_map_header(&mut out, 1);
    write_str(&mut out, k.as_bytes());
    write_int(&mut out, v);
    out
}

fn chunk_of(times: &[u32]) -> Vec<u8> {
    let mut w = ChunkWriter::new();
    for (i, &t) in times.iter().enumerate() {
        let _ = w.append_raw_unchecked(EventTime::new(t, 0), &rec("i", i as i64));
    }
    w.into_bytes()
}

fn batch(mode: Mode, tag: &str, chunk: Vec<u8>, records: u32) -> Batch<'static> {
    Batch {
        mode,
        tag: tag.into(),
        chunk: Cow::Owned(chunk),
        records,
        invalid: 0,
        first_invalid: None,
        chunk_option: None,
        size_option: None,
        fluent_signal: None,
        request_size: 0,
        over_warn_limit: false,
        encoding: Encoding::Msgpack,
        requests: 1,
    }
}

/// Compares everything but `request_size` and `first_invalid`.
fn check(cfg: &DecoderConfig, input: &[u8], expect: &[Result<Batch<'static>, &str>]) {
    let (got, err) = decode(cfg, input, &[]);
    let mut got_iter = got.into_iter();
    for want in expect {
        match want {
            Ok(want) => match got_iter.next() {
                Some(Request::Events(b)) => {
                    let b = Batch {
                        request_size: 0,
                        first_invalid: None,
                        ..b
                    };
                    assert_eq!(&b, want, "input {input:02x?}");
                }
                other => panic!("want {want:?}, got {other:?}"),
            },
            Err("heartbeat") => assert_eq!(got_iter.next(), Some(Request::Heartbeat)),
            Err("broken") => assert!(matches!(got_iter.next(), Some(Request::Broken { .. }))),
            Err("oversized") => assert!(matches!(got_iter.next(), Some(Request::Oversized { .. }))),
            Err(msg) => {
                assert!(got_iter.next().is_none());
                let e = err.clone().unwrap_or_default();
                assert!(e.contains(msg), "error {e:?} should contain {msg:?}");
            }
        }
    }
    assert_eq!(got_iter.next(), None, "unexpected extra requests");
}

fn packed(tag: &str, entries_head: &[u8], entries: &[u8], opts: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    write_array_header(&mut out, if opts.is_empty() { 2 } else { 3 });
    write_str(&mut out, tag.as_bytes());
    out.extend_from_slice(entries_head);
    out.extend_from_slice(entries);
    if !opts.is_empty() {
        write_map_header(&mut out, opts.len() as u32);
        for (k, v) in opts {
            write_str(&mut out, k.as_bytes());
            write_str(&mut out, v.as_bytes());
        }
    }
    out
}

#[test]
fn modes_table() {
    let cfg = DecoderConfig::default();
    let c2 = chunk_of(&[100, 200]);
    let len = (c2.len() as u32).to_be_bytes();

    // Message, spec example shape, with and without an ack request.
    let mut m = Vec::new();
    encode_message(
        &mut m,
        "tag.name",
        EventTime::new(1_441_588_984, 0),
        &rec("message", 1),
        None,
    );
    let mut want = ChunkWriter::new();
    let _ = want.append_raw_unchecked(EventTime::new(1_441_588_984, 0), &rec("message", 1));
    check(
        &cfg,
        &m,
        &[Ok(batch(
            Mode::Message,
            "tag.name",
            want.as_bytes().to_vec(),
            1,
        ))],
    );
    let mut m = Vec::new();
    encode_message(
        &mut m,
        "t",
        EventTime::new(5, 0),
        &rec("a", 1),
        Some("id\n"),
    );
    let (got, _) = decode(&cfg, &m, &[]);
    assert!(
        matches!(&got[..], [Request::Events(b)] if b.chunk_option == Some(AckId(b"id\n".to_vec())))
    );

    // Forward with integer times: normalized.
    let mut f = vec![0x92, 0xa1, b't', 0x92];
    for (t, i) in [(100u8, 0i64), (200, 1)] {
        f.extend_from_slice(&[0x92, 0xcc, t]);
        f.extend_from_slice(&rec("i", i));
    }
    check(&cfg, &f, &[Ok(batch(Mode::Forward, "t", c2.clone(), 2))]);

    // PackedForward as str32 (out_forward), bin8, str8; borrowed when canonical.
    for head in [
        [&[0xdb][..], &len[..]].concat(),
        vec![0xc4, c2.len() as u8],
        vec![0xd9, c2.len() as u8],
    ] {
        let p = packed("t", &head, &c2, &[]);
        check(
            &cfg,
            &p,
            &[Ok(batch(Mode::PackedForward, "t", c2.clone(), 2))],
        );
        let mut d = Decoder::new(cfg.clone());
        d.feed(&p);
        assert!(matches!(
            d.next_request(),
            Ok(Some(Request::Events(Batch {
                chunk: Cow::Borrowed(_),
                ..
            })))
        ));
    }

    // Compressed: gzip with two members, zstd, "text" is plain.
    let gz = [
        crate::compress::gzip(&c2[..c2.len() / 2]),
        crate::compress::gzip(&c2[c2.len() / 2..]),
    ]
    .concat();
    let p = packed(
        "t",
        &[&[0xc6][..], &(gz.len() as u32).to_be_bytes()].concat(),
        &gz,
        &[("compressed", "gzip")],
    );
    check(
        &cfg,
        &p,
        &[Ok(batch(Mode::CompressedPackedForward, "t", c2.clone(), 2))],
    );
    let zs = crate::compress::zstd_compress(&c2);
    let p = packed(
        "t",
        &[&[0xc6][..], &(zs.len() as u32).to_be_bytes()].concat(),
        &zs,
        &[("compressed", "zstd")],
    );
    check(
        &cfg,
        &p,
        &[Ok(batch(Mode::CompressedPackedForward, "t", c2.clone(), 2))],
    );
    let p = packed(
        "t",
        &[&[0xdb][..], &len[..]].concat(),
        &c2,
        &[("compressed", "text")],
    );
    check(
        &cfg,
        &p,
        &[Ok(batch(Mode::PackedForward, "t", c2.clone(), 2))],
    );

    // Heartbeat, non-array (ignored, stream goes on), broken msgpack (fatal).
    let mut s = vec![0xc0, 0x01, 0xa1, b'x'];
    s.extend_from_slice(&packed("t", &[&[0xdb][..], &len[..]].concat(), &c2, &[]));
    s.push(0xc1);
    check(
        &cfg,
        &s,
        &[
            Err("heartbeat"),
            Err("broken"),
            Err("broken"),
            Ok(batch(Mode::PackedForward, "t", c2.clone(), 2)),
            Err("broken msgpack"),
        ],
    );

    // v1.5 metadata time inside PackedForward.
    let mut meta = vec![0x92, 0x92];
    meta.extend_from_slice(&EventTime::new(100, 0).encode());
    meta.extend_from_slice(&[0x81, 0xa1, b'k', 0x01]);
    meta.extend_from_slice(&rec("i", 0));
    let p = packed("t", &[0xc4, meta.len() as u8], &meta, &[]);
    check(
        &cfg,
        &p,
        &[Ok(batch(Mode::PackedForward, "t", chunk_of(&[100]), 1))],
    );
}

#[test]
fn options_tags_and_invalid_events() {
    let c1 = chunk_of(&[100]);
    let mut cfg = DecoderConfig {
        tag: Some("over".into()),
        add_tag_prefix: Some("pre".into()),
        ..DecoderConfig::default()
    };
    let mut p = Vec::new();
    encode_packed_forward(&mut p, "orig", &c1, 1, Compression::Text, Some("ack1\n"));
    let mut want = batch(Mode::PackedForward, "pre.over", c1.clone(), 1);
    want.chunk_option = Some(AckId(b"ack1\n".to_vec()));
    want.size_option = Some(1);
    check(&cfg, &p, &[Ok(want)]);

    // Invalid events: dropped and counted; a Message with an invalid event is still acked.
    cfg = DecoderConfig::default();
    let mut f = vec![0x93, 0xa1, b't', 0x92, 0x92, 0xa1, b'x', 0x80];
    f.extend_from_slice(&c1);
    f.extend_from_slice(&[0x81, 0xa5]);
    f.extend_from_slice(b"chunk");
    f.extend_from_slice(&[0xa1, b'z']);
    let mut want = batch(Mode::Forward, "t", c1.clone(), 1);
    want.invalid = 1;
    want.chunk_option = Some(AckId(b"z".to_vec()));
    check(&cfg, &f, &[Ok(want)]);
    let m = [
        0x94, 0xa1, b't', 0x01, 0x01, 0x81, 0xa5, b'c', b'h', b'u', b'n', b'k', 0xa1, b'z',
    ];
    let mut want = batch(Mode::Message, "t", vec![], 0);
    want.invalid = 1;
    want.chunk_option = Some(AckId(b"z".to_vec()));
    check(&cfg, &m, &[Ok(want)]);
    // A non-string tag makes every event invalid.
    let mut p = vec![0x92, 0x01, 0xc4, c1.len() as u8];
    p.extend_from_slice(&c1);
    let mut want = batch(Mode::PackedForward, "", vec![], 0);
    want.invalid = 1;
    check(&cfg, &p, &[Ok(want)]);
    // skip_invalid_event false keeps [x, y] entries as sent.
    cfg.skip_invalid_event = false;
    let (got, _) = decode(&cfg, &f, &[]);
    assert!(matches!(&got[..], [Request::Events(b)] if b.records == 2 && b.invalid == 1));
}

#[test]
fn limits() {
    let c = chunk_of(&[1; 50]);
    let mut big = Vec::new();
    encode_packed_forward(&mut big, "big.tag", &c, 50, Compression::Text, Some("x"));
    let mut small = Vec::new();
    encode_message(
        &mut small,
        "small",
        EventTime::new(9, 0),
        &rec("a", 1),
        None,
    );
    let stream = [big.clone(), small.clone(), big.clone()].concat();
    let cfg = DecoderConfig {
        chunk_size_limit: Some(400),
        chunk_size_warn_limit: Some(20),
        ..DecoderConfig::default()
    };
    for cuts in [
        vec![],
        vec![3],
        vec![10, 20, 30, 300, 500, 700, 900],
        (0..stream.len()).step_by(50).collect(),
    ] {
        let (got, err) = decode(&cfg, &stream, &cuts);
        assert_eq!(err, None);
        assert_eq!(got.len(), 3, "cuts {cuts:?}");
        let over = Request::Oversized {
            tag: Some("big.tag".into()),
            size: big.len() as u64,
            limit: 400,
        };
        assert_eq!(got[0], over);
        assert!(matches!(&got[1], Request::Events(b) if b.tag == "small" && b.over_warn_limit));
        assert_eq!(got[2], over);
    }
    // Oversized values are not buffered.
    let mut d = Decoder::new(cfg.clone());
    d.feed(&big[..300]);
    assert_eq!(d.next_request().ok(), Some(None));
    d.feed(&big[300..600]);
    assert_eq!(d.next_request().ok(), Some(None));
    assert!(d.buffered() < 50, "buffered {}", d.buffered());

    // The hard bound is fatal, before the value is complete.
    let hard = DecoderConfig {
        max_request_size: 400,
        ..DecoderConfig::default()
    };
    let (_, err) = decode(&hard, &big[..100], &[]);
    assert!(err.is_some_and(|e| e.contains("exceeds the hard limit")));

    // Decompression limit.
    let gz = crate::compress::gzip(&c);
    let mut p = Vec::new();
    encode_packed_forward(&mut p, "t", &gz, 50, Compression::Gzip, None);
    let tight = DecoderConfig {
        decompression_size_limit: 100,
        ..DecoderConfig::default()
    };
    let (_, err) = decode(&tight, &p, &[]);
    assert!(err.is_some_and(|e| e.contains("decompression_size_limit")));

    // Nesting.
    let mut deep = vec![0x92, 0xa1, b't'];
    deep.extend(std::iter::repeat_n(0x91, 200));
    deep.push(0x01);
    let (_, err) = decode(&DecoderConfig::default(), &deep, &[]);
    assert!(err.is_some_and(|e| e.contains("nesting")));
}

#[test]
fn json_requests() {
    let cfg = DecoderConfig::default();
    let input = br#"["tag.a", 1441588984, {"message":"bar","n":[1,2.5]}, {"chunk":"abc=="}]
        ["tag.b", [[1441588985, {"x":1}], [0, {"y":2}], ["bad", {}]]]"#;
    let (got, err) = decode(&cfg, input, &[7, 40, 41, 100]);
    assert_eq!(err, None);
    assert_eq!(got.len(), 2);
    let Request::Events(a) = &got[0] else {
        panic!("{:?}", got[0])
    };
    assert_eq!(
        (a.tag.as_str(), a.records, a.encoding),
        ("tag.a", 1, Encoding::Json)
    );
    assert_eq!(a.chunk_option, Some(AckId(b"abc==".to_vec())));
    assert_eq!(
        crate::encode_ack(
            a.chunk_option.as_ref().unwrap_or(&AckId(vec![])),
            a.encoding
        ),
        br#"{"ack":"abc=="}"#.to_vec()
    );
    let Request::Events(b) = &got[1] else {
        panic!("{:?}", got[1])
    };
    assert_eq!(
        (b.tag.as_str(), b.records, b.invalid, b.mode),
        ("tag.b", 2, 1, Mode::Forward)
    );
    let times: Vec<u32> = nagare_core::ChunkReader::new(&b.chunk)
        .filter_map(Result::ok)
        .map(|e| e.time.sec)
        .collect();
    assert_eq!(times[0], 1_441_588_985);
    assert!(times[1] > 1_600_000_000, "time 0 becomes now");

    // The first request of a connection, fed whole, is JSON too.
    let (got, _) = decode(&cfg, br#"["t", 1, {"a": 1}]"#, &[]);
    assert!(
        matches!(&got[..], [Request::Events(b)] if b.encoding == Encoding::Json && b.records == 1)
    );
    let (_, err) = decode(&cfg, b"[\"t\", 1, {]", &[]);
    assert!(err.is_some_and(|e| e.contains("broken JSON")));
    let strict = DecoderConfig {
        allow_json: false,
        ..cfg
    };
    let (_, err) = decode(&strict, b"[\"t\"]", &[]);
    assert!(err.is_some_and(|e| e.contains("not allowed")));
}

/// Feeds `input` cut at `cuts`; each batch must be (tag, records, requests, ack).
fn check_batches(
    cfg: &DecoderConfig,
    input: &[u8],
    cuts: &[usize],
    expect: &[(&str, u32, u32, Option<&str>)],
) {
    let (got, err) = decode(cfg, input, cuts);
    assert_eq!(err, None);
    let got: Vec<_> = got
        .iter()
        .map(|r| match r {
            Request::Events(b) => (
                b.tag.as_str(),
                b.records,
                b.requests,
                b.chunk_option
                    .as_ref()
                    .map(|a| String::from_utf8_lossy(&a.0).into_owned()),
            ),
            other => panic!("not events: {other:?}"),
        })
        .collect();
    let want: Vec<_> = expect
        .iter()
        .map(|&(t, r, q, a)| (t, r, q, a.map(str::to_owned)))
        .collect();
    assert_eq!(got, want, "cuts {cuts:?}");
}

fn messages(spec: &[(&str, u32, Option<&str>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &(tag, sec, ack)) in spec.iter().enumerate() {
        encode_message(
            &mut out,
            tag,
            EventTime::new(sec, 0),
            &rec("i", i as i64),
            ack,
        );
    }
    out
}

#[test]
fn message_coalescing() {
    let cfg = DecoderConfig::default();
    // An ack ends the batch, which then carries it.
    let s = messages(&[
        ("t", 5, None),
        ("t", 5, None),
        ("t", 6, None),
        ("t", 6, Some("x")),
        ("t", 7, None),
    ]);
    check_batches(&cfg, &s, &[], &[("t", 4, 4, Some("x")), ("t", 1, 1, None)]);
    let (got, _) = decode(&cfg, &s, &[]);
    let Some(Request::Events(b)) = got.first() else {
        panic!("{got:?}")
    };
    let last = messages(&[("t", 7, None)]).len();
    assert_eq!(b.request_size, (s.len() - last) as u64);
    let times: Vec<u32> = nagare_core::ChunkReader::new(&b.chunk)
        .filter_map(Result::ok)
        .map(|e| e.time.sec)
        .collect();
    assert_eq!(times, [5, 5, 6, 6]);
    // A different tag starts a new batch.
    let s = messages(&[
        ("a", 5, None),
        ("a", 5, None),
        ("b", 5, None),
        ("a", 5, None),
    ]);
    check_batches(
        &cfg,
        &s,
        &[],
        &[("a", 2, 2, None), ("b", 1, 1, None), ("a", 1, 1, None)],
    );
    // Only what is buffered: an incomplete request comes next, on its own.
    let three = messages(&[("t", 5, None), ("t", 5, None), ("t", 5, None)]);
    check_batches(
        &cfg,
        &three,
        &[three.len() - 3],
        &[("t", 2, 2, None), ("t", 1, 1, None)],
    );
    // Time 0 (becomes now) is decoded on its own, and may start a batch.
    let s = messages(&[("t", 5, None), ("t", 0, None), ("t", 5, None)]);
    check_batches(&cfg, &s, &[], &[("t", 1, 1, None), ("t", 2, 2, None)]);
    // Turned off: one batch per request.
    let off = DecoderConfig {
        coalesce_messages: false,
        ..DecoderConfig::default()
    };
    check_batches(&off, &three, &[], &[("t", 1, 1, None); 3]);
    // Acked requests alone, when asked.
    let alone = DecoderConfig {
        coalesce_acked: false,
        ..DecoderConfig::default()
    };
    let s = messages(&[
        ("t", 5, None),
        ("t", 5, None),
        ("t", 5, Some("x")),
        ("t", 5, None),
    ]);
    check_batches(
        &alone,
        &s,
        &[],
        &[("t", 2, 2, None), ("t", 1, 1, Some("x")), ("t", 1, 1, None)],
    );
    // JSON requests are not coalesced.
    let json = br#"["t", 5, {"a": 1}] ["t", 5, {"a": 2}]"#;
    let (got, _) = decode(&cfg, json, &[]);
    assert_eq!(got.len(), 2);
    // Other modes stop a run of messages.
    let mut s = messages(&[("t", 5, None), ("t", 5, None)]);
    encode_forward(&mut s, "t", &chunk_of(&[9]), 1, None);
    s.extend_from_slice(&messages(&[("t", 5, None)]));
    check_batches(
        &cfg,
        &s,
        &[],
        &[("t", 2, 2, None), ("t", 1, 1, None), ("t", 1, 1, None)],
    );
    // Nesting the framing refuses is not coalesced either: the error comes in its turn.
    let mut s = messages(&[("t", 5, None)]);
    s.extend_from_slice(&[0x93, 0xa1, b't', 0x05, 0x81, 0xa1, b'k', 0x81, 0x01, 0x02]);
    let shallow = DecoderConfig {
        max_depth: 2,
        ..DecoderConfig::default()
    };
    let (got, err) = decode(&shallow, &s, &[]);
    assert_eq!(got.len(), 1);
    assert!(
        err.as_deref().is_some_and(|e| e.contains("nesting")),
        "{err:?}"
    );
    let (got, err) = decode(&DecoderConfig::default(), &s, &[]);
    assert!(matches!(&got[..], [Request::Events(b)] if b.records == 2) && err.is_none());
    // Different options stop it too (the size option is per batch).
    let mut s = messages(&[("t", 5, None)]);
    s.extend_from_slice(&[0x94, 0xa1, b't', 0x05, 0x80, 0x81, 0xa4]);
    s.extend_from_slice(b"size");
    s.push(0x01);
    check_batches(&cfg, &s, &[], &[("t", 1, 1, None), ("t", 1, 1, None)]);
}

#[test]
fn message_coalescing_limits() {
    // At most COALESCE_MAX_EVENTS events...
    let spec = vec![("t", 5, None); 5000];
    let s = messages(&spec);
    check_batches(
        &DecoderConfig::default(),
        &s,
        &[],
        &[("t", 4096, 4096, None), ("t", 904, 904, None)],
    );
    // ... and COALESCE_MAX_BYTES of chunk.
    let big = rec(&"k".repeat(100_000), 1);
    let mut s = Vec::new();
    for _ in 0..25 {
        encode_message(&mut s, "t", EventTime::new(5, 0), &big, None);
    }
    let (got, err) = decode(&DecoderConfig::default(), &s, &[]);
    assert_eq!(err, None);
    let sizes: Vec<(u32, bool)> = got
        .iter()
        .filter_map(|r| match r {
            Request::Events(b) => Some((
                b.records,
                b.chunk.len() <= crate::decoder::COALESCE_MAX_BYTES,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [(10, true), (10, true), (5, true)]);
    // A request over chunk_size_warn_limit is not coalesced (its warning names its size);
    // one over chunk_size_limit is dropped as before.
    let small = messages(&[("t", 5, None)]);
    let mut large = Vec::new();
    encode_message(
        &mut large,
        "t",
        EventTime::new(5, 0),
        &rec(&"k".repeat(200), 1),
        None,
    );
    let mut huge = Vec::new();
    encode_message(
        &mut huge,
        "t",
        EventTime::new(5, 0),
        &rec(&"k".repeat(900), 1),
        None,
    );
    let s = [
        small.clone(),
        small.clone(),
        large,
        small.clone(),
        huge,
        small,
    ]
    .concat();
    let cfg = DecoderConfig {
        chunk_size_warn_limit: Some(100),
        chunk_size_limit: Some(500),
        ..DecoderConfig::default()
    };
    let (got, err) = decode(&cfg, &s, &[]);
    assert_eq!(err, None);
    let shape: Vec<String> = got
        .iter()
        .map(|r| match r {
            Request::Events(b) => {
                format!("{}{}", b.records, if b.over_warn_limit { "w" } else { "" })
            }
            Request::Oversized { .. } => "oversized".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(shape, ["2", "1w", "1", "oversized", "1"]);
}

#[test]
fn forward_entries_are_borrowed_when_canonical() {
    let c = chunk_of(&[100, 200, 300]);
    let mut f = Vec::new();
    encode_forward(&mut f, "t", &c, 3, Some("id"));
    let mut d = Decoder::new(DecoderConfig::default());
    // In pieces, the entries are still checked once and taken as they are.
    d.feed(&f[..f.len() / 2]);
    assert_eq!(d.next_request().ok(), Some(None));
    d.feed(&f[f.len() / 2..]);
    match d.next_request() {
        Ok(Some(Request::Events(b))) => {
            assert!(matches!(b.chunk, Cow::Borrowed(_)));
            assert_eq!((&*b.chunk, b.records, b.mode), (&c[..], 3, Mode::Forward));
            assert_eq!(b.chunk_option, Some(AckId(b"id".to_vec())));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_go_straight_into_the_buffer() {
    let mut stream = Vec::new();
    for i in 0..50u32 {
        let c = chunk_of(&vec![i + 1; 300]);
        encode_packed_forward(&mut stream, "t", &c, 300, Compression::Text, None);
    }
    let mut d = Decoder::new(DecoderConfig::default());
    let (mut records, mut rest) = (0, &stream[..]);
    while !rest.is_empty() {
        let spare = d.read_buf(1000);
        assert!(spare.len() >= 1000);
        let n = spare.len().min(rest.len()).min(7000);
        spare[..n].copy_from_slice(&rest[..n]);
        d.commit(n);
        rest = &rest[n..];
        while let Ok(Some(Request::Events(b))) = d.next_request() {
            records += b.records;
        }
    }
    assert_eq!((records, d.buffered()), (50 * 300, 0));
    // The buffer stays a small multiple of a request (about 7 KiB here).
    assert!(d.read_buf(0).len() <= 64 * 1024 + 4 * stream.len() / 50);
}

#[test]
fn a_buffer_holds_in_memory_what_was_read_not_what_it_grew_to() {
    // One PackedForward request of about 150 KB, read 64 KiB at a time as in_forward does.
    let c = chunk_of(&vec![7; 9000]);
    let mut stream = Vec::new();
    encode_packed_forward(&mut stream, "t", &c, 9000, Compression::Text, None);
    assert!(stream.len() > 140_000, "{}", stream.len());
    // The decoder's own buffer, not a payload read into a buffer of its own.
    let mut d = Decoder::new(DecoderConfig {
        capture_min: usize::MAX,
        ..DecoderConfig::default()
    });
    let (mut fed, mut got) = (0, 0);
    while fed < stream.len() {
        let spare = d.read_buf(64 * 1024);
        let n = spare.len().min(stream.len() - fed).min(64 * 1024);
        spare[..n].copy_from_slice(&stream[fed..fed + n]);
        d.commit(n);
        fed += n;
        // Written storage never runs more than one read ahead of the bytes received.
        let (written, capacity) = d.memory();
        assert!(
            written <= fed + 64 * 1024,
            "{written} written for {fed} received"
        );
        assert!(capacity >= written);
        while let Ok(Some(Request::Events(b))) = d.next_request() {
            got += b.records;
        }
    }
    assert_eq!(got, 9000);
}

/// Feeds `stream` as in_forward reads a connection (into `read_buf`, `step` bytes at most)
/// and collects the requests.
fn read_like_a_connection(d: &mut Decoder, stream: &[u8], step: usize) -> Vec<Request<'static>> {
    let mut fed = 0;
    let mut out = Vec::new();
    while fed < stream.len() {
        let spare = d.read_buf(step);
        let n = spare.len().min(stream.len() - fed).min(step);
        spare[..n].copy_from_slice(&stream[fed..fed + n]);
        d.commit(n);
        fed += n;
        while let Ok(Some(r)) = d.next_request() {
            out.push(r.into_owned());
        }
    }
    out
}

/// A PackedForward request large enough to be captured (9000 entries, tag "big", ack "a1"):
/// (its chunk, its bytes).
fn big_request() -> (Vec<u8>, Vec<u8>) {
    let big = chunk_of(&vec![7; 9000]);
    let mut stream = Vec::new();
    encode_packed_forward(
        &mut stream,
        "big",
        &big,
        9000,
        Compression::Text,
        Some("a1"),
    );
    (big, stream)
}

#[test]
fn a_large_packed_forward_payload_is_read_into_its_own_buffer_and_owned_by_the_batch() {
    let (big, mut stream) = big_request();
    let small = chunk_of(&[1, 2]);
    encode_packed_forward(&mut stream, "small", &small, 2, Compression::Text, None);
    encode_packed_forward(&mut stream, "big2", &big, 9000, Compression::Text, None);
    let mut d = Decoder::new(DecoderConfig::default());
    let mut fed = 0;
    let mut got = Vec::new();
    let mut captured = false;
    while fed < stream.len() {
        let spare = d.read_buf(16 * 1024);
        let n = spare.len().min(stream.len() - fed).min(16 * 1024);
        spare[..n].copy_from_slice(&stream[fed..fed + n]);
        d.commit(n);
        fed += n;
        while let Ok(Some(r)) = d.next_request() {
            if let Request::Events(b) = &r {
                // Owned as read: into_owned copies nothing.
                assert_eq!(
                    matches!(b.chunk, Cow::Owned(_)),
                    b.tag != "small",
                    "{}",
                    b.tag
                );
            }
            got.push(r.into_owned());
        }
        // The payload goes to its own buffer; the decoder's stays one read large.
        if let Some((handed, capacity)) = d.capture_memory() {
            captured = true;
            assert!(
                capacity >= big.len() && handed <= big.len(),
                "{handed} {capacity}"
            );
        }
        assert!(d.memory().1 <= 64 * 1024, "{:?}", d.memory());
    }
    assert!(captured);
    let want = |tag: &str, chunk: &[u8], records, ack: Option<&[u8]>| {
        (
            tag.to_owned(),
            chunk.to_vec(),
            records,
            ack.map(<[u8]>::to_vec),
        )
    };
    let got: Vec<_> = got
        .iter()
        .map(|r| match r {
            Request::Events(b) => (
                b.tag.clone(),
                b.chunk.to_vec(),
                b.records,
                b.chunk_option.as_ref().map(|a| a.0.clone()),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            want("big", &big, 9000, Some(b"a1")),
            want("small", &small, 2, None),
            want("big2", &big, 9000, None),
        ]
    );
    // The same, read the same way, through the decoder's own buffer.
    let mut plain = Decoder::new(DecoderConfig {
        capture_min: usize::MAX,
        ..DecoderConfig::default()
    });
    let mut d = Decoder::new(DecoderConfig::default());
    assert_eq!(
        read_like_a_connection(&mut d, &stream, 64 * 1024),
        read_like_a_connection(&mut plain, &stream, 64 * 1024)
    );
}

#[test]
fn after_a_captured_payload_the_next_payload_is_read_where_it_goes_not_copied() {
    let big = chunk_of(&vec![7; 9000]);
    let mut stream = Vec::new();
    for ack in ["a1", "a2", "a3"] {
        encode_packed_forward(&mut stream, "big", &big, 9000, Compression::Text, Some(ack));
    }
    // Reading payloads with payload_buf (and past their end), or with read_buf only.
    for direct in [true, false] {
        let mut d = Decoder::new(DecoderConfig::default());
        let (mut fed, mut acks) = (0, Vec::new());
        // The payload bytes each capture started with (copied from the read buffer).
        let mut copied = Vec::new();
        while fed < stream.len() {
            let n = match d.payload_buf().filter(|_| direct) {
                Some((payload, room)) => {
                    let n = room.min(stream.len() - fed);
                    payload.extend_from_slice(&stream[fed..fed + n]);
                    n
                }
                None => {
                    let spare = d.read_buf(64 * 1024);
                    let n = spare.len().min(stream.len() - fed);
                    spare[..n].copy_from_slice(&stream[fed..fed + n]);
                    d.commit(n);
                    n
                }
            };
            fed += n;
            while let Ok(Some(r)) = d.next_request() {
                if let Request::Events(b) = r {
                    assert_eq!(b.records, 9000);
                    acks.extend(b.chunk_option);
                }
            }
            // A capture of request `acks.len()` that just started.
            if let Some((handed, _)) = d.capture_memory()
                && copied.len() == acks.len()
            {
                copied.push(handed);
            }
        }
        assert_eq!(acks.len(), 3, "direct {direct}");
        assert_eq!(copied.len(), 3, "direct {direct}: {copied:?}");
        // Each capture starts with only what a short read brought (the connection's first
        // read is short too), and the decoder's own buffer never grows to a whole read.
        assert!(
            copied.iter().all(|&c| c < 1024),
            "direct {direct}: {copied:?}"
        );
        assert!(d.memory().1 < 4 * 1024, "direct {direct}: {:?}", d.memory());
    }
}

#[test]
fn a_declared_payload_size_is_not_reserved_before_it_arrives() {
    // [tag, bin32 of 400 MB...: the header alone.
    let mut stream = vec![0x92, 0xa1, b't', 0xc6];
    stream.extend_from_slice(&400_000_000u32.to_be_bytes());
    stream.extend_from_slice(&[0x92; 100]);
    let mut d = Decoder::new(DecoderConfig::default());
    d.feed(&stream);
    assert!(matches!(d.next_request(), Ok(None)));
    let (handed, capacity) = d.capture_memory().expect("captured");
    assert_eq!(handed, 100);
    assert!(capacity <= 16 * 1024 * 1024, "{capacity}");
    assert!(d.read_buf(64 * 1024).len() <= 1024 * 1024);
    assert_eq!(d.buffered(), 108);
}

#[test]
fn a_capture_that_waits_for_admission_reserves_nothing_until_admitted() {
    let (big, stream) = big_request();
    let cfg = DecoderConfig {
        admit_captures: true,
        ..DecoderConfig::default()
    };
    assert!(big.len() >= cfg.capture_min);
    let mut d = Decoder::new(cfg);
    // The head and a little of the payload.
    d.feed(&stream[..1000]);
    assert!(matches!(d.next_request(), Ok(None)));
    // Array header, "big", the payload's bin/str header.
    let head = 1 + 4 + if big.len() > 0xffff { 5 } else { 3 };
    assert_eq!(d.capture_pending(), Some(head + big.len()));
    assert!(d.capture_memory().is_none(), "reserved before admission");
    // Still pending whatever decoding is tried meanwhile.
    assert!(matches!(d.next_request(), Ok(None)));
    assert!(d.capture_memory().is_none());
    assert!(d.admit_capture());
    assert_eq!(d.capture_pending(), None);
    let (handed, capacity) = d.capture_memory().expect("captured");
    assert_eq!(handed, 1000 - head);
    assert!(capacity >= big.len(), "{capacity}");
    let (payload, lacking) = d.payload_buf().expect("reads go to the payload");
    payload.extend_from_slice(&stream[1000..]);
    assert!(lacking >= big.len() - (1000 - head));
    let Ok(Some(Request::Events(b))) = d.next_request() else {
        panic!("the request")
    };
    assert_eq!((b.records, &b.chunk[..]), (9000, &big[..]));
    assert_eq!(b.chunk_option, Some(AckId(b"a1".to_vec())));
    // Small requests never wait.
    let mut small = Vec::new();
    encode_packed_forward(&mut small, "s", &chunk_of(&[1]), 1, Compression::Text, None);
    d.feed(&small[..small.len() - 1]);
    assert!(matches!(d.next_request(), Ok(None)));
    assert_eq!(d.capture_pending(), None);
}

#[test]
fn errors_after_a_captured_request_name_their_stream_offset() {
    let c = chunk_of(&[1, 2, 3]);
    let mut stream = Vec::new();
    encode_packed_forward(&mut stream, "t", &c, 3, Compression::Text, Some("x"));
    let bad = stream.len();
    stream.push(0xc1);
    let cfg = DecoderConfig {
        capture_min: 1,
        ..DecoderConfig::default()
    };
    for cut in 1..bad {
        let (reqs, err) = decode(&cfg, &stream, &[cut]);
        assert_eq!(reqs.len(), 1, "cut at {cut}");
        let err = err.expect("an error");
        assert!(
            err.contains(&format!("stream byte {bad}")),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn a_captured_request_whose_options_run_over_the_limit_is_dropped_as_without_capture() {
    let c = chunk_of(&[1, 2, 3]);
    let mut stream = Vec::new();
    // Options that take the request past chunk_size_limit: a long ack id, and a map that
    // declares more entries than ever come (its size is known to be too large early).
    encode_packed_forward(
        &mut stream,
        "a",
        &c,
        3,
        Compression::Text,
        Some(&"x".repeat(400)),
    );
    encode_packed_forward(&mut stream, "b", &c, 3, Compression::Text, Some("ok"));
    stream.push(0x93);
    write_str(&mut stream, b"c");
    stream.extend_from_slice(&[0xc4, c.len() as u8]);
    stream.extend_from_slice(&c);
    stream.extend_from_slice(&[0xdf, 0, 0, 1, 0]);
    stream.extend(std::iter::repeat_n(0xc0, 2 * 256));
    encode_packed_forward(&mut stream, "d", &c, 3, Compression::Text, None);
    let plain = DecoderConfig {
        chunk_size_limit: Some(300),
        ..DecoderConfig::default()
    };
    let captured = DecoderConfig {
        capture_min: 1,
        ..plain.clone()
    };
    let whole = decode(&plain, &stream, &[]);
    assert_eq!(whole.1, None);
    let shape: Vec<_> = whole
        .0
        .iter()
        .map(|r| match r {
            Request::Events(b) => b.tag.clone(),
            Request::Oversized { .. } => "oversized".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(shape, ["oversized", "b", "oversized", "d"]);
    let bytewise: Vec<usize> = (0..stream.len()).collect();
    assert_eq!(decode(&captured, &stream, &bytewise), whole);
    for step in [1, 5, 64] {
        assert_eq!(
            decode_appending(&captured, &stream, step),
            whole,
            "step {step}"
        );
    }
    // What is dropped is not kept meanwhile: options that never end, 100 KB of them.
    let mut head = vec![0x93];
    write_str(&mut head, b"e");
    head.extend_from_slice(&[0xc4, c.len() as u8]);
    head.extend_from_slice(&c);
    let mut d = Decoder::new(captured);
    d.feed(&head[..6]);
    assert!(matches!(d.next_request(), Ok(None)));
    assert!(d.capture_memory().is_some());
    d.feed(&head[6..]);
    d.feed(&[0xdf, 0, 1, 0, 0]);
    for _ in 0..1000 {
        d.feed(&[0xc0; 100]);
        assert!(matches!(d.next_request(), Ok(None)));
    }
    assert!(d.buffered() < 1000, "{}", d.buffered());
}

#[test]
fn errors_in_a_captured_requests_options_are_those_of_the_whole_request() {
    let c = chunk_of(&[1, 2, 3]);
    let mut head = vec![0x93];
    write_str(&mut head, b"t");
    head.extend_from_slice(&[0xc4, c.len() as u8]);
    head.extend_from_slice(&c);
    // Options nested past max_depth 2, and options with the reserved marker in them.
    let mut deep = head.clone();
    deep.extend_from_slice(&[0x81, 0xa1, b'k', 0x81, 0xa1, b'x', 0x01]);
    let mut broken = head;
    broken.extend_from_slice(&[0x81, 0xa1, b'k', 0xc1]);
    for (stream, max_depth, what) in [(deep, 2, "nesting"), (broken, 8, "malformed")] {
        let plain = DecoderConfig {
            max_depth,
            ..DecoderConfig::default()
        };
        let captured = DecoderConfig {
            capture_min: 1,
            ..plain.clone()
        };
        let whole = decode(&plain, &stream, &[]);
        assert!(
            whole.1.as_deref().is_some_and(|e| e.contains(what)),
            "{whole:?}"
        );
        let bytewise: Vec<usize> = (0..stream.len()).collect();
        assert_eq!(decode(&captured, &stream, &bytewise), whole, "{what}");
    }
}

#[test]
fn a_single_frame_in_the_middle_of_a_captured_request_is_an_error() {
    let c = chunk_of(&[1, 2, 3]);
    let mut stream = Vec::new();
    encode_packed_forward(&mut stream, "t", &c, 3, Compression::Text, None);
    let mut d = Decoder::new(DecoderConfig {
        capture_min: 1,
        ..DecoderConfig::default()
    });
    // [tag, str32 header and 2 bytes of the payload...
    d.feed(&stream[..10]);
    assert!(matches!(d.next_request(), Ok(None)));
    assert!(d.capture_memory().is_some());
    d.feed(&stream[10..]);
    assert!(matches!(d.next_frame(), Err(ForwardError::FrameInRequest)));
}

#[test]
fn compact_gives_back_the_buffer_and_keeps_the_partial_next_request() {
    let first = chunk_of(&vec![1; 7000]);
    let second = chunk_of(&[2, 3, 4]);
    let mut stream = Vec::new();
    encode_packed_forward(&mut stream, "a", &first, 7000, Compression::Text, None);
    let cut = stream.len() + 10;
    encode_packed_forward(&mut stream, "b", &second, 3, Compression::Text, Some("id"));
    let mut d = Decoder::new(DecoderConfig::default());
    d.feed(&stream[..cut]);
    match d.next_request() {
        Ok(Some(Request::Events(b))) => assert_eq!((b.tag.as_str(), b.records), ("a", 7000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(d.buffered(), 10);
    d.compact();
    assert!(d.memory().1 <= 64 * 1024, "{:?}", d.memory());
    d.feed(&stream[cut..]);
    match d.next_request() {
        Ok(Some(Request::Events(b))) => {
            assert_eq!(
                (b.tag.as_str(), &*b.chunk, b.records),
                ("b", &second[..], 3)
            );
            assert_eq!(b.chunk_option, Some(AckId(b"id".to_vec())));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.buffered(), 0);
}

#[test]
fn poisoned_after_error() {
    let mut d = Decoder::new(DecoderConfig::default());
    d.feed(&[0xc1]);
    assert!(d.next_request().is_err());
    d.feed(&[0xc0]);
    assert!(matches!(d.next_request(), Err(ForwardError::Poisoned)));
}

/// One generated request: (mode 0..=4, tag, event seconds, ack id).
fn arb_request() -> impl Strategy<Value = (u8, String, Vec<u32>, Option<String>)> {
    (
        0u8..5,
        prop_oneof!["[a-z]{1,8}(\\.[a-z]{1,8}){0,2}", Just("same".to_string())],
        proptest::collection::vec(1u32..u32::MAX, 1..6),
        proptest::option::of("[A-Za-z0-9+/]{4,24}\n?"),
    )
}

fn encode_request(
    mode: u8,
    tag: &str,
    times: &[u32],
    ack: Option<&str>,
    out: &mut Vec<u8>,
) -> (Mode, Vec<u8>, u32) {
    let times = if mode == 0 { &times[..1] } else { times };
    let c = chunk_of(times);
    let n = times.len() as u32;
    let m = match mode {
        0 => {
            let e = nagare_core::ChunkReader::new(&c)
                .next()
                .and_then(Result::ok);
            let rec = e.map(|e| e.record).unwrap_or_default();
            encode_message(out, tag, EventTime::new(times[0], 0), rec, ack);
            Mode::Message
        }
        1 => {
            encode_forward(out, tag, &c, n, ack);
            Mode::Forward
        }
        2 => {
            encode_packed_forward(out, tag, &c, n, Compression::Text, ack);
            Mode::PackedForward
        }
        3 => {
            encode_packed_forward(
                out,
                tag,
                &Compression::Gzip.compress(&c),
                n,
                Compression::Gzip,
                ack,
            );
            Mode::CompressedPackedForward
        }
        _ => {
            encode_packed_forward(
                out,
                tag,
                &Compression::Zstd.compress(&c),
                n,
                Compression::Zstd,
                ack,
            );
            Mode::CompressedPackedForward
        }
    };
    (m, c, n)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_every_mode(reqs in proptest::collection::vec(arb_request(), 1..5), cuts in proptest::collection::vec(0usize..2000, 0..6)) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (mode, tag, times, ack) in &reqs {
            let (mode, chunk, _) = encode_request(*mode, tag, times, ack.as_deref(), &mut stream);
            want.extend(events(tag, mode, &chunk));
            want.extend(ack.clone().map(|a| Item::Ack(AckId(a.into_bytes()))));
        }
        let (got, err) = decode(&DecoderConfig::default(), &stream, &cuts);
        prop_assert_eq!(err, None);
        prop_assert_eq!(summary(&got), want.clone());
        // Without coalescing, one batch per request.
        let cfg = DecoderConfig { coalesce_messages: false, ..DecoderConfig::default() };
        let (got, _) = decode(&cfg, &stream, &cuts);
        prop_assert_eq!(got.len(), reqs.len());
        // Every PackedForward payload read into its own buffer: the same events.
        let cfg = DecoderConfig { capture_min: 1, ..DecoderConfig::default() };
        let (got, err) = decode(&cfg, &stream, &cuts);
        prop_assert_eq!(err, None);
        prop_assert_eq!(summary(&got), want);
    }

    #[test]
    fn every_split_gives_the_same_requests(reqs in proptest::collection::vec(arb_request(), 1..4), junk in proptest::collection::vec(any::<u8>(), 0..4)) {
        let mut stream = vec![0xc0, 0x05];
        for (mode, tag, times, ack) in &reqs {
            encode_request(*mode, tag, times, ack.as_deref(), &mut stream);
        }
        stream.extend_from_slice(&junk);
        let exact = DecoderConfig { chunk_size_limit: Some(300), coalesce_messages: false, ..DecoderConfig::default() };
        let cfg = DecoderConfig { coalesce_messages: true, ..exact.clone() };
        let whole = decode(&exact, &stream, &[]);
        let meaning = |(reqs, err): (Vec<Request<'static>>, Option<String>)| (summary(&reqs), err);
        let whole_meaning = meaning(decode(&cfg, &stream, &[]));
        prop_assert_eq!(&whole_meaning, &meaning(whole.clone()));
        for cut in 0..stream.len() {
            prop_assert_eq!(&decode(&exact, &stream, &[cut]), &whole, "cut at {}", cut);
            prop_assert_eq!(&meaning(decode(&cfg, &stream, &[cut])), &whole_meaning, "cut at {}", cut);
        }
        let bytewise: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(&decode(&exact, &stream, &bytewise), &whole);
        prop_assert_eq!(&meaning(decode(&cfg, &stream, &bytewise)), &whole_meaning);
        // Compacting the buffer between reads and requests changes nothing either.
        for cut in [0, stream.len() / 3, stream.len() / 2] {
            prop_assert_eq!(&decode_compacting(&exact, &stream, &[cut]), &whole, "cut at {}", cut);
        }
        prop_assert_eq!(&decode_compacting(&exact, &stream, &bytewise), &whole);
        // Reading PackedForward payloads into their own buffers changes nothing either,
        // sizes and error offsets included.
        let captured = DecoderConfig { capture_min: 1, ..exact.clone() };
        for cut in 0..stream.len() {
            prop_assert_eq!(&decode(&captured, &stream, &[cut]), &whole, "cut at {}", cut);
        }
        prop_assert_eq!(&decode(&captured, &stream, &bytewise), &whole);
        prop_assert_eq!(&decode_compacting(&captured, &stream, &bytewise), &whole);
        for step in [1, 2, 7, 50] {
            prop_assert_eq!(&decode_appending(&captured, &stream, step), &whole, "step {}", step);
        }
        // Captures that wait to be admitted: admitted at once, or never (then read the
        // ordinary way).
        let admitting = DecoderConfig { admit_captures: true, ..captured.clone() };
        for step in [1, 7, 50] {
            prop_assert_eq!(&decode_appending(&admitting, &stream, step), &whole, "step {}", step);
        }
        prop_assert_eq!(&decode(&admitting, &stream, &bytewise), &whole);
    }

    /// Runs of Message requests with two tags, acks here and there, odd ones in between:
    /// whatever the reads, the same events, tags and acks in the same order, and every batch
    /// one tag with its ack (if any) last.
    #[test]
    fn coalesced_messages_keep_tags_counts_and_acks(
        msgs in proptest::collection::vec((0u8..8, 0u32..3, any::<bool>()), 1..40),
        cuts in proptest::collection::vec(0usize..4000, 0..6),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (i, (kind, t, ack)) in msgs.iter().enumerate() {
            let tag = if kind % 2 == 0 { "a" } else { "b.c" };
            let ack_id = ack.then(|| format!("id{i}"));
            let time = EventTime::new(1 + t, 7);
            let record = rec("i", i as i64);
            match kind {
                // An invalid event (the record is not a map), acked all the same.
                6 => {
                    write_array_header(&mut stream, if ack_id.is_some() { 4 } else { 3 });
                    write_str(&mut stream, tag.as_bytes());
                    time.write_to(&mut stream);
                    write_int(&mut stream, 5);
                    if let Some(a) = &ack_id {
                        write_map_header(&mut stream, 1);
                        write_str(&mut stream, b"chunk");
                        write_str(&mut stream, a.as_bytes());
                    }
                    want.push(Item::Invalid(tag.into(), 1));
                }
                // Integer time.
                7 => {
                    write_array_header(&mut stream, 3);
                    write_str(&mut stream, tag.as_bytes());
                    write_int(&mut stream, i64::from(1 + t));
                    stream.extend_from_slice(&record);
                    let mut w = ChunkWriter::new();
                    let _ = w.append_raw_unchecked(EventTime::new(1 + t, 0), &record);
                    want.extend(events(tag, Mode::Message, w.as_bytes()));
                    continue;
                }
                _ => {
                    encode_message(&mut stream, tag, time, &record, ack_id.as_deref());
                    let mut w = ChunkWriter::new();
                    let _ = w.append_raw_unchecked(time, &record);
                    want.extend(events(tag, Mode::Message, w.as_bytes()));
                }
            }
            want.extend(ack_id.map(|a| Item::Ack(AckId(a.into_bytes()))));
        }
        let alone = DecoderConfig { coalesce_acked: false, ..DecoderConfig::default() };
        for (cfg, cuts) in [
            (DecoderConfig::default(), vec![]),
            (DecoderConfig::default(), cuts.clone()),
            (DecoderConfig::default(), (0..stream.len()).step_by(37).collect()),
            (alone, cuts),
        ] {
            let (got, err) = decode(&cfg, &stream, &cuts);
            prop_assert_eq!(err, None);
            prop_assert_eq!(summary(&got), want.clone());
            for r in &got {
                let Request::Events(b) = r else { continue };
                prop_assert_eq!(b.requests as usize, if b.invalid > 0 { 1 } else { b.records as usize });
                if !cfg.coalesce_acked && b.chunk_option.is_some() {
                    prop_assert_eq!(b.requests, 1);
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), cuts in proptest::collection::vec(0usize..512, 0..8)) {
        let cfg = DecoderConfig { chunk_size_limit: Some(64), ..DecoderConfig::default() };
        let _ = decode(&cfg, &bytes, &cuts);
        let _ = decode(&DecoderConfig { capture_min: 1, ..cfg }, &bytes, &cuts);
        let mut json = b"[".to_vec();
        json.extend_from_slice(&bytes);
        let _ = decode(&DecoderConfig::default(), &json, &cuts);
        let _ = crate::handshake::parse_helo(&bytes);
        let _ = crate::decode_ack(&bytes);
    }
}
