//! Decompression of CompressedPackedForward entries, bounded by a size limit.

use std::io::Read;

use crate::error::ForwardError;

fn read_limited(
    mut r: impl Read,
    codec: &'static str,
    limit: u64,
) -> Result<Vec<u8>, ForwardError> {
    let mut out = Vec::new();
    (&mut r)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| ForwardError::Decompress {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(ForwardError::DecompressionLimit { codec, limit });
    }
    Ok(out)
}

/// Inflates gzip data made of one or more concatenated members.
pub fn gunzip(data: &[u8], limit: u64) -> Result<Vec<u8>, ForwardError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    read_limited(flate2::read::MultiGzDecoder::new(data), "gzip", limit)
}

/// Decompresses zstd data made of one or more frames.
pub fn unzstd(data: &[u8], limit: u64) -> Result<Vec<u8>, ForwardError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let dec =
        zstd::stream::read::Decoder::with_buffer(data).map_err(|e| ForwardError::Decompress {
            codec: "zstd",
            reason: e.to_string(),
        })?;
    read_limited(dec, "zstd", limit)
}

/// Compresses with gzip (one member), as out_forward's `compress gzip`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writes into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Compresses with zstd (one frame), as out_forward's `compress zstd`.
pub fn zstd_compress(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_multi_member_and_limits() {
        let two = [gzip(b"hello "), gzip(b"world")].concat();
        assert_eq!(gunzip(&two, 100).ok(), Some(b"hello world".to_vec()));
        assert!(matches!(
            gunzip(&two, 5),
            Err(ForwardError::DecompressionLimit {
                codec: "gzip",
                limit: 5
            })
        ));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(ForwardError::Decompress { .. })
        ));
        assert_eq!(gunzip(b"", 100).ok(), Some(Vec::new()));
    }

    #[test]
    fn zstd_frames_and_limits() {
        let two = [zstd_compress(b"abc"), zstd_compress(b"def")].concat();
        assert_eq!(unzstd(&two, 100).ok(), Some(b"abcdef".to_vec()));
        assert!(matches!(
            unzstd(&two, 2),
            Err(ForwardError::DecompressionLimit { codec: "zstd", .. })
        ));
        assert!(unzstd(b"nope", 100).is_err());
    }
}
