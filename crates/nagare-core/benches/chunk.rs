//! Chunk validation and normalization over 1000 canonical ~150-byte events (the shape
//! `cargo xtask bench` sends), plus a chunk with nested records and one with integer times.
//!
//! Run one group at a time, e.g. `cargo bench -p nagare-core --bench chunk -- validate`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nagare_core::msgpack::{write_int, write_map_header, write_str};
use nagare_core::{EventTime, NormalizeOptions, normalize_chunk, validate_chunk, value_len};

/// One record like the end-to-end bench's (~141 bytes).
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

/// `n` entries; `int_time` writes integer times (normalization must rewrite them).
fn chunk(n: u32, nested: bool, int_time: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(0x92);
        if int_time {
            write_int(&mut out, 1_764_158_400 + i64::from(i));
        } else {
            EventTime::new(1_764_158_400 + i / 1000, i).write_to(&mut out);
        }
        out.extend_from_slice(&record(i, nested));
    }
    out
}

fn benches(c: &mut Criterion) {
    let cases = [
        ("flat", chunk(1000, false, false)),
        ("nested", chunk(1000, true, false)),
        ("int_time", chunk(1000, false, true)),
    ];
    let mut g = c.benchmark_group("validate");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (name, bytes) in &cases {
        g.throughput(Throughput::Elements(1000));
        g.bench_with_input(BenchmarkId::from_parameter(name), bytes, |b, bytes| {
            b.iter(|| validate_chunk(black_box(bytes)).map(|i| i.records))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("normalize");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (name, bytes) in &cases {
        g.throughput(Throughput::Elements(1000));
        g.bench_with_input(BenchmarkId::from_parameter(name), bytes, |b, bytes| {
            b.iter(|| {
                normalize_chunk(black_box(bytes), NormalizeOptions::default()).map(|n| n.records)
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("value_len");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let one = &cases[0].1;
    g.throughput(Throughput::Elements(1000));
    g.bench_function("flat_entries", |b| {
        b.iter(|| {
            let mut pos = 0;
            while let Some(rest) = one.get(pos..).filter(|r| !r.is_empty()) {
                match value_len(black_box(rest)) {
                    Ok(n) => pos += n,
                    Err(_) => break,
                }
            }
            pos
        })
    });
    g.finish();
}

criterion_group!(chunk_benches, benches);
criterion_main!(chunk_benches);
