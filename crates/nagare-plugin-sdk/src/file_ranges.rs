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
    /// The decoded descriptor (its `fd` is `fd`'s number).
    desc: nagare_core::file_ranges::FileRanges,
}

impl<'a> FileRanges<'a> {
    /// Reads the descriptor of a chunk lent for lifetime `'a`.
    ///
    /// # Safety
    /// The descriptor's file descriptor must stay open for `'a`: the host guarantees it for
    /// the chunk it lends to one `write` call, and `Chunk` ties `'a` to that call.
    pub(crate) unsafe fn from_descriptor(bytes: &[u8]) -> Result<FileRanges<'a>, ChunkError> {
        let desc = nagare_core::file_ranges::FileRanges::decode(bytes)
            .map_err(|e| ChunkError::FileRanges(e.to_string()))?;
        let fd: RawFd = desc.fd;
        // SAFETY: the caller's contract: `fd` is open for `'a`; decode checked it is >= 0.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        Ok(FileRanges { fd, desc })
    }

    /// The `(offset, len)` ranges, in payload order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.desc.ranges
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        self.desc.len()
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.desc.is_empty()
    }

    /// A file of our own on the same open file (a duplicate descriptor): dropping it closes
    /// the duplicate only.
    fn file(&self) -> io::Result<File> {
        Ok(File::from(self.fd.try_clone_to_owned()?))
    }

    /// Maps the part of the file the ranges cover into memory, read-only, so the payload is
    /// read in place from the page cache ([`MappedRanges::segments`]) instead of copied. Pages
    /// are mapped as they are read (the kernel maps the cached pages around each fault, 64 KiB
    /// at a time; asking for them all at once with `MAP_POPULATE` cost more: out_file bench,
    /// 4 alternated pairs, 137 against 131.5 CPU ticks per 3M events). Fails, before mapping,
    /// when the file is shorter than the ranges say (reading a mapping past the end of a file
    /// would be a `SIGBUS`). `None` for an empty payload.
    pub fn map(&self) -> io::Result<Option<MappedRanges<'_>>> {
        let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_owned());
        let nonempty = self.ranges().iter().filter(|(_, n)| *n > 0);
        let Some(start) = nonempty.clone().map(|(o, _)| *o).min() else {
            return Ok(None);
        };
        let end = nonempty
            .map(|(o, n)| o.checked_add(*n))
            .try_fold(0u64, |acc, e| e.map(|e| acc.max(e)))
            .ok_or_else(|| invalid("range overflows"))?;
        let file_len = self.file()?.metadata()?.len();
        if end > file_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("chunk file ranges end at {end}, the file at {file_len}"),
            ));
        }
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096);
        let base = start & !(page - 1);
        let len = usize::try_from(end - base).map_err(|_| invalid("ranges too large"))?;
        let offset = libc::off_t::try_from(base).map_err(|_| invalid("offset too large"))?;
        // SAFETY: a new read-only shared mapping of an open descriptor: no existing memory
        // is touched; the result is checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(MappedRanges {
            ptr,
            len,
            base,
            ranges: self.ranges(),
        }))
    }

    /// Reads the payload into memory, with positioned reads.
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        nagare_core::file_ranges::read_ranges_into(&self.file()?, self.ranges(), &mut out)?;
        Ok(out)
    }

    /// Writes the payload to `w`, through a buffer (see [`FileRanges::send_to`] for a
    /// socket). A range that ends early (the file is shorter than the host said) is an
    /// `UnexpectedEof` error.
    pub fn copy_to<W: Write>(&self, w: &mut W) -> io::Result<u64> {
        let file = self.file()?;
        let mut buf = vec![0u8; COPY_BUF.min(usize::try_from(self.len()).unwrap_or(COPY_BUF))];
        let mut total = 0u64;
        for &(offset, n) in self.ranges() {
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
        for &(offset, n) in self.ranges() {
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

/// The ranges of a `FILE_RANGES` chunk mapped into memory (read-only, shared with the page
/// cache): the payload read in place, with no copy. Unmapped when dropped; it borrows the
/// chunk, so it cannot outlive the `write` call.
#[derive(Debug)]
pub struct MappedRanges<'a> {
    ptr: *mut libc::c_void,
    len: usize,
    /// The file offset the mapping starts at.
    base: u64,
    ranges: &'a [(u64, u64)],
}

impl MappedRanges<'_> {
    /// The payload, one slice per range, in order. A frame of a file buffer holds whole
    /// entries, so each slice is a run of whole `[time, record]` entries.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> + '_ {
        // SAFETY: `ptr` maps `len` readable bytes (`map` checked every range lies inside,
        // and the file was at least that long), alive until `self` drops; the host does not
        // write a leased chunk's file, so the bytes do not change while borrowed.
        let all: &[u8] = unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) };
        self.ranges.iter().filter_map(move |&(offset, n)| {
            let from = usize::try_from(offset.checked_sub(self.base)?).ok()?;
            all.get(from..from.checked_add(usize::try_from(n).ok()?)?)
        })
    }
}

impl Drop for MappedRanges<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are the mapping `map` made, unmapped once, here.
        unsafe { libc::munmap(self.ptr, self.len) };
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

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::{self, Read, Seek, SeekFrom, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use abi_stable::std_types::{RSlice, RStr};
    use nagare_plugin_api::{ChunkFormat, ChunkRef};
    use rmpv::Value;

    use super::{COPY_BUF, reset_on_close};
    use crate::chunk::{ChunkError, ChunkReader, ChunkWriter, EventTime};
    use crate::plugin::Chunk;

    const WAIT: Duration = Duration::from_secs(10);

    /// A chunk file: payload pieces between junk "frame headers", laid out in reverse
    /// payload order (so reading the file front to back gives the wrong bytes), with the
    /// payload's ranges in payload order.
    struct Fixture {
        file: File,
        file_len: u64,
        payload: Vec<u8>,
        ranges: Vec<(u64, u64)>,
        records: u32,
    }

    fn fixture() -> Fixture {
        let mut w = ChunkWriter::new();
        for i in 0..40u32 {
            let msg = "x".repeat(5000 + i as usize);
            w.push_map(
                EventTime::new(1_700_000_000 + i, i),
                [("i", Value::from(i)), ("msg", Value::from(msg))],
            );
        }
        let payload = w.as_bytes().to_vec();
        assert!(payload.len() > 2 * COPY_BUF, "several copy buffers' worth");
        // Cuts mid-entry, one empty piece, one piece longer than the copy buffer.
        let cuts = [0, 1, 1, 777, 70_000, 140_001, payload.len()];
        let pieces: Vec<&[u8]> = cuts
            .windows(2)
            .map(|c| payload.get(c[0]..c[1]).expect("cut within the payload"))
            .collect();
        let mut bytes = Vec::new();
        let mut ranges = vec![(0, 0); pieces.len()];
        for (k, piece) in pieces.iter().enumerate().rev() {
            // 0xc1 is never a msgpack byte: a stray junk byte breaks the entries.
            bytes.extend_from_slice(&[0xc1; 9]);
            bytes.push(k as u8);
            ranges[k] = (bytes.len() as u64, piece.len() as u64);
            bytes.extend_from_slice(piece);
        }
        bytes.extend_from_slice(&[0xc1; 13]);
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(&bytes).expect("write the chunk file");
        Fixture {
            file,
            file_len: bytes.len() as u64,
            payload,
            ranges,
            records: w.records(),
        }
    }

    fn descriptor(file: &File, ranges: &[(u64, u64)]) -> Vec<u8> {
        nagare_core::file_ranges::FileRanges {
            fd: file.as_raw_fd(),
            ranges: ranges.to_vec(),
        }
        .encode()
    }

    fn chunk(data: &[u8], format: ChunkFormat, records: u32) -> Chunk<'_> {
        Chunk::new(ChunkRef {
            tag: RStr::from("app.log"),
            chunk_id: [9; 16],
            records,
            format,
            data: RSlice::from(data),
            variables: RSlice::from(&[][..]),
        })
    }

    /// The file ranges of a `FILE_RANGES` test chunk.
    fn ranges_of<'a>(c: &Chunk<'a>) -> super::FileRanges<'a> {
        c.file_ranges()
            .expect("a FILE_RANGES chunk")
            .expect("decodes")
    }

    /// Reads `r` to its end in a thread; the result within [`WAIT`].
    fn read_in_thread(mut r: impl Read + Send + 'static) -> mpsc::Receiver<io::Result<Vec<u8>>> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = tx.send(r.read_to_end(&mut v).map(|_| v));
        });
        rx
    }

    fn received(rx: &mpsc::Receiver<io::Result<Vec<u8>>>) -> Vec<u8> {
        rx.recv_timeout(WAIT)
            .expect("the reader finished in time")
            .expect("the reader read")
    }

    /// A connected loopback pair: (client, accepted), the accepted end with a read timeout.
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (server, _) = l.accept().expect("accept");
        server.set_read_timeout(Some(WAIT)).expect("read timeout");
        (client, server)
    }

    /// A pipe: (read end, write end).
    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for the call to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
        // SAFETY: pipe2 succeeded: both are new descriptors owned by nobody else.
        unsafe {
            (
                File::from(OwnedFd::from_raw_fd(fds[0])),
                File::from(OwnedFd::from_raw_fd(fds[1])),
            )
        }
    }

    fn linger(s: &TcpStream) -> (i32, i32) {
        let mut l = libc::linger {
            l_onoff: 0,
            l_linger: 0,
        };
        let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
        // SAFETY: `s` is an open socket; the pointer and length describe `l`, alive for
        // the call.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw mut l).cast::<libc::c_void>(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        (l.l_onoff, l.l_linger)
    }

    #[test]
    fn reads_and_copies_the_ranges_in_payload_order() {
        let f = fixture();
        // The file's own offset is the host's: positioned reads leave it alone.
        (&f.file).seek(SeekFrom::Start(5)).expect("seek");
        let d = descriptor(&f.file, &f.ranges);
        let c = chunk(&d, ChunkFormat::FILE_RANGES, f.records);
        let r = ranges_of(&c);
        assert_eq!(r.ranges(), f.ranges.as_slice());
        assert_eq!(r.len(), f.payload.len() as u64);
        assert!(!r.is_empty());

        assert!(r.read_to_vec().expect("read_to_vec") == f.payload);
        let mut copied = Vec::new();
        assert_eq!(
            r.copy_to(&mut copied).expect("copy_to"),
            f.payload.len() as u64
        );
        assert!(copied == f.payload, "copy_to gives the payload");

        let p = c.payload().expect("payload");
        assert!(p == f.payload.as_slice());
        assert!(
            std::ptr::eq(p, c.payload().expect("payload again")),
            "read once"
        );
        let got = c.entries().expect("entries").values().expect("values");
        let want = ChunkReader::new(&f.payload)
            .values()
            .expect("fixture values");
        assert_eq!(got.len(), 40);
        assert_eq!(got, want);
        assert_eq!(got[39].0, EventTime::new(1_700_000_039, 39));

        // Dropping the duplicates closed only them: the host's descriptor is still open.
        assert_eq!((&f.file).stream_position().expect("position"), 5);
        assert_eq!(f.file.metadata().expect("still open").len(), f.file_len);
    }

    #[test]
    fn map_gives_each_range_in_place_in_order() {
        let f = fixture();
        (&f.file).seek(SeekFrom::Start(5)).expect("seek");
        // Ranges that start past the first page too (the mapping starts page-aligned).
        let late: Vec<(u64, u64)> = f.ranges.iter().copied().filter(|r| r.0 > 5000).collect();
        assert!(!late.is_empty() && late.len() < f.ranges.len());
        for ranges in [f.ranges.clone(), late] {
            let d = descriptor(&f.file, &ranges);
            let c = chunk(&d, ChunkFormat::FILE_RANGES, f.records);
            let r = ranges_of(&c);
            let want: Vec<Vec<u8>> = ranges
                .iter()
                .map(|&(o, n)| {
                    let mut v = vec![0u8; usize::try_from(n).expect("small")];
                    std::os::unix::fs::FileExt::read_exact_at(&f.file, &mut v, o).expect("read");
                    v
                })
                .collect();
            let mapped = r.map().expect("map").expect("a non-empty payload");
            let got: Vec<Vec<u8>> = mapped.segments().map(<[u8]>::to_vec).collect();
            assert_eq!(got.len(), ranges.len(), "one segment per range");
            assert!(got == want, "each segment is its range's bytes");
        }
        let d = descriptor(&f.file, &f.ranges);
        let c = chunk(&d, ChunkFormat::FILE_RANGES, f.records);
        let r = ranges_of(&c);
        let mapped = r.map().expect("map").expect("mapped");
        assert!(
            mapped.segments().collect::<Vec<_>>().concat() == f.payload,
            "in payload order"
        );
        drop(mapped);
        // The host's descriptor is untouched: still open, offset unmoved.
        assert_eq!((&f.file).stream_position().expect("position"), 5);
    }

    #[test]
    fn send_to_moves_the_payload_to_a_socket_a_pipe_and_a_file() {
        let f = fixture();
        (&f.file).seek(SeekFrom::Start(5)).expect("seek");
        let d = descriptor(&f.file, &f.ranges);
        let c = chunk(&d, ChunkFormat::FILE_RANGES, f.records);
        let r = ranges_of(&c);
        let len = f.payload.len() as u64;

        let (client, server) = tcp_pair();
        let rx = read_in_thread(server);
        assert_eq!(r.send_to(&client).expect("send_to a socket"), len);
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        assert!(
            received(&rx) == f.payload,
            "the socket's peer got the payload"
        );

        // More than a pipe holds (64 KiB), so a reader drains it meanwhile.
        let (rd, wr) = pipe();
        let rx = read_in_thread(rd);
        assert_eq!(r.send_to(&wr).expect("send_to a pipe"), len);
        drop(wr);
        assert!(
            received(&rx) == f.payload,
            "the pipe's reader got the payload"
        );

        let mut out = tempfile::tempfile().expect("temp file");
        assert_eq!(r.send_to(&out).expect("send_to a file"), len);
        let mut back = Vec::new();
        out.seek(SeekFrom::Start(0)).expect("rewind");
        out.read_to_end(&mut back).expect("read back");
        assert!(back == f.payload, "the file holds the payload");

        assert_eq!((&f.file).stream_position().expect("position"), 5);
    }

    #[test]
    fn a_range_past_the_end_of_the_file_is_an_error() {
        let f = fixture();
        let (mut out, mut past) = (f.ranges.clone(), f.ranges.clone());
        // Ends 7 bytes past the end; starts past the end.
        out.push((f.file_len - 3, 10));
        past.push((f.file_len + 100, 1));
        for (ranges, done, n) in [(out, 3, 10), (past, 0, 1)] {
            let d = descriptor(&f.file, &ranges);
            let c = chunk(&d, ChunkFormat::FILE_RANGES, f.records);
            let r = ranges_of(&c);
            let tail = format!("the file ends after {done} of {n} bytes");

            let mut copied = Vec::new();
            let e = r.copy_to(&mut copied).expect_err("copy_to past the end");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
            assert!(e.to_string().ends_with(&tail), "{e}");
            assert!(
                copied.starts_with(&f.payload),
                "the whole ranges came first"
            );
            assert_eq!(copied.len(), f.payload.len() + done);

            let sink = tempfile::tempfile().expect("temp file");
            let e = r.send_to(&sink).expect_err("send_to past the end");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
            assert!(e.to_string().ends_with(&tail), "{e}");
            assert_eq!(
                sink.metadata().expect("sink").len(),
                (f.payload.len() + done) as u64
            );

            let (client, server) = tcp_pair();
            let e = r
                .send_to(&client)
                .expect_err("send_to a socket past the end");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
            drop((client, server));

            assert!(r.read_to_vec().is_err(), "read_to_vec past the end");
            let e = r.map().expect_err("no mapping past the end (SIGBUS)");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
            match c.payload() {
                Err(ChunkError::FileRanges(m)) => assert!(!m.is_empty()),
                other => panic!("payload past the end: {other:?}"),
            }
            assert!(matches!(c.entries(), Err(ChunkError::FileRanges(_))));
        }
    }

    #[test]
    fn no_ranges_is_an_empty_payload() {
        let f = fixture();
        let d = descriptor(&f.file, &[]);
        let c = chunk(&d, ChunkFormat::FILE_RANGES, 0);
        let r = ranges_of(&c);
        assert!(r.is_empty());
        assert_eq!(r.read_to_vec().expect("read_to_vec"), Vec::<u8>::new());
        let mut copied = Vec::new();
        assert_eq!(r.copy_to(&mut copied).expect("copy_to"), 0);
        assert!(copied.is_empty());
        let sink = tempfile::tempfile().expect("temp file");
        assert_eq!(r.send_to(&sink).expect("send_to"), 0);
        assert!(r.map().expect("map").is_none(), "nothing to map");
        assert_eq!(c.payload().expect("payload"), &[] as &[u8]);
        assert_eq!(c.entries().expect("entries").count(), 0);
    }

    #[test]
    fn a_malformed_descriptor_is_a_file_ranges_error() {
        let f = fixture();
        let good = descriptor(&f.file, &f.ranges);
        let mut v2 = good.clone();
        v2[0] = 2;
        let cases: [(&[u8], &str); 4] = [
            (&good[..good.len() - 8], "is not a whole descriptor"),
            (&[1, 2, 3], "3 bytes is not a whole descriptor"),
            (&[], "0 bytes is not a whole descriptor"),
            (&v2, "unknown layout version 2"),
        ];
        for (data, why) in cases {
            let c = chunk(data, ChunkFormat::FILE_RANGES, 1);
            match c.file_ranges() {
                Some(Err(ChunkError::FileRanges(m))) => assert!(m.ends_with(why), "{m}"),
                other => panic!("{why}: {other:?}"),
            }
            match c.payload() {
                Err(ChunkError::FileRanges(m)) => assert!(m.ends_with(why), "{m}"),
                other => panic!("{why}: payload {other:?}"),
            }
        }
    }

    #[test]
    fn other_formats_have_no_file_ranges() {
        let f = fixture();
        let c = chunk(&f.payload, ChunkFormat::MSGPACK_STREAM, f.records);
        assert!(c.file_ranges().is_none());
        assert!(c.payload().expect("payload") == f.payload.as_slice());
        let gz = crate::chunk::gzip(&f.payload);
        let c = chunk(&gz, ChunkFormat::MSGPACK_STREAM_GZIP, f.records);
        assert!(c.file_ranges().is_none());
        assert!(c.payload().expect("payload") == f.payload.as_slice());
        // A descriptor's bytes in a msgpack chunk are just (bad) msgpack.
        let d = descriptor(&f.file, &f.ranges);
        assert!(
            chunk(&d, ChunkFormat::MSGPACK_STREAM, 1)
                .file_ranges()
                .is_none()
        );
    }

    #[test]
    fn a_send_timeout_comes_back_as_an_error() {
        // A sparse 16 MiB file: far more than a peer that never reads lets through.
        let file = tempfile::tempfile().expect("temp file");
        file.set_len(16 << 20).expect("set_len");
        let d = descriptor(&file, &[(0, 16 << 20)]);
        let c = chunk(&d, ChunkFormat::FILE_RANGES, 1);
        let r = ranges_of(&c);
        let (client, server) = tcp_pair();
        client
            .set_write_timeout(Some(Duration::from_millis(200)))
            .expect("write timeout");
        let start = Instant::now();
        let e = r.send_to(&client).expect_err("the peer never reads");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e}"
        );
        assert!(start.elapsed() < WAIT, "bounded by the send timeout");
        drop(server);
    }

    #[test]
    fn reset_on_close_sets_a_zero_linger_and_resets_the_peer() {
        let (client, mut server) = tcp_pair();
        assert_eq!(linger(&client), (0, 0), "no linger by default");
        reset_on_close(&client).expect("reset_on_close");
        assert_eq!(linger(&client), (1, 0));
        drop(client);
        let mut b = [0u8; 8];
        let e = server
            .read(&mut b)
            .expect_err("a reset, not an orderly close");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");

        // Without it, the peer sees an orderly close.
        let (client, mut server) = tcp_pair();
        drop(client);
        assert_eq!(server.read(&mut b).expect("an orderly close"), 0);

        // Not a socket.
        let file = tempfile::tempfile().expect("temp file");
        let e = reset_on_close(&file).expect_err("a file has no linger");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK), "{e}");
    }
}
