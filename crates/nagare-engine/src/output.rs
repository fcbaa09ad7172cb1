//! Batches on their way to outputs, and how a batch is lent to a plugin.
//!
//! Each output runs behind a [`BufferedRunner`](crate::buffered::BufferedRunner) (its buffer
//! and flush threads); this module holds what the pipeline and the runners share: [`Batch`]
//! (tagged event bytes), the [`ErrorHandler`] a runner reports refused events to, and
//! [`chunk_ref`], which lends a batch to a filter.

use crate::payload::Payload;
use abi_stable::std_types::{RSlice, RStr};
use nagare_plugin_api::{ChunkFormat, ChunkRef, PluginError};
use std::sync::Arc;

/// A batch of events with one tag.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The events' tag.
    pub tag: Arc<str>,
    /// Concatenated msgpack `[time, record]` entries.
    pub data: Payload,
    /// Number of entries.
    pub records: u32,
}

/// Called with events an output refused for good at submit time (a record larger than a
/// whole buffer chunk); the pipeline sends them to `@ERROR` when the configuration has one.
pub type ErrorHandler = Arc<dyn Fn(Batch, &PluginError) + Send + Sync>;

/// Lends a batch to a plugin (an unbuffered call: the chunk id is zero, no variables).
pub fn chunk_ref(b: &Batch) -> ChunkRef<'_> {
    ChunkRef {
        tag: RStr::from(&*b.tag),
        chunk_id: [0; 16],
        records: b.records,
        format: ChunkFormat::MSGPACK_STREAM,
        data: RSlice::from(b.data.as_slice()),
        variables: RSlice::from(&[][..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ref_lends_the_batch_unbuffered() {
        let b = Batch {
            tag: Arc::from("app.web"),
            data: Payload::from_host(vec![1, 2, 3]),
            records: 1,
        };
        let c = chunk_ref(&b);
        assert_eq!(c.tag.as_str(), "app.web");
        assert_eq!(c.chunk_id, [0; 16]);
        assert_eq!((c.records, c.data.len(), c.variables.len()), (1, 3, 0));
    }
}
