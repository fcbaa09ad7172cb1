//! Output buffers: memory and file chunks, chunk keys, flush, retry, overflow, recovery.
