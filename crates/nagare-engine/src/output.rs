//! Output runners: the queue in front of one output instance and the threads that flush it.
//!
//! [`MemoryRunner`] is a bounded in-memory queue (bounded in bytes). `submit` blocks while the
//! queue is full, which stops the input that emitted (back-pressure); `try_submit` hands the
//! batch back instead. `flush_thread_count` threads call [`Output::write`] — never on a reactor
//! thread — and act on the error kind: retryable errors are retried with exponential back-off
//! (the batch stays at the head of the queue, nothing is lost), unrecoverable ones and panics
//! go to the error handler (the `@ERROR` label when the config has one).
//!
//! [`Output::write`]: nagare_plugin_api::Output::write

use crate::payload::Payload;
use abi_stable::std_types::{RSlice, RStr};
use nagare_plugin_api::{ChunkFormat, ChunkRef, ErrorKind, OutputBox, PluginError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One batch waiting for its output.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The events' tag.
    pub tag: Arc<str>,
    /// Concatenated msgpack `[time, record]` entries.
    pub data: Payload,
    /// Number of entries.
    pub records: u32,
}

/// Called with a batch an output rejected for good (unrecoverable error or panic).
pub type ErrorHandler = Arc<dyn Fn(Batch, &PluginError) + Send + Sync>;

/// Why a batch was not queued.
#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full (only from `try_submit`); the batch is handed back.
    Full(Batch),
    /// The runner is shutting down.
    Closed(Batch),
}

/// Settings of a [`MemoryRunner`].
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// `@id` (or generated id) of the output, for logs.
    pub plugin_id: String,
    /// `@type` of the output, for logs.
    pub type_name: String,
    /// Queue bound in bytes; a single batch larger than this is still accepted when the queue
    /// is empty, so nothing is refused for being big.
    pub queue_limit_bytes: usize,
    /// Number of flush threads.
    pub flush_threads: usize,
    /// First retry delay.
    pub retry_wait: Duration,
    /// Cap of the retry delay.
    pub retry_max_interval: Duration,
}

impl RunnerConfig {
    /// Defaults for an output with this id and type: 64 MiB queue, one thread, 1 s → 60 s back-off.
    pub fn new(plugin_id: &str, type_name: &str) -> Self {
        RunnerConfig {
            plugin_id: plugin_id.to_string(),
            type_name: type_name.to_string(),
            queue_limit_bytes: 64 << 20,
            flush_threads: 1,
            retry_wait: Duration::from_secs(1),
            retry_max_interval: Duration::from_secs(60),
        }
    }
}

/// Counters of one runner.
#[derive(Debug, Default)]
pub struct RunnerStats {
    /// Events accepted into the queue.
    pub emitted_events: AtomicU64,
    /// Events written successfully.
    pub written_events: AtomicU64,
    /// Successful `write` calls.
    pub write_count: AtomicU64,
    /// Failed `write` calls that will be retried.
    pub retry_count: AtomicU64,
    /// Events handed to the error handler.
    pub error_events: AtomicU64,
}

struct Queue {
    items: VecDeque<Batch>,
    bytes: usize,
    closed: bool,
}

struct Shared {
    cfg: RunnerConfig,
    output: RwLock<OutputBox>,
    queue: Mutex<Queue>,
    not_empty: Condvar,
    not_full: Condvar,
    stats: RunnerStats,
    on_error: ErrorHandler,
}

/// A bounded in-memory queue in front of one output, with its flush threads.
pub struct MemoryRunner {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl MemoryRunner {
    /// Wraps a started output. Threads start with [`MemoryRunner::start`].
    pub fn new(cfg: RunnerConfig, output: OutputBox, on_error: ErrorHandler) -> Self {
        MemoryRunner {
            shared: Arc::new(Shared {
                cfg,
                output: RwLock::new(output),
                queue: Mutex::new(Queue {
                    items: VecDeque::new(),
                    bytes: 0,
                    closed: false,
                }),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                stats: RunnerStats::default(),
                on_error,
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Calls the output's `start`, then starts the flush threads.
    pub fn start(&self) -> Result<(), PluginError> {
        {
            let mut out = self
                .shared
                .output
                .write()
                .map_err(|_| poisoned(&self.shared.cfg))?;
            out.start().into_result()?;
        }
        let mut threads = self
            .threads
            .lock()
            .map_err(|_| poisoned(&self.shared.cfg))?;
        for i in 0..self.shared.cfg.flush_threads.max(1) {
            let shared = Arc::clone(&self.shared);
            let name = format!("flush-{}-{i}", self.shared.cfg.plugin_id);
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(move || flush_loop(&shared))
                .map_err(|e| {
                    PluginError::new(
                        ErrorKind::INTERNAL,
                        format!("cannot start flush thread: {e}"),
                    )
                })?;
            threads.push(h);
        }
        Ok(())
    }

    /// Queues a batch, blocking while the queue is full (back-pressure).
    pub fn submit(&self, batch: Batch) -> Result<(), SubmitError> {
        self.enqueue(batch, true)
    }

    /// Queues a batch or hands it back at once when the queue is full.
    pub fn try_submit(&self, batch: Batch) -> Result<(), SubmitError> {
        self.enqueue(batch, false)
    }

    fn enqueue(&self, batch: Batch, block: bool) -> Result<(), SubmitError> {
        let s = &self.shared;
        let Ok(mut q) = s.queue.lock() else {
            return Err(SubmitError::Closed(batch));
        };
        let len = batch.data.len();
        loop {
            if q.closed {
                return Err(SubmitError::Closed(batch));
            }
            if q.bytes == 0 || q.bytes + len <= s.cfg.queue_limit_bytes {
                break;
            }
            if !block {
                return Err(SubmitError::Full(batch));
            }
            q = match s.not_full.wait(q) {
                Ok(q) => q,
                Err(_) => return Err(SubmitError::Closed(batch)),
            };
        }
        q.bytes += len;
        s.stats
            .emitted_events
            .fetch_add(u64::from(batch.records), Ordering::Relaxed);
        q.items.push_back(batch);
        drop(q);
        s.not_empty.notify_one();
        Ok(())
    }

    /// The runner's counters.
    pub fn stats(&self) -> &RunnerStats {
        &self.shared.stats
    }

    /// Whether the queue is at its byte limit (a submit would wait).
    pub fn is_full(&self) -> bool {
        self.shared
            .queue
            .lock()
            .map(|q| q.bytes > 0 && q.bytes >= self.shared.cfg.queue_limit_bytes)
            .unwrap_or(true)
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queue.lock().map(|q| q.bytes).unwrap_or(0)
    }

    /// Calls the output's `control` op.
    pub fn control(&self, op: &str, payload: &[u8]) -> Result<Vec<u8>, PluginError> {
        let out = self
            .shared
            .output
            .read()
            .map_err(|_| poisoned(&self.shared.cfg))?;
        out.control(RStr::from(op), RSlice::from(payload))
            .into_result()
            .map(|v| v.to_vec())
    }

    /// Stops accepting, lets the flush threads drain the queue (flush at shutdown), joins them,
    /// then calls the output's `stop`. Retryable failures during the drain are retried for
    /// [`SHUTDOWN_RETRY_BUDGET`]; what is still unwritten then is reported as lost.
    pub fn shutdown(&self) -> Result<(), PluginError> {
        let s = &self.shared;
        if let Ok(mut q) = s.queue.lock() {
            q.closed = true;
        }
        s.not_empty.notify_all();
        s.not_full.notify_all();
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for h in threads {
            let _ = h.join();
        }
        let lost: u64 = s
            .queue
            .lock()
            .map(|q| q.items.iter().map(|b| u64::from(b.records)).sum())
            .unwrap_or(0);
        if lost > 0 {
            tracing::error!(
                plugin_id = %s.cfg.plugin_id,
                "{lost} events could not be written before shutdown and are lost"
            );
        }
        let mut out = s.output.write().map_err(|_| poisoned(&s.cfg))?;
        out.stop().into_result()
    }
}

fn poisoned(cfg: &RunnerConfig) -> PluginError {
    PluginError::new(
        ErrorKind::INTERNAL,
        format!(
            "output {} ({}): lock poisoned",
            cfg.plugin_id, cfg.type_name
        ),
    )
}

/// How long a flush thread keeps retrying a failing batch once shutdown has begun.
pub const SHUTDOWN_RETRY_BUDGET: Duration = Duration::from_secs(10);

fn flush_loop(s: &Shared) {
    let mut closed_at: Option<Instant> = None;
    loop {
        let batch = {
            let Ok(mut q) = s.queue.lock() else { return };
            loop {
                if let Some(b) = q.items.pop_front() {
                    break b;
                }
                if q.closed {
                    return;
                }
                q = match s.not_empty.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        };
        let len = batch.data.len();
        let mut attempt: u32 = 0;
        loop {
            let result = match s.output.read() {
                Ok(out) => out.write(chunk_ref(&batch)).into_result(),
                Err(_) => Err(poisoned(&s.cfg)),
            };
            match result {
                Ok(()) => {
                    s.stats.write_count.fetch_add(1, Ordering::Relaxed);
                    s.stats
                        .written_events
                        .fetch_add(u64::from(batch.records), Ordering::Relaxed);
                    break;
                }
                Err(e) if e.kind == ErrorKind::RETRYABLE || e.kind == ErrorKind::INTERNAL => {
                    s.stats.retry_count.fetch_add(1, Ordering::Relaxed);
                    let wait = retry_delay(&s.cfg, attempt, e.retry_after_ms);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(
                        plugin_id = %s.cfg.plugin_id,
                        "failed to flush the buffer (retry {attempt}, next in {:.1}s): {e}",
                        wait.as_secs_f64()
                    );
                    // Sleep on the queue's condvar so shutdown wakes us.
                    let Ok(q) = s.queue.lock() else { return };
                    let closed = q.closed;
                    if closed {
                        let since = *closed_at.get_or_insert_with(Instant::now);
                        if since.elapsed() > SHUTDOWN_RETRY_BUDGET {
                            drop(q);
                            tracing::error!(
                                plugin_id = %s.cfg.plugin_id,
                                "giving up on {} events at shutdown after {attempt} attempts: {e}",
                                batch.records
                            );
                            break;
                        }
                    }
                    let _ = s.not_empty.wait_timeout(q, wait);
                }
                Err(e) => {
                    s.stats
                        .error_events
                        .fetch_add(u64::from(batch.records), Ordering::Relaxed);
                    tracing::error!(
                        plugin_id = %s.cfg.plugin_id,
                        "output rejected {} events ({}): {e}",
                        batch.records,
                        e.kind.name()
                    );
                    (s.on_error)(batch.clone(), &e);
                    break;
                }
            }
        }
        if let Ok(mut q) = s.queue.lock() {
            q.bytes = q.bytes.saturating_sub(len);
        }
        s.not_full.notify_all();
    }
}

fn retry_delay(cfg: &RunnerConfig, attempt: u32, hint_ms: u64) -> Duration {
    let base = cfg
        .retry_wait
        .saturating_mul(2u32.saturating_pow(attempt.min(20)));
    let d = base.min(cfg.retry_max_interval);
    d.max(Duration::from_millis(hint_ms))
}

/// Lends a batch to a plugin.
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
    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::{RBox, RResult, RVec};
    use nagare_plugin_api::Output_TO;
    use std::sync::atomic::AtomicUsize;

    /// An output that fails its first `fail_first` writes with `kind`, then records the rest.
    struct Scripted {
        calls: Arc<AtomicUsize>,
        fail_first: usize,
        kind: ErrorKind,
        seen: Arc<Mutex<Vec<(String, u32)>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl nagare_plugin_api::Output for Scripted {
        fn start(&mut self) -> RResult<(), PluginError> {
            RResult::ROk(())
        }
        fn write(&self, chunk: ChunkRef<'_>) -> RResult<(), PluginError> {
            let (lock, cv) = &*self.gate;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail_first {
                return RResult::RErr(PluginError::new(self.kind, "scripted failure"));
            }
            self.seen
                .lock()
                .unwrap()
                .push((chunk.tag.to_string(), chunk.records));
            RResult::ROk(())
        }
        fn control(&self, _: RStr<'_>, _: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
            RResult::ROk(RVec::new())
        }
        fn stop(&mut self) -> RResult<(), PluginError> {
            RResult::ROk(())
        }
    }

    struct Fixture {
        runner: MemoryRunner,
        seen: Arc<Mutex<Vec<(String, u32)>>>,
        errors: Arc<Mutex<Vec<u32>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    fn fixture(fail_first: usize, kind: ErrorKind, limit: usize, open: bool) -> Fixture {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new((Mutex::new(open), Condvar::new()));
        let out = Scripted {
            calls: Arc::new(AtomicUsize::new(0)),
            fail_first,
            kind,
            seen: Arc::clone(&seen),
            gate: Arc::clone(&gate),
        };
        let boxed: OutputBox = Output_TO::from_ptr(RBox::new(out), TD_Opaque);
        let mut cfg = RunnerConfig::new("test_out", "scripted");
        cfg.queue_limit_bytes = limit;
        cfg.retry_wait = Duration::from_millis(1);
        cfg.retry_max_interval = Duration::from_millis(5);
        let errs = Arc::clone(&errors);
        let runner = MemoryRunner::new(
            cfg,
            boxed,
            Arc::new(move |b: Batch, _e: &PluginError| errs.lock().unwrap().push(b.records)),
        );
        runner.start().unwrap();
        Fixture {
            runner,
            seen,
            errors,
            gate,
        }
    }

    fn batch(tag: &str, bytes: usize, records: u32) -> Batch {
        Batch {
            tag: Arc::from(tag),
            data: Payload::from_host(vec![0u8; bytes]),
            records,
        }
    }

    fn open(g: &Arc<(Mutex<bool>, Condvar)>) {
        *g.0.lock().unwrap() = true;
        g.1.notify_all();
    }

    #[test]
    fn writes_in_order_and_drains_at_shutdown() {
        let f = fixture(0, ErrorKind::RETRYABLE, 1 << 20, true);
        for i in 0..50 {
            f.runner.submit(batch(&format!("t{i}"), 10, i)).unwrap();
        }
        f.runner.shutdown().unwrap();
        let seen = f.seen.lock().unwrap();
        assert_eq!(seen.len(), 50);
        assert_eq!(seen[7], ("t7".to_string(), 7));
        assert_eq!(
            f.runner.stats().written_events.load(Ordering::Relaxed),
            1225
        );
    }

    #[test]
    fn retryable_errors_are_retried_until_written() {
        let f = fixture(3, ErrorKind::RETRYABLE, 1 << 20, true);
        f.runner.submit(batch("a", 10, 5)).unwrap();
        f.runner.shutdown().unwrap();
        assert_eq!(*f.seen.lock().unwrap(), vec![("a".to_string(), 5)]);
        assert_eq!(f.runner.stats().retry_count.load(Ordering::Relaxed), 3);
        assert!(f.errors.lock().unwrap().is_empty());
    }

    #[test]
    fn unrecoverable_errors_and_panics_go_to_the_error_handler() {
        for kind in [ErrorKind::UNRECOVERABLE, ErrorKind::PANIC] {
            let f = fixture(1, kind, 1 << 20, true);
            f.runner.submit(batch("a", 10, 5)).unwrap();
            f.runner.submit(batch("b", 10, 6)).unwrap();
            f.runner.shutdown().unwrap();
            assert_eq!(*f.errors.lock().unwrap(), vec![5]);
            assert_eq!(*f.seen.lock().unwrap(), vec![("b".to_string(), 6)]);
        }
    }

    #[test]
    fn a_full_queue_hands_batches_back_and_blocks_submitters() {
        let f = fixture(0, ErrorKind::RETRYABLE, 100, false);
        // The flush thread takes the first batch and blocks in write (gate closed).
        f.runner.submit(batch("a", 60, 1)).unwrap();
        f.runner.submit(batch("b", 30, 1)).unwrap();
        match f.runner.try_submit(batch("c", 30, 1)) {
            Err(SubmitError::Full(b)) => assert_eq!(&*b.tag, "c"),
            other => panic!("expected Full, got {other:?}"),
        }
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        std::thread::scope(|s| {
            let d = Arc::clone(&done);
            let r = &f.runner;
            s.spawn(move || {
                r.submit(batch("c", 30, 1)).unwrap();
                d.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !done.load(Ordering::SeqCst),
                "submit must block on a full queue"
            );
            open(&f.gate);
        });
        assert!(done.load(Ordering::SeqCst));
        f.runner.shutdown().unwrap();
        assert_eq!(f.seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn an_oversized_batch_is_accepted_into_an_empty_queue() {
        let f = fixture(0, ErrorKind::RETRYABLE, 10, true);
        f.runner.submit(batch("big", 1000, 1)).unwrap();
        f.runner.shutdown().unwrap();
        assert_eq!(f.seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn submit_after_shutdown_is_refused() {
        let f = fixture(0, ErrorKind::RETRYABLE, 100, true);
        f.runner.shutdown().unwrap();
        assert!(matches!(
            f.runner.submit(batch("late", 1, 1)),
            Err(SubmitError::Closed(_))
        ));
    }

    #[test]
    fn retry_delay_doubles_and_caps() {
        let mut cfg = RunnerConfig::new("x", "y");
        cfg.retry_wait = Duration::from_secs(1);
        cfg.retry_max_interval = Duration::from_secs(10);
        let d: Vec<u64> = (0..6).map(|a| retry_delay(&cfg, a, 0).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(retry_delay(&cfg, 0, 3000), Duration::from_secs(3));
    }
}
