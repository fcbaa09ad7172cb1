//! Event bytes in flight inside the host, whoever allocated them.
//!
//! A batch emitted by an input arrives as an `RVec<u8>` allocated by the plugin's allocator;
//! a filter may replace it with another `RVec<u8>`; the host builds `Vec<u8>`s when it merges
//! or rewrites. [`Payload`] keeps each as it came (no copy at the boundary) and gives `&[u8]`.

use abi_stable::std_types::RVec;
use std::sync::Arc;

/// Chunk bytes owned by the host or by a plugin, cheaply shareable between copy stores.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Bytes allocated inside a plugin (freed through the plugin's own vtable on drop).
    Plugin(Arc<RVec<u8>>),
    /// Bytes allocated by the host.
    Host(Arc<Vec<u8>>),
}

impl Payload {
    /// Wraps bytes moved out of a plugin.
    pub fn from_plugin(v: RVec<u8>) -> Self {
        Payload::Plugin(Arc::new(v))
    }

    /// Wraps host bytes.
    pub fn from_host(v: Vec<u8>) -> Self {
        Payload::Host(Arc::new(v))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Plugin(v) => v.as_slice(),
            Payload::Host(v) => v.as_slice(),
        }
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_give_their_bytes() {
        let p = Payload::from_plugin(RVec::from(vec![1u8, 2, 3]));
        let h = Payload::from_host(vec![4u8]);
        assert_eq!(p.as_slice(), &[1, 2, 3]);
        assert_eq!(h.len(), 1);
        assert!(!h.is_empty());
        let shared = p.clone();
        assert_eq!(shared.as_slice(), p.as_slice());
    }
}
