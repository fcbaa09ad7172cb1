//! The server-side [`Decoder`] over a stream of requests fed in 64 KiB reads, per event mode:
//! 20 requests of 1000 ~150-byte events for PackedForward and Forward, 20 000 single-event
//! Message requests (the last one asking for an ack), as `cargo xtask bench` sends them.
//!
//! Run one mode at a time, e.g. `cargo bench -p nagare-forward --bench decoder -- packed`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nagare_core::sample::{entries, record, time};
use nagare_forward::{
    Compression, Decoder, DecoderConfig, Request, encode_forward, encode_message,
    encode_packed_forward,
};

const EVENTS: u32 = 20_000;
const PER_REQUEST: u32 = 1000;
const READ: usize = 64 * 1024;

fn stream(mode: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if mode == "message" {
        for i in 0..EVENTS {
            let ack = (i + 1 == EVENTS).then_some("last");
            encode_message(&mut out, "bench.app", time(i), &record(i, false), ack);
        }
        return out;
    }
    for r in 0..EVENTS / PER_REQUEST {
        let e = entries(r * PER_REQUEST, PER_REQUEST, false);
        let ack = (r + 1 == EVENTS / PER_REQUEST).then_some("last");
        if mode == "packed" {
            encode_packed_forward(
                &mut out,
                "bench.app",
                &e,
                PER_REQUEST,
                Compression::Text,
                ack,
            );
        } else {
            encode_forward(&mut out, "bench.app", &e, PER_REQUEST, ack);
        }
    }
    out
}

/// Feeds the stream in reads of [`READ`] bytes; returns (events, emitted batches).
fn run(bytes: &[u8]) -> (u64, u64) {
    let mut d = Decoder::new(DecoderConfig::default());
    let (mut events, mut batches) = (0u64, 0u64);
    for piece in bytes.chunks(READ) {
        d.feed(piece);
        while let Ok(Some(req)) = d.next_request() {
            if let Request::Events(b) = req {
                events += u64::from(b.records);
                batches += 1;
                black_box(&b.chunk);
            }
        }
    }
    (events, batches)
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("decoder");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Elements(u64::from(EVENTS)));
    for mode in ["packed", "forward", "message"] {
        let bytes = stream(mode);
        assert_eq!(run(&bytes).0, u64::from(EVENTS), "{mode}");
        g.bench_function(mode, |b| b.iter(|| run(black_box(&bytes))));
    }
    g.finish();
}

criterion_group!(decoder_benches, benches);
criterion_main!(decoder_benches);
