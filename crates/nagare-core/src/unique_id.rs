//! Unique chunk ids laid out as Fluentd's `unique_id.rb`.
//!
//! `u1 = (usec_since_epoch << 12) | rand(0xfff)`, then `[u1 >> 32, u1 & 0xffffffff,
//! rand(0xffffffff), rand(0xffffffff)].pack('NNNN')`: 16 bytes whose first 52 bits are the
//! creation time in microseconds.

use rand::Rng;

/// A 128-bit chunk id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UniqueId(pub [u8; 16]);

impl UniqueId {
    /// A new id for the current time.
    pub fn generate() -> Self {
        let usec = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Err(_) => 0,
        };
        Self::generate_at(usec, &mut rand::thread_rng())
    }

    /// A new id for the time `usec` (microseconds since the epoch), with randomness from `rng`.
    pub fn generate_at(usec: u64, rng: &mut impl Rng) -> Self {
        // Ruby's rand(n) is in 0...n (n excluded).
        let u1 = (usec << 12) | rng.gen_range(0..0xfffu64);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&u1.to_be_bytes());
        b[8..12].copy_from_slice(&rng.gen_range(0..0xffff_ffffu32).to_be_bytes());
        b[12..].copy_from_slice(&rng.gen_range(0..0xffff_ffffu32).to_be_bytes());
        UniqueId(b)
    }

    /// The creation time in microseconds since the epoch (the top 52 bits).
    pub fn usec(&self) -> u64 {
        let mut hi = [0u8; 8];
        hi.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(hi) >> 12
    }

    /// Lowercase hex, 32 characters (Fluentd's `dump_unique_id_hex`).
    pub fn hex(&self) -> String {
        self.to_string()
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(UniqueId(out))
    }
}

impl std::fmt::Display for UniqueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn layout_matches_fluentd() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let usec = 1_700_000_000_123_456u64;
        let id = UniqueId::generate_at(usec, &mut rng);
        assert_eq!(id.usec(), usec);
        let low12 = u16::from_be_bytes([id.0[6], id.0[7]]) & 0xfff;
        assert!(low12 < 0xfff);
        assert_eq!(id.hex().len(), 32);
        assert_eq!(UniqueId::from_hex(&id.hex()), Some(id));
        assert_eq!(UniqueId::from_hex("zz"), None);
        assert_eq!(UniqueId::from_hex(&"g".repeat(32)), None);
        let a = UniqueId::generate();
        let b = UniqueId::generate();
        assert_ne!(a, b);
        assert!(a.usec() > 1_600_000_000_000_000);
    }

    #[test]
    fn hex_display() {
        let id = UniqueId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff]);
        assert_eq!(id.to_string(), "000102030405060708090a0b0c0d0eff");
    }
}
