//! Sample events of one fixed shape (a web access log line: host, level, message, pid and a
//! sequence number; about 130 bytes of msgpack), so the benchmarks of every crate and
//! `cargo xtask bench` measure the same bytes.

use crate::msgpack::{write_int, write_map_header, write_str};
use crate::time::EventTime;

/// The msgpack record (a map) of sample event `seq`; `nested` adds a `kubernetes` map that
/// holds a `labels` map.
pub fn record(seq: u32, nested: bool) -> Vec<u8> {
    let mut r = Vec::with_capacity(200);
    write_map_header(&mut r, if nested { 7 } else { 6 });
    write_str(&mut r, b"host");
    write_str(&mut r, b"web-01.eu-west.example.com");
    write_str(&mut r, b"level");
    write_str(&mut r, b"info");
    write_str(&mut r, b"msg");
    write_str(
        &mut r,
        b"GET /api/v1/items/12345 HTTP/1.1 200 5123 \"curl/8.5.0\" 0.0123",
    );
    write_str(&mut r, b"pid");
    write_int(&mut r, 4242);
    write_str(&mut r, b"seq");
    write_int(&mut r, i64::from(seq));
    write_str(&mut r, b"seq_parity");
    write_str(&mut r, if seq % 2 == 0 { b"even" } else { b"odd" });
    if nested {
        write_str(&mut r, b"kubernetes");
        write_map_header(&mut r, 2);
        write_str(&mut r, b"pod");
        write_str(&mut r, b"api-7d9c");
        write_str(&mut r, b"labels");
        write_map_header(&mut r, 1);
        write_str(&mut r, b"app");
        write_str(&mut r, b"api");
    }
    r
}

/// The time of sample event `seq`: a thousand events a second from 2025-11-26 12:00 UTC.
pub fn time(seq: u32) -> EventTime {
    EventTime::new(1_764_158_400 + seq / 1000, (seq % 1000) * 1000)
}

/// Sample events `from..from + n` as a chunk: concatenated `[time, record]` entries with
/// EventTime times.
pub fn entries(from: u32, n: u32, nested: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for i in from..from.saturating_add(n) {
        out.push(0x92);
        time(i).write_to(&mut out);
        out.extend_from_slice(&record(i, nested));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkReader;

    #[test]
    fn entries_are_canonical_events_in_order() {
        let chunk = entries(998, 3, true);
        let got: Vec<_> = ChunkReader::new(&chunk)
            .map(|e| e.map(|e| (e.time, e.record.to_vec())))
            .collect::<Result<_, _>>()
            .expect("valid chunk");
        let want: Vec<_> = (998..1001).map(|i| (time(i), record(i, true))).collect();
        assert_eq!(got, want);
        assert_eq!(time(1000), EventTime::new(1_764_158_401, 0));
    }
}
