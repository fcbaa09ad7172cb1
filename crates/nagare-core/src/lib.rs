//! Core event types: EventTime, msgpack chunk reader/writer, tag patterns.
