//! Client-side encoders (out_forward, benchmarks, tests).

use base64::Engine;
use nagare_core::msgpack::{write_array_header, write_int, write_map_header, write_str};
use nagare_core::{EventTime, UniqueId};

/// out_forward's `compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Plain entries (`"text"`).
    #[default]
    Text,
    /// gzip (`"gzip"`).
    Gzip,
    /// zstd (`"zstd"`).
    Zstd,
}

impl Compression {
    /// The `compressed` option value.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Text => "text",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// Compresses canonical entries accordingly (a copy for `Text`).
    pub fn compress(self, entries: &[u8]) -> Vec<u8> {
        match self {
            Compression::Text => entries.to_vec(),
            Compression::Gzip => crate::compress::gzip(entries),
            Compression::Zstd => crate::compress::zstd_compress(entries),
        }
    }
}

/// The `chunk` option out_forward sends for a chunk id: `Base64.encode64(unique_id)`, which
/// ends with a newline.
pub fn chunk_option_for(id: &UniqueId) -> String {
    let mut s = base64::engine::general_purpose::STANDARD.encode(id.0);
    s.push('\n');
    s
}

fn write_option(
    out: &mut Vec<u8>,
    size: Option<u32>,
    compressed: Option<Compression>,
    chunk: Option<&str>,
) {
    let n =
        u32::from(size.is_some()) + u32::from(compressed.is_some()) + u32::from(chunk.is_some());
    write_map_header(out, n);
    if let Some(size) = size {
        write_str(out, b"size");
        write_int(out, i64::from(size));
    }
    if let Some(c) = compressed {
        write_str(out, b"compressed");
        write_str(out, c.as_str().as_bytes());
    }
    if let Some(chunk) = chunk {
        write_str(out, b"chunk");
        write_str(out, chunk.as_bytes());
    }
}

/// Appends a PackedForward request exactly as Fluentd's out_forward writes it:
/// `0x93`, the tag, `0xdb` + u32 BE length + `entries` (already compressed when
/// `compressed` says so), then `{"size": records, "compressed": ..., "chunk"?: ...}`.
pub fn encode_packed_forward(
    out: &mut Vec<u8>,
    tag: &str,
    entries: &[u8],
    records: u32,
    compressed: Compression,
    chunk: Option<&str>,
) {
    out.reserve(entries.len() + tag.len() + 64);
    out.push(0x93);
    write_str(out, tag.as_bytes());
    out.push(0xdb);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(entries);
    write_option(out, Some(records), Some(compressed), chunk);
}

/// Appends a Forward request `[tag, [entries...], option?]` from chunk `entries` holding
/// `records` entries (each entry is already a msgpack array, so they are copied as is).
pub fn encode_forward(
    out: &mut Vec<u8>,
    tag: &str,
    entries: &[u8],
    records: u32,
    chunk: Option<&str>,
) {
    out.push(if chunk.is_some() { 0x93 } else { 0x92 });
    write_str(out, tag.as_bytes());
    write_array_header(out, records);
    out.extend_from_slice(entries);
    if chunk.is_some() {
        write_option(out, None, None, chunk);
    }
}

/// Appends a Message request `[tag, time, record, option?]`; `record` is a raw map.
pub fn encode_message(
    out: &mut Vec<u8>,
    tag: &str,
    time: EventTime,
    record: &[u8],
    chunk: Option<&str>,
) {
    out.push(if chunk.is_some() { 0x94 } else { 0x93 });
    write_str(out, tag.as_bytes());
    time.write_to(out);
    out.extend_from_slice(record);
    if chunk.is_some() {
        write_option(out, None, None, chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_forward_layout_matches_out_forward() {
        let entries = [0x92, 0xd7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x80];
        let mut out = Vec::new();
        encode_packed_forward(
            &mut out,
            "t",
            &entries,
            1,
            Compression::Text,
            Some("QQ==\n"),
        );
        let mut want = vec![0x93, 0xa1, b't', 0xdb, 0, 0, 0, 12];
        want.extend_from_slice(&entries);
        want.push(0x83);
        want.extend_from_slice(b"\xa4size\x01\xaacompressed\xa4text\xa5chunk\xa5QQ==\n");
        assert_eq!(out, want);
    }

    #[test]
    fn chunk_option_is_encode64_with_newline() {
        let id = UniqueId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(chunk_option_for(&id), "AAECAwQFBgcICQoLDA0ODw==\n");
    }
}
