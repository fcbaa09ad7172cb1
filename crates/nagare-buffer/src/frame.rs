//! The file buffer's on-disk framing: every append is one frame
//!
//! ```text
//! magic "NgB1" (4) | len u32 LE (4) | records u32 LE (4) | crc32 u32 LE (4) | payload (len)
//! ```
//!
//! The CRC32 (IEEE) covers the `len` and `records` fields and the payload, so a torn or
//! flipped length is caught as well as flipped payload bits. The magic lets a reader
//! re-synchronise after a damaged frame: [`scan`] keeps every frame whose checksum holds,
//! drops the damaged byte ranges between them, and reports a torn tail separately.

/// Frame marker.
pub const MAGIC: [u8; 4] = *b"NgB1";
/// Bytes before the payload.
pub const HEADER_LEN: usize = 16;

/// Largest payload one frame holds.
pub const MAX_PAYLOAD: usize = u32::MAX as usize;

fn crc(len: u32, records: u32, parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&records.to_le_bytes());
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// The 16-byte header for `payload` (at most [`MAX_PAYLOAD`] bytes) holding `records` entries.
pub fn header(payload: &[u8], records: u32) -> [u8; HEADER_LEN] {
    header_parts(&[payload], records)
}

/// The 16-byte header for a payload made of `parts` concatenated (at most [`MAX_PAYLOAD`]
/// bytes in all), without concatenating them: the same bytes as [`header`] of the
/// concatenation.
pub fn header_parts(parts: &[&[u8]], records: u32) -> [u8; HEADER_LEN] {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(total).unwrap_or(u32::MAX);
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&records.to_le_bytes());
    h[12..].copy_from_slice(&crc(len, records, parts).to_le_bytes());
    h
}

/// Appends one frame to `out`.
pub fn encode(payload: &[u8], records: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&header(payload, records));
    out.extend_from_slice(payload);
}

/// A valid frame found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the frame header in the file.
    pub offset: usize,
    /// Payload length.
    pub len: usize,
    /// Entries in the payload.
    pub records: u32,
}

impl Frame {
    /// The payload's byte range.
    pub fn payload(&self) -> std::ops::Range<usize> {
        self.offset + HEADER_LEN..self.offset + HEADER_LEN + self.len
    }
    /// Offset just past the frame.
    pub fn end(&self) -> usize {
        self.offset + HEADER_LEN + self.len
    }
}

/// The result of scanning a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// Every frame whose checksum holds, in file order.
    pub frames: Vec<Frame>,
    /// Damaged ranges between good frames (`offset`, `len`), each dropped.
    pub corrupt: Vec<(usize, usize)>,
    /// A trailing range with no good frame after it (torn write or damage), dropped.
    pub torn_tail: Option<(usize, usize)>,
}

impl Scan {
    /// Bytes dropped in total.
    pub fn dropped_bytes(&self) -> usize {
        self.corrupt.iter().map(|(_, l)| l).sum::<usize>() + self.torn_tail.map_or(0, |(_, l)| l)
    }
    /// Damaged ranges in total (each is at least one lost batch).
    pub fn dropped_ranges(&self) -> usize {
        self.corrupt.len() + usize::from(self.torn_tail.is_some())
    }
    /// True when nothing was dropped.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.torn_tail.is_none()
    }
    /// Total entries in the good frames.
    pub fn records(&self) -> u64 {
        self.frames.iter().map(|f| u64::from(f.records)).sum()
    }
    /// Total payload bytes in the good frames.
    pub fn payload_bytes(&self) -> u64 {
        self.frames.iter().map(|f| f.len as u64).sum()
    }
}

fn u32_at(data: &[u8], pos: usize) -> Option<u32> {
    let b = data.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses a complete, valid frame at `pos`.
pub fn frame_at(data: &[u8], pos: usize) -> Option<Frame> {
    if data.get(pos..pos.checked_add(4)?)? != MAGIC {
        return None;
    }
    let len = u32_at(data, pos + 4)?;
    let records = u32_at(data, pos + 8)?;
    let sum = u32_at(data, pos + 12)?;
    let start = pos.checked_add(HEADER_LEN)?;
    let payload = data.get(start..start.checked_add(len as usize)?)?;
    (crc(len, records, &[payload]) == sum).then_some(Frame {
        offset: pos,
        len: len as usize,
        records,
    })
}

/// Finds every valid frame in `data`, re-synchronising on the magic after damage.
pub fn scan(data: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut pos = 0usize;
    while pos < data.len() {
        if let Some(f) = frame_at(data, pos) {
            pos = f.end();
            out.frames.push(f);
            continue;
        }
        // Damaged at `pos`: look for the next position holding a whole valid frame.
        let mut next = None;
        let mut probe = pos + 1;
        while let Some(found) = data
            .get(probe..)
            .and_then(|rest| rest.windows(4).position(|w| w == MAGIC))
        {
            let at = probe + found;
            if frame_at(data, at).is_some() {
                next = Some(at);
                break;
            }
            probe = at + 1;
        }
        match next {
            Some(at) => {
                out.corrupt.push((pos, at - pos));
                pos = at;
            }
            None => {
                out.torn_tail = Some((pos, data.len() - pos));
                break;
            }
        }
    }
    out
}

/// Moves the payloads of the good frames of `data` (as found by [`scan`] of the same
/// bytes) to its front, in order, and cuts it after them: the same bytes as [`payloads`],
/// without a second buffer.
pub fn compact_payloads(data: &mut Vec<u8>, scan: &Scan) {
    let mut to = 0usize;
    for f in &scan.frames {
        let r = f.payload();
        if r.end > data.len() {
            break;
        }
        data.copy_within(r.clone(), to);
        to += r.len();
    }
    data.truncate(to);
}

/// Concatenates the payloads of the good frames.
pub fn payloads(data: &[u8], scan: &Scan) -> Vec<u8> {
    let mut out = Vec::with_capacity(scan.payload_bytes() as usize);
    for f in &scan.frames {
        if let Some(p) = data.get(f.payload()) {
            out.extend_from_slice(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(batches: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            encode(b, i as u32 + 1, &mut out);
        }
        out
    }

    #[test]
    fn round_trip() {
        let data = file(&[b"abc", b"", b"defgh"]);
        let s = scan(&data);
        assert!(s.is_clean());
        assert_eq!(s.frames.len(), 3);
        assert_eq!(s.records(), 6);
        assert_eq!(payloads(&data, &s), b"abcdefgh");
    }

    #[test]
    fn torn_tail_at_every_offset_keeps_the_whole_frames() {
        let data = file(&[b"first batch", b"second", b"the last batch"]);
        let last = scan(&data).frames[2].offset;
        for cut in last..data.len() {
            let s = scan(&data[..cut]);
            assert_eq!(s.frames.len(), 2, "cut at {cut}");
            assert!(s.corrupt.is_empty());
            assert_eq!(
                s.torn_tail,
                (cut > last).then_some((last, cut - last)),
                "cut at {cut}"
            );
            assert_eq!(payloads(&data[..cut], &s), b"first batchsecond");
        }
    }

    #[test]
    fn a_flipped_bit_in_a_middle_frame_loses_only_that_frame() {
        let data = file(&[b"one", b"two two", b"three"]);
        let mid = scan(&data).frames[1];
        for byte in mid.offset..mid.end() {
            for bit in [0, 3, 7] {
                let mut bad = data.clone();
                bad[byte] ^= 1 << bit;
                let s = scan(&bad);
                assert_eq!(payloads(&bad, &s), b"onethree", "byte {byte} bit {bit}");
                assert_eq!(s.dropped_ranges(), 1);
            }
        }
    }

    proptest! {
        #[test]
        fn encode_scan_round_trip(batches in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let refs: Vec<&[u8]> = batches.iter().map(|b| b.as_slice()).collect();
            let data = file(&refs);
            let s = scan(&data);
            prop_assert!(s.is_clean());
            prop_assert_eq!(s.frames.len(), batches.len());
            prop_assert_eq!(payloads(&data, &s), batches.concat());
        }

        #[test]
        fn header_of_parts_equals_header_of_the_concatenation(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5),
            records in any::<u32>(),
        ) {
            let refs: Vec<&[u8]> = parts.iter().map(|b| b.as_slice()).collect();
            prop_assert_eq!(header_parts(&refs, records), header(&parts.concat(), records));
        }

        #[test]
        fn compacting_in_place_equals_copying_out(data in proptest::collection::vec(any::<u8>(), 0..512), batches in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 0..6), cut in any::<proptest::sample::Index>()) {
            // Good frames, then garbage, then a possibly torn copy of the same frames.
            let refs: Vec<&[u8]> = batches.iter().map(|b| b.as_slice()).collect();
            let mut raw = file(&refs);
            raw.extend_from_slice(&data);
            let tail = file(&refs);
            raw.extend_from_slice(&tail[..cut.index(tail.len() + 1)]);
            let s = scan(&raw);
            let want = payloads(&raw, &s);
            compact_payloads(&mut raw, &s);
            prop_assert_eq!(raw, want);
        }

        #[test]
        fn scan_never_panics_and_keeps_only_valid_frames(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let s = scan(&data);
            for f in &s.frames {
                prop_assert!(frame_at(&data, f.offset).is_some());
            }
            let covered: usize = s.frames.iter().map(|f| f.len + HEADER_LEN).sum::<usize>() + s.dropped_bytes();
            prop_assert_eq!(covered, data.len());
        }

        #[test]
        fn truncation_keeps_a_prefix(batches in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 1..6), cut in any::<proptest::sample::Index>()) {
            let refs: Vec<&[u8]> = batches.iter().map(|b| b.as_slice()).collect();
            let data = file(&refs);
            let cut = cut.index(data.len() + 1);
            let s = scan(&data[..cut]);
            let whole = scan(&data).frames.iter().filter(|f| f.end() <= cut).count();
            prop_assert_eq!(s.frames.len(), whole);
        }
    }
}
