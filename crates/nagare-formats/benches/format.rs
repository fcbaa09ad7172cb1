//! The formatter hot path out_file runs per event: `format_raw_with` over a chunk of 1000
//! canonical ~150-byte records (the shape `cargo xtask bench` sends), for the `json` and
//! `out_file` formats, and one with nested records (the general renderer's share).
//!
//! Run one group at a time, e.g. `cargo bench -p nagare-formats --bench format -- json`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nagare_formats::{EventTime, Formatter, Params, Scratch, build_formatter};

/// Appends a msgpack str.
fn str_(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    match b.len() {
        n @ 0..=31 => out.push(0xa0 | n as u8),
        n @ 32..=255 => out.extend_from_slice(&[0xd9, n as u8]),
        n => {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(b);
}

/// Appends a non-negative msgpack int.
fn uint(out: &mut Vec<u8>, v: u32) {
    match v {
        0..=127 => out.push(v as u8),
        128..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        _ => {
            out.push(0xce);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// One record like the end-to-end bench's.
fn record(seq: u32, nested: bool) -> Vec<u8> {
    let mut r = Vec::with_capacity(200);
    r.push(if nested { 0x87 } else { 0x86 });
    str_(&mut r, "host");
    str_(&mut r, "web-01.eu-west.example.com");
    str_(&mut r, "level");
    str_(&mut r, "info");
    str_(&mut r, "msg");
    str_(
        &mut r,
        "GET /api/v1/items/12345 HTTP/1.1 200 5123 \"curl/8.5.0\" 0.0123",
    );
    str_(&mut r, "pid");
    uint(&mut r, 4242);
    str_(&mut r, "seq");
    uint(&mut r, seq);
    str_(&mut r, "seq_parity");
    str_(&mut r, if seq % 2 == 0 { "even" } else { "odd" });
    if nested {
        str_(&mut r, "kubernetes");
        r.push(0x82);
        str_(&mut r, "pod");
        str_(&mut r, "api-7d9c");
        str_(&mut r, "labels");
        r.push(0x81);
        str_(&mut r, "app");
        str_(&mut r, "api");
    }
    r
}

fn formatter(kind: &str) -> Box<dyn Formatter> {
    let p = Params::from_pairs([("@type", kind)]);
    match build_formatter(&p) {
        Ok(f) => f,
        Err(e) => panic!("cannot build the {kind} formatter: {e}"),
    }
}

fn bench_format(c: &mut Criterion) {
    const N: u32 = 1000;
    let mut g = c.benchmark_group("format_raw_with");
    g.throughput(Throughput::Elements(u64::from(N)));
    g.measurement_time(Duration::from_secs(3));
    for (kind, nested) in [("json", false), ("out_file", false), ("json", true)] {
        let records: Vec<Vec<u8>> = (0..N).map(|i| record(i, nested)).collect();
        let f = formatter(kind);
        let name = if nested {
            format!("{kind}-nested")
        } else {
            kind.to_string()
        };
        let mut out = Vec::with_capacity(512 * 1024);
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                out.clear();
                let mut scratch = Scratch::new();
                for (i, r) in records.iter().enumerate() {
                    let t = EventTime::new(1_764_158_400 + i as u32 / 100, 5);
                    let done = f.format_raw_with("bench.app", t, r, &mut out, &mut scratch);
                    assert!(matches!(done, Some(Ok(()))));
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_format);
criterion_main!(benches);
