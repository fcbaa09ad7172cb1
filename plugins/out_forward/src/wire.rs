//! Bytes on the wire: the PackedForward request around untouched chunk bytes, and reading
//! whole msgpack values (HELO, PONG, acks) from a blocking stream.
//!
//! A request is written as three slices in one vectored write loop: the head (`0x93`, the
//! tag as str, `0xdb` + u32 BE length), the chunk bytes as they came from the buffer, and the
//! option map `{"size": n, "compressed": "text"|"gzip", "chunk"?: id}`. This is byte for byte
//! what `nagare_forward::encode_packed_forward` (and Fluentd's `send_data_actual`) produce,
//! without copying the chunk.

use std::io::{self, Read};

use nagare_core::msgpack::{write_int, write_map_header, write_str};
use nagare_forward::Compression;

/// The largest reply accepted from a server (HELO, PONG, ack): they are tiny.
pub const MAX_REPLY: usize = 64 * 1024;

/// The head and the option map of one PackedForward request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    /// `0x93`, tag, `0xdb` + u32 BE entries length.
    pub head: Vec<u8>,
    /// `{"size": .., "compressed": .., "chunk"?: ..}`.
    pub option: Vec<u8>,
}

/// Why a request cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// str32 holds at most 4 GiB − 1.
    #[error("chunk of {0} bytes does not fit a str32 (4 GiB limit)")]
    TooLarge(usize),
}

/// Frames a chunk of `entries_len` bytes holding `records` entries.
pub fn framing(
    tag: &str,
    entries_len: usize,
    records: u32,
    compressed: Compression,
    chunk: Option<&str>,
) -> Result<Framing, FramingError> {
    let len = u32::try_from(entries_len).map_err(|_| FramingError::TooLarge(entries_len))?;
    let mut head = Vec::with_capacity(tag.len() + 10);
    head.push(0x93);
    write_str(&mut head, tag.as_bytes());
    head.push(0xdb);
    head.extend_from_slice(&len.to_be_bytes());
    let mut option = Vec::with_capacity(64);
    write_map_header(&mut option, if chunk.is_some() { 3 } else { 2 });
    write_str(&mut option, b"size");
    write_int(&mut option, i64::from(records));
    write_str(&mut option, b"compressed");
    write_str(&mut option, compressed.as_str().as_bytes());
    if let Some(c) = chunk {
        write_str(&mut option, b"chunk");
        write_str(&mut option, c.as_bytes());
    }
    Ok(Framing { head, option })
}

/// Reads whole msgpack values from a stream, keeping any bytes that arrive early.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer closed the connection first.
    #[error("connection closed by the server")]
    Closed,
    /// The read timed out.
    #[error("no response within the timeout")]
    Timeout,
    /// The bytes are not msgpack.
    #[error("invalid msgpack from the server: {0}")]
    Invalid(String),
    /// Too big for a control message.
    #[error("reply larger than {MAX_REPLY} bytes")]
    TooLarge,
    /// Another socket error.
    #[error("{0}")]
    Io(io::Error),
}

impl Reader {
    /// Reads one complete msgpack value (the read timeout of `r` bounds each wait).
    pub fn read_value(&mut self, r: &mut impl Read) -> Result<Vec<u8>, ReadError> {
        let mut tmp = [0u8; 4096];
        loop {
            if !self.buf.is_empty() {
                match nagare_core::value_len(&self.buf) {
                    Ok(n) => {
                        let rest = self.buf.split_off(n);
                        return Ok(std::mem::replace(&mut self.buf, rest));
                    }
                    Err(e) if e.is_incomplete() => {}
                    Err(e) => return Err(ReadError::Invalid(e.to_string())),
                }
            }
            if self.buf.len() > MAX_REPLY {
                return Err(ReadError::TooLarge);
            }
            match r.read(&mut tmp) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.buf.extend_from_slice(tmp.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ReadError::Timeout);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Err(ReadError::Closed);
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Whether bytes arrived that nobody asked for (a confused server).
    pub fn has_leftover(&self) -> bool {
        !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_core::io::write_all_parts;
    use nagare_forward::encode_packed_forward;
    use proptest::prelude::*;

    fn framed(
        tag: &str,
        entries: &[u8],
        records: u32,
        c: Compression,
        id: Option<&str>,
    ) -> Vec<u8> {
        let f = framing(tag, entries.len(), records, c, id).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        write_all_parts(&mut out, &[&f.head, entries, &f.option]).unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[test]
    fn wire_bytes_match_the_spec_layout() {
        // One entry [EventTime(1, 0), {}].
        let entries = [0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x80];
        let check = |tag: &str, c: Compression, id: Option<&str>, expect: &[u8]| {
            assert_eq!(
                framed(tag, &entries, 1, c, id),
                expect,
                "{tag} {c:?} {id:?}"
            );
        };
        let mut want = vec![0x93, 0xa3, b'a', b'p', b'p', 0xdb, 0, 0, 0, 12];
        want.extend_from_slice(&entries);
        let mut text = want.clone();
        text.extend_from_slice(b"\x82\xa4size\x01\xaacompressed\xa4text");
        check("app", Compression::Text, None, &text);
        let mut acked = want.clone();
        acked.extend_from_slice(
            b"\x83\xa4size\x01\xaacompressed\xa4text\xa5chunk\xb9AAECAwQFBgcICQoLDA0ODw==\n",
        );
        check(
            "app",
            Compression::Text,
            Some("AAECAwQFBgcICQoLDA0ODw==\n"),
            &acked,
        );
        let mut gz = want;
        gz.extend_from_slice(b"\x82\xa4size\x01\xaacompressed\xa4gzip");
        check("app", Compression::Gzip, None, &gz);
    }

    #[test]
    fn long_tags_and_counts_use_wider_headers() {
        let tag = "t".repeat(40);
        let out = framed(&tag, b"", 70_000, Compression::Text, None);
        assert_eq!(&out[..3], &[0x93, 0xd9, 40]);
        assert!(out.ends_with(b"\xa4size\xce\x00\x01\x11\x70\xaacompressed\xa4text"));
    }

    proptest! {
        #[test]
        fn same_bytes_as_the_codec_whatever_the_write_sizes(
            tag in "[a-z.]{0,40}",
            entries in proptest::collection::vec(any::<u8>(), 0..300),
            records in any::<u32>(),
            id in proptest::option::of("[A-Za-z0-9+/=\n]{0,30}"),
            gzip in any::<bool>(),
        ) {
            let c = if gzip { Compression::Gzip } else { Compression::Text };
            let mut want = Vec::new();
            encode_packed_forward(&mut want, &tag, &entries, records, c, id.as_deref());
            let f = framing(&tag, entries.len(), records, c, id.as_deref())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // (Short writes are nagare_core::io's tests.)
            let mut w = Vec::new();
            write_all_parts(&mut w, &[&f.head, &entries, &[], &f.option])
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(w, want);
        }
    }

    #[test]
    fn reader_splits_values_and_reports_eof_and_garbage() {
        let mut r = Reader::default();
        let mut src: &[u8] = b"\x81\xa3ack\xa1a\x81\xa3ack\xa1b";
        assert_eq!(
            r.read_value(&mut src).ok(),
            Some(b"\x81\xa3ack\xa1a".to_vec())
        );
        assert!(r.has_leftover());
        assert_eq!(
            r.read_value(&mut src).ok(),
            Some(b"\x81\xa3ack\xa1b".to_vec())
        );
        assert!(matches!(r.read_value(&mut src), Err(ReadError::Closed)));
        let mut bad: &[u8] = b"\xc1";
        assert!(matches!(
            Reader::default().read_value(&mut bad),
            Err(ReadError::Invalid(_))
        ));
    }
}
