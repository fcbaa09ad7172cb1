//! The fast path for complete buffers: a non-streaming msgpack skipper ([`skip`]) and a
//! one-pass entry checker ([`entry`]) specialised for the shapes Fluentd's clients send
//! (`0x92`, a fixext8 EventTime or an integer, then a map of fixstr/str8/uint keys and values).
//!
//! The general path ([`Skipper`](crate::msgpack::Skipper), [`read_head`],
//! [`EventTime::decode`]) stays the authority: it frames incomplete input incrementally and
//! words every error. The fast path only ever answers when it is sure, and otherwise says
//! [`Miss`]: either "the bytes end before the value does" or "ask the general path". Whenever
//! it answers, the general path gives the same answer — that invariant is property-tested on
//! arbitrary bytes, so callers may use the fast answer and fall back on a miss.
//!
//! Nothing here allocates, recurses deeper than [`MAX_DEPTH`], or panics, whatever the input.

use crate::chunk::Entry;
use crate::msgpack::{Head, MAX_DEPTH, read_head};
use crate::time::{EVENT_TIME_EXT, EventTime};

/// Why the fast path gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The buffer ends before the value does (everything up to its end was well-formed).
    Incomplete,
    /// Something the fast path does not handle (an unusual shape, malformed bytes, nesting
    /// at the depth limit): ask the general path, which also words the error.
    Other,
}

/// Total length of a value whose length follows from its marker byte alone; 0 for markers
/// that need a closer look (sized str/bin/ext, containers, the reserved `0xc1`).
const FIXED: [u8; 256] = fixed_table();

const fn fixed_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => 1,
            0xa0..=0xbf => 1 + (b & 0x1f),
            0xcc | 0xd0 => 2,
            0xcd | 0xd1 | 0xd4 => 3,
            0xd5 => 4,
            0xca | 0xce | 0xd2 => 5,
            0xd6 => 6,
            0xcb | 0xcf | 0xd3 => 9,
            0xd7 => 10,
            0xd8 => 18,
            _ => 0,
        };
        i += 1;
    }
    t
}

/// Reads a big-endian length of `N` bytes at `at`.
#[inline(always)]
fn be<const N: usize>(buf: &[u8], at: usize) -> Result<u64, Miss> {
    let end = at.checked_add(N).ok_or(Miss::Incomplete)?;
    let bytes = buf.get(at..end).ok_or(Miss::Incomplete)?;
    Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// `pos + len` when that is within `buf`.
#[inline(always)]
fn within(buf: &[u8], pos: usize, len: u64) -> Result<usize, Miss> {
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| pos.checked_add(l))
        .ok_or(Miss::Incomplete)?;
    if end <= buf.len() {
        Ok(end)
    } else {
        Err(Miss::Incomplete)
    }
}

/// Skips the complete value starting at `buf[pos]` and returns the offset just past it.
///
/// `depth` is the number of containers already open around it and `max_depth` the limit the
/// general path would apply (capped at [`MAX_DEPTH`]): opening a non-empty container at
/// `depth >= max_depth` is a [`Miss::Other`], as the general path reports it as too deep.
#[inline]
pub fn skip(buf: &[u8], pos: usize, depth: usize, max_depth: usize) -> Result<usize, Miss> {
    let b = *buf.get(pos).ok_or(Miss::Incomplete)?;
    // fixstr and positive fixint first, with arithmetic: walking a record is a chain of
    // dependent loads, and a table look-up would add one to each link.
    let n = if b & 0xe0 == 0xa0 {
        1 + usize::from(b & 0x1f)
    } else if b < 0x80 {
        1
    } else if b == 0xd9 {
        // str8: messages longer than 31 bytes.
        2 + usize::from(*buf.get(pos + 1).ok_or(Miss::Incomplete)?)
    } else {
        usize::from(FIXED[usize::from(b)])
    };
    if n == 0 {
        return skip_sized(buf, pos, b, depth, max_depth.min(MAX_DEPTH));
    }
    // pos < buf.len() and n <= 257, so this cannot overflow.
    let end = pos + n;
    if end <= buf.len() {
        Ok(end)
    } else {
        Err(Miss::Incomplete)
    }
}

/// [`skip`] for markers whose size is in a length field, and containers.
fn skip_sized(
    buf: &[u8],
    pos: usize,
    b: u8,
    depth: usize,
    max_depth: usize,
) -> Result<usize, Miss> {
    match b {
        0xc4 | 0xd9 => within(buf, pos + 2, be::<1>(buf, pos + 1)?),
        0xc5 | 0xda => within(buf, pos + 3, be::<2>(buf, pos + 1)?),
        0xc6 | 0xdb => within(buf, pos + 5, be::<4>(buf, pos + 1)?),
        0xc7 => {
            let len = be::<1>(buf, pos + 1)?;
            within(buf, pos + 3, len)
        }
        0xc8 => {
            let len = be::<2>(buf, pos + 1)?;
            within(buf, pos + 4, len)
        }
        0xc9 => {
            let len = be::<4>(buf, pos + 1)?;
            within(buf, pos + 6, len)
        }
        0x80..=0x8f => items(buf, pos + 1, u64::from(b & 0x0f) * 2, depth, max_depth),
        0x90..=0x9f => items(buf, pos + 1, u64::from(b & 0x0f), depth, max_depth),
        0xdc => items(buf, pos + 3, be::<2>(buf, pos + 1)?, depth, max_depth),
        0xdd => items(buf, pos + 5, be::<4>(buf, pos + 1)?, depth, max_depth),
        0xde => items(buf, pos + 3, be::<2>(buf, pos + 1)? * 2, depth, max_depth),
        0xdf => items(buf, pos + 5, be::<4>(buf, pos + 1)? * 2, depth, max_depth),
        // 0xc1, the reserved marker: the general path words the error.
        _ => Err(Miss::Other),
    }
}

/// Skips the `count` children of a container opened at `depth` whose first child is at `pos`.
#[inline]
fn items(
    buf: &[u8],
    mut pos: usize,
    count: u64,
    depth: usize,
    max_depth: usize,
) -> Result<usize, Miss> {
    if count == 0 {
        return within(buf, pos, 0);
    }
    if depth >= max_depth {
        return Err(Miss::Other);
    }
    // Every child is at least one byte, so this loop ends with the buffer at the latest.
    for _ in 0..count {
        pos = skip(buf, pos, depth + 1, max_depth)?;
    }
    Ok(pos)
}

/// Skips the complete map starting at `buf[pos]` (a record) and returns the offset just past
/// it; [`Miss::Other`] when the value there is not a map. `depth` and `max_depth` are as for
/// [`skip`].
#[inline]
pub fn map(buf: &[u8], pos: usize, depth: usize, max_depth: usize) -> Result<usize, Miss> {
    let max_depth = max_depth.min(MAX_DEPTH);
    let Some(&m) = buf.get(pos) else {
        return Err(Miss::Incomplete);
    };
    let (pairs, mut pos) = match m {
        0x80..=0x8f => (u64::from(m & 0x0f), pos + 1),
        0xde => (be::<2>(buf, pos + 1)?, pos + 3),
        0xdf => (be::<4>(buf, pos + 1)?, pos + 5),
        _ => return Err(Miss::Other),
    };
    if pairs > 0 && depth >= max_depth {
        return Err(Miss::Other);
    }
    let inner = depth + 1;
    for _ in 0..pairs {
        // Keys are nearly always short strings and values strings or integers: one table
        // look-up each; anything else goes through `skip_sized`.
        pos = skip(buf, pos, inner, max_depth)?;
        pos = skip(buf, pos, inner, max_depth)?;
    }
    Ok(pos)
}

/// Checks the `[time, record]` entry at the start of `buf` in one pass.
///
/// Answers for `0x92`, then a time that is a fixext8 or ext8 EventTime or an integer, then a
/// map: the entry (time as written, record and raw bytes) and whether it is canonical (a
/// fixext8 time whose second is not 0). `depth` counts the containers open around the entry
/// (0 for a chunk, 2 inside a Forward request) and `max_depth` is the general path's limit.
/// Other shapes — invalid events included — are [`Miss::Other`].
#[inline]
pub fn entry(buf: &[u8], depth: usize, max_depth: usize) -> Result<(Entry<'_>, bool), Miss> {
    let max_depth = max_depth.min(MAX_DEPTH);
    match buf.first() {
        Some(0x92) => {}
        Some(_) => return Err(Miss::Other),
        None => return Err(Miss::Incomplete),
    }
    if depth >= max_depth {
        return Err(Miss::Other);
    }
    let (time, rec_at, ext8) = match buf.get(1..11) {
        Some(&[0xd7, 0x00, s0, s1, s2, s3, n0, n1, n2, n3]) => (
            EventTime::new(
                u32::from_be_bytes([s0, s1, s2, s3]),
                u32::from_be_bytes([n0, n1, n2, n3]),
            ),
            11,
            true,
        ),
        _ => time_other(buf)?,
    };
    let canonical = ext8 && time.sec != 0;
    let pos = map(buf, rec_at, depth + 1, max_depth)?;
    let raw = buf.get(..pos).ok_or(Miss::Incomplete)?;
    let record = raw.get(rec_at..).ok_or(Miss::Incomplete)?;
    Ok((Entry { time, record, raw }, canonical))
}

/// The time of an entry that is not a complete fixext8 EventTime: (time, record offset,
/// whether it was a fixext8).
#[cold]
fn time_other(buf: &[u8]) -> Result<(EventTime, usize, bool), Miss> {
    let rest = buf.get(1..).unwrap_or_default();
    let Some(&b) = rest.first() else {
        return Err(Miss::Incomplete);
    };
    // Only scalars: an array (v1.5 metadata time) nests, and the general path accounts the
    // depth of its elements.
    if !matches!(b, 0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff | 0xc7 | 0xd7) {
        return Err(Miss::Other);
    }
    let (head, n) = match read_head(rest) {
        Ok(h) => h,
        Err(e) if e.is_incomplete() => return Err(Miss::Incomplete),
        Err(_) => return Err(Miss::Other),
    };
    let time = match head {
        Head::Int(v) => EventTime::from_int(v),
        Head::Ext(EVENT_TIME_EXT, p) => {
            let p: [u8; 8] = p.try_into().map_err(|_| Miss::Other)?;
            EventTime::new(
                u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            )
        }
        _ => return Err(Miss::Other),
    };
    Ok((time, 1 + n, b == 0xd7))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::{MsgpackError, Progress, Skipper};
    use proptest::prelude::*;

    /// What the general path says of a value: its length, or whether it is incomplete.
    fn general(buf: &[u8], max_depth: usize) -> Result<usize, MsgpackError> {
        let mut s = Skipper::with_max_depth(max_depth);
        match s.advance(buf)? {
            Progress::Complete(n) => Ok(n),
            Progress::Incomplete { needed } => Err(MsgpackError::Incomplete {
                needed,
                available: buf.len(),
            }),
        }
    }

    /// The fast answer must be the general one; a miss must be a general error of the same
    /// kind (incomplete) or any general answer (other).
    fn agree(buf: &[u8], max_depth: usize) -> Result<(), String> {
        let g = general(buf, max_depth);
        match (skip(buf, 0, 0, max_depth), &g) {
            (Ok(n), Ok(m)) if n == *m => Ok(()),
            (Err(Miss::Incomplete), Err(e)) if e.is_incomplete() => Ok(()),
            (Err(Miss::Other), _) => Ok(()),
            (f, g) => Err(format!("fast {f:?}, general {g:?} on {buf:02x?}")),
        }
    }

    fn check(input: &[u8], expect: Result<usize, Miss>) {
        assert_eq!(skip(input, 0, 0, MAX_DEPTH), expect, "input {input:02x?}");
        assert_eq!(agree(input, MAX_DEPTH), Ok(()));
    }

    #[test]
    fn skip_table() {
        check(&[0x01], Ok(1));
        check(&[0xa3, b'a', b'b', b'c', 9], Ok(4));
        check(&[0xa3, b'a'], Err(Miss::Incomplete));
        check(&[0xd9, 2, b'h', b'i'], Ok(4));
        check(&[0xd9], Err(Miss::Incomplete));
        check(&[0xcd, 1], Err(Miss::Incomplete));
        check(&[0xce, 0, 0, 1, 0], Ok(5));
        check(&[0xd7, 0, 0, 0, 0, 1, 0, 0, 0, 2], Ok(10));
        check(&[0xc7, 1, 5, 9], Ok(4));
        check(&[0xc9, 0, 0, 0, 1, 5, 9], Ok(7));
        check(&[0x92, 0x01, 0x90], Ok(3));
        check(&[0x81, 0xa1, b'k', 0x80], Ok(4));
        check(&[0xdc, 0, 2, 1, 2], Ok(5));
        check(&[0xdf, 0, 0, 0, 1, 1, 2], Ok(7));
        check(&[0xdd, 0xff, 0xff, 0xff, 0xff, 1], Err(Miss::Incomplete));
        check(&[0xdb, 0xff, 0xff, 0xff, 0xff], Err(Miss::Incomplete));
        check(&[0xc1], Err(Miss::Other));
        check(&[0x92, 0x01, 0xc1], Err(Miss::Other));
        check(&[], Err(Miss::Incomplete));
        // Depth: the limit the general path applies, empty containers free.
        let mut deep = vec![0x91; MAX_DEPTH];
        deep.push(0x90);
        check(&deep, Ok(MAX_DEPTH + 1));
        let mut too_deep = vec![0x91; MAX_DEPTH + 1];
        too_deep.push(0x01);
        check(&too_deep, Err(Miss::Other));
        assert_eq!(skip(&[0x91, 0x91, 0x01], 0, 0, 2), Ok(3));
        assert_eq!(skip(&[0x91, 0x91, 0x01], 0, 1, 2), Err(Miss::Other));
    }

    #[test]
    fn map_table() {
        let cases: &[(&[u8], Result<usize, Miss>)] = &[
            (&[0x80], Ok(1)),
            (&[0x81, 0xa1, b'k', 0x01, 0xff], Ok(4)),
            (&[0x81, 0xa1, b'k'], Err(Miss::Incomplete)),
            (&[0xde, 0, 1, 0x01, 0x91, 0x02], Ok(6)),
            (&[0xdf, 0, 0, 0, 0], Ok(5)),
            (&[0x91, 0x01], Err(Miss::Other)),
            (&[0x81, 0xc1, 0x01], Err(Miss::Other)),
            (&[], Err(Miss::Incomplete)),
        ];
        for (input, want) in cases {
            assert_eq!(map(input, 0, 0, MAX_DEPTH), *want, "input {input:02x?}");
        }
        assert_eq!(map(&[0x81, 0x01, 0x91, 0x01], 0, 0, 2), Ok(4));
        assert_eq!(map(&[0x81, 0x01, 0x91, 0x01], 0, 1, 2), Err(Miss::Other));
        assert_eq!(map(&[0x80], 0, 9, 2), Ok(1));
    }

    fn entry_check(input: &[u8], expect: Result<(EventTime, usize, bool), Miss>) {
        let got = entry(input, 0, MAX_DEPTH).map(|(e, c)| {
            assert_eq!(e.raw, &input[..e.raw.len()]);
            assert!(e.raw.ends_with(e.record));
            (e.time, e.raw.len(), c)
        });
        assert_eq!(got, expect, "input {input:02x?}");
    }

    #[test]
    fn entry_table() {
        let rec = [0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0xa2, b'x', b'y'];
        let with = |time: &[u8]| [&[0x92][..], time, &rec].concat();
        let t = EventTime::new(100, 7);
        entry_check(&with(&t.encode()), Ok((t, 20, true)));
        // Time 0 is valid but not canonical (it becomes "now").
        let z = EventTime::new(0, 7);
        entry_check(&with(&z.encode()), Ok((z, 20, false)));
        entry_check(&with(&[0x05]), Ok((EventTime::new(5, 0), 11, false)));
        entry_check(
            &with(&[0xce, 0x55, 0xee, 0x3c, 0xf8]),
            Ok((EventTime::new(1_441_676_536, 0), 15, false)),
        );
        entry_check(&with(&[0xff]), Ok((EventTime::new(u32::MAX, 0), 11, false)));
        let mut ext8 = vec![0xc7, 8, 0];
        ext8.extend_from_slice(&t.encode()[2..]);
        entry_check(&with(&ext8), Ok((t, 21, false)));
        // Left to the general path: other shapes and invalid events.
        entry_check(&with(&[0xa1, b'x']), Err(Miss::Other));
        entry_check(&with(&[0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0]), Err(Miss::Other));
        entry_check(&with(&[0x91, 0x05]), Err(Miss::Other));
        entry_check(&[0x92, 0x05, 0x01], Err(Miss::Other));
        entry_check(&[0x93, 0x05, 0x80, 0x80], Err(Miss::Other));
        entry_check(&[0xdc, 0, 2, 0x05, 0x80], Err(Miss::Other));
        // Incomplete, at every cut.
        let full = with(&t.encode());
        for cut in 0..full.len() {
            entry_check(&full[..cut], Err(Miss::Incomplete));
        }
    }

    fn arb_value() -> impl Strategy<Value = rmpv::Value> {
        let leaf = prop_oneof![
            Just(rmpv::Value::Nil),
            any::<i64>().prop_map(rmpv::Value::from),
            any::<u64>().prop_map(rmpv::Value::from),
            any::<f32>().prop_map(rmpv::Value::from),
            ".{0,40}".prop_map(rmpv::Value::from),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(rmpv::Value::from),
            (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(t, d)| rmpv::Value::Ext(t, d)),
        ];
        leaf.prop_recursive(4, 32, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(rmpv::Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..20).prop_map(rmpv::Value::Map),
            ]
        })
    }

    /// A record of the usual shape: keys drawn from a few (so that records repeat them,
    /// as a stream's do), values strings, integers, nil, bools and now and then a container.
    fn arb_record() -> impl Strategy<Value = Vec<u8>> {
        let key = prop_oneof![
            Just("host".to_owned()),
            Just("msg".to_owned()),
            Just("level".to_owned()),
            Just("a_key_exactly_31_bytes_long_xyz".to_owned()),
            "[a-z]{0,33}",
        ];
        let value = prop_oneof![
            4 => "[a-z ]{0,40}".prop_map(rmpv::Value::from),
            2 => any::<i64>().prop_map(rmpv::Value::from),
            2 => (0u8..128).prop_map(rmpv::Value::from),
            1 => Just(rmpv::Value::Nil),
            1 => any::<bool>().prop_map(rmpv::Value::from),
            1 => proptest::collection::vec(any::<u8>(), 0..3).prop_map(|b| rmpv::Value::Array(b.into_iter().map(rmpv::Value::from).collect())),
        ];
        proptest::collection::vec((key, value), 0..36).prop_map(|pairs| {
            let map = pairs
                .into_iter()
                .map(|(k, v)| (rmpv::Value::from(k), v))
                .collect();
            let mut b = Vec::new();
            let _ = rmpv::encode::write_value(&mut b, &rmpv::Value::Map(map));
            b
        })
    }

    /// Bytes that are mostly the shapes the fast path handles, with arbitrary bytes mixed in.
    fn arb_entryish() -> impl Strategy<Value = Vec<u8>> {
        let time = prop_oneof![
            (any::<u32>(), any::<u32>()).prop_map(|(s, n)| EventTime::new(s, n).encode().to_vec()),
            any::<i64>().prop_map(|v| {
                let mut b = Vec::new();
                crate::msgpack::write_int(&mut b, v);
                b
            }),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        (
            time,
            arb_value(),
            proptest::collection::vec(any::<u8>(), 0..6),
            0usize..200,
        )
            .prop_map(|(t, rec, junk, cut)| {
                let mut b = vec![0x92];
                b.extend_from_slice(&t);
                let _ = rmpv::encode::write_value(&mut b, &rec);
                b.extend_from_slice(&junk);
                if cut < b.len() && cut % 3 == 0 {
                    b.truncate(cut);
                }
                b
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn skip_agrees_with_skipper_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256), depth in 0usize..4) {
            prop_assert_eq!(agree(&bytes, depth), Ok(()));
            prop_assert_eq!(agree(&bytes, MAX_DEPTH), Ok(()));
        }

        #[test]
        fn skip_answers_for_encoded_values(v in arb_value(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = Vec::new();
            rmpv::encode::write_value(&mut buf, &v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let len = buf.len();
            // Every cut of small values, about 200 cuts of large ones (keeps the suite fast).
            for cut in (0..len).step_by(len / 200 + 1).chain(len.saturating_sub(3)..len) {
                prop_assert_eq!(skip(&buf[..cut], 0, 0, MAX_DEPTH), Err(Miss::Incomplete));
            }
            buf.extend_from_slice(&tail);
            prop_assert_eq!(skip(&buf, 0, 0, MAX_DEPTH), Ok(len));
            prop_assert_eq!(agree(&buf, MAX_DEPTH), Ok(()));
        }

        #[test]
        fn entry_agrees_with_general_path(bytes in arb_entryish(), depth in 0usize..3) {
            let general = crate::chunk::parse_entry_general(&bytes, 0, 0, &mut Skipper::new());
            match (entry(&bytes, 0, MAX_DEPTH), general) {
                (Ok((e, canonical)), Ok((crate::chunk::Parsed::Valid { entry: g, canonical: gc }, len))) => {
                    prop_assert_eq!((e, canonical), (g, gc));
                    prop_assert_eq!(e.raw.len(), len);
                }
                (Ok(e), g) => prop_assert!(false, "fast {:?}, general {:?}", e, g.map(|(_, l)| l)),
                (Err(Miss::Incomplete), Err(crate::ChunkError::Truncated { .. })) | (Err(Miss::Other), _) => {}
                (Err(Miss::Incomplete), g) => prop_assert!(false, "fast incomplete, general {:?}", g.map(|(_, l)| l)),
            }
            // Inside `depth` containers the limit left is `max - depth`, as for the skipper.
            if let Ok((e, _)) = entry(&bytes, depth, 3 + depth) {
                let mut s = Skipper::with_max_depth(3);
                prop_assert_eq!(s.advance(&bytes), Ok(Progress::Complete(e.raw.len())));
            }
        }

        /// Whole chunks: validation with the fast path equals validation by the general
        /// path alone, errors included.
        #[test]
        fn chunk_validation_agrees(parts in proptest::collection::vec(arb_entryish(), 0..6), junk in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut chunk: Vec<u8> = parts.concat();
            chunk.extend_from_slice(&junk);
            let fast = crate::validate_chunk(&chunk).map_err(|e| e.to_string());
            let mut general = crate::ChunkInfo { canonical: true, ..crate::ChunkInfo::default() };
            let (mut pos, mut index, mut sk) = (0, 0u32, Skipper::new());
            let general = loop {
                if pos >= chunk.len() {
                    break Ok(general);
                }
                match crate::chunk::parse_entry_general(&chunk, pos, index, &mut sk) {
                    Ok((crate::chunk::Parsed::Valid { canonical, .. }, len)) => {
                        general.records += 1;
                        general.canonical &= canonical;
                        pos += len;
                    }
                    Ok((crate::chunk::Parsed::Invalid(reason, _), len)) => {
                        general.canonical = false;
                        general.invalid += 1;
                        general.first_invalid.get_or_insert(crate::InvalidEntry { index, offset: pos, reason });
                        pos += len;
                    }
                    Err(e) => break Err(e.to_string()),
                }
                index += 1;
            };
            prop_assert_eq!(fast, general);
        }

        /// Normalizing with the fast path gives the same
        /// bytes, counts and errors as the general path alone, on chunks of similar records
        /// with corrupted bytes and cut tails.
        #[test]
        fn normalize_agrees_with_general_path(
            recs in proptest::collection::vec((arb_record(), any::<bool>()), 0..6),
            corrupt in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..3),
            cut in proptest::option::of(0usize..2000),
            keep in any::<bool>(),
        ) {
            let mut chunk = Vec::new();
            for (i, (rec, int_time)) in recs.iter().enumerate() {
                chunk.push(0x92);
                if *int_time {
                    crate::msgpack::write_int(&mut chunk, i as i64);
                } else {
                    EventTime::new(i as u32, 7).write_to(&mut chunk);
                }
                chunk.extend_from_slice(rec);
            }
            for (at, byte) in corrupt {
                let len = chunk.len().max(1);
                if let Some(b) = chunk.get_mut(usize::from(at) % len) { *b = byte }
            }
            if let Some(c) = cut { chunk.truncate(c) }
            for truncated in [crate::TruncatedPolicy::Error, crate::TruncatedPolicy::Drop] {
                let opts = crate::NormalizeOptions {
                    invalid: if keep { crate::InvalidPolicy::Keep } else { crate::InvalidPolicy::Skip },
                    truncated,
                };
                let now = EventTime::new(99, 1);
                let fast = crate::chunk::normalize_with::<true>(&chunk, opts, &mut || now)
                    .map_err(|e| e.to_string());
                let general = crate::chunk::normalize_with::<false>(&chunk, opts, &mut || now)
                    .map_err(|e| e.to_string());
                prop_assert_eq!(fast, general, "chunk {:02x?}", chunk);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), pos in 0usize..300, depth in 0usize..200) {
            let _ = skip(&bytes, pos, depth, depth.saturating_add(2));
            let _ = entry(&bytes, depth, MAX_DEPTH);
        }
    }
}
