//! The formatter hot path out_file runs per event: `format_raw_with` over a chunk of 1000
//! canonical ~150-byte records (the shape `cargo xtask bench` sends), for the `json` and
//! `out_file` formats, and one with nested records (the general renderer's share).
//!
//! Run one group at a time, e.g. `cargo bench -p nagare-formats --bench format -- json`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nagare_core::sample::record;
use nagare_formats::{EventTime, Formatter, Params, Scratch, build_formatter};

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
