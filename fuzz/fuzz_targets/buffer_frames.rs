//! The file buffer's crash recovery (`nagare_buffer::frame::scan`) on arbitrary bytes, and
//! on whole frames followed by arbitrary bytes (a torn or damaged tail): never panics, the
//! ranges it reports are in bounds and disjoint, the two ways of collecting payloads agree,
//! and every whole frame written before the damage is kept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nagare_buffer::frame::{self, Scan};

const INC: u64 = 0x0123_4567_89ab_cdef;

fn check(data: &[u8], scan: &Scan) {
    let mut end = 0usize;
    let mut spans: Vec<(usize, usize)> = scan
        .frames
        .iter()
        .map(|f| (f.offset, f.end() - f.offset))
        .collect();
    for f in &scan.frames {
        assert!(f.offset >= end, "frames overlap or are out of order");
        assert!(f.end() <= data.len(), "frame past the end");
        end = f.end();
    }
    spans.extend(scan.corrupt.iter().copied());
    spans.extend(scan.torn_tail);
    spans.extend(scan.stale_tail);
    spans.sort_unstable();
    let mut at = 0usize;
    for (off, len) in spans {
        assert!(off >= at, "reported ranges overlap");
        assert!(off + len <= data.len(), "range past the end");
        at = off + len;
    }
    let collected = frame::payloads(data, scan);
    let mut compacted = data.to_vec();
    frame::compact_payloads(&mut compacted, scan);
    assert_eq!(collected, compacted);
    assert_eq!(collected.len() as u64, scan.payload_bytes());
}

fuzz_target!(|data: &[u8]| {
    for (inc, reused) in [(Some(INC), false), (Some(INC), true), (None, false)] {
        let scan = frame::scan(data, inc, reused);
        check(data, &scan);
    }
    // The first bytes split into up to four payloads written as frames, then the rest as
    // whatever followed them on disk.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(n).min(rest.len());
    let (head, tail) = rest.split_at(cut);
    let mut file = Vec::new();
    let pieces: Vec<&[u8]> = head.chunks(head.len().div_ceil(4).max(1)).collect();
    for (i, p) in pieces.iter().enumerate() {
        frame::encode_v2(p, i as u32 + 1, INC, &mut file);
    }
    let whole = file.len();
    file.extend_from_slice(tail);
    for reused in [false, true] {
        let scan = frame::scan(&file, Some(INC), reused);
        check(&file, &scan);
        let kept: Vec<_> = scan
            .frames
            .iter()
            .take(pieces.len())
            .map(|f| f.offset)
            .collect();
        let mut at = 0;
        let mut want = Vec::new();
        for p in &pieces {
            want.push(at);
            at += frame::HEADER_LEN_V2 + p.len();
        }
        assert_eq!(kept, want, "a whole frame before the damage was lost");
        assert!(
            scan.frames
                .iter()
                .skip(pieces.len())
                .all(|f| f.offset >= whole)
        );
    }
});
