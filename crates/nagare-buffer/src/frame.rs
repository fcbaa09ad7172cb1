//! The file buffer's on-disk framing: every append is one frame.
//!
//! ```text
//! v2: magic "NgB2" (4) | len u32 LE (4) | records u32 LE (4) | incarnation u64 LE (8) | crc32 u32 LE (4) | payload (len)
//! v1: magic "NgB1" (4) | len u32 LE (4) | records u32 LE (4) | crc32 u32 LE (4) | payload (len)
//! ```
//!
//! The CRC32 (IEEE) covers every header field after the magic and the payload, so a torn
//! or flipped length is caught as well as flipped payload bits. The magic lets a reader
//! re-synchronise after a damaged frame: [`scan`] keeps every frame whose checksum holds,
//! drops the damaged byte ranges between them, and reports a torn tail separately.
//!
//! Chunk files are written with v2 frames; v1 frames (earlier versions, and the meta
//! file) are still read. The *incarnation* ties a v2 frame to one use of a file: the file
//! buffer reuses the files of flushed chunks (overwriting them from the start is much
//! cheaper than allocating a new file's blocks and pages), so a reused file holds, past
//! the new chunk's frames, intact frames of an earlier chunk. Those have another
//! incarnation and are never taken for the new chunk's; [`scan`] reports the bytes after
//! the last good frame of a reused file as a *stale tail* (not damage) unless they start
//! like one of its own frames (a torn append).

/// Frame marker (v2, with an incarnation).
pub const MAGIC: [u8; 4] = *b"NgB2";
/// Frame marker of v1 frames (no incarnation).
pub const MAGIC_V1: [u8; 4] = *b"NgB1";
/// Bytes before the payload of a v1 frame.
pub const HEADER_LEN: usize = 16;
/// Bytes before the payload of a v2 frame.
pub const HEADER_LEN_V2: usize = 24;

/// Largest payload one frame holds.
pub const MAX_PAYLOAD: usize = u32::MAX as usize;

fn crc(fields: &[u8], parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(fields);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn total_len(parts: &[&[u8]]) -> u32 {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// The 16-byte v1 header for `payload` (at most [`MAX_PAYLOAD`] bytes) holding `records`
/// entries (the meta file's framing).
pub fn header(payload: &[u8], records: u32) -> [u8; HEADER_LEN] {
    let len = total_len(&[payload]);
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC_V1);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&records.to_le_bytes());
    let sum = crc(&h[4..12], &[payload]);
    h[12..].copy_from_slice(&sum.to_le_bytes());
    h
}

/// The 24-byte v2 header for a payload made of `parts` concatenated (at most
/// [`MAX_PAYLOAD`] bytes in all) holding `records` entries, for the file use
/// `incarnation`, without concatenating the parts.
pub fn header_parts(parts: &[&[u8]], records: u32, incarnation: u64) -> [u8; HEADER_LEN_V2] {
    let len = total_len(parts);
    let mut h = [0u8; HEADER_LEN_V2];
    h[..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&records.to_le_bytes());
    h[12..20].copy_from_slice(&incarnation.to_le_bytes());
    let sum = crc(&h[4..20], parts);
    h[20..].copy_from_slice(&sum.to_le_bytes());
    h
}

/// Appends one v1 frame to `out`.
pub fn encode(payload: &[u8], records: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&header(payload, records));
    out.extend_from_slice(payload);
}

/// Appends one v2 frame of file use `incarnation` to `out`.
pub fn encode_v2(payload: &[u8], records: u32, incarnation: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&header_parts(&[payload], records, incarnation));
    out.extend_from_slice(payload);
}

/// A valid frame found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the frame header in the file.
    pub offset: usize,
    /// Header length ([`HEADER_LEN`] or [`HEADER_LEN_V2`]).
    pub header: usize,
    /// Payload length.
    pub len: usize,
    /// Entries in the payload.
    pub records: u32,
}

impl Frame {
    /// The payload's byte range.
    pub fn payload(&self) -> std::ops::Range<usize> {
        self.offset + self.header..self.offset + self.header + self.len
    }
    /// Offset just past the frame.
    pub fn end(&self) -> usize {
        self.offset + self.header + self.len
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
    /// A reused file's bytes left from an earlier use, after the last good frame
    /// (`offset`, `len`): not data of this chunk, and not damage.
    pub stale_tail: Option<(usize, usize)>,
}

impl Scan {
    /// Bytes dropped in total (a stale tail is not counted: it was never this chunk's).
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
    /// Where the good data ends: past the last good frame (0 without one).
    pub fn good_end(&self) -> usize {
        self.frames.last().map_or(0, Frame::end)
    }
}

fn u32_at(data: &[u8], pos: usize) -> Option<u32> {
    let b = data.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses a complete, valid v1 frame at `pos` (the meta file).
pub fn frame_at(data: &[u8], pos: usize) -> Option<Frame> {
    frame_in(data, pos, None)
}

/// Parses a complete, valid frame at `pos`: a v1 frame, or a v2 frame of file use
/// `incarnation` (`None`: no v2 frame is accepted).
pub fn frame_in(data: &[u8], pos: usize, incarnation: Option<u64>) -> Option<Frame> {
    let magic = data.get(pos..pos.checked_add(4)?)?;
    let header = if magic == MAGIC_V1 {
        HEADER_LEN
    } else if magic == MAGIC {
        let want = incarnation?;
        let inc = data.get(pos + 12..pos + 20)?;
        if inc != want.to_le_bytes() {
            return None;
        }
        HEADER_LEN_V2
    } else {
        return None;
    };
    let len = u32_at(data, pos + 4)?;
    let records = u32_at(data, pos + 8)?;
    let sum = u32_at(data, pos + header - 4)?;
    let start = pos.checked_add(header)?;
    let payload = data.get(start..start.checked_add(len as usize)?)?;
    let fields = data.get(pos + 4..pos + header - 4)?;
    (crc(fields, &[payload]) == sum).then_some(Frame {
        offset: pos,
        header,
        len: len as usize,
        records,
    })
}

/// Whether `tail` starts like a frame of file use `incarnation` (a torn append: the header
/// is written first, so a torn frame keeps a prefix of it).
fn starts_like_own_frame(tail: &[u8], incarnation: Option<u64>) -> bool {
    let prefix_of = |want: &[u8], at: usize| {
        let have = tail.get(at..).unwrap_or_default();
        let n = have.len().min(want.len());
        have.get(..n) == want.get(..n)
    };
    if prefix_of(&MAGIC_V1, 0) {
        return true;
    }
    match incarnation {
        Some(inc) => prefix_of(&MAGIC, 0) && prefix_of(&inc.to_le_bytes(), 12),
        None => false,
    }
}

/// Finds every valid frame in `data`, re-synchronising on the magic after damage.
/// `incarnation` is the file use whose v2 frames count (`None`: v1 frames only);
/// `reused`: the file held an earlier chunk, so trailing bytes that do not start like one
/// of its frames are a stale tail, not damage.
pub fn scan(data: &[u8], incarnation: Option<u64>, reused: bool) -> Scan {
    let mut out = Scan::default();
    let mut pos = 0usize;
    while pos < data.len() {
        if let Some(f) = frame_in(data, pos, incarnation) {
            pos = f.end();
            out.frames.push(f);
            continue;
        }
        // Damaged at `pos`: look for the next position holding a whole valid frame.
        let mut next = None;
        let mut probe = pos + 1;
        while let Some(found) = data
            .get(probe..)
            .and_then(|rest| rest.windows(4).position(|w| w == MAGIC || w == MAGIC_V1))
        {
            let at = probe + found;
            if frame_in(data, at, incarnation).is_some() {
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
                let tail = (pos, data.len() - pos);
                let rest = data.get(pos..).unwrap_or_default();
                if reused && !starts_like_own_frame(rest, incarnation) {
                    out.stale_tail = Some(tail);
                } else {
                    out.torn_tail = Some(tail);
                }
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

    const INC: u64 = 0x0123_4567_89ab_cdef;

    fn file(batches: &[&[u8]]) -> Vec<u8> {
        file_of(batches, INC)
    }

    fn file_of(batches: &[&[u8]], inc: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            encode_v2(b, i as u32 + 1, inc, &mut out);
        }
        out
    }

    #[test]
    fn round_trip() {
        let data = file(&[b"abc", b"", b"defgh"]);
        let s = scan(&data, Some(INC), false);
        assert!(s.is_clean());
        assert_eq!(s.frames.len(), 3);
        assert_eq!(s.records(), 6);
        assert_eq!(payloads(&data, &s), b"abcdefgh");
    }

    #[test]
    fn torn_tail_at_every_offset_keeps_the_whole_frames() {
        let data = file(&[b"first batch", b"second", b"the last batch"]);
        let last = scan(&data, Some(INC), false).frames[2].offset;
        for cut in last..data.len() {
            let s = scan(&data[..cut], Some(INC), false);
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
        let mid = scan(&data, Some(INC), false).frames[1];
        for byte in mid.offset..mid.end() {
            for bit in [0, 3, 7] {
                let mut bad = data.clone();
                bad[byte] ^= 1 << bit;
                let s = scan(&bad, Some(INC), false);
                assert_eq!(payloads(&bad, &s), b"onethree", "byte {byte} bit {bit}");
                assert_eq!(s.dropped_ranges(), 1);
            }
        }
    }

    #[test]
    fn v1_frames_are_still_read_and_v2_needs_its_incarnation() {
        let mut v1 = Vec::new();
        encode(b"old", 1, &mut v1);
        encode(b"er", 1, &mut v1);
        let s = scan(&v1, None, false);
        assert!(s.is_clean());
        assert_eq!(payloads(&v1, &s), b"older");
        // A resumed v1 chunk appended to by this version: both kinds.
        let mut mixed = v1.clone();
        encode_v2(b"new", 2, INC, &mut mixed);
        let s = scan(&mixed, Some(INC), false);
        assert!(s.is_clean());
        assert_eq!(
            (payloads(&mixed, &s).as_slice(), s.records()),
            (&b"oldernew"[..], 4)
        );
        // Another incarnation's frames are not this chunk's.
        let other = file_of(&[b"x"], INC ^ 1);
        assert_eq!(scan(&other, Some(INC), false).frames, vec![]);
        assert_eq!(scan(&other, None, false).frames, vec![]);
    }

    /// A reused file: the new chunk's frames over an earlier chunk's, cut at every length
    /// of the new data. What follows the new frames is a stale tail (not damage), unless it
    /// is a torn own frame; the stale frames are never taken.
    #[test]
    fn reused_files_end_in_a_stale_tail_and_torn_own_frames_are_still_torn() {
        let old = file_of(&[&[b'o'; 40], &[b'p'; 40], &[b'q'; 40]], INC ^ 0xff);
        let new = file(&[b"first", b"second batch"]);
        let frames = scan(&new, Some(INC), false).frames;
        for cut in 0..=new.len() {
            let mut raw = old.clone();
            raw[..cut].copy_from_slice(&new[..cut]);
            let s = scan(&raw, Some(INC), true);
            let whole: Vec<Frame> = frames.iter().copied().filter(|f| f.end() <= cut).collect();
            assert_eq!(s.frames, whole, "cut {cut}");
            assert!(s.corrupt.is_empty(), "cut {cut}");
            let good = s.good_end();
            let tail = Some((good, raw.len() - good));
            // Torn once the own incarnation is on disk; a shorter torn header cannot be
            // told from stale bytes (never acknowledged either way).
            if cut >= good + 20 {
                assert_eq!((s.torn_tail, s.stale_tail), (tail, None), "cut {cut}");
            } else if cut == good {
                assert_eq!((s.torn_tail, s.stale_tail), (None, tail), "cut {cut}");
            } else {
                assert!(s.torn_tail.or(s.stale_tail) == tail, "cut {cut}");
            }
            // The same bytes in a file that was not reused: damage, as before.
            let s = scan(&raw, Some(INC), false);
            assert_eq!(s.stale_tail, None);
            assert_eq!(s.torn_tail.is_some(), good < raw.len(), "cut {cut}");
        }
    }

    proptest! {
        #[test]
        fn encode_scan_round_trip(batches in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let refs: Vec<&[u8]> = batches.iter().map(|b| b.as_slice()).collect();
            let data = file(&refs);
            let s = scan(&data, Some(INC), false);
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
            prop_assert_eq!(header_parts(&refs, records, INC), header_parts(&[&parts.concat()], records, INC));
        }

        #[test]
        fn compacting_in_place_equals_copying_out(data in proptest::collection::vec(any::<u8>(), 0..512), batches in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 0..6), cut in any::<proptest::sample::Index>()) {
            // Good frames, then garbage, then a possibly torn copy of the same frames.
            let refs: Vec<&[u8]> = batches.iter().map(|b| b.as_slice()).collect();
            let mut raw = file(&refs);
            raw.extend_from_slice(&data);
            let tail = file(&refs);
            raw.extend_from_slice(&tail[..cut.index(tail.len() + 1)]);
            let s = scan(&raw, Some(INC), false);
            let want = payloads(&raw, &s);
            compact_payloads(&mut raw, &s);
            prop_assert_eq!(raw, want);
        }

        #[test]
        fn scan_never_panics_and_keeps_only_valid_frames(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let s = scan(&data, Some(INC), false);
            for f in &s.frames {
                prop_assert!(frame_in(&data, f.offset, Some(INC)).is_some());
            }
            let covered: usize = s.frames.iter().map(|f| f.len + f.header).sum::<usize>() + s.dropped_bytes();
            prop_assert_eq!(covered, data.len());
        }

        #[test]
        fn truncation_keeps_a_prefix(batches in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 1..6), cut in any::<proptest::sample::Index>()) {
            let refs: Vec<&[u8]> = batches.iter().map(|b| b.as_slice()).collect();
            let data = file(&refs);
            let cut = cut.index(data.len() + 1);
            let s = scan(&data[..cut], Some(INC), false);
            let whole = scan(&data, Some(INC), false).frames.iter().filter(|f| f.end() <= cut).count();
            prop_assert_eq!(s.frames.len(), whole);
        }
    }
}
