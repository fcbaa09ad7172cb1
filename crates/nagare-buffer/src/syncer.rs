//! Group commit for the file buffer's `fsync always` policy.
//!
//! A `write` appends its frames under the buffer lock, then registers the chunk files it
//! touched here ([`Syncer::register`], still under that lock, so the registration order is
//! the append order) and waits outside the lock ([`Syncer::wait`]) until they are fsynced.
//! Registrations gather in an *open group*. When no fsync round is running, the first
//! waiter whose group is open becomes the leader: it takes the open group (a new one opens
//! for later writers), `fdatasync`s each of its files once, publishes the result to every
//! member and wakes them. Writers that arrive while a round runs join the next group, so
//! concurrent writers share fsyncs and the flush threads never wait behind one on the
//! buffer lock.
//!
//! Guarantees: `wait` returns `Ok` only after an `fdatasync` of every file registered with
//! its ticket began after the registration (hence after the appended bytes were written)
//! and succeeded. A failed `fdatasync` fails every member of its group (their batches were
//! not acknowledged as durable); the next group starts afresh.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// What a failed fsync round reports to each of its members.
#[derive(Debug, Clone)]
pub(crate) struct SyncFailure {
    /// The file whose fsync failed.
    pub path: PathBuf,
    /// The OS error's kind.
    pub kind: io::ErrorKind,
    /// The OS error's text.
    pub message: String,
}

impl SyncFailure {
    /// The failure as an `io::Error` (one per member: `io::Error` is not `Clone`).
    pub fn to_io_error(&self) -> io::Error {
        io::Error::new(self.kind, self.message.clone())
    }
}

type Outcome = Arc<OnceLock<Result<(), SyncFailure>>>;

/// A registration: wait on it with [`Syncer::wait`].
#[derive(Debug)]
pub(crate) struct Ticket(Outcome);

impl Ticket {
    /// Whether both registrations joined the same group.
    pub fn same_group(&self, other: &Ticket) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Files of the open group, each once.
    files: Vec<(Arc<File>, PathBuf)>,
    /// The open group's outcome slot.
    open: Outcome,
    /// Whether a leader is fsyncing a group now.
    running: bool,
}

/// The group-commit coordinator of one buffer.
#[derive(Debug, Default)]
pub(crate) struct Syncer {
    state: Mutex<State>,
    done: Condvar,
    /// Files fsynced so far (one per file per round), for tests and metrics.
    synced: std::sync::atomic::AtomicU64,
}

impl Syncer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files fsynced by group rounds so far.
    #[cfg(test)]
    pub fn synced_files(&self) -> u64 {
        self.synced.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds `file` (already written to) to the open group; returns the group's ticket.
    pub fn register(&self, file: &Arc<File>, path: &std::path::Path) -> Ticket {
        let mut st = self.lock();
        if !st.files.iter().any(|(f, _)| Arc::ptr_eq(f, file)) {
            st.files.push((Arc::clone(file), path.to_path_buf()));
        }
        Ticket(Arc::clone(&st.open))
    }

    /// Blocks until the group of `ticket` is fsynced, leading the round when nobody is.
    pub fn wait(&self, ticket: Ticket) -> Result<(), SyncFailure> {
        let mut st = self.lock();
        loop {
            if let Some(r) = ticket.0.get() {
                return r.clone();
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Not done and no round running: our group has not been taken, so it is the
            // open one. Lead it.
            st.running = true;
            let files = std::mem::take(&mut st.files);
            let outcome = std::mem::take(&mut st.open);
            drop(st);
            let round = Round {
                syncer: self,
                outcome,
            };
            self.synced
                .fetch_add(files.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let result = sync_all(&files);
            drop(files);
            st = round.finish(result);
        }
    }
}

/// A running fsync round. Ending it (even by unwinding) publishes an outcome, clears
/// `running` and wakes the waiters, so no writer waits forever on a round that is gone.
struct Round<'a> {
    syncer: &'a Syncer,
    outcome: Outcome,
}

impl<'a> Round<'a> {
    /// Publishes `result` and returns the syncer's lock.
    fn finish(self, result: Result<(), SyncFailure>) -> MutexGuard<'a, State> {
        let _ = self.outcome.set(result);
        let syncer = self.syncer;
        drop(self);
        syncer.lock()
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        let _ = self.outcome.set(Err(SyncFailure {
            path: PathBuf::new(),
            kind: io::ErrorKind::Other,
            message: "the fsync round ended without a result".to_string(),
        }));
        self.syncer.lock().running = false;
        self.syncer.done.notify_all();
    }
}

/// `fdatasync`s every file, stopping at the first failure.
fn sync_all(files: &[(Arc<File>, PathBuf)]) -> Result<(), SyncFailure> {
    for (f, path) in files {
        if let Err(e) = f.sync_data() {
            return Err(SyncFailure {
                path: path.clone(),
                kind: e.kind(),
                message: e.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_in(dir: &std::path::Path, name: &str) -> (Arc<File>, PathBuf) {
        let path = dir.join(name);
        let f = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        (Arc::new(f), path)
    }

    #[test]
    fn a_lone_writer_leads_its_own_round() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = Syncer::default();
        let (f, p) = file_in(dir.path(), "a");
        (&*f).write_all(b"x").unwrap_or_else(|e| panic!("{e}"));
        let t = s.register(&f, &p);
        assert!(s.wait(t).is_ok());
        // The round is over: the next registration opens a new group.
        let t = s.register(&f, &p);
        assert_eq!(s.lock().files.len(), 1);
        assert!(s.wait(t).is_ok());
        assert!(s.lock().files.is_empty());
    }

    #[test]
    fn one_group_holds_each_file_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = Syncer::default();
        let (a, pa) = file_in(dir.path(), "a");
        let (b, pb) = file_in(dir.path(), "b");
        let t1 = s.register(&a, &pa);
        let t2 = s.register(&a, &pa);
        let t3 = s.register(&b, &pb);
        assert_eq!(s.lock().files.len(), 2);
        assert!(s.wait(t2).is_ok());
        // The others were in the same group: done without another round.
        assert!(t1.0.get().is_some() && t3.0.get().is_some());
        assert!(s.wait(t1).is_ok() && s.wait(t3).is_ok());
    }

    #[test]
    fn a_failed_fsync_fails_every_member_and_the_next_group_starts_afresh() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = Syncer::default();
        // fdatasync of a read-only descriptor of a directory fails with EBADF/EINVAL on
        // some systems and succeeds on others; a closed pipe end always fails.
        let (good, pg) = file_in(dir.path(), "good");
        let bad = match pipe_writer() {
            Some(f) => Arc::new(f),
            None => return,
        };
        let t1 = s.register(&good, &pg);
        let t2 = s.register(&bad, std::path::Path::new("pipe"));
        let e = s
            .wait(t1)
            .err()
            .unwrap_or_else(|| panic!("fsync of a pipe succeeded"));
        assert_eq!(e.path, PathBuf::from("pipe"));
        assert!(s.wait(t2).is_err());
        let t = s.register(&good, &pg);
        assert!(s.wait(t).is_ok());
    }

    /// The write end of a FIFO in the temp dir, opened read-write so open does not block.
    fn pipe_writer() -> Option<File> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ok()?;
        // fdatasync on a FIFO is EINVAL on Linux.
        f.sync_data().is_err().then_some(f)
    }

    #[test]
    fn concurrent_writers_all_return_after_a_round_that_began_after_them() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = Arc::new(Syncer::default());
        let files: Vec<_> = (0..4)
            .map(|i| file_in(dir.path(), &format!("f{i}")))
            .collect();
        let files = Arc::new(files);
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (s, files) = (Arc::clone(&s), Arc::clone(&files));
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let (f, p) = &files[i];
                        let t = s.register(f, p);
                        s.wait(t).unwrap_or_else(|e| panic!("{e:?}"));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap_or_else(|_| panic!("writer panicked"));
        }
        let st = s.lock();
        assert!(!st.running && st.files.is_empty());
    }
}
