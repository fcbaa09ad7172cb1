//! Writing a message made of several byte slices without first copying them into one.

use std::io::{self, IoSlice, Write};

/// Most slices handed to one `writev` (Linux's `IOV_MAX` is 1024).
pub const MAX_IOV: usize = 512;

/// Writes every byte of `parts`, in order, with as few `write_vectored` calls as the writer
/// allows (at most [`MAX_IOV`] slices per call), resuming inside a slice after a short
/// write. Empty slices are skipped; `Interrupted` is retried; a writer that takes nothing
/// gives `WriteZero`. The file buffer's frames and out_forward's PackedForward requests are
/// written this way: a header, the chunk's bytes as they are, a trailer.
pub fn write_all_parts(w: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
    let mut idx = 0usize;
    let mut off = 0usize;
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len().min(MAX_IOV));
    loop {
        while parts.get(idx).is_some_and(|p| p.len() <= off) {
            idx += 1;
            off = 0;
        }
        let Some(first) = parts.get(idx) else {
            return Ok(());
        };
        slices.clear();
        slices.push(IoSlice::new(first.get(off..).unwrap_or_default()));
        slices.extend(
            parts
                .iter()
                .skip(idx + 1)
                .take(MAX_IOV - 1)
                .map(|p| IoSlice::new(p)),
        );
        let mut n = match w.write_vectored(&slices) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the writer took no bytes",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 {
            let Some(p) = parts.get(idx) else { break };
            let left = p.len().saturating_sub(off);
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A writer that takes at most `step` bytes per call, across slices; fails with
    /// `Interrupted` every `interrupt`th call.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        calls: usize,
        interrupt: usize,
    }

    impl Trickle {
        fn new(step: usize) -> Self {
            Trickle {
                out: Vec::new(),
                step,
                calls: 0,
                interrupt: usize::MAX,
            }
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            assert!(bufs.len() <= MAX_IOV, "{} slices", bufs.len());
            if self.calls % self.interrupt == 0 {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(left);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                left -= k;
                if left == 0 {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parts_are_written_whole_and_in_order() {
        let check = |parts: &[&[u8]], step: usize, max_calls: usize| {
            let mut w = Trickle::new(step);
            write_all_parts(&mut w, parts).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(w.out, parts.concat(), "step {step}");
            assert!(w.calls <= max_calls, "{} calls for step {step}", w.calls);
        };
        check(&[b"head", b"", b"payload", b"x"], 1000, 1);
        check(&[b"head", b"", b"payload", b"x"], 3, 4);
        check(&[], 1, 0);
        let many: Vec<Vec<u8>> = (0..1500u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        check(&refs, usize::MAX, 3);
    }

    #[test]
    fn a_writer_that_takes_nothing_is_an_error() {
        let mut w = Trickle::new(0);
        let e = write_all_parts(&mut w, &[b"x"]).err().map(|e| e.kind());
        assert_eq!(e, Some(io::ErrorKind::WriteZero));
        assert!(
            write_all_parts(&mut w, &[b"", b""]).is_ok(),
            "nothing to write"
        );
    }

    proptest! {
        /// Whatever the write sizes and interruptions, the bytes arrive whole and in order.
        #[test]
        fn any_short_writes(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..12),
            step in 1usize..64,
            interrupt in 2usize..6,
        ) {
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let mut w = Trickle { interrupt, ..Trickle::new(step) };
            write_all_parts(&mut w, &refs).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(w.out, parts.concat());
        }
    }
}
