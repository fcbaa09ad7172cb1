//! The resend window: ids of requests already accepted, so an exact resend (same `chunk`
//! option and tag, sent again because the ack was lost) is acked again without being
//! emitted twice.
//!
//! **Protocol per request with a `chunk` id.** [`Window::begin`] checks the id; a new one gets
//! an *emitting* record appended to the file (written, not fsynced) before anything is
//! emitted. After the host's `emit` returned `Ok` (the events are in the destination buffer,
//! durable there when it is a file buffer), [`Pending::commit`] appends an *accepted* record
//! and returns once it is fsynced; only then is the ack written. While a request with an id
//! is being emitted, a concurrent request with the same id waits for it and then counts as a
//! resend.
//!
//! **The guarantee.** Every request this instance ever acked is recognised as a resend while
//! it is in the window (the last [`Window::capacity`] ids, at most [`Window::max_age`] old),
//! also after a crash or restart: the window is reloaded from its file. Nothing is ever
//! dropped to avoid a duplicate: an id the window cannot vouch for is emitted.
//!
//! **The remaining window: one duplicate, reported.** A process that dies after the
//! destination buffer stored a request's events but before the accepted record reached the
//! file (for a process crash: the `write` of the record; for a power loss: its `fsync`)
//! leaves that request accepted downstream but never acked. The client resends it and the
//! next run cannot tell whether the events got in, because only the destination buffer knows
//! and the plugin ABI gives an input no way to ask it or to make `emit` idempotent. So the
//! next run emits the resend again, and at most one duplicate of that request follows. The
//! gap spans the buffer's own append and fsync, the return from `emit` and the record's
//! write, a few milliseconds for a file buffer. It is never silent after a process crash:
//! the emitting record without its accepted record marks the id *interrupted* on reload
//! ([`Pending::interrupted`]), and in_forward logs each such re-emit as a possible duplicate,
//! naming the chunk id and the record count. (After a power loss the unsynced emitting record
//! may be gone, and the re-emit is then not reported.) An id is also marked interrupted when
//! its `emit` failed and the process then stopped before a resend: a failed `emit` that was
//! routed to several outputs may have reached some of them.
//!
//! Also not covered: ids evicted from the window; clients that reuse one `chunk` value for
//! different data under the same tag (they lose the later data — Fluentd, Fluent Bit and
//! nagare send a fresh random 128-bit id per chunk).
//!
//! **Failures.** A record that cannot be written fails that request before anything is
//! emitted (the connection closes without an ack and the client resends); the partial record
//! is cut off. A failed `fsync` leaves the file's state unknown, so the window stops: every
//! later request with an id fails the same way until a restart (nothing is emitted and never
//! acked, rather than emitted on every resend).
//!
//! **The file.** `<dedupe_path>/in_forward_dedupe.log`, append-only records
//! `[kind, key_len: u16 BE, key, at: u64 BE unix seconds, crc32: u32 BE]` (the crc covers the
//! bytes before it); kind `0x01` = accepted, `0x02` = emitting. A torn tail from a crash is
//! ignored. Accepted records are synced in groups: concurrent connections share one
//! `fdatasync` (group commit), run without blocking other connections' writes. When the file
//! holds more than twice the window, it is rewritten with the live window and the open
//! emitting/interrupted ids (temp file, fsync, rename, fsync of the directory).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file name inside `dedupe_path`.
pub const FILE_NAME: &str = "in_forward_dedupe.log";

/// Keys longer than this (tag + id) are not recorded: such requests are never deduplicated.
pub const MAX_KEY: usize = 4096;

/// Record kind: the request's events were emitted (`emit` returned `Ok`).
const ACCEPTED: u8 = 1;
/// Record kind: the request is about to be emitted.
const EMITTING: u8 = 2;

/// Why the window could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DedupeError {
    /// An I/O error on the window file.
    #[error("dedupe window {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An earlier `fsync` of the window file failed; the window refuses ids until a restart.
    #[error(
        "dedupe window {path}: stopped after an earlier sync failure ({reason}); restart to reopen it"
    )]
    Stopped {
        /// The window file.
        path: PathBuf,
        /// The first failure.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DedupeError + '_ {
    move |source| DedupeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The dedupe key of a request: its tag and its `chunk` option.
pub fn key(tag: &str, chunk: &[u8]) -> Option<Vec<u8>> {
    let mut k = Vec::with_capacity(tag.len() + 1 + chunk.len());
    k.extend_from_slice(tag.as_bytes());
    k.push(0);
    k.extend_from_slice(chunk);
    (k.len() <= MAX_KEY).then_some(k)
}

fn encode_record(out: &mut Vec<u8>, kind: u8, key: &[u8], at: u64) {
    let start = out.len();
    out.push(kind);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&at.to_be_bytes());
    let crc = crc32fast::hash(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    kind: u8,
    key: Vec<u8>,
    at: u64,
}

impl Record {
    fn len(&self) -> usize {
        1 + 2 + self.key.len() + 8 + 4
    }
}

/// Parses records until the first torn or corrupt one.
fn decode_records(mut buf: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        let Some((&kind, rest)) = buf.split_first() else {
            return out;
        };
        if kind != ACCEPTED && kind != EMITTING {
            return out;
        }
        let Some(len) = rest
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return out;
        };
        let total = 1 + 2 + len + 8 + 4;
        let Some(rec) = buf.get(..total) else {
            return out;
        };
        let (body, crc) = rec.split_at(total - 4);
        let crc_ok = crc
            .try_into()
            .map(u32::from_be_bytes)
            .is_ok_and(|c| c == crc32fast::hash(body));
        if !crc_ok {
            return out;
        }
        let key = body.get(3..3 + len).unwrap_or_default().to_vec();
        let at = body
            .get(3 + len..)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        out.push(Record { kind, key, at });
        buf = buf.get(total..).unwrap_or_default();
    }
}

struct State {
    accepted: HashMap<Vec<u8>, u64>,
    order: VecDeque<(Vec<u8>, u64)>,
    /// Ids being emitted now, with the time of their emitting record.
    inflight: HashMap<Vec<u8>, u64>,
    /// Ids whose emitting record has no accepted record after it in the file as loaded:
    /// maybe accepted by an earlier run.
    interrupted: HashMap<Vec<u8>, u64>,
    /// The file, open for append (shared with a sync running outside the lock).
    file: Arc<File>,
    /// Its length after the last complete record.
    file_len: u64,
    file_records: usize,
    /// Accepted records written so far; those synced.
    written_seq: u64,
    synced_seq: u64,
    syncing: bool,
    failed: Option<String>,
}

/// A persistent, bounded window of accepted request ids (one per in_forward instance).
pub struct Window {
    path: PathBuf,
    dir: PathBuf,
    capacity: usize,
    max_age: Duration,
    state: Mutex<State>,
    changed: Condvar,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// What [`Window::begin`] found.
#[derive(Debug)]
pub enum Begin<'a> {
    /// Already accepted: ack without emitting.
    Resend,
    /// New: emit, then [`Pending::commit`] before acking.
    New(Pending<'a>),
}

/// A request being emitted; dropping it without `commit` forgets it (the emit failed).
#[derive(Debug)]
pub struct Pending<'a> {
    window: &'a Window,
    key: Option<Vec<u8>>,
    interrupted: bool,
}

impl Window {
    /// Opens (creating it) the window under `dir`, keeping at most `capacity` ids of at most
    /// `max_age`.
    pub fn open(dir: &Path, capacity: usize, max_age: Duration) -> Result<Window, DedupeError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(FILE_NAME);
        let mut raw = Vec::new();
        if let Ok(mut f) = File::open(&path) {
            f.read_to_end(&mut raw).map_err(io_err(&path))?;
        }
        let records = decode_records(&raw);
        let good_len: usize = records.iter().map(Record::len).sum();
        let torn = good_len != raw.len();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut st = State {
            accepted: HashMap::new(),
            order: VecDeque::new(),
            inflight: HashMap::new(),
            interrupted: HashMap::new(),
            file: Arc::new(file),
            file_len: raw.len() as u64,
            file_records: records.len(),
            written_seq: 0,
            synced_seq: 0,
            syncing: false,
            failed: None,
        };
        for Record { kind, key, at } in records {
            if kind == EMITTING {
                st.interrupted.insert(key, at);
            } else {
                st.interrupted.remove(&key);
                st.accepted.insert(key.clone(), at);
                st.order.push_back((key, at));
            }
        }
        let capacity = capacity.max(1);
        let w = Window {
            path,
            dir: dir.to_path_buf(),
            capacity,
            max_age,
            state: Mutex::new(st),
            changed: Condvar::new(),
        };
        {
            let mut st = lock(&w.state);
            let now = unix_now();
            w.evict(&mut st, now);
            let min_at = w.min_at(now);
            st.interrupted.retain(|_, at| *at >= min_at);
            if st.interrupted.len() > capacity {
                let mut oldest: Vec<u64> = st.interrupted.values().copied().collect();
                oldest.sort_unstable();
                let cut = oldest.get(oldest.len() - capacity).copied().unwrap_or(0);
                st.interrupted.retain(|_, at| *at >= cut);
            }
            if torn || st.file_records > 2 * w.capacity {
                w.compact(&mut st)?;
            }
        }
        Ok(w)
    }

    /// The most ids kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The oldest id kept.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The window file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of ids currently in the window.
    pub fn len(&self) -> usize {
        lock(&self.state).accepted.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of ids an earlier run was emitting when it stopped (maybe accepted), not yet
    /// resent.
    pub fn interrupted(&self) -> usize {
        lock(&self.state).interrupted.len()
    }

    fn min_at(&self, now: u64) -> u64 {
        now.saturating_sub(self.max_age.as_secs())
    }

    fn evict(&self, st: &mut State, now: u64) {
        let min_at = self.min_at(now);
        while let Some((k, at)) = st.order.front() {
            if st.order.len() <= self.capacity && *at >= min_at {
                break;
            }
            if st.accepted.get(k) == Some(at) {
                st.accepted.remove(k);
            }
            st.order.pop_front();
        }
    }

    fn stopped(&self, reason: &str) -> DedupeError {
        DedupeError::Stopped {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Appends whole records (no sync). On failure the partial write is cut off so later
    /// records stay readable; if even that fails the window stops.
    fn append(&self, st: &mut State, bytes: &[u8]) -> Result<(), DedupeError> {
        match (&*st.file).write_all(bytes) {
            Ok(()) => {
                st.file_len += bytes.len() as u64;
                st.file_records += 1;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = st.file.set_len(st.file_len) {
                    st.failed = Some(format!("{e}; cutting the partial record failed: {cut}"));
                }
                Err(DedupeError::Io {
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }

    /// Checks `key` (see [`key`]): a resend, or a new request to emit, whose emitting record
    /// is written before this returns. Waits while the same key is being emitted by another
    /// connection. `None` keys are always new. An error means: do not emit, do not ack.
    pub fn begin(&self, key: Option<Vec<u8>>) -> Result<Begin<'_>, DedupeError> {
        let Some(key) = key else {
            return Ok(Begin::New(Pending {
                window: self,
                key: None,
                interrupted: false,
            }));
        };
        let mut st = lock(&self.state);
        loop {
            if let Some(reason) = &st.failed {
                return Err(self.stopped(reason));
            }
            let now = unix_now();
            self.evict(&mut st, now);
            if st.accepted.contains_key(&key) {
                return Ok(Begin::Resend);
            }
            if !st.inflight.contains_key(&key) {
                let mut rec = Vec::with_capacity(key.len() + 15);
                encode_record(&mut rec, EMITTING, &key, now);
                self.append(&mut st, &rec)?;
                let min_at = self.min_at(now);
                let interrupted = st.interrupted.get(&key).is_some_and(|at| *at >= min_at);
                st.inflight.insert(key.clone(), now);
                return Ok(Begin::New(Pending {
                    window: self,
                    key: Some(key),
                    interrupted,
                }));
            }
            st = match self.changed.wait(st) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }

    /// Records `key` as accepted and returns once that is on disk (group commit).
    fn commit(&self, key: Vec<u8>) -> Result<(), DedupeError> {
        let now = unix_now();
        let mut st = lock(&self.state);
        let mut rec = Vec::with_capacity(key.len() + 15);
        encode_record(&mut rec, ACCEPTED, &key, now);
        let written = match &st.failed {
            Some(reason) => Err(self.stopped(reason)),
            None => self.append(&mut st, &rec),
        };
        st.inflight.remove(&key);
        if let Err(e) = written {
            self.changed.notify_all();
            return Err(e);
        }
        st.written_seq += 1;
        let my_seq = st.written_seq;
        st.interrupted.remove(&key);
        st.accepted.insert(key.clone(), now);
        st.order.push_back((key, now));
        self.evict(&mut st, now);
        // Waiters on the same key now see it accepted.
        self.changed.notify_all();
        loop {
            if st.synced_seq >= my_seq {
                return Ok(());
            }
            if let Some(reason) = &st.failed {
                return Err(self.stopped(reason));
            }
            if !st.syncing {
                // Become the leader: sync everything written so far, outside the lock, so
                // other connections keep writing their records meanwhile.
                st.syncing = true;
                let upto = st.written_seq;
                let file = st.file.clone();
                drop(st);
                let res = file.sync_data();
                st = lock(&self.state);
                st.syncing = false;
                match res {
                    Ok(()) => {
                        st.synced_seq = upto;
                        if st.file_records > 2 * self.capacity
                            && let Err(e) = self.compact(&mut st)
                        {
                            st.failed = Some(e.to_string());
                        }
                    }
                    Err(e) => st.failed = Some(format!("fdatasync failed: {e}")),
                }
                self.changed.notify_all();
                continue;
            }
            st = match self.changed.wait(st) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }

    /// Rewrites the file with the live window and the open emitting/interrupted ids (called
    /// with the state locked, no sync running).
    fn compact(&self, st: &mut State) -> Result<(), DedupeError> {
        let mut out = Vec::new();
        let mut n = 0;
        for (k, at) in &st.order {
            if st.accepted.get(k) == Some(at) {
                encode_record(&mut out, ACCEPTED, k, *at);
                n += 1;
            }
        }
        let min_at = self.min_at(unix_now());
        for (k, at) in st.inflight.iter().chain(&st.interrupted) {
            if *at >= min_at {
                encode_record(&mut out, EMITTING, k, *at);
                n += 1;
            }
        }
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&out)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let appender = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        st.file = Arc::new(appender);
        st.file_len = out.len() as u64;
        st.file_records = n;
        Ok(())
    }
}

impl Pending<'_> {
    /// Whether an earlier run was emitting this same request when it stopped (crash, kill,
    /// or a failed `emit` followed by a stop) and left no record that the emit completed:
    /// its events may already be downstream, so emitting it now may duplicate them.
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// The events were emitted: record the id durably (before the ack is written).
    pub fn commit(mut self) -> Result<(), DedupeError> {
        match self.key.take() {
            Some(k) => self.window.commit(k),
            None => Ok(()),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            let mut st = lock(&self.window.state);
            st.inflight.remove(&k);
            self.window.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "nagare-dedupe-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn open(dir: &Path, capacity: usize) -> Window {
        Window::open(dir, capacity, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn begin<'a>(w: &'a Window, k: &[u8]) -> Begin<'a> {
        w.begin(Some(k.to_vec())).unwrap_or_else(|e| panic!("{e}"))
    }

    fn is_resend(w: &Window, k: &[u8]) -> bool {
        matches!(begin(w, k), Begin::Resend)
    }

    fn accept(w: &Window, k: &[u8]) {
        match begin(w, k) {
            Begin::New(p) => p.commit().unwrap_or_else(|e| panic!("{e}")),
            Begin::Resend => panic!("{k:?} already there"),
        }
    }

    /// Begins `k`; `Some(interrupted)` when new (the pending request is dropped).
    fn new_interrupted(w: &Window, k: &[u8]) -> Option<bool> {
        match begin(w, k) {
            Begin::New(p) => Some(p.interrupted()),
            Begin::Resend => None,
        }
    }

    fn record(kind: u8, key: &[u8], at: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(&mut out, kind, key, at);
        out
    }

    #[test]
    fn resends_are_recognised_and_failed_emits_are_forgotten() {
        let dir = tmpdir("basic");
        let w = open(&dir, 100);
        accept(&w, b"t\0a");
        assert!(is_resend(&w, b"t\0a"));
        assert!(!is_resend(&w, b"other\0a"), "same id, other tag");
        // An emit that failed (Pending dropped) leaves no trace in this run.
        match begin(&w, b"t\0b") {
            Begin::New(p) => drop(p),
            Begin::Resend => panic!("new"),
        }
        assert_eq!(new_interrupted(&w, b"t\0b"), Some(false));
        accept(&w, b"t\0b");
        // Requests without an id are always new.
        assert!(matches!(w.begin(None), Ok(Begin::New(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn survives_a_restart_and_ignores_a_torn_tail() {
        let dir = tmpdir("restart");
        {
            let w = open(&dir, 100);
            accept(&w, b"t\0one");
            accept(&w, b"t\0two");
        }
        // A crash mid-append leaves half a record.
        let path = dir.join(FILE_NAME);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&[1, 0, 9, b't'])
            .unwrap_or_else(|e| panic!("{e}"));
        drop(f);
        let w = open(&dir, 100);
        assert!(is_resend(&w, b"t\0one") && is_resend(&w, b"t\0two"));
        accept(&w, b"t\0three");
        drop(w);
        let w = open(&dir, 100);
        assert_eq!((w.len(), w.interrupted()), (3, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Regression: the relay e2e's kill -9 landed while a request was being emitted; the
    /// next run emitted the resend again without a trace. Now the next run knows that the
    /// request may already be downstream.
    #[test]
    fn a_request_being_emitted_when_the_process_died_is_interrupted_after_restart() {
        let dir = tmpdir("interrupted");
        {
            let w = open(&dir, 100);
            accept(&w, b"t\0done");
            // Emitting when the process dies: the Pending is never committed nor dropped.
            match begin(&w, b"t\0mid") {
                Begin::New(p) => std::mem::forget(p),
                Begin::Resend => panic!("new"),
            }
        }
        let w = open(&dir, 100);
        assert_eq!(w.interrupted(), 1);
        assert!(is_resend(&w, b"t\0done"));
        // Never lost: the resend is emitted again, flagged; other ids are not flagged.
        assert_eq!(new_interrupted(&w, b"t\0new"), Some(false));
        assert_eq!(new_interrupted(&w, b"t\0mid"), Some(true));
        accept(&w, b"t\0mid");
        assert!(is_resend(&w, b"t\0mid"));
        assert_eq!(w.interrupted(), 0);
        drop(w);
        // "mid": accepted after its emitting record, settled for good. "new": its emit
        // failed (dropped) and no resend came before the stop, so it may be partly emitted.
        let w = open(&dir, 100);
        assert_eq!((w.len(), w.interrupted()), (2, 1));
        assert!(is_resend(&w, b"t\0mid"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Loads a file made of `records` and reports (accepted ids, interrupted ids).
    fn check_load(name: &str, records: &[(u8, &[u8])], expect: (&[&[u8]], &[&[u8]])) {
        let dir = tmpdir(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let now = unix_now();
        let raw: Vec<u8> = records
            .iter()
            .flat_map(|(kind, k)| record(*kind, k, now))
            .collect();
        std::fs::write(dir.join(FILE_NAME), &raw).unwrap_or_else(|e| panic!("{e}"));
        let w = open(&dir, 100);
        let st = lock(&w.state);
        let mut accepted: Vec<&[u8]> = st.accepted.keys().map(Vec::as_slice).collect();
        let mut interrupted: Vec<&[u8]> = st.interrupted.keys().map(Vec::as_slice).collect();
        accepted.sort();
        interrupted.sort();
        assert_eq!(
            (accepted.as_slice(), interrupted.as_slice()),
            expect,
            "{name}"
        );
        drop(st);
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reload_tells_accepted_from_interrupted() {
        const A: u8 = ACCEPTED;
        const E: u8 = EMITTING;
        check_load("l-empty", &[], (&[], &[]));
        check_load("l-acc", &[(A, b"a")], (&[b"a"], &[]));
        check_load("l-done", &[(E, b"a"), (A, b"a")], (&[b"a"], &[]));
        check_load("l-mid", &[(E, b"a")], (&[], &[b"a"]));
        check_load(
            "l-mix",
            &[(E, b"a"), (E, b"b"), (A, b"b"), (E, b"c")],
            (&[b"b"], &[b"a", b"c"]),
        );
        // A failed emit, its resend emitting and accepted.
        check_load(
            "l-retry",
            &[(E, b"a"), (E, b"a"), (A, b"a")],
            (&[b"a"], &[]),
        );
    }

    #[test]
    fn bounded_by_count_and_compacted() {
        let dir = tmpdir("bounded");
        let w = open(&dir, 4);
        for i in 0..20u8 {
            accept(&w, &[b't', 0, i]);
        }
        assert_eq!(w.len(), 4);
        assert!(is_resend(&w, &[b't', 0, 19]));
        assert!(!is_resend(&w, &[b't', 0, 0]), "evicted");
        let size = std::fs::metadata(dir.join(FILE_NAME))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size <= 2 * 9 * 16 * 2, "compacted, {size} bytes");
        drop(w);
        let w = open(&dir, 4);
        assert_eq!(w.len(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_keeps_ids_being_emitted() {
        let dir = tmpdir("compact-inflight");
        {
            let w = open(&dir, 2);
            let mid = match begin(&w, b"t\0mid") {
                Begin::New(p) => p,
                Begin::Resend => panic!("new"),
            };
            // Enough commits to rewrite the file while "mid" is being emitted.
            for i in 0..10u8 {
                accept(&w, &[b't', 0, i]);
            }
            std::mem::forget(mid);
        }
        let w = open(&dir, 2);
        assert_eq!(new_interrupted(&w, b"t\0mid"), Some(true));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn old_ids_expire() {
        let dir = tmpdir("age");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut raw = Vec::new();
        encode_record(&mut raw, ACCEPTED, b"t\0old", unix_now() - 7200);
        encode_record(&mut raw, ACCEPTED, b"t\0new", unix_now());
        encode_record(&mut raw, EMITTING, b"t\0old-mid", unix_now() - 7200);
        std::fs::write(dir.join(FILE_NAME), &raw).unwrap_or_else(|e| panic!("{e}"));
        let w = open(&dir, 100);
        assert!(!is_resend(&w, b"t\0old"));
        assert!(is_resend(&w, b"t\0new"));
        assert_eq!(w.interrupted(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn decode_stops_at_corruption() {
        let mut raw = record(ACCEPTED, b"a", 1);
        raw.extend(record(EMITTING, b"b", 2));
        raw.extend(record(ACCEPTED, b"c", 3));
        let n = raw.len();
        raw[n - 1] ^= 0xff;
        let rec = |kind, key: &[u8], at| Record {
            kind,
            key: key.to_vec(),
            at,
        };
        assert_eq!(
            decode_records(&raw),
            vec![rec(ACCEPTED, b"a", 1), rec(EMITTING, b"b", 2)]
        );
        assert_eq!(decode_records(&[]), vec![]);
        assert_eq!(decode_records(&[3, 0, 0]), vec![], "unknown kind");
    }

    #[test]
    fn concurrent_same_id_waits_then_is_a_resend() {
        let dir = tmpdir("race");
        let w = Arc::new(open(&dir, 1000));
        let first = match begin(&w, b"t\0x") {
            Begin::New(p) => p,
            Begin::Resend => panic!("new"),
        };
        let w2 = w.clone();
        let other = std::thread::spawn(move || is_resend(&w2, b"t\0x"));
        // The second request blocks until the first commits, then sees a resend.
        first.commit().unwrap_or_else(|e| panic!("{e}"));
        assert!(other.join().unwrap_or(false));
        // Many writers share syncs and all ids land.
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..20u8 {
                        accept(&w, &[b't', 0, t, i]);
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
        assert_eq!(w.len(), 1 + 8 * 20);
        drop(w);
        let w = open(&dir, 1000);
        assert_eq!((w.len(), w.interrupted()), (161, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
