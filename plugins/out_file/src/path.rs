//! File names the way Fluentd's `out_file.rb` builds them: the path template
//! (`generate_path_template`: `path` + time suffix + `_**` index + `path_suffix` + `.gz`),
//! the time granularity of a timekey (`timekey_to_timeformat`), and the search for the next
//! free `_N` index (`find_filepath_available`).

use std::fs::File;
use std::io;

/// The index placeholder of non-append templates (`file.20110102_**.log`).
pub const INDEX_PLACEHOLDER: &str = "_**";

/// `compress`: how the written data is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compress {
    /// Plain text (the default).
    #[default]
    Text,
    /// gzip (one gzip member per chunk; `.gz`).
    Gz,
    /// gzip, same as `gz`.
    Gzip,
    /// Zstandard (one frame per chunk; `.zst`).
    Zstd,
}

impl Compress {
    /// The file name suffix (`compression_suffix`).
    pub fn suffix(self) -> &'static str {
        match self {
            Compress::Text => "",
            Compress::Gz | Compress::Gzip => ".gz",
            Compress::Zstd => ".zst",
        }
    }
}

/// Why a path template cannot be built (Fluentd raises `Fluent::ConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `path` has `*` but `time` is not a chunk key.
    #[error("path including '*' must be used with buffer chunk key 'time'")]
    StarWithoutTime,
    /// `path` has some of the timekey's strftime fields but not all.
    #[error("insufficient timestamp placeholders in path")]
    InsufficientTimestamp,
}

/// `timekey_to_timeformat`: the strftime fields a timekey needs.
pub fn timekey_to_timeformat(timekey: Option<u64>) -> &'static str {
    match timekey {
        None => "",
        Some(0..60) => "%Y%m%d%H%M%S",
        Some(60..3600) => "%Y%m%d%H%M",
        Some(3600..86400) => "%Y%m%d%H",
        Some(_) => "%Y%m%d",
    }
}

/// What [`generate_path_template`] needs besides the path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TemplateOptions<'a> {
    /// The timekey when `time` is a chunk key.
    pub timekey: Option<u64>,
    /// `append true`: no `_**` index.
    pub append: bool,
    /// The compression (for its suffix).
    pub compress: Compress,
    /// `path_suffix` when `add_path_suffix` (else `""`).
    pub path_suffix: &'a str,
    /// The v0.12 `time_slice_format`, used instead of the timekey's fields.
    pub time_slice_format: Option<&'a str>,
}

/// `generate_path_template`:
/// `/dir/file.*` → `/dir/file.%Y%m%d_**`, `/dir/file` → `/dir/file.%Y%m%d_**.log`, a path that
/// already has the timekey's fields keeps them, then `.gz` for gzip.
pub fn generate_path_template(
    original: &str,
    o: &TemplateOptions<'_>,
) -> Result<String, TemplateError> {
    let comp = o.compress.suffix();
    let index = if o.append { "" } else { INDEX_PLACEHOLDER };
    let suffix = o.path_suffix;
    if original.contains('*') {
        let Some(timekey) = o.timekey else {
            return Err(TemplateError::StarWithoutTime);
        };
        let time = o
            .time_slice_format
            .unwrap_or_else(|| timekey_to_timeformat(Some(timekey)));
        return Ok(format!(
            "{}{comp}",
            original.replace('*', &format!("{time}{index}"))
        ));
    }
    let Some(timekey) = o.timekey else {
        return Ok(format!("{original}{index}{suffix}{comp}"));
    };
    if let Some(tsf) = o.time_slice_format {
        return Ok(format!("{original}.{tsf}{index}{suffix}{comp}"));
    }
    let fields = timekey_to_timeformat(Some(timekey));
    let pairs: Vec<&str> = (0..fields.len() / 2)
        .filter_map(|i| fields.get(i * 2..i * 2 + 2))
        .collect();
    if pairs.iter().any(|p| original.contains(p)) {
        if pairs.iter().any(|p| !original.contains(p)) {
            return Err(TemplateError::InsufficientTimestamp);
        }
        Ok(format!("{original}{index}{suffix}{comp}"))
    } else {
        Ok(format!("{original}.{fields}{index}{suffix}{comp}"))
    }
}

/// Creates the first `_N` file (N = 0, 1, …) of `template` that does not exist yet (see
/// [`crate::fsio::claim_first_free`]); returns the open file and its path.
pub fn claim_indexed(template: &str, mode: u32) -> io::Result<(File, String)> {
    if !template.contains(INDEX_PLACEHOLDER) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("index placeholder not found in path: {template}"),
        ));
    }
    crate::fsio::claim_first_free(
        |i| template.replacen(INDEX_PLACEHOLDER, &format!("_{i}"), 1),
        mode,
    )
}

#[cfg(test)]
mod tests {
    //! Cases ported from fluentd `test/plugin/test_out_file.rb` (`#timekey_to_timeformat`,
    //! `#compression_suffix`, `#generate_path_template`, `#find_filepath_available`).
    use super::*;

    #[test]
    fn timekey_granularity() {
        for (tk, expect) in [
            (None, ""),
            (Some(1), "%Y%m%d%H%M%S"),
            (Some(30), "%Y%m%d%H%M%S"),
            (Some(59), "%Y%m%d%H%M%S"),
            (Some(60), "%Y%m%d%H%M"),
            (Some(180), "%Y%m%d%H%M"),
            (Some(1800), "%Y%m%d%H%M"),
            (Some(3599), "%Y%m%d%H%M"),
            (Some(3600), "%Y%m%d%H"),
            (Some(7200), "%Y%m%d%H"),
            (Some(86399), "%Y%m%d%H"),
            (Some(86400), "%Y%m%d"),
            (Some(1_000_000), "%Y%m%d"),
            (Some(1_000_000_000), "%Y%m%d"),
        ] {
            assert_eq!(timekey_to_timeformat(tk), expect, "{tk:?}");
        }
    }

    #[test]
    fn compression_suffixes() {
        assert_eq!(Compress::Text.suffix(), "");
        assert_eq!(Compress::Gz.suffix(), ".gz");
        assert_eq!(Compress::Gzip.suffix(), ".gz");
        assert_eq!(Compress::Zstd.suffix(), ".zst");
    }

    fn check(
        original: &str,
        timekey: Option<u64>,
        append: bool,
        gzip: bool,
        path_suffix: &str,
        tsf: Option<&str>,
        expect: Result<&str, TemplateError>,
    ) {
        let o = TemplateOptions {
            timekey,
            append,
            compress: if gzip { Compress::Gzip } else { Compress::Text },
            path_suffix,
            time_slice_format: tsf,
        };
        assert_eq!(
            generate_path_template(original, &o)
                .as_deref()
                .map_err(Clone::clone),
            expect,
            "{original} {o:?}"
        );
    }

    /// Each data row runs the four (append, gzip) combinations, with and without
    /// `time_slice_format`, as the Ruby test does.
    fn check_four(
        original: &str,
        timekey: u64,
        suffix: &str,
        tsf: Option<&str>,
        time: &str,
        tail: &str,
    ) {
        let base = original.replace('*', "");
        let starred = original.contains('*');
        for (append, gzip) in [(false, false), (false, true), (true, false), (true, true)] {
            let index = if append { "" } else { "_**" };
            let gz = if gzip { ".gz" } else { "" };
            let expect = if starred {
                original.replace('*', &format!("{time}{index}")) + gz
            } else {
                format!("{base}.{time}{index}{tail}{gz}")
            };
            check(
                original,
                Some(timekey),
                append,
                gzip,
                suffix,
                tsf,
                Ok(&expect),
            );
        }
    }

    #[test]
    fn fluentd_generate_path_template_cases() {
        // trailing star, star with a suffix, no star with path_suffix, no star without it
        for (tk, ph, tsf) in [
            (86400, "%Y%m%d", "%Y-%m-%d"),
            (3600, "%Y%m%d%H", "%Y-%m-%d_%H"),
            (60, "%Y%m%d%H%M", "%Y-%m-%d_%H%M"),
        ] {
            check_four("/path/to/file.*", tk, "", None, ph, "");
            check_four("/path/to/file.*", tk, "", Some(tsf), tsf, "");
            check_four("/path/to/file", tk, "", None, ph, "");
        }
        for (tk, ph, tsf) in [
            (86400 * 2, "%Y%m%d", "%Y-%m-%d"),
            (7200, "%Y%m%d%H", "%Y-%m-%d_%H"),
            (180, "%Y%m%d%H%M", "%Y-%m-%d_%H%M"),
        ] {
            check_four("/path/to/file.*.data", tk, "", None, ph, "");
            check_four("/path/to/file.*.data", tk, "", Some(tsf), tsf, "");
        }
        for (tk, ph, tsf) in [
            (86400 * 7, "%Y%m%d", "%Y-%m-%d"),
            (3600 * 6, "%Y%m%d%H", "%Y-%m-%d_%H"),
            (60 * 15, "%Y%m%d%H%M", "%Y-%m-%d_%H%M"),
        ] {
            check_four("/path/to/file", tk, ".log", None, ph, ".log");
            check_four("/path/to/file", tk, ".log", Some(tsf), tsf, ".log");
        }
        check(
            "/path/to/file.*.log",
            None,
            false,
            false,
            "",
            None,
            Err(TemplateError::StarWithoutTime),
        );
    }

    #[test]
    fn fluentd_existing_time_placeholders() {
        let ok = |s: &'static str| Ok::<&str, TemplateError>(s);
        let t = |orig, tk, append, gzip, suffix, tsf, expect| {
            check(orig, tk, append, gzip, suffix, tsf, expect)
        };
        t(
            "/path/to/file.%Y%m%d",
            Some(86400),
            true,
            false,
            "",
            None,
            ok("/path/to/file.%Y%m%d"),
        );
        t(
            "/path/to/%Y%m%d/file",
            Some(86400),
            true,
            false,
            "",
            None,
            ok("/path/to/%Y%m%d/file"),
        );
        t(
            "/path/to/%Y%m%d/file",
            Some(86400),
            false,
            false,
            "",
            None,
            ok("/path/to/%Y%m%d/file_**"),
        );
        t(
            "/path/to/%Y%m/file",
            Some(86400),
            true,
            false,
            "",
            None,
            Err(TemplateError::InsufficientTimestamp),
        );
        t(
            "/path/to/file.%Y%m%d.log",
            Some(3600),
            true,
            false,
            "",
            None,
            Err(TemplateError::InsufficientTimestamp),
        );
        t(
            "/path/to/file.%Y%m%d_%H",
            Some(7200),
            false,
            true,
            ".log",
            None,
            ok("/path/to/file.%Y%m%d_%H_**.log.gz"),
        );
        t(
            "/path/to/${tag}/file.%Y%m%d_%H",
            Some(7200),
            false,
            true,
            ".log",
            None,
            ok("/path/to/${tag}/file.%Y%m%d_%H_**.log.gz"),
        );
        // time_slice_format is appended even when the path has enough fields
        let tsf = Some("%Y-%m-%d_%H");
        t(
            "/path/to/%Y%m%d/file",
            Some(86400),
            false,
            false,
            "",
            tsf,
            ok("/path/to/%Y%m%d/file.%Y-%m-%d_%H_**"),
        );
        t(
            "/path/to/%Y%m%d/file",
            Some(86400),
            true,
            false,
            "",
            tsf,
            ok("/path/to/%Y%m%d/file.%Y-%m-%d_%H"),
        );
        t(
            "/path/to/%Y%m%d/file",
            Some(86400),
            false,
            false,
            ".log",
            tsf,
            ok("/path/to/%Y%m%d/file.%Y-%m-%d_%H_**.log"),
        );
        t(
            "/path/to/%Y%m%d/file",
            Some(86400),
            true,
            false,
            ".log",
            tsf,
            ok("/path/to/%Y%m%d/file.%Y-%m-%d_%H.log"),
        );
        t(
            "/path/to/%Y%m%d/file",
            Some(86400),
            true,
            true,
            ".log",
            tsf,
            ok("/path/to/%Y%m%d/file.%Y-%m-%d_%H.log.gz"),
        );
        // no time chunk key
        t(
            "/path/to/file.log",
            None,
            true,
            false,
            "",
            None,
            ok("/path/to/file.log"),
        );
        t(
            "/path/to/file.log",
            None,
            false,
            false,
            "",
            None,
            ok("/path/to/file.log_**"),
        );
        t(
            "/path/to/file.${tag}.log",
            None,
            false,
            false,
            "",
            None,
            ok("/path/to/file.${tag}.log_**"),
        );
        t(
            "/path/to/file.${tag}",
            None,
            false,
            false,
            ".log",
            None,
            ok("/path/to/file.${tag}_**.log"),
        );
    }

    #[test]
    fn fluentd_find_filepath_available_cases() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().display().to_string();
        for (expected, argument) in [
            ("myfile_0", "myfile_**"),
            ("myfile_20161003_0", "myfile_20161003_**"),
            ("myfile_0.log", "myfile_**.log"),
            ("myfile_0.log.gz", "myfile_**.log.gz"),
        ] {
            let (_f, path) = claim_indexed(&format!("{d}/{argument}"), 0o644)?;
            assert_eq!(path, format!("{d}/{expected}"));
        }
        for i in 0..5 {
            File::create(format!("{d}/exist_{i}.log"))?;
        }
        let (_f, path) = claim_indexed(&format!("{d}/exist_**.log"), 0o644)?;
        assert_eq!(path, format!("{d}/exist_5.log"));
        let (_f, path) = claim_indexed(&format!("{d}/exist_**.log"), 0o644)?;
        assert_eq!(path, format!("{d}/exist_6.log"));
        let err = claim_indexed(&format!("{d}/myfile"), 0o644).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(format!("index placeholder not found in path: {d}/myfile"))
        );
        Ok(())
    }
}
