//! Helpers to build [`PluginError`]s of each kind, and the SDK's `Result` alias.

use nagare_plugin_api::{ErrorKind, PluginError};

/// The result type of every plugin-author trait method.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// Bad configuration: the plugin must not start.
pub fn config_error(message: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorKind::CONFIG, message.to_string())
}

/// A temporary failure: the host backs off and retries the same chunk.
pub fn retryable(message: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorKind::RETRYABLE, message.to_string())
}

/// A temporary failure with a suggested earliest retry, in milliseconds.
pub fn retryable_after(message: impl std::fmt::Display, retry_after_ms: u64) -> PluginError {
    PluginError {
        retry_after_ms,
        ..PluginError::new(ErrorKind::RETRYABLE, message.to_string())
    }
}

/// Not delivered, with nothing to count against the output (no ack came for a chunk that
/// was sent): the host writes the chunk again after `flush_thread_burst_interval`, without a
/// retry step, as Fluentd rolls a chunk back without updating its retry state.
pub fn resend(message: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorKind::RESEND, message.to_string())
}

/// A permanent failure for this data: the host sends the chunk to `<secondary>`.
pub fn unrecoverable(message: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorKind::UNRECOVERABLE, message.to_string())
}

/// A bug or an unexpected state inside the plugin.
pub fn internal(message: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorKind::INTERNAL, message.to_string())
}

/// Converts any displayable error into a [`PluginError`] of `kind`, prefixed by `context`.
pub trait ResultExt<T> {
    /// Maps the error to a [`PluginError`] of `kind` with `"{context}: {error}"`.
    fn plugin_err(self, kind: ErrorKind, context: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> ResultExt<T> for std::result::Result<T, E> {
    fn plugin_err(self, kind: ErrorKind, context: &str) -> Result<T> {
        self.map_err(|e| PluginError::new(kind, format!("{context}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_context() {
        assert_eq!(config_error("x").kind, ErrorKind::CONFIG);
        assert_eq!(retryable("x").kind, ErrorKind::RETRYABLE);
        assert_eq!(retryable_after("x", 50).retry_after_ms, 50);
        assert_eq!(unrecoverable("x").kind, ErrorKind::UNRECOVERABLE);
        assert_eq!(internal("x").kind, ErrorKind::INTERNAL);
        let r: std::result::Result<(), &str> = Err("denied");
        let e = r.plugin_err(ErrorKind::RETRYABLE, "open /x").err();
        assert_eq!(
            e.map(|e| e.message.to_string()),
            Some("open /x: denied".to_owned())
        );
    }
}
