//! Chunk validation and normalization over 1000 canonical ~150-byte events (the shape
//! `cargo xtask bench` sends), plus a chunk with nested records and one with integer times.
//!
//! Run one group at a time, e.g. `cargo bench -p nagare-core --bench chunk -- validate`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nagare_core::msgpack::write_int;
use nagare_core::sample::{entries, record};
use nagare_core::{NormalizeOptions, normalize_chunk, validate_chunk, value_len};

/// `n` sample entries; `int_time` writes integer times (normalization must rewrite them).
fn chunk(n: u32, nested: bool, int_time: bool) -> Vec<u8> {
    if !int_time {
        return entries(0, n, nested);
    }
    let mut out = Vec::new();
    for i in 0..n {
        out.push(0x92);
        write_int(&mut out, 1_764_158_400 + i64::from(i));
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
