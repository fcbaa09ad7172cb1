//! Chunk identity and metadata: the 128-bit unique id and the (tag, timekey, variables)
//! triple that groups events into chunks.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use rand::Rng;

use crate::clock::to_secs_f64;

/// A 128-bit chunk id in Fluentd's `unique_id` layout:
/// `((usec_epoch << 12) | rand(0xfff))` as two big-endian u32s, then two random u32s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    /// Generates a new id for `now`.
    pub fn generate(now: SystemTime, rng: &mut impl Rng) -> ChunkId {
        let usec = (to_secs_f64(now).max(0.0) * 1_000_000.0) as u64;
        let head = (usec << 12) | rng.gen_range(0..0xfffu64);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&head.to_be_bytes());
        id[8..12].copy_from_slice(&rng.r#gen::<u32>().to_be_bytes());
        id[12..].copy_from_slice(&rng.r#gen::<u32>().to_be_bytes());
        ChunkId(id)
    }

    /// The 32 lowercase hex characters Fluentd prints (`dump_unique_id_hex`).
    pub fn hex(&self) -> String {
        use fmt::Write as _;
        let mut s = String::with_capacity(32);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Option<ChunkId> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, slot) in id.iter_mut().enumerate() {
            *slot = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(ChunkId(id))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.hex())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// What groups events into one chunk, and what placeholders expand from.
///
/// A field is `None` / empty when the corresponding chunk key is not configured.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Metadata {
    /// The timekey (slice start, epoch seconds) when `time` is a chunk key.
    pub timekey: Option<i64>,
    /// The tag when `tag` is a chunk key.
    pub tag: Option<String>,
    /// Record-key values by key name (`key`, `$.a.b`); `None` when the record lacks the
    /// key or holds `nil`.
    pub variables: BTreeMap<String, Option<String>>,
}

impl Metadata {
    /// True when no chunk key is set (Fluentd's `metadata.empty?`).
    pub fn is_empty(&self) -> bool {
        self.timekey.is_none() && self.tag.is_none() && self.variables.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn unique_id_layout_and_hex() {
        let mut rng = rand::thread_rng();
        let now = UNIX_EPOCH + Duration::from_micros(1_460_374_200_123_456);
        let id = ChunkId::generate(now, &mut rng);
        let head = u64::from_be_bytes(id.0[..8].try_into().unwrap_or_default());
        assert_eq!(head >> 12, 1_460_374_200_123_456);
        assert_eq!(id.hex().len(), 32);
        assert_eq!(ChunkId::from_hex(&id.hex()), Some(id));
        assert_ne!(ChunkId::generate(now, &mut rng), id);
        for bad in ["", "zz", &"g".repeat(32), &"é".repeat(16)] {
            assert_eq!(ChunkId::from_hex(bad), None, "{bad}");
        }
    }
}
