//! Feeds arbitrary bytes to the Forward decoder in arbitrary splits: it must never panic, and
//! the requests must not depend on where the stream was cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nagare_forward::{Decoder, DecoderConfig, Request};

/// Decodes `data` fed in pieces of `step` bytes; with `compact`, the buffer is compacted
/// after every piece and every request (as in_forward does before waiting on a full buffer).
fn run(data: &[u8], step: usize, cfg: &DecoderConfig, compact: bool) -> (Vec<String>, bool) {
    let mut d = Decoder::new(cfg.clone());
    let mut seen = Vec::new();
    for piece in data.chunks(step.max(1)) {
        d.feed(piece);
        loop {
            if compact {
                d.compact();
            }
            match d.next_request() {
                Ok(Some(r)) => seen.push(summary(&r)),
                Ok(None) => break,
                Err(_) => return (seen, true),
            }
        }
    }
    (seen, false)
}

/// Like [`run`], with captures that wait to be admitted (`admit_captures`): a pending capture
/// is admitted after `delay` more pieces were fed the ordinary way (0: before the next piece,
/// as in_forward does).
fn run_admitting(data: &[u8], step: usize, cfg: &DecoderConfig, delay: usize) -> (Vec<String>, bool) {
    let mut d = Decoder::new(DecoderConfig { admit_captures: true, ..cfg.clone() });
    let mut seen = Vec::new();
    let mut waited = 0;
    for piece in data.chunks(step.max(1)) {
        if d.capture_pending().is_some() {
            if waited >= delay {
                d.admit_capture();
                waited = 0;
            } else {
                waited += 1;
            }
        }
        match d.payload_buf() {
            Some((payload, _)) => payload.extend_from_slice(piece),
            None => d.feed(piece),
        }
        loop {
            match d.next_request() {
                Ok(Some(r)) => seen.push(summary(&r)),
                Ok(None) => break,
                Err(_) => return (seen, true),
            }
        }
    }
    (seen, false)
}

fn summary(r: &Request<'_>) -> String {
    match r {
        Request::Events(b) => format!("{:?} {} {} {} {:?} {:?}", b.mode, b.tag, b.records, b.invalid, b.chunk_option, b.chunk.len()),
        // The tag of an oversized request is best effort (it depends on what was buffered).
        Request::Oversized { size, limit, .. } => format!("oversized {size} {limit}"),
        other => format!("{other:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&step, data)) = input.split_first() else { return };
    let cfg = DecoderConfig {
        chunk_size_limit: Some(4096),
        decompression_size_limit: 1 << 20,
        max_request_size: 1 << 20,
        // Coalescing merges only Message requests already buffered, which depends on the
        // split; request-by-request decoding must not.
        coalesce_messages: false,
        ..DecoderConfig::default()
    };
    let whole = run(data, data.len(), &cfg, false);
    let split = run(data, usize::from(step), &cfg, false);
    // Requests that contain a time of 0 get "now", so compare shapes, not bytes.
    assert_eq!(whole, split);
    assert_eq!(whole, run(data, usize::from(step), &cfg, true));
    // PackedForward payloads read into buffers of their own: the same requests.
    let captured = DecoderConfig { capture_min: 1, ..cfg };
    assert_eq!(whole, run(data, usize::from(step), &captured, false));
    assert_eq!(whole, run(data, usize::from(step), &captured, true));
    // Captures admitted at once, or late (read the ordinary way until then).
    for delay in [0, 2] {
        assert_eq!(whole, run_admitting(data, usize::from(step), &captured, delay));
    }
});
