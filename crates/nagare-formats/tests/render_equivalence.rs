//! The byte-buffer renderers (the hot path of json and out_file formatting) against the
//! renderer they replaced, kept here verbatim as the oracle: same bytes for any msgpack value
//! (invalid UTF-8, control characters, nested maps and arrays, ext, bin, floats, big ints),
//! and the raw-bytes fast paths of the formatters against their general paths.

use nagare_formats::json::{
    to_s, write_json_buf, write_json_raw_buf, write_json_string, write_ruby_float_buf,
};
use nagare_formats::{EventTime, Params, Scratch, build_formatter};
use proptest::prelude::*;
use rmpv::Value;

/// The renderer as it was before the byte-buffer rewrite (String based, `fmt` integers).
mod reference {
    use std::fmt::Write as _;

    use rmpv::Value;

    pub fn write_ruby_float(f: f64, out: &mut String) {
        if f.is_nan() {
            out.push_str("NaN");
            return;
        }
        if f.is_infinite() {
            out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
            return;
        }
        if f == 0.0 {
            out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
            return;
        }
        let sci = format!("{:e}", f.abs());
        let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
        let decpt = exp + 1;
        if f < 0.0 {
            out.push('-');
        }
        if !(-3..=16).contains(&decpt) {
            let (first, rest) = digits.split_at(1.min(digits.len()));
            out.push_str(first);
            out.push('.');
            out.push_str(if rest.is_empty() { "0" } else { rest });
            let _ = write!(
                out,
                "e{}{:02}",
                if exp < 0 { '-' } else { '+' },
                exp.unsigned_abs()
            );
        } else if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let d = decpt as usize;
            if digits.len() <= d {
                out.push_str(&digits);
                for _ in digits.len()..d {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..d]);
                out.push('.');
                out.push_str(&digits[d..]);
            }
        }
    }

    pub fn write_json_str(s: &str, out: &mut String) {
        out.push('"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            out.push_str(s.get(start..i).unwrap_or_default());
            if esc.is_empty() {
                let _ = write!(out, "\\u{:04x}", b);
            } else {
                out.push_str(esc);
            }
            start = i + 1;
        }
        out.push_str(s.get(start..).unwrap_or_default());
        out.push('"');
    }

    pub fn write_json_bytes(b: &[u8], out: &mut String) {
        match std::str::from_utf8(b) {
            Ok(s) => write_json_str(s, out),
            Err(_) => write_json_str(&String::from_utf8_lossy(b), out),
        }
    }

    fn write_json_float(f: f64, out: &mut String) {
        if f.is_finite() {
            write_ruby_float(f, out);
        } else {
            out.push_str("null");
        }
    }

    pub fn write_json(v: &Value, out: &mut String) {
        match v {
            Value::Nil => out.push_str("null"),
            Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Integer(i) => {
                let _ = write!(out, "{i}");
            }
            Value::F32(f) => write_json_float(f64::from(*f), out),
            Value::F64(f) => write_json_float(*f, out),
            Value::String(s) => write_json_bytes(s.as_bytes(), out),
            Value::Binary(b) => write_json_bytes(b, out),
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json(x, out);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push('{');
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match k {
                        Value::String(s) => write_json_bytes(s.as_bytes(), out),
                        Value::Binary(b) => write_json_bytes(b, out),
                        other => write_json_str(&super::to_s(other), out),
                    }
                    out.push(':');
                    write_json(x, out);
                }
                out.push('}');
            }
            Value::Ext(0, data) if data.len() == 8 => {
                let sec = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let _ = write!(out, "{sec}");
            }
            // `to_s` of any other ext is `ext_to_s`, which is what the JSON shows quoted.
            ext @ Value::Ext(..) => write_json_str(&super::to_s(ext), out),
        }
    }

    pub fn to_json(v: &Value) -> String {
        let mut s = String::new();
        write_json(v, &mut s);
        s
    }
}

/// A msgpack "str" whose bytes may be invalid UTF-8 (decoded from the wire, as a peer may send).
fn raw_str(b: Vec<u8>) -> Value {
    let mut buf = Vec::new();
    let _ = rmp::encode::write_str_len(&mut buf, b.len() as u32);
    buf.extend_from_slice(&b);
    rmpv::decode::read_value(&mut buf.as_slice()).unwrap_or(Value::Nil)
}

/// Bytes rich in what the escaper handles: quotes, backslashes, control characters, DEL,
/// multi-byte UTF-8 and bytes that are not UTF-8, at every offset of an 8-byte word.
fn tricky_bytes() -> impl Strategy<Value = Vec<u8>> {
    const PLAIN: &[u8] = b"abcdefghijklmnopqrstuvwxyz /:.";
    const WIDE: &[&str] = &["é", "日本", "𝄞", "ÿ", "ü日"];
    let piece = prop_oneof![
        4 => proptest::collection::vec(proptest::sample::select(PLAIN), 1..10),
        1 => Just(b"\"".to_vec()),
        1 => Just(b"\\".to_vec()),
        1 => (0u8..0x20).prop_map(|b| vec![b]),
        1 => Just(vec![0x7f]),
        1 => proptest::sample::select(WIDE).prop_map(|w| w.as_bytes().to_vec()),
        1 => (0x80u8..=0xff).prop_map(|b| vec![b]),
        1 => Just(vec![0xe6, 0x97]),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-40i64..300).prop_map(Value::from),
        any::<f64>().prop_map(Value::F64),
        any::<f32>().prop_map(Value::F32),
        tricky_bytes().prop_map(raw_str),
        tricky_bytes().prop_map(Value::Binary),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Binary),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(raw_str),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(t, d)| Value::Ext(t, d)),
        (any::<u32>(), any::<u32>()).prop_map(|(s, n)| {
            let mut d = s.to_be_bytes().to_vec();
            d.extend_from_slice(&n.to_be_bytes());
            Value::Ext(0, d)
        }),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

/// A record: a map with string keys (sometimes not UTF-8) and any values.
fn record() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => proptest::collection::vec(proptest::sample::select(&b"abcdefgh_"[..]), 1..12)
            .prop_map(|k| Value::from(String::from_utf8_lossy(&k).into_owned())),
        1 => tricky_bytes().prop_map(raw_str),
        1 => leaf(),
        // the message keys of FORMATS, as str and as bin
        1 => prop_oneof![
            Just(Value::from("b")),
            Just(Value::from("message")),
            Just(Value::Binary(b"b".to_vec())),
            Just(Value::Binary(b"message".to_vec())),
        ],
    ];
    proptest::collection::vec((key, value()), 0..8).prop_map(Value::Map)
}

fn encode(v: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = rmpv::encode::write_value(&mut bytes, v);
    bytes
}

/// `v` encoded with encodings chosen by `pick` wherever msgpack offers more than one: str
/// and bin lengths, map and array headers and integers wider than they need (peers such as
/// other Forward clients do not always pick the smallest), so every header the map renderer
/// reads is reached, not just the ones rmpv writes.
fn encode_wide(v: &Value, pick: &mut impl FnMut() -> u8, out: &mut Vec<u8>) {
    fn len_header(out: &mut Vec<u8>, len: usize, fix: Option<u8>, m8: u8, choice: u8) {
        let wide = [m8, m8 + 1, m8 + 2];
        match (choice % 4, fix) {
            (0, Some(f)) => out.push(f | len as u8),
            (1, _) if len < 0x100 && m8 != 0 => {
                out.push(wide[0]);
                out.push(len as u8);
            }
            (2, _) if len < 0x10000 => {
                out.push(wide[1]);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(wide[2]);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
    }
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            let fix = (b.len() < 32).then_some(0xa0);
            len_header(out, b.len(), fix, 0xd9, pick());
            out.extend_from_slice(b);
        }
        Value::Binary(b) => {
            len_header(out, b.len(), None, 0xc4, pick());
            out.extend_from_slice(b);
        }
        Value::Map(m) => {
            let fix = (m.len() < 16).then_some(0x80);
            // map16/map32 only (0xde, 0xdf): no 8-bit map header exists.
            match (pick() % 3, fix) {
                (0, Some(f)) => out.push(f | m.len() as u8),
                (1, _) if m.len() < 0x10000 => {
                    out.push(0xde);
                    out.extend_from_slice(&(m.len() as u16).to_be_bytes());
                }
                _ => {
                    out.push(0xdf);
                    out.extend_from_slice(&(m.len() as u32).to_be_bytes());
                }
            }
            for (k, x) in m {
                encode_wide(k, pick, out);
                encode_wide(x, pick, out);
            }
        }
        Value::Array(a) => {
            let fix = (a.len() < 16).then_some(0x90);
            match (pick() % 2, fix) {
                (0, Some(f)) => out.push(f | a.len() as u8),
                _ => {
                    out.push(0xdd);
                    out.extend_from_slice(&(a.len() as u32).to_be_bytes());
                }
            }
            for x in a {
                encode_wide(x, pick, out);
            }
        }
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => {
                let widths: [(u8, usize); 4] = [(0xcc, 1), (0xcd, 2), (0xce, 4), (0xcf, 8)];
                let fits: Vec<_> = widths
                    .iter()
                    .filter(|&&(_, n)| n == 8 || u < 1u64 << (8 * n))
                    .collect();
                let choice = usize::from(pick());
                if u < 0x80 && choice % (fits.len() + 1) == 0 {
                    out.push(u as u8);
                } else if let Some(&&(m, n)) = fits.get(choice % fits.len()) {
                    out.push(m);
                    out.extend_from_slice(&u.to_be_bytes()[8 - n..]);
                }
            }
            (None, Some(n)) => {
                let widths: [(u8, usize); 4] = [(0xd0, 1), (0xd1, 2), (0xd2, 4), (0xd3, 8)];
                let fits: Vec<_> = widths
                    .iter()
                    .filter(|&&(_, w)| w == 8 || n >= -(1i64 << (8 * w - 1)))
                    .collect();
                let choice = usize::from(pick());
                if n >= -32 && choice % (fits.len() + 1) == 0 {
                    out.push(n as i8 as u8);
                } else if let Some(&&(m, w)) = fits.get(choice % fits.len()) {
                    out.push(m);
                    out.extend_from_slice(&n.to_be_bytes()[8 - w..]);
                }
            }
            (None, None) => {}
        },
        other => {
            let _ = rmpv::encode::write_value(out, other);
        }
    }
}

fn formatter(pairs: &[(&str, &str)]) -> Box<dyn nagare_formats::Formatter> {
    match build_formatter(&Params::from_pairs(pairs.iter().copied())) {
        Ok(f) => f,
        Err(e) => panic!("{pairs:?}: {e}"),
    }
}

const FORMATS: &[&[(&str, &str)]] = &[
    &[("@type", "json")],
    &[("@type", "json"), ("newline", "crlf")],
    &[("@type", "out_file")],
    &[("@type", "out_file"), ("utc", "true")],
    &[("@type", "out_file"), ("timezone", "Asia/Tokyo")],
    &[("@type", "out_file"), ("time_format", "%s.%N %Q")],
    &[("@type", "out_file"), ("time_type", "float")],
    &[
        ("@type", "out_file"),
        ("time_type", "unixtime"),
        ("delimiter", "COMMA"),
    ],
    &[("@type", "out_file"), ("output_time", "false")],
    &[("@type", "ltsv")],
    &[("@type", "ltsv"), ("delimiter", "e"), ("replacement", "__")],
    &[
        ("@type", "ltsv"),
        ("delimiter", ""),
        ("add_newline", "false"),
    ],
    &[("@type", "single_value")],
    &[("@type", "single_value"), ("message_key", "b")],
];

/// Built once: a named zone reads the system's zoneinfo.
static FORMATTERS: std::sync::LazyLock<Vec<Box<dyn nagare_formats::Formatter>>> =
    std::sync::LazyLock::new(|| FORMATS.iter().map(|p| formatter(p)).collect());

/// The header-width choices of `encode_wide`, taken from `choices` in turn, round and round
/// (`choices` is not empty).
fn cycle(choices: &[u8]) -> impl FnMut() -> u8 + '_ {
    let mut next = 0usize;
    move || {
        next += 1;
        choices[next % choices.len()]
    }
}

/// Renders `records` (encoded with the header widths `pick` chooses) as one batch through
/// one scratch, with json and out_file: the text equals what the general path gives for
/// each record.
fn check_batch(records: &[Value], pick: &mut impl FnMut() -> u8) -> Result<(), TestCaseError> {
    for pairs in [
        &[("@type", "json")][..],
        &[("@type", "out_file"), ("utc", "true")],
    ] {
        let f = formatter(pairs);
        let mut scratch = Scratch::new();
        let mut batch = Vec::new();
        let mut expect = Vec::new();
        for rec in records {
            let mut raw = Vec::new();
            encode_wide(rec, pick, &mut raw);
            let decoded = rmpv::decode::read_value(&mut raw.as_slice()).expect("decode");
            let t = EventTime::new(1_700_000_000, 0);
            let general = f
                .format_to_vec("app.x", t, &decoded)
                .map_err(|e| e.to_string());
            prop_assert!(general.is_ok());
            expect.extend_from_slice(&general.unwrap_or_default());
            match f.format_raw_with("app.x", t, &raw, &mut batch, &mut scratch) {
                Some(r) => prop_assert!(r.is_ok()),
                None => prop_assert!(false, "the raw path answers for a map"),
            }
        }
        prop_assert_eq!(
            String::from_utf8_lossy(&batch),
            String::from_utf8_lossy(&expect)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The raw fast path renders byte for byte what the old renderer did on the decoded value.
    #[test]
    fn raw_json_equals_reference(v in value()) {
        let bytes = encode(&v);
        let mut fast = Vec::new();
        prop_assert_eq!(write_json_raw_buf(&bytes, &mut fast), Some(bytes.len()));
        let decoded = rmpv::decode::read_value(&mut bytes.as_slice()).expect("decode");
        prop_assert_eq!(String::from_utf8_lossy(&fast), reference::to_json(&decoded));
        prop_assert!(std::str::from_utf8(&fast).is_ok());
    }

    /// The map renderer on records encoded with any of msgpack's headers (not only the
    /// smallest), long strings among short ones, after text already in the buffer and with
    /// bytes after the record: the reference's text, and the bytes after are not consumed.
    #[test]
    fn raw_json_of_widely_encoded_records(
        v in record(),
        long in proptest::option::of((tricky_bytes(), 2040usize..2100)),
        choices in proptest::collection::vec(any::<u8>(), 1..64),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let v = match (v, long) {
            (Value::Map(mut m), Some((piece, len))) => {
                // a string around the renderer's long-string threshold
                let mut b = piece.repeat(len / piece.len().max(1) + 1);
                b.resize(len, b'x');
                m.push((Value::from("long"), raw_str(b)));
                Value::Map(m)
            }
            (v, _) => v,
        };
        let mut pick = cycle(&choices);
        let mut bytes = Vec::new();
        encode_wide(&v, &mut pick, &mut bytes);
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        let mut fast = b"before".to_vec();
        prop_assert_eq!(write_json_raw_buf(&bytes, &mut fast), Some(len));
        let decoded = rmpv::decode::read_value(&mut &bytes[..len]).expect("decode");
        prop_assert_eq!(
            String::from_utf8_lossy(&fast),
            format!("before{}", reference::to_json(&decoded))
        );
    }

    /// So does the general path (a decoded value into a byte buffer).
    #[test]
    fn value_json_equals_reference(v in record()) {
        let mut out = Vec::new();
        write_json_buf(&v, &mut out);
        prop_assert_eq!(String::from_utf8_lossy(&out), reference::to_json(&v));
        prop_assert_eq!(nagare_formats::json::to_json(&v), reference::to_json(&v));
    }

    /// The escaper on arbitrary bytes (any length, so every word/tail split is reached).
    #[test]
    fn string_escape_equals_reference(b in prop_oneof![tricky_bytes(), proptest::collection::vec(any::<u8>(), 0..70)]) {
        let mut fast = vec![b'x'];
        write_json_string(&b, &mut fast);
        let mut slow = String::from("x");
        reference::write_json_bytes(&b, &mut slow);
        prop_assert_eq!(String::from_utf8_lossy(&fast), slow);
    }

    /// Ruby's `Float#to_s` without allocation equals the old rendering, f64 and widened f32.
    #[test]
    fn ruby_float_equals_reference(f in any::<f64>(), g in any::<f32>(), bits in any::<u64>()) {
        for x in [f, f64::from(g), f64::from_bits(bits)] {
            let mut fast = Vec::new();
            write_ruby_float_buf(x, &mut fast);
            let mut slow = String::new();
            reference::write_ruby_float(x, &mut slow);
            prop_assert_eq!(String::from_utf8_lossy(&fast), slow.as_str());
            prop_assert_eq!(nagare_formats::json::ruby_float(x), slow);
        }
    }

    /// Every formatter's raw path (when it answers) writes what its general path writes, and
    /// a scratch shared over a batch of events changes nothing.
    #[test]
    fn formatter_raw_equals_general(
        records in proptest::collection::vec(record(), 1..4),
        times in proptest::collection::vec((1_700_000_000u32..1_700_000_003, prop_oneof![Just(0u32), 0u32..1_000_000_000]), 1..6),
    ) {
        for (pairs, f) in FORMATS.iter().zip(FORMATTERS.iter()) {
            let mut scratch = Scratch::new();
            let mut batch = b"head".to_vec();
            let mut expect = b"head".to_vec();
            for (i, &(sec, nsec)) in times.iter().enumerate() {
                let rec = &records[i % records.len()];
                let raw = encode(rec);
                let decoded = rmpv::decode::read_value(&mut raw.as_slice()).expect("decode");
                let t = EventTime::new(sec, nsec);
                let general = f.format_to_vec("app.x", t, &decoded).map_err(|e| e.to_string());
                let mut one = b"head".to_vec();
                match f.format_raw("app.x", t, &raw, &mut one) {
                    Some(r) => {
                        prop_assert!(r.is_ok());
                        let mut want = b"head".to_vec();
                        want.extend_from_slice(&general.clone().unwrap_or_default());
                        prop_assert_eq!(String::from_utf8_lossy(&one), String::from_utf8_lossy(&want), "{:?}", pairs);
                    }
                    None => prop_assert_eq!(&one, b"head", "{:?}: a miss leaves the buffer as it was", pairs),
                }
                match f.format_raw_with("app.x", t, &raw, &mut batch, &mut scratch) {
                    Some(r) => prop_assert!(r.is_ok()),
                    None => {
                        let _ = f.format("app.x", t, &decoded, &mut batch);
                    }
                }
                if let Ok(g) = general {
                    expect.extend_from_slice(&g);
                }
            }
            prop_assert_eq!(String::from_utf8_lossy(&batch), String::from_utf8_lossy(&expect), "{:?}", pairs);
        }
    }

    /// The prefix path reads records laid end to end (as in a chunk, any header widths):
    /// when it answers, it measured exactly the record and wrote what `format_raw_with`
    /// writes; when it does not, it left the buffer as it was.
    #[test]
    fn prefix_path_measures_each_record(
        records in proptest::collection::vec(record(), 1..5),
        choices in proptest::collection::vec(any::<u8>(), 1..64),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let mut pick = cycle(&choices);
        let mut chunk = Vec::new();
        let mut spans = Vec::new();
        for r in &records {
            let start = chunk.len();
            encode_wide(r, &mut pick, &mut chunk);
            spans.push(start..chunk.len());
        }
        chunk.extend_from_slice(&tail);
        let t = EventTime::new(1_700_000_000, 5);
        for (pairs, f) in FORMATS.iter().zip(FORMATTERS.iter()) {
            let (mut scratch, mut scratch2) = (Scratch::new(), Scratch::new());
            for span in &spans {
                let mut got = b"head".to_vec();
                let mut want = b"head".to_vec();
                let exact = chunk.get(span.clone()).unwrap_or_default();
                let answer = f.format_raw_prefix_with("app.x", t, &chunk[span.start..], &mut got, &mut scratch);
                match answer {
                    Some(r) => {
                        prop_assert_eq!(r.ok(), Some(span.len()), "{:?}", pairs);
                        prop_assert!(f.format_raw_with("app.x", t, exact, &mut want, &mut scratch2).is_some());
                        prop_assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "{:?}", pairs);
                    }
                    None => prop_assert_eq!(&got, b"head", "{:?}", pairs),
                }
            }
        }
    }

    /// A batch whose records repeat whole pairs, keep them at a position for a while and
    /// change them (more often than the renderer's miss limit), through one scratch: the
    /// pairs the scratch keeps never change the text.
    #[test]
    fn shared_pairs_over_a_batch(
        records in proptest::collection::vec(
            proptest::collection::vec((0usize..4, 0usize..8), 0..6),
            1..24,
        ),
        choices in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let keys = [
            Value::from("host"),
            Value::from("level"),
            Value::Binary(b"pid".to_vec()),
            Value::from("fifteen_bytes__"),
        ];
        let values = [
            Value::from("info"),
            Value::from("web-01.eu-west.example.com"),
            Value::from(4242),
            Value::from(-7),
            Value::Nil,
            Value::from("a\"b\u{1}"),
            Value::Binary(vec![0xff, b'x']),
            Value::F64(1.5),
        ];
        let mut pick = cycle(&choices);
        let batch: Vec<Value> = records
            .iter()
            .map(|fields| {
                Value::Map(fields.iter().map(|&(k, v)| (keys[k].clone(), values[v].clone())).collect())
            })
            .collect();
        check_batch(&batch, &mut pick)?;
    }

    /// A batch whose records share keys (in the same order or not, as str or bin, with any
    /// header width) through one scratch: the rendered keys the scratch keeps never change
    /// the text.
    #[test]
    fn shared_keys_over_a_batch(
        records in proptest::collection::vec(
            proptest::collection::vec((0usize..6, leaf()), 0..6),
            1..8,
        ),
        choices in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let pool = [
            Value::from("host"),
            Value::from("seq"),
            Value::from("a\"b"),
            Value::Binary(b"seq".to_vec()),
            Value::from("fifteen_bytes__"),
            Value::from("sixteen_bytes___"),
        ];
        let mut pick = cycle(&choices);
        let batch: Vec<Value> = records
            .iter()
            .map(|fields| Value::Map(fields.iter().map(|(k, v)| (pool[*k].clone(), v.clone())).collect()))
            .collect();
        check_batch(&batch, &mut pick)?;
    }

    /// Truncated or garbage bytes never panic the raw paths.
    #[test]
    fn raw_paths_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        let _ = write_json_raw_buf(&data, &mut out);
        let _ = nagare_formats::json::write_scalar_to_s_raw(&data, &mut out);
        let _ = nagare_formats::json::skip_raw(&data);
        if let Some(pairs) = nagare_formats::json::raw_map_pairs(&data) {
            let _ = pairs.count();
        }
        for f in FORMATTERS.iter() {
            let t = EventTime::new(1, 2);
            let _ = f.format_raw("t", t, &data, &mut out);
            let mut scratch = Scratch::new();
            let _ = f.format_raw_with("t", t, &data, &mut out, &mut scratch);
            let _ = f.format_raw_prefix_with("t", t, &data, &mut out, &mut scratch);
        }
    }

    /// `skip_raw` measures exactly one encoded value.
    #[test]
    fn skip_measures_values(v in value(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
        let mut bytes = encode(&v);
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(nagare_formats::json::skip_raw(&bytes), Some(len));
    }
}
