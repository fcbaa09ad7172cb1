//! A chunk whose payload stays in the host's buffer file (`ChunkFormat::FILE_RANGES`): the
//! ranges of a file the host holds open for one `write` call. An output asks for such chunks
//! with [`crate::Output::accepts_file_ranges`]; [`FileRanges::send_to`] then moves the
//! payload to a socket with `sendfile` (no copy through the plugin's memory), and
//! [`crate::Chunk::payload`] still reads it into memory for any other use.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::FileExt;

use crate::chunk::ChunkError;

/// The payload of a `FILE_RANGES` chunk: byte ranges of a file open for the call.
#[derive(Debug)]
pub struct FileRanges<'a> {
    fd: BorrowedFd<'a>,
    ranges: Vec<(u64, u64)>,
}

impl<'a> FileRanges<'a> {
    /// Reads the descriptor of a chunk lent for lifetime `'a`.
    ///
    /// # Safety
    /// The descriptor's file descriptor must stay open for `'a`: the host guarantees it for
    /// the chunk it lends to one `write` call, and `Chunk` ties `'a` to that call.
    pub(crate) unsafe fn from_descriptor(bytes: &[u8]) -> Result<FileRanges<'a>, ChunkError> {
        let d = nagare_core::file_ranges::FileRanges::decode(bytes)
            .map_err(|e| ChunkError::FileRanges(e.to_string()))?;
        let fd: RawFd = d.fd;
        // SAFETY: the caller's contract: `fd` is open for `'a`; decode checked it is >= 0.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        Ok(FileRanges {
            fd,
            ranges: d.ranges,
        })
    }

    /// The `(offset, len)` ranges, in payload order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        self.ranges
            .iter()
            .fold(0u64, |acc, (_, len)| acc.saturating_add(*len))
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A file of our own on the same open file (a duplicate descriptor): dropping it closes
    /// the duplicate only.
    fn file(&self) -> io::Result<File> {
        Ok(File::from(self.fd.try_clone_to_owned()?))
    }

    /// Reads the payload into memory, with positioned reads.
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "payload too large"))?;
        let file = self.file()?;
        let mut out = vec![0u8; len];
        let mut at = 0usize;
        for &(offset, n) in &self.ranges {
            let n = usize::try_from(n)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large"))?;
            let dst = out
                .get_mut(at..at.saturating_add(n))
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range past payload"))?;
            file.read_exact_at(dst, offset)?;
            at += n;
        }
        Ok(out)
    }

    /// Writes the payload to `w`, through a buffer (see [`FileRanges::send_to`] for a
    /// socket). A range that ends early (the file is shorter than the host said) is an
    /// `UnexpectedEof` error.
    pub fn copy_to<W: Write>(&self, w: &mut W) -> io::Result<u64> {
        let file = self.file()?;
        let mut buf = vec![0u8; COPY_BUF.min(usize::try_from(self.len()).unwrap_or(COPY_BUF))];
        let mut total = 0u64;
        for &(offset, n) in &self.ranges {
            let mut done = 0u64;
            while done < n {
                let want = usize::try_from(n - done)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let Some(dst) = buf.get_mut(..want) else {
                    break;
                };
                let got = file.read_at(dst, offset + done)?;
                if got == 0 {
                    return Err(short_range(offset, done, n));
                }
                w.write_all(dst.get(..got).unwrap_or_default())?;
                done += got as u64;
            }
            total += done;
        }
        Ok(total)
    }

    /// Writes the payload to the socket (or pipe, or file) `out` with `sendfile(2)`: the
    /// kernel moves each range from the page cache, with no copy through this process. A
    /// send timeout on the socket comes back as a `WouldBlock`/`TimedOut` error, a range
    /// that ends early as `UnexpectedEof`.
    ///
    /// The socket's queues then hold the file's pages, not a copy: the host overwrites them
    /// once `write` returned `Ok` (`ChunkFormat::FILE_RANGES`), so return `Ok` only once the
    /// peer has read them (its ack), and reset (`SO_LINGER` 0) a connection given up on.
    pub fn send_to<S: AsFd>(&self, out: &S) -> io::Result<u64> {
        let out = out.as_fd().as_raw_fd();
        let fd = self.fd.as_raw_fd();
        let mut total = 0u64;
        for &(offset, n) in &self.ranges {
            let mut done = 0u64;
            while done < n {
                let mut at = libc::off_t::try_from(offset + done).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "range offset too large")
                })?;
                let want = usize::try_from(n - done)
                    .unwrap_or(usize::MAX)
                    .min(SENDFILE_MAX);
                // SAFETY: both descriptors are open (`fd` for `'a`, `out` borrowed from a
                // live `AsFd`), and `at` is a valid, exclusive pointer for the call.
                let sent = unsafe { libc::sendfile(out, fd, &mut at, want) };
                match sent {
                    0 => return Err(short_range(offset, done, n)),
                    s if s > 0 => done += s as u64,
                    _ => {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                }
            }
            total += done;
        }
        Ok(total)
    }
}

/// Makes closing `socket` reset the connection (`SO_LINGER` 0): what its send queue still
/// holds (pages of the host's chunk file after [`FileRanges::send_to`]) is discarded when
/// it is closed, not sent after `write` has returned.
pub fn reset_on_close<S: AsFd>(socket: &S) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::linger>())
        .map_err(|_| io::Error::other("linger size"))?;
    // SAFETY: `socket` is an open descriptor (borrowed from a live `AsFd`), and the value
    // pointer and length describe `linger`, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The buffer [`FileRanges::copy_to`] copies through.
const COPY_BUF: usize = 64 * 1024;

/// The most one `sendfile` call is asked to move (Linux moves at most 0x7ffff000 anyway).
const SENDFILE_MAX: usize = 1 << 30;

fn short_range(offset: u64, done: u64, n: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("chunk file range at {offset}: the file ends after {done} of {n} bytes"),
    )
}
