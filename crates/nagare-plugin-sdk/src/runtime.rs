//! A small tokio runtime per `.so`, for plugins that need async I/O (feature `runtime`).
//!
//! A dylib cannot use the host's runtime (its tokio is a different copy with different
//! thread-locals, `plugin-abi.md` §2.1), so plugins that want async run their own. All
//! instances of one `.so` share one lazily created multi-thread runtime with a few workers;
//! each instance holds a [`PluginRuntime`] lease, and the runtime shuts down (waiting up to
//! [`SHUTDOWN_TIMEOUT`] for its tasks) when the last lease is dropped, normally in `stop`.
//! Call [`PluginRuntime::block_on`] only from host worker threads or plugin-owned threads,
//! never from inside a task of this runtime.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use nagare_plugin_api::PluginError;

/// How long the last lease's drop waits for running tasks.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Worker threads of the shared runtime.
pub const WORKER_THREADS: usize = 2;

/// Most threads of the runtime's blocking pool (tokio's default is 512); more
/// `spawn_blocking` jobs queue. Jobs must be short: an emit that waits for an fsync, a name
/// lookup. Each thread costs a stack of its own (about 16 KB touched), so a flood of many
/// connections must not grow hundreds of them; waiting for room in a full buffer is done in
/// tasks, not in this pool (see in_forward).
pub const MAX_BLOCKING_THREADS: usize = 64;

struct Shared {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropped from inside an async context: blocking here would panic.
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
            }
        }
    }
}

static SHARED: Mutex<Weak<Shared>> = Mutex::new(Weak::new());

/// A lease on this `.so`'s runtime. Clone it freely; drop every clone to shut it down.
#[derive(Clone)]
pub struct PluginRuntime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime").finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// Returns a lease on the shared runtime, creating it on first use.
    pub fn acquire() -> Result<Self, PluginError> {
        let mut slot = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(shared) = slot.upgrade() {
            return Ok(PluginRuntime { shared });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .max_blocking_threads(MAX_BLOCKING_THREADS)
            .thread_name("nagare-plugin-rt")
            .enable_all()
            .build()
            .map_err(|e| crate::error::internal(format!("cannot start the plugin runtime: {e}")))?;
        let shared = Arc::new(Shared {
            runtime: Some(runtime),
        });
        *slot = Arc::downgrade(&shared);
        Ok(PluginRuntime { shared })
    }

    fn rt(&self) -> Result<&tokio::runtime::Runtime, PluginError> {
        self.shared
            .runtime
            .as_ref()
            .ok_or_else(|| crate::error::internal("the plugin runtime is shut down"))
    }

    /// The runtime's handle (to spawn from other threads).
    pub fn handle(&self) -> Result<tokio::runtime::Handle, PluginError> {
        Ok(self.rt()?.handle().clone())
    }

    /// Runs a future to completion on the runtime, blocking the calling thread.
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output, PluginError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(crate::error::internal(
                "block_on called from inside an async task of the plugin runtime",
            ));
        }
        Ok(self.rt()?.block_on(future))
    }

    /// Spawns a task on the runtime.
    pub fn spawn<F>(&self, future: F) -> Result<tokio::task::JoinHandle<F::Output>, PluginError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(self.rt()?.spawn(future))
    }

    /// Whether two leases share one runtime.
    pub fn same_runtime(&self, other: &PluginRuntime) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_block_on_spawn_and_shutdown() -> Result<(), PluginError> {
        let a = PluginRuntime::acquire()?;
        let b = PluginRuntime::acquire()?;
        assert!(a.same_runtime(&b));
        assert_eq!(a.block_on(async { 1 + 1 })?, 2);
        let task = b.spawn(async {
            tokio::task::yield_now().await;
            7
        })?;
        assert_eq!(a.block_on(task)?.ok(), Some(7));
        // Nested block_on from inside the runtime is refused, not a panic.
        let inner = a.clone();
        let nested = a.block_on(async move { inner.block_on(async {}).is_err() })?;
        assert!(nested);
        drop(a);
        drop(b);
        // A fresh lease after all were dropped builds a new runtime.
        let c = PluginRuntime::acquire()?;
        assert_eq!(c.block_on(async { 3 })?, 3);
        Ok(())
    }

    #[test]
    fn the_blocking_pool_is_bounded_and_queues_the_rest() -> Result<(), PluginError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let rt = PluginRuntime::acquire()?;
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let jobs = MAX_BLOCKING_THREADS + 36;
        let done = rt.block_on(async move {
            let handles: Vec<_> = (0..jobs)
                .map(|_| {
                    let (r, m) = (r.clone(), m.clone());
                    tokio::task::spawn_blocking(move || {
                        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        r.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            let mut done = 0;
            for h in handles {
                done += usize::from(h.await.is_ok());
            }
            done
        })?;
        assert_eq!(done, jobs, "queued jobs run too");
        let most = most.load(Ordering::SeqCst);
        assert!(most <= MAX_BLOCKING_THREADS, "{most} at once");
        assert!(most > 1, "they do run in parallel");
        Ok(())
    }
}
