//! File-system steps shared by `out_file` and `out_secondary_file`:
//! directories with a mode, appends under an exclusive lock, fsync of the file and of a new
//! file's directory, `ln -sf` done atomically, Fluentd's `writable_p?`, and the encodings.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Fluentd's `FILE_PERMISSION` (0644).
pub const FILE_PERMISSION: u32 = 0o644;
/// Fluentd's `DIR_PERMISSION` (0755).
pub const DIR_PERMISSION: u32 = 0o755;

/// Parses a permission written in octal (`0644`, `644`, `0o644`).
pub fn parse_permission(s: &str) -> Option<u32> {
    let t = s.trim();
    let t = t.strip_prefix("0o").unwrap_or(t);
    if t.is_empty() || t.len() > 5 || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(t, 8).ok().filter(|m| *m <= 0o7777)
}

/// One `file_permission`/`dir_permission` param: `default` when absent, else octal, else a
/// config error naming the param and its location.
fn permission_param(
    v: Option<&str>,
    default: u32,
    name: &str,
    loc: &str,
) -> nagare_plugin_sdk::Result<u32> {
    match v {
        None => Ok(default),
        Some(s) => parse_permission(s).ok_or_else(|| {
            nagare_plugin_sdk::error::config_error(format!(
                "{loc}: invalid value for {name}: '{s}' (expected an octal mode such as 0644)"
            ))
        }),
    }
}

/// The `file_permission` and `dir_permission` params of a file output as `(file mode,
/// directory mode)`: [`FILE_PERMISSION`] and [`DIR_PERMISSION`] when absent, else octal,
/// else a config error naming the param and `loc`.
pub fn permissions(
    file_permission: Option<&str>,
    dir_permission: Option<&str>,
    loc: &str,
) -> nagare_plugin_sdk::Result<(u32, u32)> {
    Ok((
        permission_param(file_permission, FILE_PERMISSION, "file_permission", loc)?,
        permission_param(dir_permission, DIR_PERMISSION, "dir_permission", loc)?,
    ))
}

/// `FileUtils.mkdir_p(dirname(path), mode:)`: creates the parent directories of `path`.
pub fn create_parent_dirs(path: &str, dir_mode: u32) -> io::Result<()> {
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(dir),
        _ => Ok(()),
    }
}

/// Highest index tried by [`claim_first_free`] (Fluentd loops forever; a bound keeps a
/// broken directory from hanging a flush thread).
pub const MAX_INDEX: u64 = 10_000_000;

/// Creates the first file `name(0)`, `name(1)`, … that does not exist yet, with
/// `O_CREAT|O_EXCL` so two flush threads (or processes) never claim the same name; returns
/// the open file and its path.
pub fn claim_first_free(name: impl Fn(u64) -> String, mode: u32) -> io::Result<(File, String)> {
    for i in 0..MAX_INDEX {
        let path = name(i);
        if Path::new(&path).exists() {
            continue;
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
        {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free index below {MAX_INDEX} for {}",
        name(0)
    )))
}

/// Opens `path` for appending (created with `mode` if missing); says whether it was created.
pub fn open_append(path: &str, mode: u32) -> io::Result<(File, bool)> {
    match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .append(true)
            .open(path)
            .map(|f| (f, false)),
        Err(e) => Err(e),
    }
}

/// Writes `data` whole under an exclusive lock (concurrent appenders never interleave), then
/// fsyncs the file, and its directory when the file is new, before returning. On failure the
/// write is undone: a new file is removed, an existing one truncated back to its old length,
/// so a retry does not leave a partial copy behind.
pub fn write_durably(file: File, path: &str, created: bool, data: &[u8]) -> io::Result<()> {
    write_durably_with(file, path, created, |f: &mut File| f.write_all(data))
}

/// [`write_durably`] for data produced piece by piece: `fill` writes to the locked file (as
/// many writes as it likes); its error, like a failed fsync, undoes everything it wrote.
pub fn write_durably_with<T, E: From<io::Error>>(
    mut file: File,
    path: &str,
    created: bool,
    fill: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    file.lock()?;
    let start = if created { 0 } else { file.metadata()?.len() };
    let result = fill(&mut file).and_then(|t| {
        file.sync_all()?;
        if created {
            sync_parent_dir(path)?;
        }
        Ok(t)
    });
    if result.is_err() {
        if created {
            let _ = fs::remove_file(path);
        } else {
            let _ = file.set_len(start);
            let _ = file.sync_all();
        }
    }
    result // dropping `file` closes it and releases the lock
}

/// fsyncs the directory holding `path`, so a new file's name survives a crash.
pub fn sync_parent_dir(path: &str) -> io::Result<()> {
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// `ln -sf target link`, atomically: a temporary link renamed over `link`.
pub fn replace_symlink(target: &str, link: &str, dir_mode: u32) -> io::Result<()> {
    create_parent_dirs(link, dir_mode)?;
    let tmp = format!("{link}.tmp{}", std::process::id());
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

fn access_writable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; access(2) only
    // reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Fluentd's `FileUtil.writable_p?`: an existing path must be a writable file; a missing one
/// needs its nearest existing ancestor to be a writable directory.
pub fn writable_p(path: &str) -> bool {
    let p = Path::new(path);
    match fs::metadata(p) {
        Ok(m) if m.is_dir() => false,
        Ok(_) => access_writable(p),
        Err(_) => {
            let mut dir = p.parent();
            while let Some(d) = dir {
                let d = if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                };
                match fs::metadata(d) {
                    Ok(m) => return m.is_dir() && access_writable(d),
                    Err(_) => dir = d.parent(),
                }
            }
            false
        }
    }
}

/// One gzip member holding `data`.
pub fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(data)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions() {
        for (s, expect) in [
            ("0644", Some(0o644)),
            ("644", Some(0o644)),
            ("0o750", Some(0o750)),
            ("0620", Some(0o620)),
            ("755", Some(0o755)),
            ("0888", None),
            ("", None),
            ("rw-r--r--", None),
            ("077777", None),
        ] {
            assert_eq!(parse_permission(s), expect, "{s}");
        }
    }

    #[test]
    fn writable_paths() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().display().to_string();
        assert!(writable_p(&format!("{d}/a/b/c/file.log")));
        fs::write(format!("{d}/f"), b"x")?;
        assert!(writable_p(&format!("{d}/f")));
        // a regular file in the way of a directory
        assert!(!writable_p(&format!("{d}/f/sub/file.log")));
        // a directory where the file should be
        assert!(!writable_p(&d));
        Ok(())
    }

    #[test]
    fn append_then_symlink() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("x/y.log").display().to_string();
        create_parent_dirs(&p, DIR_PERMISSION)?;
        let (f, created) = open_append(&p, FILE_PERMISSION)?;
        assert!(created);
        write_durably(f, &p, created, b"one\n")?;
        let (f, created) = open_append(&p, FILE_PERMISSION)?;
        assert!(!created);
        write_durably(f, &p, created, b"two\n")?;
        assert_eq!(fs::read_to_string(&p)?, "one\ntwo\n");
        let link = dir.path().join("l/current").display().to_string();
        replace_symlink(&p, &link, DIR_PERMISSION)?;
        replace_symlink(&p, &link, DIR_PERMISSION)?;
        assert_eq!(fs::read_link(&link)?.display().to_string(), p);
        Ok(())
    }
}
