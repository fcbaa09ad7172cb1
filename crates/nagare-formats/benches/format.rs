//! The formatter hot path out_file runs per event: `format_raw_with` over a chunk of 1000
//! canonical ~150-byte records (the shape `cargo xtask bench` sends), for the `json` and
//! `out_file` formats, and one with nested records (the general renderer's share).
//!
//! Run one group at a time, e.g. `cargo bench -p nagare-formats --bench format -- json`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nagare_core::msgpack::{write_int, write_map_header, write_str};
use nagare_formats::{EventTime, Formatter, Params, Scratch, build_formatter};

/// One record like the end-to-end bench's.
fn record(seq: u32, nested: bool) -> Vec<u8> {
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
