//! Validates, normalizes and reads arbitrary chunks: never panics, and normalization is
//! idempotent and agrees with validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nagare_core::{
    ChunkReader, EventTime, InvalidPolicy, NormalizeOptions, TruncatedPolicy, normalize_chunk_at, validate_chunk,
};

fuzz_target!(|data: &[u8]| {
    let info = validate_chunk(data);
    let _ = ChunkReader::new(data).count();
    let opts = NormalizeOptions { invalid: InvalidPolicy::Skip, truncated: TruncatedPolicy::Drop };
    let now = EventTime::new(1_700_000_000, 0);
    if let Ok(n) = normalize_chunk_at(data, opts, now) {
        let again = validate_chunk(&n.data);
        match again {
            Ok(i) => {
                assert!(i.canonical);
                assert_eq!(i.records, n.records);
            }
            Err(e) => panic!("normalized chunk does not validate: {e}"),
        }
        if let Ok(i) = info {
            assert_eq!(i.records, n.records);
        }
    }
    let _ = nagare_core::value_len(data);
});
