//! Output buffers end to end: in_forward acks → the host's buffer → the output, across
//! `kill -9`, overflow actions, retries, `<secondary>` and damaged buffer files.

use crate::harness::{self, Nagare, connect, free_port};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A Forward-mode request of `n` events `{"msg": "<prefix>-<i>"}` asking for ack `chunk`.
fn forward(tag: &str, prefix: &str, n: usize, chunk: &str) -> Vec<u8> {
    let msgs: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:04}")).collect();
    harness::forward_request(tag, &msgs, chunk)
}

/// What the server did with one acked request.
#[derive(Debug, PartialEq)]
enum Reply {
    /// `{"ack": chunk}` arrived.
    Acked,
    /// The server closed the connection without an ack.
    Closed,
    /// Nothing within the read timeout (the connection stays open).
    Silent,
}

fn read_reply(s: &mut TcpStream, chunk: &str) -> Reply {
    let mut buf = vec![0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => Reply::Closed,
        Ok(n) => {
            let ack = harness::ack_of(&buf[..n]);
            assert_eq!(ack.as_deref(), Some(chunk), "reply {:02x?}", &buf[..n]);
            Reply::Acked
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Reply::Silent,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Reply::Closed,
        Err(e) => panic!("read: {e}"),
    }
}

/// Sends `n` events with an ack request on a new connection and waits for the outcome.
fn send(port: u16, tag: &str, prefix: &str, n: usize) -> Reply {
    let mut s = connect(port);
    let chunk = format!("{prefix}-chunk");
    s.write_all(&forward(tag, prefix, n, &chunk))
        .expect("write");
    read_reply(&mut s, &chunk)
}

fn source(port: u16) -> String {
    format!("<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n")
}

fn start(conf: &str, port: u16) -> Nagare {
    let mut n = Nagare::start(conf);
    n.wait_port(port);
    n
}

/// Restarts in the same directory with a new configuration.
fn restart(n: &mut Nagare, conf: &str, port: u16) -> Nagare {
    let dir = std::mem::replace(&mut n.dir, harness::tempdir());
    let path = dir.path().join("fluent.conf");
    std::fs::write(
        &path,
        conf.replace("{dir}", &dir.path().display().to_string()),
    )
    .expect("write config");
    let mut next = Nagare::start_in(dir, path, &[]);
    next.wait_port(port);
    next
}

fn file_buffer_conf(port: u16, flush_interval: &str) -> String {
    format!(
        "{}<match app.**>\n  @type stdout\n  <buffer tag>\n    @type file\n    path {{dir}}/buf\n    flush_interval {flush_interval}\n  </buffer>\n</match>\n",
        source(port)
    )
}

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn an_acked_batch_in_a_file_buffer_survives_kill_9_and_is_delivered_after_restart() {
    let port = free_port();
    let mut n = start(&file_buffer_conf(port, "1h"), port);
    assert_eq!(send(port, "app.web", "kept", 3), Reply::Acked);
    let buf = n.dir.path().join("buf");
    assert_eq!(chunk_files(&buf).len(), 1, "one staged chunk on disk");
    assert_eq!(n.signal(libc::SIGKILL), 128 + libc::SIGKILL);
    assert!(n.stdout().is_empty(), "nothing was flushed before the kill");

    let mut n = restart(&mut n, &file_buffer_conf(port, "1s"), port);
    let lines = n.wait_stdout_lines(3);
    for i in 0..3 {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("app.web") && l.contains(&format!("kept-{i:04}"))),
            "{lines:?}"
        );
    }
    let buf = n.dir.path().join("buf");
    n.wait_for(
        || chunk_files(&buf).is_empty().then_some(()),
        "the flushed chunk files to be removed",
    );
    assert_eq!(n.stop(), 0);
    assert_eq!(n.stdout().lines().count(), 3, "delivered once");
}

/// Events of a request that asked for no ack are not fsynced one by one, but they are in
/// their chunk file before the next request on the connection is read: a killed process
/// loses none of them. The acked request after them goes to another chunk (another tag),
/// so its fsync does not cover them.
#[test]
fn unacked_events_in_a_file_buffer_survive_kill_9_too() {
    let port = free_port();
    let mut n = start(&file_buffer_conf(port, "1h"), port);
    let mut s = connect(port);
    let msgs: Vec<String> = (0..3).map(|i| format!("loose-{i:04}")).collect();
    s.write_all(&harness::forward_request_with("app.loose", &msgs, None))
        .expect("write");
    s.write_all(&forward("app.acked", "acked", 2, "acked-chunk"))
        .expect("write");
    assert_eq!(read_reply(&mut s, "acked-chunk"), Reply::Acked);
    let buf = n.dir.path().join("buf");
    assert_eq!(chunk_files(&buf).len(), 2, "a staged chunk per tag on disk");
    assert_eq!(n.signal(libc::SIGKILL), 128 + libc::SIGKILL);

    let mut n = restart(&mut n, &file_buffer_conf(port, "1s"), port);
    let lines = n.wait_stdout_lines(5);
    for (tag, msg) in [("app.loose", "loose"), ("app.acked", "acked")] {
        let got = lines
            .iter()
            .filter(|l| l.contains(tag) && l.contains(msg))
            .count();
        assert_eq!(got, if msg == "loose" { 3 } else { 2 }, "{lines:?}");
    }
    assert_eq!(n.stop(), 0);
}

#[test]
fn a_damaged_buffer_file_keeps_its_intact_batches_and_logs_the_repair() {
    let port = free_port();
    let mut n = start(&file_buffer_conf(port, "1h"), port);
    assert_eq!(send(port, "app.web", "good", 2), Reply::Acked);
    assert_eq!(send(port, "app.web", "torn", 2), Reply::Acked);
    assert_eq!(n.signal(libc::SIGKILL), 128 + libc::SIGKILL);
    // Flip the last byte: the second batch's frame fails its checksum.
    let files = chunk_files(&n.dir.path().join("buf"));
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).expect("chunk file");
    if let Some(last) = bytes.last_mut() {
        *last ^= 0xff;
    }
    std::fs::write(&files[0], &bytes).expect("damage the chunk");

    let mut n = restart(&mut n, &file_buffer_conf(port, "1s"), port);
    let lines = n.wait_stdout_lines(2);
    n.wait_stderr("recovered 1 damaged buffer chunk(s)");
    assert_eq!(n.stop(), 0);
    let out = n.stdout();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(lines.iter().all(|l| l.contains("good-")), "{lines:?}");
    assert!(!out.contains("torn-"), "{out}");
}

fn failing_output(fail: &str, buffer: &str) -> String {
    format!(
        "<match app.**>\n  @type test_panic\n  @id out_fail\n  panic_on never\n{fail}\n  <buffer>\n    flush_mode immediate\n    retry_randomize false\n{buffer}\n  </buffer>\n</match>\n"
    )
}

#[test]
fn throw_exception_closes_the_connection_without_ack() {
    let port = free_port();
    let conf = source(port)
        + &failing_output(
            "  fail_times 1000000",
            "    total_limit_size 200\n    retry_wait 3600",
        );
    let mut n = start(&conf, port);
    let mut acked = 0;
    let last = loop {
        match send(port, "app.x", &format!("b{acked}"), 4) {
            Reply::Acked => acked += 1,
            other => break other,
        }
        assert!(acked < 50, "the buffer never overflowed");
    };
    assert_eq!(last, Reply::Closed);
    assert!(acked >= 1);
    n.wait_stderr("failed to write data into buffer by buffer overflow");
    n.wait_stderr("emit failed, closing without ack");
    assert_eq!(n.stop(), 0);
}

#[test]
fn block_holds_the_ack_until_the_buffer_has_room() {
    let port = free_port();
    let conf = source(port)
        + &failing_output(
            "  fail_times 1",
            "    total_limit_size 100\n    overflow_action block\n    retry_wait 3",
        );
    let mut n = start(&conf, port);
    assert_eq!(send(port, "app.x", "first", 5), Reply::Acked);
    n.wait_stderr("failed to flush the buffer. retry_times=0");
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    s.write_all(&forward("app.x", "second", 2, "second-chunk"))
        .expect("write");
    assert_eq!(
        read_reply(&mut s, "second-chunk"),
        Reply::Silent,
        "the emit waits while the buffer is full"
    );
    n.wait_stderr("blocking");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    assert_eq!(read_reply(&mut s, "second-chunk"), Reply::Acked);
    let log = n.stderr_path.clone();
    n.wait_for(
        || (count_in(&log, "test_panic: wrote chunk") == 2).then_some(()),
        "both chunks written",
    );
    assert_eq!(n.stop(), 0);
}

/// Threads of process `pid` now.
fn threads_of(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn connections_held_back_by_a_full_buffer_do_not_hold_threads() {
    let port = free_port();
    let conf = source(port)
        + &failing_output(
            "  fail_times 1",
            "    total_limit_size 100
    overflow_action block
    retry_wait 4",
        );
    let mut n = start(&conf, port);
    assert_eq!(send(port, "app.x", "first", 5), Reply::Acked);
    n.wait_stderr("failed to flush the buffer. retry_times=0");
    let idle = threads_of(n.pid());
    // 80 acked requests, each on its own connection, all held back by the full buffer.
    let mut held: Vec<std::net::TcpStream> = (0..80)
        .map(|i| {
            let mut s = connect(port);
            s.write_all(&forward(
                "app.x",
                &format!("held{i}"),
                1,
                &format!("held-{i}"),
            ))
            .expect("write");
            s
        })
        .collect();
    n.wait_stderr("blocking");
    std::thread::sleep(Duration::from_millis(500));
    let during = threads_of(n.pid());
    // Waiting is done by the connections' tasks: the process grows by a few threads at
    // most, not by one per held connection (the blocking pool alone allows 64).
    assert!(
        during < idle + 16,
        "{during} threads while 80 connections wait, {idle} before"
    );
    // Once the retry frees the buffer every held request is accepted and acked.
    for (i, s) in held.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        assert_eq!(
            read_reply(s, &format!("held-{i}")),
            Reply::Acked,
            "held {i}"
        );
    }
    assert_eq!(n.stop(), 0);
}

fn count_in(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[test]
fn drop_oldest_chunk_makes_room_and_logs_it() {
    let port = free_port();
    let conf = source(port)
        + &failing_output(
            "  fail_times 1000000",
            "    total_limit_size 100\n    overflow_action drop_oldest_chunk\n    retry_wait 3600",
        );
    let mut n = start(&conf, port);
    assert_eq!(send(port, "app.x", "old", 5), Reply::Acked);
    // The first chunk failed and waits for its retry in the queue: it can be dropped.
    n.wait_stderr("failed to flush the buffer. retry_times=0");
    assert_eq!(send(port, "app.x", "new", 2), Reply::Acked);
    n.wait_stderr("dropping oldest chunk to make space after buffer overflow");
    assert_eq!(n.stop(), 0);
}

#[test]
fn a_failing_output_is_retried_then_succeeds() {
    let port = free_port();
    let conf = source(port) + &failing_output("  fail_times 2", "    retry_wait 0.2");
    let mut n = start(&conf, port);
    assert_eq!(send(port, "app.retry", "r", 3), Reply::Acked);
    let log = n.wait_stderr("test_panic: wrote chunk");
    let pos = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not logged:\n{log}"))
    };
    assert!(pos("failed to flush the buffer. retry_times=0") < pos("retry_times=1"));
    assert!(pos("retry_times=1") < pos("test_panic: wrote chunk"));
    assert!(log.contains("error=\"retryable error: test_panic: scripted failure 1 of 2"));
    assert!(log.contains("tag=app.retry records=3"), "{log}");
    n.wait_stderr("retry succeeded.");
    assert_eq!(n.stop(), 0);
}

#[test]
fn the_secondary_receives_chunks_after_unrecoverable_errors() {
    let port = free_port();
    let conf = format!(
        "{}<match app.**>\n  @type test_panic\n  panic_on never\n  fail_times 1000000\n  fail_kind unrecoverable\n  <buffer>\n    flush_mode immediate\n  </buffer>\n  <secondary>\n    @type stdout\n  </secondary>\n</match>\n",
        source(port)
    );
    let mut n = start(&conf, port);
    assert_eq!(send(port, "app.sec", "s", 3), Reply::Acked);
    let lines = n.wait_stdout_lines(3);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("app.sec") && l.contains("s-")),
        "{lines:?}"
    );
    n.wait_stderr("got unrecoverable error in primary. Skip retry and flush chunk to secondary");
    assert_eq!(n.stop(), 0);
}

#[test]
fn an_unknown_secondary_type_is_refused_when_the_config_loads() {
    let d = harness::tempdir();
    let conf = d.path().join("fluent.conf");
    std::fs::write(
        &conf,
        "<match **>\n  @type stdout\n  <secondary>\n    @type no_such_secondary\n    directory /tmp/x\n  </secondary>\n</match>\n",
    )
    .expect("write config");
    let out = harness::run(&["--dry-run", "-c", conf.to_str().expect("path")], d.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot create secondary plugin 'no_such_secondary'"),
        "{err}"
    );
}

#[test]
fn a_memory_buffer_is_flushed_at_shutdown() {
    let port = free_port();
    let conf = format!(
        "{}<match app.**>\n  @type stdout\n  <buffer>\n    flush_interval 1h\n  </buffer>\n</match>\n",
        source(port)
    );
    let mut n = start(&conf, port);
    assert_eq!(send(port, "app.mem", "m", 4), Reply::Acked);
    assert!(n.stdout().is_empty(), "not due before shutdown");
    assert_eq!(n.stop(), 0);
    assert_eq!(n.stdout().lines().count(), 4, "{}", n.stdout());
}
