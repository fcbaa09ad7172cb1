//! What embedded Ruby may read: environment variables, the host name and the worker id.

use std::collections::HashMap;

/// The outside world as seen by `"#{...}"` expressions. Tests and tools pass their own.
pub trait Environment {
    /// `ENV[name]`: the variable's value, `None` when unset.
    fn var(&self, name: &str) -> Option<String>;
    /// `hostname` / `Socket.gethostname`.
    fn hostname(&self) -> String;
    /// `worker_id`: Fluentd's `ENV['SERVERENGINE_WORKER_ID'] || ''`.
    fn worker_id(&self) -> String;
}

/// The real process environment and host name.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn hostname(&self) -> String {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| {
                std::fs::read_to_string(p)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            })
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_string())
    }

    fn worker_id(&self) -> String {
        std::env::var("SERVERENGINE_WORKER_ID").unwrap_or_default()
    }
}

/// A fixed environment: a variable map, a host name and a worker id. For tests, dry runs
/// and tools that must not read the real environment.
#[derive(Debug, Clone, Default)]
pub struct MapEnvironment {
    /// Variables visible to `ENV[...]`.
    pub vars: HashMap<String, String>,
    /// What `hostname` returns.
    pub hostname: String,
    /// What `worker_id` returns.
    pub worker_id: String,
}

impl MapEnvironment {
    /// An empty environment with host name `localhost` and worker id `""`.
    pub fn new() -> Self {
        MapEnvironment {
            vars: HashMap::new(),
            hostname: "localhost".into(),
            worker_id: String::new(),
        }
    }

    /// Adds a variable.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Sets the host name.
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// Sets the worker id.
    pub fn with_worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = worker_id.into();
        self
    }
}

impl Environment for MapEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn hostname(&self) -> String {
        self.hostname.clone()
    }

    fn worker_id(&self) -> String {
        self.worker_id.clone()
    }
}
