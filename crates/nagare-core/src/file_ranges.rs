//! The descriptor of a chunk whose payload stays in the buffer's file
//! (`ChunkFormat::FILE_RANGES` in `nagare-plugin-api`): the file descriptor the host holds
//! open for the duration of one `write` call, and the byte ranges of that file whose
//! concatenation is the chunk's payload (concatenated msgpack `[time, record]` entries).
//! An output that sends chunks as they are (out_forward) copies those ranges from the page
//! cache to its socket (`sendfile`) instead of being handed a copy of them in memory.
//!
//! The layout is part of the plugin ABI (epoch 1) and never changes within it:
//! little-endian `u64` words `[1, fd, n, offset_1, len_1, …, offset_n, len_n]`. The first
//! word is the layout's version.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use thiserror::Error;

/// The layout version this module writes and reads.
pub const VERSION: u64 = 1;

/// A decoded descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileRanges {
    /// The file descriptor, open for reading, valid until the call returns. Read it with
    /// positioned reads (`pread`, `sendfile` with an offset) or through a duplicate whose
    /// offset the reader moves: the host does not use its offset.
    pub fd: i32,
    /// `(offset, len)` of each range, in payload order.
    pub ranges: Vec<(u64, u64)>,
}

/// Why a descriptor could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileRangesError {
    /// Fewer bytes than its header and ranges need, or a length not a multiple of 8.
    #[error("file ranges descriptor: {0} bytes is not a whole descriptor")]
    Length(usize),
    /// Another layout than [`VERSION`].
    #[error("file ranges descriptor: unknown layout version {0}")]
    Version(u64),
    /// A file descriptor out of `i32`'s range.
    #[error("file ranges descriptor: bad file descriptor {0}")]
    Fd(u64),
    /// A range whose end does not fit in `u64`.
    #[error("file ranges descriptor: range at {offset} of {len} bytes overflows")]
    Range {
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
    },
}

impl FileRanges {
    /// The payload's length: the sum of the ranges' lengths (saturating).
    pub fn len(&self) -> u64 {
        self.ranges
            .iter()
            .fold(0u64, |acc, (_, len)| acc.saturating_add(*len))
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The descriptor's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * (3 + 2 * self.ranges.len()));
        let fd = u64::try_from(self.fd).unwrap_or(u64::MAX);
        for w in [VERSION, fd, self.ranges.len() as u64] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        for (offset, len) in &self.ranges {
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        out
    }

    /// Reads a descriptor written by [`FileRanges::encode`].
    pub fn decode(bytes: &[u8]) -> Result<FileRanges, FileRangesError> {
        let bad_len = || FileRangesError::Length(bytes.len());
        if bytes.len() % 8 != 0 {
            return Err(bad_len());
        }
        let mut words = bytes
            .chunks_exact(8)
            .filter_map(|w| w.try_into().ok().map(u64::from_le_bytes));
        let mut next = || words.next().ok_or_else(bad_len);
        let version = next()?;
        if version != VERSION {
            return Err(FileRangesError::Version(version));
        }
        let raw_fd = next()?;
        let fd = i32::try_from(raw_fd)
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or(FileRangesError::Fd(raw_fd))?;
        let n = next()?;
        if Some(bytes.len() as u64) != n.checked_mul(16).and_then(|b| b.checked_add(24)) {
            return Err(bad_len());
        }
        let mut ranges = Vec::with_capacity(usize::try_from(n).map_err(|_| bad_len())?);
        for _ in 0..n {
            let (offset, len) = (next()?, next()?);
            if offset.checked_add(len).is_none() {
                return Err(FileRangesError::Range { offset, len });
            }
            ranges.push((offset, len));
        }
        Ok(FileRanges { fd, ranges })
    }
}

/// Reads the `(offset, len)` `ranges` of `file`, in order, into `buf` (cleared first), with
/// positioned reads (the file's offset is not used). A range past the end of the file is an
/// `UnexpectedEof` error. What the host does for an output that needs bytes, and the SDK's
/// `FileRanges::read_to_vec`.
pub fn read_ranges_into(file: &File, ranges: &[(u64, u64)], buf: &mut Vec<u8>) -> io::Result<()> {
    let too_large = || io::Error::new(io::ErrorKind::InvalidInput, "chunk file range too large");
    buf.clear();
    let total = ranges
        .iter()
        .try_fold(0usize, |acc, (_, n)| {
            usize::try_from(*n).ok().and_then(|n| acc.checked_add(n))
        })
        .ok_or_else(too_large)?;
    buf.resize(total, 0);
    let mut at = 0usize;
    for &(offset, n) in ranges {
        let n = usize::try_from(n).map_err(|_| too_large())?;
        let dst = buf.get_mut(at..at + n).ok_or_else(too_large)?;
        file.read_exact_at(dst, offset)?;
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_reads_what_encode_wrote(
            fd in 0i32..=i32::MAX,
            ranges in proptest::collection::vec((0u64..1 << 62, 0u64..1 << 62), 0..40),
        ) {
            let d = FileRanges { fd, ranges };
            prop_assert_eq!(FileRanges::decode(&d.encode()), Ok(d));
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = FileRanges::decode(&bytes);
        }
    }

    #[test]
    fn malformed_descriptors_say_why() {
        let good = FileRanges {
            fd: 7,
            ranges: vec![(24, 100), (148, 50)],
        };
        let bytes = good.encode();
        assert_eq!(good.len(), 150);
        assert_eq!(
            FileRanges::decode(bytes.get(..bytes.len() - 8).unwrap_or_default()),
            Err(FileRangesError::Length(bytes.len() - 8))
        );
        assert_eq!(
            FileRanges::decode(bytes.get(..bytes.len() - 1).unwrap_or_default()),
            Err(FileRangesError::Length(bytes.len() - 1))
        );
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(FileRanges::decode(&v2), Err(FileRangesError::Version(2)));
        let mut fd = bytes.clone();
        fd[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(FileRanges::decode(&fd), Err(FileRangesError::Fd(u64::MAX)));
        let over = FileRanges {
            fd: 1,
            ranges: vec![(u64::MAX, 1)],
        };
        assert_eq!(
            FileRanges::decode(&over.encode()),
            Err(FileRangesError::Range {
                offset: u64::MAX,
                len: 1
            })
        );
        assert_eq!(FileRanges::decode(&[]), Err(FileRangesError::Length(0)));
    }
}
