//! Plugin author kit: export macro, panic guards, config deserializer, chunk codec, log bridge.
