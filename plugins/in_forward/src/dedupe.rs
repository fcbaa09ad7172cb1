//! The resend window: ids of requests already accepted, so an exact resend (same `chunk`
//! option and tag, sent again because the ack was lost) is acked again without being
//! emitted twice.
//!
//! **The guarantee.** A request carrying a `chunk` id is recorded only after the host's
//! `emit` returned `Ok` (the events are in the destination buffer, durable there when it is
//! a file buffer), and the record is fsynced before the ack is written. So for every request
//! this instance ever acked, a resend with the same tag and id arriving within the window
//! (the last [`Window::capacity`] ids and at most [`Window::max_age`] old) is acked without
//! emitting — also after a crash or restart of this process, since the window is reloaded
//! from its file. Not covered: a crash after `emit` returned but before the id was synced
//! (the request was never acked, the client resends, the events are emitted twice); ids
//! evicted from the window; clients that reuse one `chunk` value for different data under
//! the same tag (they lose the later data — Fluentd, Fluent Bit and nagare send a fresh
//! random 128-bit id per chunk). While a request with an id is being emitted, a concurrent
//! request with the same id waits for it and then counts as a resend.
//!
//! **The file.** `<dedupe_path>/in_forward_dedupe.log`, append-only records
//! `[0x01, key_len: u16 BE, key, accepted_at: u64 BE unix seconds, crc32: u32 BE]` (the crc
//! covers the bytes before it). A torn tail from a crash is ignored. Appends are batched:
//! concurrent connections share one `fdatasync` (group commit). When the file holds more than
//! twice the window, it is rewritten with the live window (temp file, fsync, rename, fsync of
//! the directory).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file name inside `dedupe_path`.
pub const FILE_NAME: &str = "in_forward_dedupe.log";

/// Keys longer than this (tag + id) are not recorded: such requests are never deduplicated.
pub const MAX_KEY: usize = 4096;

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

fn encode_record(out: &mut Vec<u8>, key: &[u8], at: u64) {
    let start = out.len();
    out.push(1);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&at.to_be_bytes());
    let crc = crc32fast::hash(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Parses records until the first torn or corrupt one.
fn decode_records(mut buf: &[u8]) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    loop {
        let Some((&1, rest)) = buf.split_first() else {
            return out;
        };
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
        out.push((key, at));
        buf = buf.get(total..).unwrap_or_default();
    }
}

struct State {
    accepted: HashMap<Vec<u8>, u64>,
    order: VecDeque<(Vec<u8>, u64)>,
    inflight: HashSet<Vec<u8>>,
    pending: Vec<u8>,
    pending_seq: u64,
    synced_seq: u64,
    syncing: bool,
    file_records: usize,
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
    file: Mutex<File>,
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
        let file_records = records.len();
        let torn = records_len(&records) != raw.len();
        let mut st = State {
            accepted: HashMap::new(),
            order: VecDeque::new(),
            inflight: HashSet::new(),
            pending: Vec::new(),
            pending_seq: 0,
            synced_seq: 0,
            syncing: false,
            file_records,
            failed: None,
        };
        for (k, at) in records {
            st.accepted.insert(k.clone(), at);
            st.order.push_back((k, at));
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let w = Window {
            path,
            dir: dir.to_path_buf(),
            capacity: capacity.max(1),
            max_age,
            state: Mutex::new(st),
            changed: Condvar::new(),
            file: Mutex::new(file),
        };
        {
            let mut st = lock(&w.state);
            w.evict(&mut st, unix_now());
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

    fn evict(&self, st: &mut State, now: u64) {
        let min_at = now.saturating_sub(self.max_age.as_secs());
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

    /// Checks `key` (see [`key`]): a resend, or a new request to emit. Waits while the same
    /// key is being emitted by another connection. `None` keys are always new.
    pub fn begin(&self, key: Option<Vec<u8>>) -> Begin<'_> {
        let Some(key) = key else {
            return Begin::New(Pending {
                window: self,
                key: None,
            });
        };
        let mut st = lock(&self.state);
        loop {
            self.evict(&mut st, unix_now());
            if st.accepted.contains_key(&key) {
                return Begin::Resend;
            }
            if !st.inflight.contains(&key) {
                st.inflight.insert(key.clone());
                return Begin::New(Pending {
                    window: self,
                    key: Some(key),
                });
            }
            st = match self.changed.wait(st) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }

    /// Records `key` and returns once it is on disk (group commit).
    fn commit(&self, key: Vec<u8>) -> Result<(), DedupeError> {
        let now = unix_now();
        let mut st = lock(&self.state);
        encode_record(&mut st.pending, &key, now);
        st.pending_seq += 1;
        let my_seq = st.pending_seq;
        st.inflight.remove(&key);
        st.accepted.insert(key.clone(), now);
        st.order.push_back((key, now));
        self.evict(&mut st, now);
        loop {
            if st.synced_seq >= my_seq {
                self.changed.notify_all();
                return Ok(());
            }
            if let Some(e) = &st.failed {
                return Err(DedupeError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e.clone()),
                });
            }
            if !st.syncing {
                // Become the leader: write and sync everything pending, outside the lock.
                st.syncing = true;
                let batch = std::mem::take(&mut st.pending);
                let upto = st.pending_seq;
                let n = decode_records(&batch).len();
                drop(st);
                let res = {
                    let mut f = lock(&self.file);
                    f.write_all(&batch).and_then(|()| f.sync_data())
                };
                st = lock(&self.state);
                st.syncing = false;
                match res {
                    Ok(()) => {
                        st.synced_seq = upto;
                        st.file_records += n;
                        if st.file_records > 2 * self.capacity
                            && let Err(e) = self.compact(&mut st)
                        {
                            st.failed = Some(e.to_string());
                        }
                    }
                    Err(e) => st.failed = Some(e.to_string()),
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

    /// Rewrites the file with the live window (called with the state locked, no sync running).
    fn compact(&self, st: &mut State) -> Result<(), DedupeError> {
        let mut out = Vec::new();
        for (k, at) in &st.order {
            if st.accepted.get(k) == Some(at) {
                encode_record(&mut out, k, *at);
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
        *lock(&self.file) = appender;
        st.file_records = st.accepted.len();
        Ok(())
    }
}

fn records_len(records: &[(Vec<u8>, u64)]) -> usize {
    records.iter().map(|(k, _)| 1 + 2 + k.len() + 8 + 4).sum()
}

impl Pending<'_> {
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
    use std::sync::Arc;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "nagare-dedupe-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn is_resend(w: &Window, k: &[u8]) -> bool {
        matches!(w.begin(Some(k.to_vec())), Begin::Resend)
    }

    fn accept(w: &Window, k: &[u8]) {
        match w.begin(Some(k.to_vec())) {
            Begin::New(p) => p.commit().unwrap_or_else(|e| panic!("{e}")),
            Begin::Resend => panic!("{k:?} already there"),
        }
    }

    #[test]
    fn resends_are_recognised_and_failed_emits_are_forgotten() {
        let dir = tmpdir("basic");
        let w =
            Window::open(&dir, 100, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}"));
        accept(&w, b"t\0a");
        assert!(is_resend(&w, b"t\0a"));
        assert!(!is_resend(&w, b"other\0a"), "same id, other tag");
        // An emit that failed (Pending dropped) leaves no trace.
        match w.begin(Some(b"t\0b".to_vec())) {
            Begin::New(p) => drop(p),
            Begin::Resend => panic!("new"),
        }
        accept(&w, b"t\0b");
        // Requests without an id are always new.
        assert!(matches!(w.begin(None), Begin::New(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn survives_a_restart_and_ignores_a_torn_tail() {
        let dir = tmpdir("restart");
        {
            let w = Window::open(&dir, 100, Duration::from_secs(3600))
                .unwrap_or_else(|e| panic!("{e}"));
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
        let w =
            Window::open(&dir, 100, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}"));
        assert!(is_resend(&w, b"t\0one") && is_resend(&w, b"t\0two"));
        accept(&w, b"t\0three");
        drop(w);
        let w =
            Window::open(&dir, 100, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bounded_by_count_and_compacted() {
        let dir = tmpdir("bounded");
        let w = Window::open(&dir, 4, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..20u8 {
            accept(&w, &[b't', 0, i]);
        }
        assert_eq!(w.len(), 4);
        assert!(is_resend(&w, &[b't', 0, 19]));
        assert!(!is_resend(&w, &[b't', 0, 0]), "evicted");
        let size = std::fs::metadata(dir.join(FILE_NAME))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size <= 9 * 16 * 2, "compacted, {size} bytes");
        drop(w);
        let w = Window::open(&dir, 4, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.len(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn old_ids_expire() {
        let dir = tmpdir("age");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut raw = Vec::new();
        encode_record(&mut raw, b"t\0old", unix_now() - 7200);
        encode_record(&mut raw, b"t\0new", unix_now());
        std::fs::write(dir.join(FILE_NAME), &raw).unwrap_or_else(|e| panic!("{e}"));
        let w =
            Window::open(&dir, 100, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!is_resend(&w, b"t\0old"));
        assert!(is_resend(&w, b"t\0new"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn decode_stops_at_corruption() {
        let mut raw = Vec::new();
        encode_record(&mut raw, b"a", 1);
        encode_record(&mut raw, b"b", 2);
        let n = raw.len();
        raw[n - 1] ^= 0xff;
        assert_eq!(decode_records(&raw), vec![(b"a".to_vec(), 1)]);
        assert_eq!(decode_records(&[]), vec![]);
        assert_eq!(decode_records(&[2, 0, 0]), vec![]);
    }

    #[test]
    fn concurrent_same_id_waits_then_is_a_resend() {
        let dir = tmpdir("race");
        let w = Arc::new(
            Window::open(&dir, 1000, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}")),
        );
        let first = match w.begin(Some(b"t\0x".to_vec())) {
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
        let w =
            Window::open(&dir, 1000, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.len(), 161);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
