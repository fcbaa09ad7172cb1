//! File-buffer storage: chunk file naming, the meta sidecar, framed appends, fsync, and
//! resume after a crash.
//!
//! A chunk is `<dir>/<prefix>b<hex><suffix>` while staged and `<prefix>q<hex><suffix>`
//! once queued (default prefix `buffer.`, suffix `.log`), plus `<that>.meta`. The data file
//! is a sequence of [`crate::frame`] frames, one per append. The meta file is one frame
//! whose payload is JSON (`id`, `timekey`, `tag`, `variables`, `c` = created seconds),
//! written once when the chunk is created; record counts and sizes come from the frames.
//!
//! Durability: creating a chunk fsyncs the meta file and the directory; each `write`
//! fsyncs the data it appended before it returns (policy `always`; concurrent writes share
//! one `fdatasync` per file, see the `syncer` module); queueing fsyncs the data, renames
//! both files and fsyncs the directory. Reusing a flushed chunk's file writes and fsyncs
//! the new meta file (marked `"r": true`) before renaming the free file to the new data
//! name, then fsyncs the directory. Removing a committed chunk is not fsynced: after a
//! power loss it may reappear and be flushed again, which at-least-once delivery allows.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::clock::{from_secs_f64, to_secs_f64};
use crate::frame;
use crate::metadata::{ChunkId, Metadata};
use nagare_core::io::write_all_parts;

/// Whether a chunk file is staged (`b`) or queued (`q`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    Staged,
    Queued,
}

/// Where chunk files live and how they are named.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub dir: PathBuf,
    prefix: String,
    suffix: String,
}

impl Layout {
    /// Fluentd's `buf_file` path rules: `dir` → `dir/buffer.*.log`; `x.*.y` as given;
    /// `x.*` → `x.*<path_suffix>`.
    pub fn new(path: &Path, path_suffix: &str) -> Layout {
        let base = path
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(star) = base.find('*').filter(|_| base.contains(".*")) {
            let prefix = base.get(..star).unwrap_or("").to_string();
            let rest = base.get(star + 1..).unwrap_or("");
            let suffix = if rest.is_empty() {
                path_suffix.to_string()
            } else {
                rest.to_string()
            };
            let dir = path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            Layout {
                dir,
                prefix,
                suffix,
            }
        } else {
            Layout {
                dir: path.to_path_buf(),
                prefix: "buffer.".to_string(),
                suffix: path_suffix.to_string(),
            }
        }
    }

    pub fn data_path(&self, id: &ChunkId, state: FileState) -> PathBuf {
        let s = match state {
            FileState::Staged => 'b',
            FileState::Queued => 'q',
        };
        self.dir
            .join(format!("{}{}{}{}", self.prefix, s, id.hex(), self.suffix))
    }

    /// The name a flushed chunk's data file takes while it waits for reuse.
    pub fn free_path(&self, id: &ChunkId) -> PathBuf {
        self.dir
            .join(format!("{}f{}{}", self.prefix, id.hex(), self.suffix))
    }

    /// Whether `name` is a free file's name.
    pub fn is_free(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix)
            .and_then(|n| n.strip_suffix(&self.suffix))
            .and_then(|core| core.strip_prefix('f'))
            .is_some_and(|hex| ChunkId::from_hex(hex).is_some())
    }

    /// Parses a data file name into its state and id.
    pub fn parse(&self, name: &str) -> Option<(FileState, ChunkId)> {
        let core = name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        let state = match core.as_bytes().first()? {
            b'b' => FileState::Staged,
            b'q' => FileState::Queued,
            _ => return None,
        };
        Some((state, ChunkId::from_hex(core.get(1..)?)?))
    }
}

/// The meta file of a data file.
pub(crate) fn meta_path(data: &Path) -> PathBuf {
    let mut s = data.as_os_str().to_owned();
    s.push(".meta");
    PathBuf::from(s)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMeta {
    v: u32,
    id: String,
    #[serde(flatten)]
    metadata: Metadata,
    c: f64,
    /// The data file is a reused one (it may end in a stale tail; see [`frame`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    r: bool,
}

/// The incarnation of a chunk's v2 frames: 64 random bits of its id, so frames left in a
/// reused file by an earlier chunk are never taken for this one's.
pub(crate) fn incarnation(id: &ChunkId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[8..]);
    u64::from_le_bytes(b)
}

/// Encodes the meta file content.
pub(crate) fn encode_meta(id: &ChunkId, metadata: &Metadata, created: SystemTime) -> Vec<u8> {
    encode_meta_with(id, metadata, created, false)
}

/// Encodes the meta file content of a chunk whose data file is new or (`reused`) reused.
pub(crate) fn encode_meta_with(
    id: &ChunkId,
    metadata: &Metadata,
    created: SystemTime,
    reused: bool,
) -> Vec<u8> {
    let stored = StoredMeta {
        v: 1,
        id: id.hex(),
        metadata: metadata.clone(),
        c: to_secs_f64(created),
        r: reused,
    };
    let json = serde_json::to_vec(&stored).unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + frame::HEADER_LEN);
    frame::encode(&json, 0, &mut out);
    out
}

/// Decodes a meta file; the error says what is wrong.
#[cfg(test)]
pub(crate) fn decode_meta(
    bytes: &[u8],
    expect_id: &ChunkId,
) -> Result<(Metadata, SystemTime), String> {
    decode_meta_with(bytes, expect_id).map(|(m, t, _)| (m, t))
}

/// [`decode_meta`], and whether the data file is a reused one.
pub(crate) fn decode_meta_with(
    bytes: &[u8],
    expect_id: &ChunkId,
) -> Result<(Metadata, SystemTime, bool), String> {
    let f = frame::frame_at(bytes, 0).ok_or("meta frame is damaged")?;
    if f.end() != bytes.len() {
        return Err("meta file has trailing bytes".into());
    }
    let payload = bytes.get(f.payload()).ok_or("meta frame is damaged")?;
    let stored: StoredMeta =
        serde_json::from_slice(payload).map_err(|e| format!("meta JSON: {e}"))?;
    if stored.v != 1 {
        return Err(format!("unknown meta version {}", stored.v));
    }
    if stored.id != expect_id.hex() {
        return Err(format!(
            "meta id {} does not match the file name",
            stored.id
        ));
    }
    Ok((stored.metadata, from_secs_f64(stored.c), stored.r))
}

/// fsyncs a directory so a create or rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a chunk's meta and (empty) data file; returns the data file open for append.
pub(crate) fn create_chunk(data: &Path, meta: &[u8], sync: bool) -> io::Result<File> {
    let mpath = meta_path(data);
    let mut m = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&mpath)?;
    m.write_all(meta)?;
    if sync {
        m.sync_all()?;
    }
    let f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(data)?;
    Ok(f)
}

/// Makes the flushed chunk file `free` the data file of a new chunk: writes and (`sync`)
/// fsyncs its meta first, then renames `free` to `data` (the caller fsyncs the
/// directory). Returns the file open for writing at its start: the new frames overwrite
/// the old ones, whose blocks and cached pages are reused.
pub(crate) fn reuse_chunk(free: &Path, data: &Path, meta: &[u8], sync: bool) -> io::Result<File> {
    let mpath = meta_path(data);
    let mut m = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&mpath)?;
    m.write_all(meta)?;
    if sync {
        m.sync_all()?;
    }
    drop(m);
    if let Err(e) = fs::rename(free, data) {
        let _ = fs::remove_file(&mpath);
        return Err(e);
    }
    OpenOptions::new().write(true).open(data)
}

/// Turns a flushed chunk's data file into a free file for reuse (its meta file goes).
/// Not fsynced: after a crash, free files are removed at resume.
pub(crate) fn release_to_free(data: &Path, free: &Path) -> io::Result<()> {
    match fs::remove_file(meta_path(data)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::rename(data, free)
}

/// Appends one v2 frame (`parts` concatenated) holding `records` entries at the file's
/// position (`len_before`: its end, or where a reused file's new data ends), with
/// vectored writes straight from `parts` (no concatenated copy). On failure the file is
/// cut back to `len_before` (best effort), so a later append starts clean.
pub(crate) fn append_frame(
    file: &File,
    parts: &[&[u8]],
    records: u32,
    incarnation: u64,
    len_before: u64,
) -> io::Result<u64> {
    let header = frame::header_parts(parts, records, incarnation);
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    all.push(&header);
    all.extend(parts.iter().copied().filter(|p| !p.is_empty()));
    let total = all.iter().map(|p| p.len() as u64).sum();
    let mut w = file;
    if let Err(e) = write_all_parts(&mut w, &all) {
        let _ = file.set_len(len_before);
        let _ = w.seek(io::SeekFrom::Start(len_before));
        return Err(e);
    }
    Ok(total)
}

/// Moves a chunk's data and meta file from staged to queued names.
pub(crate) fn rename_to_queued(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(meta_path(from), meta_path(to))?;
    if let Err(e) = fs::rename(from, to) {
        let _ = fs::rename(meta_path(to), meta_path(from));
        return Err(e);
    }
    Ok(())
}

/// Removes a chunk's files (missing files are fine).
pub(crate) fn remove_chunk(data: &Path) -> io::Result<()> {
    for p in [data.to_path_buf(), meta_path(data)] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a data file into `buf` (cleared first; its capacity is reused) and leaves there
/// the concatenated payloads of the good frames. `len_hint` is the expected file length.
pub(crate) fn read_payloads_into(
    data: &Path,
    len_hint: u64,
    incarnation: u64,
    reused: bool,
    buf: &mut Vec<u8>,
) -> io::Result<frame::Scan> {
    buf.clear();
    let mut f = File::open(data)?;
    // One more byte than expected, so read_to_end sees the end without growing.
    buf.reserve(usize::try_from(len_hint).unwrap_or(0).saturating_add(1));
    f.read_to_end(buf)?;
    let scan = frame::scan(buf, Some(incarnation), reused);
    frame::compact_payloads(buf, &scan);
    Ok(scan)
}

/// Writes `data` to `<dir>/<name>` (appending, like Fluentd's backup), creating `dir`.
pub(crate) fn write_backup(dir: &Path, name: &str, data: &[u8]) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let mut f = OpenOptions::new().append(true).create(true).open(&path)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(path)
}

/// A chunk found on disk at start.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub id: ChunkId,
    pub state: FileState,
    pub path: PathBuf,
    pub metadata: Metadata,
    pub created: SystemTime,
    pub modified: SystemTime,
    pub bytes: u64,
    pub records: u64,
    pub file_len: u64,
    /// The data file was reused (it may have held a stale tail, now cut off).
    pub reused: bool,
}

/// What happened to one damaged data file during resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Bytes dropped (torn tail plus damaged ranges).
    pub dropped_bytes: u64,
    /// Damaged ranges dropped; each held at least one batch.
    pub dropped_ranges: usize,
    /// Batches (frames) kept.
    pub kept_batches: usize,
}

/// What resuming a file buffer found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeReport {
    /// Chunks resumed on the stage.
    pub staged: usize,
    /// Chunks resumed in the queue (including staged ones enqueued because full or
    /// duplicated).
    pub queued: usize,
    /// Staged chunks enqueued at resume (full, or sharing metadata with a newer one).
    pub enqueued_at_resume: usize,
    /// Damaged data files that were cut back to their good frames.
    pub repaired: Vec<Repair>,
    /// Files moved to the backup directory (broken or missing meta, nothing readable).
    pub quarantined: Vec<PathBuf>,
    /// Empty chunks removed (zero-length data file: nothing was ever acknowledged).
    pub removed_empty: usize,
    /// Stray files removed (meta without data, temporary files).
    pub removed_stray: usize,
}

/// Loads every chunk in `layout.dir`, repairing, quarantining or removing what is broken.
/// `backup` is the directory for quarantined chunks, or `None` when backups are disabled.
pub(crate) fn resume(
    layout: &Layout,
    backup: Option<&Path>,
    sync: bool,
) -> io::Result<(Vec<Loaded>, ResumeReport)> {
    fs::create_dir_all(&layout.dir)?;
    let mut report = ResumeReport::default();
    let mut loaded = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for entry in fs::read_dir(&layout.dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    let mut changed_dir = false;
    for name in &names {
        // meta files whose data file is gone: a crash between creating the two files.
        if let Some(data_name) = name.strip_suffix(".meta") {
            if layout.parse(data_name).is_some() && !names.iter().any(|n| n == data_name) {
                tracing::info!(file = %name, "removing a buffer meta file without its data file");
                let _ = fs::remove_file(layout.dir.join(name));
                report.removed_stray += 1;
                changed_dir = true;
            }
            continue;
        }
        if layout.is_free(name) {
            // A flushed chunk's file kept for reuse: nothing in it is data.
            let _ = fs::remove_file(layout.dir.join(name));
            report.removed_stray += 1;
            changed_dir = true;
            continue;
        }
        let Some((state, id)) = layout.parse(name) else {
            continue;
        };
        let path = layout.dir.join(name);
        match load_one(&path, id, state, backup, sync, &mut report)? {
            Some(l) => loaded.push(l),
            None => changed_dir = true,
        }
    }
    if changed_dir && sync {
        sync_dir(&layout.dir)?;
    }
    Ok((loaded, report))
}

fn quarantine(
    path: &Path,
    id: &ChunkId,
    payload: &[u8],
    raw: &[u8],
    backup: Option<&Path>,
    why: &str,
    report: &mut ResumeReport,
) {
    match backup {
        None => {
            tracing::warn!(path = %path.display(), reason = why, "disable_chunk_backup is true. {} chunk is thrown away", id.hex());
        }
        Some(dir) => {
            let (name, bytes) = if payload.is_empty() {
                (format!("{}.log.raw", id.hex()), raw)
            } else {
                (format!("{}.log", id.hex()), payload)
            };
            match write_backup(dir, &name, bytes) {
                Ok(dest) => {
                    tracing::error!(path = %path.display(), backup = %dest.display(), reason = why, "found broken chunk file during resume; moved to backup");
                    report.quarantined.push(dest);
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), reason = why, error = %e, "found broken chunk file during resume, and the backup failed; leaving it in place");
                    return;
                }
            }
        }
    }
    let _ = remove_chunk(path);
}

fn load_one(
    path: &Path,
    id: ChunkId,
    state: FileState,
    backup: Option<&Path>,
    sync: bool,
    report: &mut ResumeReport,
) -> io::Result<Option<Loaded>> {
    let mut raw = Vec::new();
    File::open(path)?.read_to_end(&mut raw)?;
    let mpath = meta_path(path);
    let meta = match fs::read(&mpath) {
        Ok(bytes) => decode_meta_with(&bytes, &id),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err("meta file is missing".to_string()),
        Err(e) => Err(format!("meta file unreadable: {e}")),
    };
    let reused = meta.as_ref().is_ok_and(|m| m.2);
    let scan = frame::scan(&raw, Some(incarnation(&id)), reused);
    let payload = frame::payloads(&raw, &scan);
    let (metadata, created, _) = match meta {
        Ok(m) => m,
        Err(why) => {
            if raw.is_empty() {
                let _ = remove_chunk(path);
                report.removed_empty += 1;
                return Ok(None);
            }
            quarantine(path, &id, &payload, &raw, backup, &why, report);
            return Ok(None);
        }
    };
    if raw.is_empty() {
        tracing::info!(path = %path.display(), "removing an empty buffer chunk (no data was ever stored)");
        let _ = remove_chunk(path);
        report.removed_empty += 1;
        return Ok(None);
    }
    if scan.frames.is_empty() && scan.is_clean() {
        // A reused file holding only an earlier chunk's bytes: nothing was stored yet.
        tracing::info!(path = %path.display(), "removing an empty buffer chunk (no data was ever stored)");
        let _ = remove_chunk(path);
        report.removed_empty += 1;
        return Ok(None);
    }
    if scan.frames.is_empty() {
        quarantine(
            path,
            &id,
            &payload,
            &raw,
            backup,
            "no intact batch in the chunk file",
            report,
        );
        return Ok(None);
    }
    let mut file_len = raw.len() as u64;
    if !scan.is_clean() {
        let repair = Repair {
            chunk_id: id,
            dropped_bytes: scan.dropped_bytes() as u64,
            dropped_ranges: scan.dropped_ranges(),
            kept_batches: scan.frames.len(),
        };
        tracing::warn!(
            path = %path.display(),
            dropped_bytes = repair.dropped_bytes,
            dropped_ranges = repair.dropped_ranges,
            kept_batches = repair.kept_batches,
            "buffer chunk was damaged (torn write or corruption); keeping its intact batches"
        );
        if scan.corrupt.is_empty() {
            // Only a torn tail: cut it off.
            let f = OpenOptions::new().write(true).open(path)?;
            let keep = scan.good_end() as u64;
            f.set_len(keep)?;
            if sync {
                f.sync_all()?;
            }
            file_len = keep;
        } else {
            // Damage in the middle: rewrite the file with the good frames only.
            let mut clean = Vec::with_capacity(raw.len());
            for fr in &scan.frames {
                if let Some(bytes) = raw.get(fr.offset..fr.end()) {
                    clean.extend_from_slice(bytes);
                }
            }
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            {
                let mut f = File::create(&tmp)?;
                f.write_all(&clean)?;
                if sync {
                    f.sync_all()?;
                }
            }
            fs::rename(&tmp, path)?;
            file_len = clean.len() as u64;
        }
        report.repaired.push(repair);
    } else if scan.stale_tail.is_some() {
        // A reused file: cut the earlier chunk's bytes off, so appends follow the data.
        let f = OpenOptions::new().write(true).open(path)?;
        let keep = scan.good_end() as u64;
        f.set_len(keep)?;
        if sync {
            f.sync_all()?;
        }
        file_len = keep;
    }
    let modified = fs::metadata(path)?.modified().unwrap_or(created);
    Ok(Some(Loaded {
        id,
        state,
        path: path.to_path_buf(),
        metadata,
        created,
        modified,
        bytes: scan.payload_bytes(),
        records: scan.records(),
        file_len,
        reused,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let id = ChunkId([0x11; 16]);
        let hex = id.hex();
        let l = Layout::new(Path::new("/var/buf"), ".log");
        assert_eq!(
            l.data_path(&id, FileState::Staged),
            PathBuf::from(format!("/var/buf/buffer.b{hex}.log"))
        );
        assert_eq!(
            l.parse(&format!("buffer.q{hex}.log")),
            Some((FileState::Queued, id))
        );
        assert_eq!(l.parse(&format!("buffer.x{hex}.log")), None);
        assert_eq!(l.parse(&format!("buffer.b{hex}.log.meta")), None);
        let l = Layout::new(Path::new("/var/buf/out.*.chunk"), ".log");
        assert_eq!(
            l.data_path(&id, FileState::Queued),
            PathBuf::from(format!("/var/buf/out.q{hex}.chunk"))
        );
        let l = Layout::new(Path::new("/var/buf/out.*"), ".log");
        assert_eq!(
            l.data_path(&id, FileState::Staged),
            PathBuf::from(format!("/var/buf/out.b{hex}.log"))
        );
    }

    #[test]
    fn appended_frames_read_back_as_their_payloads() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("buffer.b00.log");
        let f = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut len = 0;
        for (parts, records) in [
            (&[&b"ab"[..], b"cd"][..], 2),
            (&[&b""[..]][..], 0),
            (&[&b"efg"[..]][..], 1),
        ] {
            len += append_frame(&f, parts, records, 7, len).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(len, 3 * frame::HEADER_LEN_V2 as u64 + 7);
        // A reused buffer with stale content and a wrong length hint.
        let mut buf = b"stale bytes".to_vec();
        for hint in [0, len, 3] {
            let scan = read_payloads_into(&path, hint, 7, false, &mut buf)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(scan.is_clean());
            assert_eq!(scan.records(), 3);
            assert_eq!(buf, b"abcdefg");
        }
    }

    #[test]
    fn meta_round_trip_and_damage() {
        let id = ChunkId([7; 16]);
        let m = Metadata {
            timekey: Some(60),
            tag: Some("a.b".into()),
            variables: [("k".to_string(), None)].into(),
        };
        let t = from_secs_f64(1_700_000_000.25);
        let bytes = encode_meta(&id, &m, t);
        assert_eq!(decode_meta(&bytes, &id), Ok((m.clone(), t)));
        assert!(decode_meta(&bytes, &ChunkId([8; 16])).is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_meta(&bad, &id).is_err(), "byte {i}");
        }
        assert!(decode_meta(&bytes[..bytes.len() - 1], &id).is_err());
        assert!(decode_meta(b"", &id).is_err());
    }
}
