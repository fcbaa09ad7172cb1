//! Acks: `{"ack": <chunk option>}`, echoed byte for byte.

use nagare_core::msgpack::{Head, read_head, write_str};
use nagare_core::record::map_get;

use crate::decoder::Encoding;

/// The `chunk` option of a request (the ack id), kept byte for byte. Fluentd's out_forward
/// sends `Base64.encode64(unique_id)`, which ends with `"\n"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AckId(pub Vec<u8>);

impl AckId {
    /// The id as text, when it is UTF-8 (it always is from Fluentd and Fluent Bit).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl std::fmt::Display for AckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// Encodes the ack for `id` in the request's encoding.
pub fn encode_ack(id: &AckId, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Msgpack => {
            let mut out = Vec::with_capacity(id.0.len() + 8);
            out.extend_from_slice(&[0x81, 0xa3, b'a', b'c', b'k']);
            write_str(&mut out, &id.0);
            out
        }
        Encoding::Json => {
            let mut m = serde_json::Map::new();
            m.insert(
                "ack".into(),
                serde_json::Value::String(String::from_utf8_lossy(&id.0).into_owned()),
            );
            serde_json::to_vec(&serde_json::Value::Object(m)).unwrap_or_default()
        }
    }
}

/// Why an ack could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// Not a map with an `"ack"` string.
    #[error("ack response is not a map with an \"ack\" string")]
    Invalid,
}

/// Reads a msgpack ack response `{"ack": id}` (one complete value).
pub fn decode_ack(raw: &[u8]) -> Result<AckId, AckError> {
    let v = map_get(raw, b"ack")
        .map_err(|_| AckError::Invalid)?
        .ok_or(AckError::Invalid)?;
    match read_head(v) {
        Ok((Head::Str(s) | Head::Bin(s), _)) => Ok(AckId(s.to_vec())),
        _ => Err(AckError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_round_trip_is_byte_exact() {
        let id = AckId(b"AAECAwQFBgcICQoLDA0ODw==\n".to_vec());
        let m = encode_ack(&id, Encoding::Msgpack);
        assert_eq!(&m[..6], &[0x81, 0xa3, b'a', b'c', b'k', 0xb9]);
        assert_eq!(decode_ack(&m), Ok(id.clone()));
        assert_eq!(
            encode_ack(&id, Encoding::Json),
            br#"{"ack":"AAECAwQFBgcICQoLDA0ODw==\n"}"#.to_vec()
        );
        assert_eq!(decode_ack(&[0x80]), Err(AckError::Invalid));
        assert_eq!(
            decode_ack(&[0x81, 0xa3, b'a', b'c', b'k', 0x01]),
            Err(AckError::Invalid)
        );
    }
}
