//! The end-to-end harness: each test gets a temp dir, free loopback ports and the real binary.
//!
//! The binary and the plugin `.so`s are the ones `cargo xtask test` built into the target
//! directory (found from this test executable's path, or `NAGARE_BIN`). Every wait here is
//! bounded: a test that would hang fails with what it was waiting for instead.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The target directory holding `nagare` and the `libnagare_*.so` plugins.
pub fn target_dir() -> PathBuf {
    if let Ok(bin) = std::env::var("NAGARE_BIN") {
        return PathBuf::from(bin)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
    }
    // target/debug/deps/e2e-<hash>  →  target/debug
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target dir")
}

/// The nagare binary under test.
pub fn bin() -> PathBuf {
    let p = target_dir().join("nagare");
    assert!(
        p.exists(),
        "{} is missing: run the suite with `cargo xtask test` (it builds the binary and plugins first)",
        p.display()
    );
    p
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .expect("workspace root")
}

/// `../shared/testdata/real-configs` beside the checkout, if present.
pub fn real_configs() -> Option<PathBuf> {
    let p = workspace().join("../shared/testdata/real-configs");
    p.is_dir().then_some(p)
}

/// A loopback TCP port that was free a moment ago (and its UDP twin, usually).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nagare-e2e-")
        .tempdir()
        .expect("temp dir")
}

/// Runs `nagare ARGS` to completion (for CLI tests), with a timeout.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nagare");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nagare {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

/// A running collector.
pub struct Nagare {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub config_path: PathBuf,
}

impl Nagare {
    /// Writes `config` (with `{dir}` replaced by the temp dir) and starts nagare on it with `extra` args.
    pub fn start_with(config: &str, extra: &[&str]) -> Nagare {
        let dir = tempdir();
        let config_path = dir.path().join("fluent.conf");
        let text = config.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&config_path, text).expect("write config");
        Self::start_in(dir, config_path, extra)
    }

    /// Starts nagare on a config file already in `dir`.
    pub fn start_in(dir: tempfile::TempDir, config_path: PathBuf, extra: &[&str]) -> Nagare {
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let out = std::fs::File::create(&stdout_path).expect("stdout file");
        let err = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = Command::new(bin())
            .arg("-c")
            .arg(&config_path)
            .args(extra)
            .current_dir(dir.path())
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start nagare");
        Nagare {
            child: Some(child),
            dir,
            stdout_path,
            stderr_path,
            config_path,
        }
    }

    /// Starts nagare on `config`.
    pub fn start(config: &str) -> Nagare {
        Self::start_with(config, &[])
    }

    /// Waits until `port` accepts connections (the input is up), or panics with the log.
    pub fn wait_port(&mut self, port: u16) -> &mut Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            self.assert_alive();
            assert!(
                Instant::now() < deadline,
                "port {port} never opened; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self
    }

    /// Panics with the log when the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
            panic!(
                "nagare exited early ({st}); stderr:\n{}\nstdout:\n{}",
                self.stderr(),
                self.stdout()
            );
        }
    }

    /// Everything nagare printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything nagare logged on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until stdout has at least `n` lines; returns them.
    pub fn wait_stdout_lines(&mut self, n: usize) -> Vec<String> {
        let path = self.stdout_path.clone();
        self.wait_for(
            || {
                let s = std::fs::read_to_string(&path).unwrap_or_default();
                (s.lines().count() >= n).then(|| s.lines().map(str::to_string).collect())
            },
            &format!("{n} lines on stdout"),
        )
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        let path = self.stderr_path.clone();
        self.wait_for(
            || {
                let s = std::fs::read_to_string(&path).unwrap_or_default();
                s.contains(needle).then_some(s)
            },
            &format!("{needle:?} on stderr"),
        )
    }

    /// Polls `f` every 20 ms for up to 30 s.
    pub fn wait_for<T>(&mut self, mut f: impl FnMut() -> Option<T>, what: &str) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stderr:\n{}\nstdout:\n{}",
                self.stderr(),
                self.stdout()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        self.signal(libc::SIGTERM)
    }

    /// Sends `sig` and waits up to 30 s for the process to exit; returns the code (or 128+sig).
    pub fn signal(&mut self, sig: i32) -> i32 {
        let Some(mut child) = self.child.take() else {
            return -1;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                return st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nagare did not exit within 30 s of signal {sig}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of the running process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }
}

impl Drop for Nagare {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connects to a local port.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

/// Writes bytes and reads one reply (up to 4 KiB); empty when the peer closed.
pub fn request(s: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    s.write_all(bytes).expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    buf.truncate(n);
    buf
}

/// A Forward-mode request asking for an ack:
/// `[tag, [[1_700_000_000 + i, {"msg": msgs[i]}]...], {"chunk": chunk}]`.
pub fn forward_request<S: AsRef<str>>(tag: &str, msgs: &[S], chunk: &str) -> Vec<u8> {
    forward_request_with(tag, msgs, Some(chunk))
}

/// [`forward_request`], or without the option map (no ack asked) when `chunk` is `None`.
pub fn forward_request_with<S: AsRef<str>>(tag: &str, msgs: &[S], chunk: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    let len = if chunk.is_some() { 3 } else { 2 };
    rmp::encode::write_array_len(&mut out, len).expect("encode");
    rmp::encode::write_str(&mut out, tag).expect("encode");
    rmp::encode::write_array_len(&mut out, msgs.len() as u32).expect("encode");
    for (i, m) in msgs.iter().enumerate() {
        rmp::encode::write_array_len(&mut out, 2).expect("encode");
        rmp::encode::write_uint(&mut out, 1_700_000_000 + i as u64).expect("encode");
        rmp::encode::write_map_len(&mut out, 1).expect("encode");
        rmp::encode::write_str(&mut out, "msg").expect("encode");
        rmp::encode::write_str(&mut out, m.as_ref()).expect("encode");
    }
    if let Some(chunk) = chunk {
        rmp::encode::write_map_len(&mut out, 1).expect("encode");
        rmp::encode::write_str(&mut out, "chunk").expect("encode");
        rmp::encode::write_str(&mut out, chunk).expect("encode");
    }
    out
}

/// The `ack` string of a reply (`{"ack": id}`), `None` when the bytes are not one.
pub fn ack_of(reply: &[u8]) -> Option<String> {
    let v = rmpv::decode::read_value(&mut &reply[..]).ok()?;
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some("ack"))
        .and_then(|(_, v)| v.as_str().map(str::to_string))
}

/// Runs a Python snippet with a timeout; panics with its output on failure.
pub fn python(script: &str) -> String {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("python did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
