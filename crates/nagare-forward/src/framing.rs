//! Msgpack framing of one request at a time: the fast path for Forward-mode entries, the
//! streaming [`Skipper`] for everything else.
//!
//! A Forward request `[tag, [e1, e2, …], option?]` is framed entry by entry with
//! [`nagare_core::fast::entry`], which checks each entry while finding its end: when every
//! entry is canonical, the decoder takes them as they are ([`ForwardScan`]) and no byte of
//! them is walked twice. An entry that arrives in pieces is looked at again from its start on
//! the next read (entries are small; one larger than [`RESCAN_LIMIT`] goes to the skipper so
//! the work stays linear). At the first entry the fast path does not take (not canonical,
//! invalid, malformed, too deep), the skipper resumes exactly where the fast path stopped, so
//! errors, offsets and size bounds are the skipper's own.

use nagare_core::fast::{self, Miss};
use nagare_core::msgpack::{MsgpackError, Progress, Skipper};

/// An incomplete entry whose buffered part is larger than this goes to the skipper instead of
/// being looked at again from its start on the next read.
pub(crate) const RESCAN_LIMIT: usize = 64 * 1024;

/// The entries of a Forward request, all canonical, found while framing it. Offsets are from
/// the start of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForwardScan {
    /// End of the tag (start of the entries array header).
    pub(crate) tag_end: usize,
    /// Start of the first entry.
    pub(crate) start: usize,
    /// End of the last entry.
    pub(crate) end: usize,
    /// Number of entries.
    pub(crate) records: u32,
}

/// Where the framing of the pending request stands.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Nothing looked at yet.
    Fresh,
    /// Walking a Forward request's entries: the next one starts at `pos`, `left` remain
    /// (at least one), and the request array has `count` elements.
    Entries {
        tag_end: usize,
        start: usize,
        pos: usize,
        left: u64,
        count: u64,
        records: u32,
    },
    /// The skipper has the rest of the request.
    Skipper,
}

/// One step of [`MsgpackFramer::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The request is complete and this long.
    Complete(usize),
    /// More bytes are needed: the request is at least `needed` bytes long, and the first
    /// `scanned` bytes will not be looked at again.
    Incomplete {
        /// Lower bound of the request's size.
        needed: u64,
        /// Bytes passed for good.
        scanned: usize,
    },
}

/// Frames msgpack requests; see the module documentation.
pub(crate) struct MsgpackFramer {
    sk: Skipper,
    max_depth: usize,
    state: State,
    scan: Option<ForwardScan>,
}

impl MsgpackFramer {
    /// A framer rejecting nesting deeper than `max_depth`.
    pub(crate) fn new(max_depth: usize) -> Self {
        MsgpackFramer {
            sk: Skipper::with_max_depth(max_depth),
            max_depth: max_depth.min(nagare_core::msgpack::MAX_DEPTH),
            state: State::Fresh,
            scan: None,
        }
    }

    /// What the fast path found in the request [`advance`](Self::advance) last completed.
    pub(crate) fn scan(&self) -> Option<ForwardScan> {
        self.scan
    }

    /// Frames the request at the start of `view` (the same growing buffer each call).
    pub(crate) fn advance(&mut self, view: &[u8]) -> Result<Step, MsgpackError> {
        loop {
            match self.state {
                State::Fresh => {
                    self.scan = None;
                    self.sk.reset();
                    self.state = match forward_head(view, self.max_depth) {
                        Head::Forward(tag_end, start, left, count) => State::Entries {
                            tag_end,
                            start,
                            pos: start,
                            left,
                            count,
                            records: 0,
                        },
                        Head::Other => State::Skipper,
                        Head::NeedMore => {
                            return Ok(Step::Incomplete {
                                needed: view.len() as u64 + 1,
                                scanned: 0,
                            });
                        }
                    };
                }
                State::Entries {
                    tag_end,
                    start,
                    mut pos,
                    mut left,
                    count,
                    mut records,
                } => {
                    while left > 0 {
                        let rest = view.get(pos..).unwrap_or_default();
                        match fast::entry(rest, 2, self.max_depth) {
                            Ok((e, true)) if records < u32::MAX => {
                                pos += e.raw.len();
                                left -= 1;
                                records += 1;
                            }
                            Err(Miss::Incomplete) if rest.len() <= RESCAN_LIMIT => {
                                self.state = State::Entries {
                                    tag_end,
                                    start,
                                    pos,
                                    left,
                                    count,
                                    records,
                                };
                                // This entry ends past the buffer; every later entry and
                                // element takes at least a byte.
                                let needed = (view.len() as u64 + 1)
                                    .saturating_add(left - 1)
                                    .saturating_add(count.saturating_sub(2));
                                return Ok(Step::Incomplete {
                                    needed,
                                    scanned: pos,
                                });
                            }
                            _ => break,
                        }
                    }
                    if left > 0 {
                        // Hand over at this entry, as if the skipper had walked so far.
                        self.sk.resume_in(pos, &[count - 1, left])?;
                        self.state = State::Skipper;
                        continue;
                    }
                    self.scan = Some(ForwardScan {
                        tag_end,
                        start,
                        end: pos,
                        records,
                    });
                    if count == 2 {
                        self.state = State::Fresh;
                        return Ok(Step::Complete(pos));
                    }
                    // The options: the skipper finishes the request.
                    self.sk.resume_in(pos, &[count - 2])?;
                    self.state = State::Skipper;
                }
                State::Skipper => {
                    return Ok(match self.sk.advance(view)? {
                        Progress::Complete(n) => {
                            self.state = State::Fresh;
                            Step::Complete(n)
                        }
                        Progress::Incomplete { needed } => Step::Incomplete {
                            needed,
                            scanned: self.sk.position(),
                        },
                    });
                }
            }
        }
    }

    /// Forgets the pending request: the next [`advance`](Self::advance) starts a new one at
    /// the start of its view (the decoder framed the rest of this one itself).
    pub(crate) fn reset(&mut self) {
        self.state = State::Fresh;
        self.scan = None;
    }

    /// Hands the rest of the pending request to `sk`, a skipper already walking it (with
    /// offsets from the start of the caller's next view).
    pub(crate) fn resume_skipper(&mut self, sk: Skipper) {
        self.sk = sk;
        self.state = State::Skipper;
        self.scan = None;
    }

    /// The caller dropped the first `n` scanned bytes of the pending request (to discard an
    /// oversized one): the skipper takes over, and nothing of the request is kept.
    pub(crate) fn rebase(&mut self, n: usize) -> Result<(), MsgpackError> {
        if let State::Entries {
            pos, left, count, ..
        } = self.state
        {
            self.sk.resume_in(pos, &[count - 1, left])?;
            self.state = State::Skipper;
        }
        self.scan = None;
        self.sk.rebase(n);
        Ok(())
    }
}

/// What [`forward_head`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// A Forward request: end of the tag, start of the first entry, number of entries
    /// (at least one), number of request elements.
    Forward(usize, usize, u64, u64),
    /// Something else: the skipper frames it.
    Other,
    /// The buffer ends inside what could still be a Forward head (so inside the request).
    NeedMore,
}

/// Reads the head of a Forward request: `0x92`/`0x93`, a fixstr or str8 tag, a non-empty
/// array header. Heads are at most 263 bytes, so waiting for one costs little.
fn forward_head(view: &[u8], max_depth: usize) -> Head {
    // The request array, the entries array and each entry open below the limit.
    if max_depth < 3 {
        return Head::Other;
    }
    let count = match view.first() {
        Some(0x92) => 2,
        Some(0x93) => 3,
        Some(_) => return Head::Other,
        None => return Head::NeedMore,
    };
    match view.get(1) {
        Some(0xa0..=0xbf | 0xd9) => {}
        Some(_) => return Head::Other,
        None => return Head::NeedMore,
    }
    let Ok(tag_end) = fast::skip(view, 1, 1, max_depth) else {
        return Head::NeedMore;
    };
    let be = |r: std::ops::Range<usize>| {
        view.get(r)
            .map(|b| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    let parsed = match view.get(tag_end) {
        Some(&b @ 0x91..=0x9f) => Some((u64::from(b & 0x0f), 1)),
        Some(0xdc) => be(tag_end + 1..tag_end + 3).map(|n| (n, 3)),
        Some(0xdd) => be(tag_end + 1..tag_end + 5).map(|n| (n, 5)),
        Some(_) => return Head::Other,
        None => None,
    };
    match parsed {
        Some((0, _)) => Head::Other,
        Some((entries, hdr)) => Head::Forward(tag_end, tag_end + hdr, entries, count),
        None => Head::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_core::EventTime;
    use proptest::prelude::*;

    fn entry(sec: u32, v: u8) -> Vec<u8> {
        let mut e = vec![0x92];
        EventTime::new(sec, 0).write_to(&mut e);
        e.extend_from_slice(&[0x81, 0xa1, b'k', v & 0x7f]);
        e
    }

    /// Frames `bytes` fed cut at `cuts`; returns the completed length, the scan and the
    /// skipper's verdict on the whole buffer, for comparison.
    fn frame(bytes: &[u8], cuts: &[usize], max_depth: usize) -> Result<Step, MsgpackError> {
        let mut f = MsgpackFramer::new(max_depth);
        for &c in cuts.iter().filter(|&&c| c < bytes.len()) {
            if let Step::Complete(n) = f.advance(&bytes[..c])? {
                return Ok(Step::Complete(n));
            }
        }
        f.advance(bytes)
    }

    fn skipper(bytes: &[u8], max_depth: usize) -> Result<Progress, MsgpackError> {
        Skipper::with_max_depth(max_depth).advance(bytes)
    }

    #[test]
    fn forward_requests_are_scanned() {
        let entries = [entry(1, 1), entry(2, 2), entry(3, 3)].concat();
        let mut req = vec![0x93, 0xa1, b't', 0x93];
        req.extend_from_slice(&entries);
        req.extend_from_slice(&[0x81, 0xa4, b's', b'i', b'z', b'e', 0x03]);
        let mut f = MsgpackFramer::new(nagare_core::msgpack::MAX_DEPTH);
        // Byte by byte, then whole.
        for cut in 0..req.len() {
            assert!(
                matches!(f.advance(&req[..cut]), Ok(Step::Incomplete { needed, .. }) if needed as usize > cut && needed as usize <= req.len()),
                "cut {cut}"
            );
        }
        assert_eq!(f.advance(&req), Ok(Step::Complete(req.len())));
        assert_eq!(
            f.scan(),
            Some(ForwardScan {
                tag_end: 3,
                start: 4,
                end: 4 + entries.len(),
                records: 3
            })
        );
        // Without options; and the next request starts fresh.
        let mut two = vec![0x92, 0xa1, b't', 0x91];
        two.extend_from_slice(&entry(5, 5));
        assert_eq!(f.advance(&two), Ok(Step::Complete(two.len())));
        assert_eq!(f.scan().map(|s| s.records), Some(1));
        assert_eq!(f.advance(&[0xc0]), Ok(Step::Complete(1)));
        assert_eq!(f.scan(), None);
    }

    #[test]
    fn hands_over_to_the_skipper() {
        let mut req = vec![0x92, 0xa1, b't', 0x93];
        req.extend_from_slice(&entry(1, 1));
        req.extend_from_slice(&[0x92, 0x05, 0x80]); // integer time: not canonical
        req.extend_from_slice(&entry(3, 3));
        let mut f = MsgpackFramer::new(nagare_core::msgpack::MAX_DEPTH);
        assert_eq!(f.advance(&req), Ok(Step::Complete(req.len())));
        assert_eq!(f.scan(), None);
        // Malformed: the skipper's error, offset from the request start.
        let mut bad = vec![0x92, 0xa1, b't', 0x92];
        bad.extend_from_slice(&entry(1, 1));
        bad.extend_from_slice(&[0x92, 0xc1]);
        assert_eq!(
            frame(&bad, &[], 128).map(|_| ()),
            skipper(&bad, 128).map(|_| ())
        );
        assert!(matches!(
            frame(&bad, &[5, 15], 128),
            Err(MsgpackError::Malformed { offset, .. }) if offset == bad.len() - 1
        ));
        // Too deep, with the decoder's limit.
        let mut deep = vec![0x92, 0xa1, b't', 0x91, 0x92];
        EventTime::new(1, 0).write_to(&mut deep);
        deep.extend_from_slice(&[0x81, 0xa1, b'k', 0x91, 0x91, 0x01]);
        assert_eq!(frame(&deep, &[], 6), Ok(Step::Complete(deep.len())));
        assert_eq!(
            frame(&deep, &[], 5).map(|_| ()),
            skipper(&deep, 5).map(|_| ())
        );
        assert!(frame(&deep, &[9], 5).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Whatever the bytes and the cuts, the framer completes where the skipper does, and
        /// fails where it does.
        #[test]
        fn agrees_with_the_skipper(
            n in 1usize..5,
            body in proptest::collection::vec(any::<u8>(), 0..40),
            mutate in proptest::collection::vec((0usize..200, any::<u8>()), 0..3),
            cuts in proptest::collection::vec(0usize..200, 0..4),
            max_depth in 1usize..8,
        ) {
            let mut req = vec![0x93, 0xa2, b't', b'g', 0x90 | n as u8];
            for i in 0..n {
                req.extend_from_slice(&entry(i as u32 + 1, i as u8));
            }
            req.extend_from_slice(&body);
            for (at, b) in mutate {
                if let Some(x) = req.get_mut(at) {
                    *x = b;
                }
            }
            let mut cuts = cuts;
            cuts.sort_unstable();
            let got = frame(&req, &cuts, max_depth);
            match skipper(&req, max_depth) {
                Ok(Progress::Complete(m)) => prop_assert_eq!(got, Ok(Step::Complete(m))),
                Ok(Progress::Incomplete { .. }) => prop_assert!(matches!(got, Ok(Step::Incomplete { .. })), "{:?}", got),
                Err(e) => prop_assert_eq!(got, Err(e)),
            }
        }
    }
}
