//! Behaviour tests for [`crate::Buffer`]: chunking, limits, overflow actions, flush
//! timing, retries and decisions, file resume after simulated crashes, and threads.
//! Time is a [`FakeClock`]; nothing sleeps for timing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::msgpack::write;
use crate::{
    Buffer, BufferConfig, BufferError, BufferOptions, ChunkLease, Clock, Decision, Durability,
    Failure, FakeClock, Route, frame,
};

const T0: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

struct Fixture {
    buffer: Buffer,
    clock: Arc<FakeClock>,
    dir: tempfile::TempDir,
}

fn params(extra: &[(&str, &str)], dir: &Path, file: bool) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = Vec::new();
    if file {
        p.push(("@type".into(), "file".into()));
        p.push(("path".into(), dir.join("buf").display().to_string()));
    }
    p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    p
}

fn open_at(
    arg: &str,
    extra: &[(&str, &str)],
    file: bool,
    dir: tempfile::TempDir,
    clock: Arc<FakeClock>,
    secondary: bool,
) -> Fixture {
    open_with(arg, extra, file, dir, clock, |o| {
        o.has_secondary = secondary
    })
}

/// [`open_at`] with the options `tweak` sets on top of the fixture's.
fn open_with(
    arg: &str,
    extra: &[(&str, &str)],
    file: bool,
    dir: tempfile::TempDir,
    clock: Arc<FakeClock>,
    tweak: impl FnOnce(&mut BufferOptions),
) -> Fixture {
    let cfg = BufferConfig::from_params(arg, params(extra, dir.path(), file)).expect("config");
    let mut opts = BufferOptions {
        plugin_id: "out_test".into(),
        root_dir: Some(dir.path().join("root")),
        clock: clock.clone(),
        rng_seed: Some(7),
        ..BufferOptions::default()
    };
    tweak(&mut opts);
    let buffer = Buffer::open(cfg, opts).expect("open");
    Fixture { buffer, clock, dir }
}

fn open(arg: &str, extra: &[(&str, &str)], file: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    open_at(
        arg,
        extra,
        file,
        dir,
        Arc::new(FakeClock::at_secs(T0)),
        false,
    )
}

/// A batch of entries `[time, {k: v}]`.
fn batch(entries: &[(u64, &[(&str, &str)])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (t, f) in entries {
        write::entry(&mut out, *t as u32, f);
    }
    out
}

/// `n` entries at T0 with a `msg` of `size` bytes.
fn records(n: usize, size: usize) -> Vec<u8> {
    let msg = "x".repeat(size);
    let mut out = Vec::new();
    for _ in 0..n {
        write::entry(&mut out, T0 as u32, &[("msg", &msg)]);
    }
    out
}

fn entry_len(size: usize) -> usize {
    records(1, size).len()
}

impl Fixture {
    fn now(&self) -> SystemTime {
        self.clock.now()
    }
    /// Writes with the true entry count (0 for bad bytes), as in_forward does, so the
    /// whole-batch fast path is taken wherever it applies.
    fn write(&self, tag: &str, data: &[u8]) -> crate::WriteReceipt {
        let n = crate::msgpack::count_entries(data).unwrap_or(0);
        self.buffer.write(tag, data, n).expect("write")
    }
    fn lease(&self) -> ChunkLease {
        self.buffer
            .next_ready(self.now())
            .expect("next_ready")
            .expect("a chunk is ready")
    }
    fn none_ready(&self) -> bool {
        self.buffer
            .next_ready(self.now())
            .expect("next_ready")
            .is_none()
    }
    fn drain(&self) -> Vec<ChunkLease> {
        self.buffer.enqueue_all().expect("enqueue_all");
        let mut out = Vec::new();
        while let Some(l) = self.buffer.next_ready(self.now()).expect("next_ready") {
            out.push(l);
        }
        out
    }
    fn chunk_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("buf"))
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .filter(|p| !is_free_file(p))
            .collect();
        v.sort();
        v
    }
    fn reopen(self, arg: &str, extra: &[(&str, &str)]) -> Fixture {
        let Fixture { buffer, clock, dir } = self;
        drop(buffer); // a crash: no close, no flush
        open_at(arg, extra, true, dir, clock, false)
    }
}

/// A flushed chunk's file kept for reuse (`buffer.f<id>.log`), not a chunk.
fn is_free_file(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("buffer.f"))
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------- chunking and limits

#[test]
fn chunks_split_by_tag_time_and_record_keys() {
    struct Case {
        arg: &'static str,
        params: &'static [(&'static str, &'static str)],
        expect_chunks: usize,
    }
    let entries = [
        ("a.x", T0, "k1", "n1"),
        ("a.x", T0 + 1, "k1", "n1"),
        ("b.y", T0 + 2, "k1", "n2"),
        ("a.x", T0 + 3600, "k2", "n1"),
    ];
    let cases = [
        Case {
            arg: "",
            params: &[],
            expect_chunks: 1,
        },
        Case {
            arg: "tag",
            params: &[],
            expect_chunks: 2,
        },
        Case {
            arg: "time",
            params: &[("timekey", "1h"), ("timekey_zone", "+0000")],
            expect_chunks: 2,
        },
        Case {
            arg: "key",
            params: &[],
            expect_chunks: 2,
        },
        Case {
            arg: "$.nest.k",
            params: &[],
            expect_chunks: 2,
        },
        Case {
            arg: "tag,time,key,$.nest.k",
            params: &[("timekey", "1h"), ("timekey_zone", "+0000")],
            expect_chunks: 3,
        },
    ];
    for case in cases {
        let f = open(case.arg, case.params, false);
        for (tag, t, k, n) in entries {
            let mut data = Vec::new();
            data.push(0x92);
            write::event_time(&mut data, t as u32, 0);
            write::map_len(&mut data, 2);
            write::str(&mut data, "key");
            write::str(&mut data, k);
            write::str(&mut data, "nest");
            write::map_len(&mut data, 1);
            write::str(&mut data, "k");
            write::str(&mut data, n);
            f.write(tag, &data);
        }
        let leases = f.drain();
        assert_eq!(leases.len(), case.expect_chunks, "arg {:?}", case.arg);
        assert_eq!(
            leases.iter().map(|l| l.records()).sum::<u64>(),
            4,
            "arg {:?}",
            case.arg
        );
        for l in &leases {
            assert_eq!(crate::msgpack::count_entries(l.data()), Ok(l.records()));
        }
    }
}

#[test]
fn metadata_carries_keys_for_placeholders() {
    let f = open(
        "tag,time,$.nest.k,missing",
        &[("timekey", "1h"), ("timekey_zone", "+0900")],
        false,
    );
    let mut data = Vec::new();
    data.push(0x92);
    write::uint(&mut data, T0 + 10);
    write::map_len(&mut data, 1);
    write::str(&mut data, "nest");
    write::map_len(&mut data, 1);
    write::str(&mut data, "k");
    write::str(&mut data, "v1");
    f.write("app.web", &data);
    let l = f.drain().pop().expect("chunk");
    let m = l.metadata();
    assert_eq!(m.tag.as_deref(), Some("app.web"));
    assert_eq!(m.timekey, Some(1_699_999_200)); // 22:00 UTC
    assert_eq!(m.variables.get("$.nest.k"), Some(&Some("v1".to_string())));
    assert_eq!(m.variables.get("missing"), Some(&None));
    let keys = &f.buffer.config().chunk_keys;
    assert_eq!(
        crate::placeholders::expand(
            "/d/${tag[-1]}/%H/${$.nest.k}/${chunk_id}",
            m,
            Some(&l.id()),
            keys
        ),
        Ok(format!("/d/web/07/v1/{}", l.id().hex()))
    );
}

#[test]
fn rolls_over_at_chunk_limit_size_and_records() {
    let one = entry_len(100);
    // limit holds exactly 3 entries; 7 entries → chunks of 3, 3, 1
    let limit = (one * 3).to_string();
    let f = open("", &[("chunk_limit_size", &limit)], false);
    let r = f.write("t", &records(7, 100));
    assert_eq!((r.records, r.bytes), (7, (7 * one) as u64));
    let m = f.buffer.metrics();
    assert_eq!(
        (m.queue_length, m.stage_length),
        (2, 1),
        "two full chunks queued at once"
    );
    let sizes: Vec<u64> = f.drain().iter().map(|l| l.records()).collect();
    assert_eq!(sizes, [3, 3, 1]);

    let f = open("", &[("chunk_limit_records", "4")], false);
    f.write("t", &records(10, 10));
    assert_eq!(
        f.drain().iter().map(|l| l.records()).collect::<Vec<_>>(),
        [4, 4, 2]
    );
}

#[test]
fn chunks_are_queued_in_creation_order_and_a_failed_seal_still_delivers() {
    // Queueing a file chunk fsyncs and renames it outside the buffer lock; the chunks
    // still reach the queue oldest first, and one whose rename fails (its data file went
    // missing) is queued all the same and delivered from its in-memory mirror.
    let f = open("tag", &[("chunk_limit_size", "1m")], true);
    let tags = ["a", "b", "c"];
    for (i, tag) in tags.iter().enumerate() {
        f.clock.advance(Duration::from_secs(1));
        f.write(tag, &batch(&[(T0 + i as u64, &[("n", tag)])]));
    }
    let staged = f.chunk_files();
    assert_eq!(staged.len(), 3);
    let b_file = staged
        .iter()
        .find(|p| {
            std::fs::read(p)
                .map(|d| d.windows(4).any(|w| w == b"\xa1n\xa1b".as_slice()))
                .unwrap_or(false)
        })
        .expect("b's data file")
        .clone();
    std::fs::remove_file(&b_file).expect("remove b's data file");
    let err = f.buffer.enqueue_all().expect_err("b's rename fails");
    assert!(err.to_string().contains("rename"), "{err}");
    let m = f.buffer.metrics();
    assert_eq!((m.stage_length, m.queue_length), (0, 3));
    let mut got = Vec::new();
    while let Some(l) = f.buffer.next_ready(f.now()).expect("next_ready") {
        got.push(l.metadata().tag.clone().unwrap_or_default());
        assert_eq!(l.records(), 1);
        f.buffer.commit(l).expect("commit");
    }
    assert_eq!(got, tags.map(String::from));
    assert!(f.buffer.is_empty());
}

#[test]
fn spare_buffers_follow_the_backlog() {
    // Settled mirrors are kept for new chunks while a backlog is queued (up to the number
    // of mirrors the budget allows), and given back down to one per flush thread once the
    // queue is empty, so a burst leaves no idle memory behind.
    let one = entry_len(100);
    let limit = (one * 10).to_string();
    let f = open("", &[("chunk_limit_size", &limit)], true);
    for _ in 0..4 {
        f.write("t", &records(10, 100));
    }
    assert_eq!(f.buffer.metrics().queue_length, 4);
    let spares = || f.buffer.lock_spare().len();
    let mut seen = Vec::new();
    while let Some(l) = f.buffer.next_ready(f.now()).expect("next_ready") {
        f.buffer.commit(l).expect("commit");
        seen.push(spares());
    }
    assert_eq!(seen, [1, 2, 3, 1]);
}

#[test]
fn full_threshold_enqueues() {
    let one = entry_len(100);
    let limit = (one * 20).to_string();
    let f = open("", &[("chunk_limit_size", &limit)], false);
    f.write("t", &records(18, 100)); // 90% < 95%
    assert_eq!(f.buffer.metrics().queue_length, 0);
    f.write("t", &records(1, 100)); // 95%
    assert_eq!(f.buffer.metrics().queue_length, 1);
}

#[test]
fn a_single_oversized_record_is_refused_alone() {
    let small = entry_len(10);
    let limit = (small * 4).to_string();
    let f = open("", &[("chunk_limit_size", &limit)], false);
    let mut data = records(2, 10);
    data.extend(records(1, small * 5)); // larger than a whole chunk
    data.extend(records(1, 10));
    let r = f.write("t", &data);
    assert_eq!(r.records, 3);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].index, 2);
    assert_eq!(f.buffer.metrics().rejected_records, 1);
    assert_eq!(f.drain().iter().map(|l| l.records()).sum::<u64>(), 3);
}

#[test]
fn invalid_bytes_are_refused_whole() {
    // Every case is walked: no count (0), a count that fails the shape check (more
    // entries than 3 bytes each allow, or not starting with a 2-array), per-record chunk
    // keys, chunk_limit_records, a batch larger than a chunk.
    let mut truncated = records(2, 10);
    truncated.extend_from_slice(&[0x92, 0xc1]);
    let at = records(2, 10).len() + 1;
    let mut not_array = vec![0x91];
    not_array.extend(records(2, 10));
    let big = (truncated.len() - 1).to_string();
    #[allow(clippy::type_complexity)]
    let cases: &[(&str, &[(&str, &str)], &[u8], u64, usize)] = &[
        ("tag", &[], &truncated, 0, at),
        ("tag", &[], &truncated, truncated.len() as u64, at),
        ("tag", &[], &not_array, 2, 0),
        ("time", &[("timekey", "60")], &truncated, 3, at),
        ("tag,msg", &[], &truncated, 3, at),
        ("tag", &[("chunk_limit_records", "10")], &truncated, 3, at),
        ("tag", &[("chunk_limit_size", &big)], &truncated, 3, at),
    ];
    for (arg, extra, data, count, offset) in cases {
        let f = open(arg, extra, false);
        match f.buffer.write("t", data, *count) {
            Err(BufferError::InvalidChunk { tag, source, .. }) => {
                assert_eq!(tag, "t");
                assert_eq!(source.offset, *offset, "{arg} {extra:?} count {count}");
            }
            other => panic!("{arg} {extra:?} count {count}: {other:?}"),
        }
        assert!(f.buffer.is_empty());
    }
}

/// The whole-batch fast path (true count given) stores exactly what the entry walk
/// (count 0) stores when every batch fits the room left in its staged chunk: same chunks,
/// bytes, records and counters, memory and file. (Batches that do not fit: see
/// `whole_batch_without_room_enqueues_the_staged_chunk`.)
#[test]
fn whole_batch_fast_path_matches_the_walk() {
    let one = entry_len(100);
    let limit = (one * 10).to_string();
    // Tags alternate a, b, a, ... (one chunk for both without chunk keys).
    let batches: &[&[usize]] = &[
        &[1],
        &[3, 3, 3],
        &[10],         // exactly a chunk
        &[4, 4, 2, 6], // a: 4 + 2, b: 4 + 6 (one chunk: 4 + 4 + 2 full, then 6)
        &[9, 1, 1, 5],
        &[7, 3, 2], // fills a chunk exactly, then a fresh one
    ];
    let configs: &[(&str, &[(&str, &str)])] = &[
        ("", &[("chunk_limit_size", &limit)]),
        ("tag", &[("chunk_limit_size", &limit)]),
        (
            "tag",
            &[("chunk_limit_size", &limit), ("flush_mode", "immediate")],
        ),
    ];
    for file in [false, true] {
        for (arg, extra) in configs {
            for sizes in batches {
                let run = |fast: bool| {
                    let f = open(arg, extra, file);
                    let mut receipts = Vec::new();
                    for (i, n) in sizes.iter().enumerate() {
                        let tag = if i % 2 == 0 { "a" } else { "b" };
                        let data = records(*n, 100);
                        let count = if fast { *n as u64 } else { 0 };
                        let r = f.buffer.write(tag, &data, count).expect("write");
                        receipts.push((r.records, r.bytes, r.rejected.len()));
                    }
                    let m = f.buffer.metrics();
                    let counters = (
                        m.write_count,
                        m.write_records,
                        m.stage_length,
                        m.stage_byte_size,
                        m.queue_length,
                        m.queue_byte_size,
                    );
                    let chunks: Vec<(Option<String>, u64, Vec<u8>)> = f
                        .drain()
                        .iter()
                        .map(|l| (l.metadata().tag.clone(), l.records(), l.data().to_vec()))
                        .collect();
                    (receipts, counters, chunks)
                };
                let (fast, slow) = (run(true), run(false));
                assert_eq!(
                    fast, slow,
                    "file {file} {arg:?} {extra:?} batches {sizes:?}"
                );
                let total: usize = sizes.iter().sum();
                assert_eq!(fast.1.1, total as u64, "write_records");
                assert!(
                    fast.2.iter().all(|c| c.2.len() <= one * 10),
                    "chunks stay within chunk_limit_size"
                );
            }
        }
    }
}

/// A whole batch that fits a chunk but not the room left in the staged one enqueues the
/// staged chunk and goes whole into a fresh one (Fluentd's `write_once`: an event stream
/// goes into one chunk as far as possible), where the walk splits it. Either way every
/// entry is stored once and in order, every chunk stays within `chunk_limit_size`, the
/// counters agree, and a file buffer resumes the same chunks after a restart (the
/// enqueued one was made durable and renamed to its queued name).
#[test]
fn whole_batch_without_room_enqueues_the_staged_chunk() {
    let one = entry_len(100);
    let limit = (one * 10).to_string();
    // Batch sizes (entries, one tag), then the chunks' records with the true count (fast
    // path) and with count 0 (the walk), in queue order (the staged chunk, if any, last).
    let check = |arg: &str, file: bool, sizes: &[usize], fast: &[u64], walk: &[u64]| {
        for (count, expect) in [(true, fast), (false, walk)] {
            let case = format!("{arg:?} file {file} {sizes:?} fast {count}");
            let f = open(arg, &[("chunk_limit_size", &limit)], file);
            let mut all = Vec::new();
            for n in sizes {
                let data = records(*n, 100);
                let r = f
                    .buffer
                    .write("t", &data, if count { *n as u64 } else { 0 })
                    .expect("write");
                assert_eq!(r.records, *n as u64, "{case}");
                all.extend_from_slice(&data);
                f.clock.advance(Duration::from_secs(1));
            }
            let m = f.buffer.metrics();
            assert_eq!(m.write_records, all.len() as u64 / one as u64, "{case}");
            assert_eq!(m.queue_length + m.stage_length, expect.len(), "{case}");
            assert!(m.stage_length <= 1, "{case}");
            assert_eq!(m.stage_byte_size + m.queue_byte_size, all.len() as u64);
            let f = if file {
                let (dir, clock) = (f.dir, f.clock);
                drop(f.buffer);
                open_at(
                    arg,
                    &[("chunk_limit_size", &limit)],
                    true,
                    dir,
                    clock,
                    false,
                )
            } else {
                f
            };
            let leases = f.drain();
            let got: Vec<u64> = leases.iter().map(|l| l.records()).collect();
            assert_eq!(got, expect, "{case}");
            assert!(leases.iter().all(|l| l.data().len() <= one * 10), "{case}");
            let data: Vec<u8> = leases.iter().flat_map(|l| l.data().to_vec()).collect();
            assert!(data == all, "{case}: entries stored once, in order");
        }
    };
    for file in [false, true] {
        for arg in ["", "tag"] {
            check(arg, file, &[4, 4, 4], &[8, 4], &[10, 2]);
            check(arg, file, &[9, 5, 4], &[9, 9], &[10, 8]);
            check(arg, file, &[3, 8, 8, 1], &[3, 8, 9], &[10, 10]);
            // A batch of exactly a chunk after a partly filled one.
            check(arg, file, &[2, 10, 1], &[2, 10, 1], &[10, 3]);
        }
    }
}

/// A file buffer's frames carry the caller's count on the fast path: a resumed chunk
/// has the same records as before the restart.
#[test]
fn whole_batch_fast_path_survives_resume() {
    let f = open("tag", &[], true);
    f.write("t", &records(5, 20));
    f.write("t", &records(3, 20));
    let (dir, clock) = (f.dir, f.clock);
    drop(f.buffer);
    let f = open_at("tag", &[], true, dir, clock, false);
    let leases = f.drain();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].records(), 8);
    assert_eq!(leases[0].data(), [records(5, 20), records(3, 20)].concat());
}

// ---------------------------------------------------------------- flush timing

#[test]
fn interval_mode_enqueues_after_flush_interval() {
    let f = open("tag", &[("flush_interval", "10s")], false);
    f.write("t", &records(1, 10));
    f.clock.advance(Duration::from_secs(9));
    assert!(f.none_ready());
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(f.lease().records(), 1);
}

/// Sub-second intervals are honoured (`0.2`; note that Fluentd reads `0.2s` as 2 s: its
/// `\d+s` pattern is unanchored), and the flusher is told to wake when the staged chunk comes
/// due rather than at its next idle tick.
#[test]
fn sub_second_flush_interval_and_the_wake_up_time() {
    let f = open(
        "tag",
        &[("flush_interval", "0.2"), ("flush_thread_interval", "1")],
        false,
    );
    let t0 = f.clock.now();
    assert_eq!(f.buffer.next_flush_time(t0), t0 + Duration::from_secs(1));
    f.write("t", &records(1, 10));
    assert_eq!(
        f.buffer.next_flush_time(t0),
        t0 + Duration::from_millis(200),
        "wake when the chunk is due"
    );
    f.clock.advance(Duration::from_millis(150));
    assert!(f.none_ready());
    f.clock.advance(Duration::from_millis(50));
    assert_eq!(f.lease().records(), 1);
}

#[test]
fn lazy_mode_waits_for_timekey_and_wait() {
    let f = open(
        "time",
        &[
            ("timekey", "60"),
            ("timekey_wait", "30"),
            ("timekey_zone", "+0000"),
        ],
        false,
    );
    // T0 = ...:13:20 → timekey ...:13:00; due at 13:00 + 60 + 30 = 14:30
    f.write("t", &batch(&[(T0, &[("a", "b")])]));
    let due = T0 - 20 + 90;
    f.clock.set(UNIX_EPOCH + Duration::from_secs(due - 1));
    assert!(f.none_ready());
    f.clock.set(UNIX_EPOCH + Duration::from_secs(due));
    assert_eq!(f.lease().metadata().timekey, Some((T0 - 20) as i64));
}

#[test]
fn immediate_mode_enqueues_every_write() {
    let f = open("tag", &[("flush_mode", "immediate")], false);
    f.write("t", &records(1, 10));
    f.write("t", &records(1, 10));
    assert_eq!(f.buffer.metrics().queue_length, 2);
}

#[test]
fn queued_chunks_limit_size_holds_back_interval_enqueue() {
    let f = open(
        "tag",
        &[("flush_interval", "1s"), ("queued_chunks_limit_size", "1")],
        false,
    );
    for tag in ["a", "b", "c"] {
        f.write(tag, &records(1, 10));
    }
    f.clock.advance(Duration::from_secs(5));
    assert_eq!(f.buffer.enqueue_due(f.now()).expect("due"), 1);
    assert_eq!(f.buffer.metrics().stage_length, 2);
    assert_eq!(
        f.buffer.enqueue_all().expect("all"),
        2,
        "shutdown ignores the limit"
    );
}

#[test]
fn next_flush_time_follows_fluentd() {
    let f = open(
        "tag",
        &[
            ("flush_thread_interval", "1.0"),
            ("flush_thread_burst_interval", "0.5"),
        ],
        false,
    );
    assert_eq!(secs(f.buffer.next_flush_time(f.now())), T0 as f64 + 1.0);
    f.write("t", &records(1, 1));
    f.buffer.enqueue_all().expect("all");
    assert_eq!(secs(f.buffer.next_flush_time(f.now())), T0 as f64 + 0.5);
}

// ---------------------------------------------------------------- overflow actions

fn overflow_fixture(action: &str) -> Fixture {
    let one = entry_len(100);
    let chunk = (one * 2).to_string();
    let total = (one * 4).to_string();
    open(
        "tag",
        &[
            ("chunk_limit_size", &chunk),
            ("total_limit_size", &total),
            ("overflow_action", action),
            ("flush_mode", "immediate"),
        ],
        false,
    )
}

#[test]
fn overflow_throw_exception() {
    let f = overflow_fixture("throw_exception");
    f.write("t", &records(2, 100));
    f.write("t", &records(2, 100));
    match f.buffer.write("t", &records(1, 100), 1) {
        Err(BufferError::Overflow {
            used,
            limit,
            plugin_id,
        }) => {
            assert_eq!((used, plugin_id.as_str()), (limit, "out_test"));
        }
        other => panic!("{other:?}"),
    }
    let m = f.buffer.metrics();
    assert_eq!((m.overflow_count, m.write_records), (1, 4));
    // space comes back after a flush
    let l = f.lease();
    f.buffer.commit(l).expect("commit");
    f.write("t", &records(1, 100));
}

#[test]
fn overflow_drop_oldest_chunk() {
    let f = overflow_fixture("drop_oldest_chunk");
    let first = f.write("t", &records(2, 100));
    assert!(first.dropped.is_empty());
    f.write("t", &records(2, 100));
    let oldest = f.buffer.next_ready(f.now()).expect("ok").expect("lease");
    let oldest_id = oldest.id();
    f.buffer
        .rollback(oldest, Failure::Retryable { retry_after: None })
        .expect("rollback");
    let r = f.write("t", &records(1, 100));
    assert_eq!(r.dropped.len(), 1);
    assert_eq!(
        (r.dropped[0].chunk_id, r.dropped[0].records),
        (oldest_id, 2)
    );
    assert_eq!(f.buffer.metrics().drop_oldest_chunk_count, 1);

    // nothing queued to drop (all in flight) → overflow error
    let f = overflow_fixture("drop_oldest_chunk");
    f.write("t", &records(2, 100));
    f.write("t", &records(2, 100));
    let _a = f.lease();
    let _b = f.lease();
    assert!(matches!(
        f.buffer.write("t", &records(1, 100), 1),
        Err(BufferError::Overflow { .. })
    ));
}

#[test]
fn overflow_block_waits_for_space_then_writes() {
    let f = Arc::new(overflow_fixture("block"));
    f.write("t", &records(2, 100));
    f.write("t", &records(2, 100));
    let writer = {
        let f = f.clone();
        std::thread::spawn(move || f.buffer.write("t", &records(1, 100), 1).map(|r| r.records))
    };
    wait_until_blocked(&f.buffer);
    assert_eq!(
        f.buffer.metrics().write_records,
        4,
        "nothing was written while blocked"
    );
    // Free space by flushing one chunk: the writer goes on.
    let l = f.lease();
    f.buffer.commit(l).expect("commit");
    assert_eq!(writer.join().expect("join").expect("unblocked write"), 1);
    assert_eq!(f.buffer.metrics().blocked_writers, 0);
}

/// Waits (at most 30 s, a bound, not a timing assumption) until a writer is parked in
/// `overflow_action block`.
fn wait_until_blocked(b: &Buffer) {
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < give_up {
        if b.metrics().blocked_writers > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("writer never blocked: {:?}", b.metrics());
}

#[test]
fn overflow_block_is_cancelled_by_close_and_bounded_by_timeout() {
    let f = Arc::new(overflow_fixture("block"));
    f.write("t", &records(2, 100));
    f.write("t", &records(2, 100));
    let writer = {
        let f = f.clone();
        std::thread::spawn(move || f.buffer.write("t", &records(1, 100), 1))
    };
    wait_until_blocked(&f.buffer);
    f.buffer.close();
    assert!(matches!(
        writer.join().expect("join"),
        Err(BufferError::Closed { .. })
    ));

    let one = entry_len(100);
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = BufferConfig::from_params(
        "tag",
        [
            ("chunk_limit_size", (one * 2).to_string()),
            ("total_limit_size", (one * 2).to_string()),
            ("overflow_action", "block".to_string()),
        ],
    )
    .expect("cfg");
    let b = Buffer::open(
        cfg,
        BufferOptions {
            block_timeout: Some(Duration::from_millis(20)),
            root_dir: Some(dir.path().into()),
            ..BufferOptions::default()
        },
    )
    .expect("open");
    b.write("t", &records(2, 100), 2).expect("fill");
    assert!(matches!(
        b.write("t", &records(1, 100), 1),
        Err(BufferError::Overflow { .. })
    ));
}

// ---------------------------------------------------------------- retries and decisions

fn retry(f: &Fixture, failure: Failure) -> Decision {
    let l = f.lease();
    f.buffer.rollback(l, failure).expect("rollback")
}

const RETRYABLE: Failure = Failure::Retryable { retry_after: None };

fn retry_at(d: &Decision) -> f64 {
    match d {
        Decision::Retry { at, .. } => secs(*at),
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[test]
fn exponential_retry_schedule_through_the_buffer() {
    let f = open(
        "tag",
        &[("retry_randomize", "false"), ("flush_mode", "immediate")],
        false,
    );
    f.write("t", &records(1, 10));
    let t0 = T0 as f64;
    assert_eq!(retry_at(&retry(&f, RETRYABLE)), t0 + 1.0);
    assert!(f.none_ready(), "gated until the retry time");
    let mut expect = t0 + 1.0;
    for interval in [1.0, 2.0, 4.0, 8.0, 16.0] {
        f.clock.set(crate::clock::from_secs_f64(expect));
        expect += interval;
        assert_eq!(retry_at(&retry(&f, RETRYABLE)), expect);
    }
    let m = f.buffer.metrics();
    assert_eq!((m.retry_count, m.rollback_count, m.retrying), (5, 6, true));
    f.clock.set(crate::clock::from_secs_f64(expect));
    let l = f.lease();
    f.buffer.commit(l).expect("commit");
    assert!(!f.buffer.metrics().retrying, "success ends the retry state");
}

#[test]
fn a_resend_goes_back_to_the_queue_without_a_retry_step() {
    let f = open(
        "tag",
        &[
            ("retry_randomize", "false"),
            ("flush_mode", "immediate"),
            ("retry_max_times", "1"),
        ],
        false,
    );
    f.write("t", &records(1, 10));
    // No retry state: written again at once, as often as it takes.
    for _ in 0..5 {
        assert!(matches!(retry(&f, Failure::Resend), Decision::Resend));
    }
    let m = f.buffer.metrics();
    assert_eq!((m.retry_count, m.rollback_count, m.retrying), (0, 5, false));
    // A real failure starts the schedule; resends neither step it nor reach its limit.
    let t0 = T0 as f64;
    assert_eq!(retry_at(&retry(&f, RETRYABLE)), t0 + 1.0);
    f.clock.set(crate::clock::from_secs_f64(t0 + 1.0));
    for _ in 0..3 {
        assert!(matches!(retry(&f, Failure::Resend), Decision::Resend));
    }
    let m = f.buffer.metrics();
    assert_eq!((m.retry_count, m.retrying), (0, true));
    assert_eq!(
        retry_at(&retry(&f, RETRYABLE)),
        t0 + 2.0,
        "the first step, not the fourth"
    );
    f.clock.set(crate::clock::from_secs_f64(t0 + 2.0));
    let l = f.lease();
    assert_eq!(l.records(), 1, "the chunk is whole");
    f.buffer.commit(l).expect("commit");
    assert!(f.buffer.is_empty());
}

#[test]
fn randomized_retry_stays_in_the_window() {
    let f = open(
        "tag",
        &[("retry_wait", "10s"), ("flush_mode", "immediate")],
        false,
    );
    f.write("t", &records(1, 10));
    let first = retry_at(&retry(&f, RETRYABLE));
    assert_eq!(first, T0 as f64 + 10.0, "the first retry is not randomized");
    f.clock.set(crate::clock::from_secs_f64(first));
    let second = retry_at(&retry(&f, RETRYABLE)) - first;
    assert!((8.75..11.25).contains(&second), "{second}");
}

#[test]
fn max_interval_and_plugin_retry_after() {
    let f = open(
        "tag",
        &[
            ("retry_randomize", "false"),
            ("retry_max_interval", "3s"),
            ("flush_mode", "immediate"),
        ],
        false,
    );
    f.write("t", &records(1, 10));
    let mut at = retry_at(&retry(&f, RETRYABLE));
    for expect in [1.0, 2.0, 3.0, 3.0] {
        f.clock.set(crate::clock::from_secs_f64(at));
        let next = retry_at(&retry(&f, RETRYABLE));
        assert_eq!(next - at, expect);
        at = next;
    }
    f.clock.set(crate::clock::from_secs_f64(at));
    let d = retry(
        &f,
        Failure::Retryable {
            retry_after: Some(Duration::from_secs(30)),
        },
    );
    assert_eq!(
        retry_at(&d),
        at + 30.0,
        "the plugin's retry_after wins when later"
    );
    f.clock.set(crate::clock::from_secs_f64(at + 29.0));
    assert!(f.none_ready());
}

#[test]
fn periodic_retry_and_timeout_drop_the_queue() {
    let f = open(
        "tag",
        &[
            ("retry_type", "periodic"),
            ("retry_wait", "3s"),
            ("retry_timeout", "10s"),
            ("retry_randomize", "false"),
            ("flush_mode", "immediate"),
        ],
        false,
    );
    f.write("a", &records(2, 10));
    f.write("b", &records(3, 10));
    let mut at = retry_at(&retry(&f, RETRYABLE));
    let mut seen = vec![at - T0 as f64];
    loop {
        f.clock.set(crate::clock::from_secs_f64(at));
        match retry(&f, RETRYABLE) {
            Decision::Retry { at: next, .. } => {
                at = secs(next);
                seen.push(at - T0 as f64);
            }
            Decision::Dropped { chunks, records } => {
                assert_eq!((chunks, records), (2, 5));
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(seen.len() < 10);
    }
    assert_eq!(seen, [3.0, 6.0, 9.0, 10.0]);
    assert!(f.buffer.is_empty());
    assert_eq!(f.buffer.metrics().retry_limit_dropped_chunks, 2);
}

#[test]
fn retry_max_times_limits_and_forever_does_not() {
    for (forever, expect_drop_after) in [("false", Some(3)), ("true", None)] {
        let f = open(
            "tag",
            &[
                ("retry_max_times", "2"),
                ("retry_forever", forever),
                ("retry_randomize", "false"),
                ("flush_mode", "immediate"),
            ],
            false,
        );
        f.write("t", &records(1, 10));
        let mut failures = 0;
        let mut dropped_at = None;
        for _ in 0..8 {
            failures += 1;
            match retry(&f, RETRYABLE) {
                Decision::Retry { at, .. } => f.clock.set(at),
                Decision::Dropped { .. } => {
                    dropped_at = Some(failures - 1);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(dropped_at, expect_drop_after, "forever={forever}");
    }
}

#[test]
fn secondary_threshold_routes_leases_to_the_secondary() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = open_at(
        "tag",
        &[
            ("retry_type", "periodic"),
            ("retry_wait", "10s"),
            ("retry_timeout", "100s"),
            ("retry_randomize", "false"),
            ("flush_mode", "immediate"),
        ],
        false,
        dir,
        Arc::new(FakeClock::at_secs(T0)),
        true,
    );
    f.write("t", &records(1, 10));
    let mut routes = Vec::new();
    let mut d = retry(&f, RETRYABLE);
    for _ in 0..9 {
        let Decision::Retry { at, secondary, .. } = d else {
            panic!("{d:?}")
        };
        f.clock.set(at);
        let l = f.lease();
        routes.push((secs(at) - T0 as f64, l.route(), secondary));
        d = f.buffer.rollback(l, RETRYABLE).expect("rollback");
    }
    assert_eq!(routes[6], (70.0, Route::Primary, false));
    assert_eq!(routes[7], (80.0, Route::Secondary, true), "{routes:?}");
    assert_eq!(routes[8], (90.0, Route::Secondary, true));
    // success through the secondary ends retrying
    let Decision::Retry { at, .. } = d else {
        panic!("{d:?}")
    };
    f.clock.set(at);
    let l = f.lease();
    assert!(l.use_secondary());
    f.buffer.commit(l).expect("commit");
    assert!(!f.buffer.metrics().retrying);
}

#[test]
fn unrecoverable_goes_to_secondary_then_backup() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root");
    let f = open_at(
        "tag",
        &[("flush_mode", "immediate")],
        false,
        dir,
        Arc::new(FakeClock::at_secs(T0)),
        true,
    );
    let data = records(2, 10);
    f.write("t", &data);
    let id = f.lease_id_then(|f, l| {
        let d = f
            .buffer
            .rollback(l, Failure::Unrecoverable)
            .expect("rollback");
        let Decision::ToSecondary(l) = d else {
            panic!("{d:?}")
        };
        assert_eq!(l.route(), Route::SecondaryAfterUnrecoverable);
        let id = l.id();
        // the secondary fails too (any failure): backup
        match f.buffer.rollback(l, RETRYABLE).expect("rollback") {
            Decision::Backup { path: Some(p) } => {
                assert_eq!(
                    p,
                    root.join("backup/worker0/out_test")
                        .join(format!("{}.log", id.hex()))
                );
                assert_eq!(std::fs::read(&p).expect("backup"), data);
            }
            other => panic!("{other:?}"),
        }
        id
    });
    assert!(f.buffer.is_empty(), "{id}");
    assert_eq!(f.buffer.metrics().backup_count, 1);
}

impl Fixture {
    fn lease_id_then<T>(&self, f: impl FnOnce(&Fixture, ChunkLease) -> T) -> T {
        let l = self.lease();
        f(self, l)
    }
}

#[test]
fn unrecoverable_without_secondary_backs_up_or_throws_away() {
    let f = open("tag", &[("flush_mode", "immediate")], false);
    f.write("t", &records(1, 10));
    let Decision::Backup { path: Some(p) } = retry(&f, Failure::Unrecoverable) else {
        panic!()
    };
    assert!(p.exists());

    let f = open(
        "tag",
        &[
            ("flush_mode", "immediate"),
            ("disable_chunk_backup", "true"),
        ],
        false,
    );
    f.write("t", &records(1, 10));
    assert!(matches!(
        retry(&f, Failure::Unrecoverable),
        Decision::Backup { path: None }
    ));
    assert!(f.buffer.is_empty());
}

#[test]
fn settling_a_lease_twice_is_an_error() {
    let f = open("tag", &[("flush_mode", "immediate")], false);
    f.write("t", &records(1, 10));
    let l = f.lease();
    let fake = ChunkLease {
        id: crate::ChunkId([9; 16]),
        ..f.buffer_lease_clone(&l)
    };
    f.buffer.commit(l).expect("commit");
    assert!(matches!(
        f.buffer.commit(fake),
        Err(BufferError::UnknownLease { .. })
    ));
}

impl Fixture {
    fn buffer_lease_clone(&self, l: &ChunkLease) -> ChunkLease {
        ChunkLease {
            id: l.id,
            metadata: l.metadata.clone(),
            data: l.data.clone(),
            file: None,
            records: l.records,
            route: l.route,
        }
    }
}

#[test]
fn secondary_and_retry_forever_are_exclusive() {
    let cfg = BufferConfig::from_params("", [("retry_forever", "true")]).expect("cfg");
    let e = Buffer::open(
        cfg,
        BufferOptions {
            has_secondary: true,
            ..BufferOptions::default()
        },
    )
    .expect_err("exclusive");
    assert!(
        e.to_string()
            .contains("<secondary> section and 'retry_forever' are exclusive"),
        "{e}"
    );
}

// ---------------------------------------------------------------- file buffer

#[test]
fn file_buffer_names_and_states() {
    let f = open("tag", &[], true);
    f.write("t", &records(2, 10));
    let files = f.chunk_files();
    assert_eq!(files.len(), 1);
    let name = files[0]
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        name.starts_with("buffer.b") && name.len() == "buffer.b".len() + 32 + 4,
        "{name}"
    );
    assert!(PathBuf::from(format!("{}.meta", files[0].display())).exists());
    f.buffer.enqueue_all().expect("enqueue");
    let name = f.chunk_files()[0]
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    assert!(name.starts_with("buffer.q"), "{name}");
    let l = f.lease();
    assert_eq!(l.data(), records(2, 10));
    f.buffer.commit(l).expect("commit");
    assert!(f.chunk_files().is_empty());
}

#[test]
fn file_buffer_resumes_staged_and_queued_in_mtime_order() {
    let f = open("tag", &[], true);
    for tag in ["a", "b", "c"] {
        f.write(tag, &batch(&[(T0, &[("n", tag)])]));
    }
    f.buffer.enqueue_all().expect("all");
    // Make c the oldest on disk, then b, then a.
    for p in f.chunk_files() {
        let id = crate::ChunkId::from_hex(
            &p.file_name().and_then(|n| n.to_str()).unwrap_or_default()[8..40],
        )
        .expect("id");
        let meta = std::fs::read(format!("{}.meta", p.display())).expect("meta");
        let (m, _) = crate::file::decode_meta(&meta, &id).expect("decode");
        let age = match m.tag.as_deref() {
            Some("c") => 300,
            Some("b") => 200,
            _ => 100,
        };
        let file = std::fs::File::options().write(true).open(&p).expect("open");
        file.set_modified(UNIX_EPOCH + Duration::from_secs(T0 - age))
            .expect("mtime");
    }
    f.write("d", &batch(&[(T0, &[("n", "d")])])); // stays staged
    let f = f.reopen("tag", &[]);
    let rep = f.buffer.resume_report().clone();
    assert_eq!((rep.staged, rep.queued), (1, 3));
    let tags: Vec<String> = f
        .drain()
        .iter()
        .filter_map(|l| l.metadata().tag.clone())
        .collect();
    assert_eq!(tags, ["c", "b", "a", "d"]);
}

/// The incarnation of the v2 frames in the chunk file at `path` (from the id in its name).
fn chunk_incarnation(path: &Path) -> u64 {
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let hex = name
        .trim_start_matches("buffer.")
        .trim_end_matches(".log")
        .get(1..)
        .expect("id")
        .to_string();
    crate::file::incarnation(&crate::ChunkId::from_hex(&hex).expect("hex id"))
}

/// Writes three batches into one staged file chunk and returns (fixture, data file,
/// the batches).
fn three_batches() -> (Fixture, PathBuf, Vec<Vec<u8>>) {
    let f = open("tag", &[], true);
    let batches = vec![records(1, 10), records(2, 20), records(3, 30)];
    for b in &batches {
        f.write("t", b);
    }
    let file = f.chunk_files().pop().expect("one chunk");
    (f, file, batches)
}

#[test]
fn resume_keeps_every_whole_batch_for_a_tail_torn_at_every_offset() {
    let (f, path, batches) = three_batches();
    let original = std::fs::read(&path).expect("read");
    let last = frame::scan(&original, Some(chunk_incarnation(&path)), false).frames[2].offset;
    let Fixture { buffer, clock, dir } = f;
    drop(buffer);
    let mut dir = Some(dir);
    for cut in last..=original.len() {
        std::fs::write(&path, &original[..cut]).expect("cut");
        let f = open_at(
            "tag",
            &[],
            true,
            dir.take().expect("dir"),
            clock.clone(),
            false,
        );
        let rep = f.buffer.resume_report().clone();
        let expect_records = if cut == original.len() { 6 } else { 3 };
        let leases = f.drain();
        assert_eq!(leases.len(), 1, "cut {cut}");
        assert_eq!(leases[0].records(), expect_records, "cut {cut}");
        let mut expect = batches[0].clone();
        expect.extend_from_slice(&batches[1]);
        if cut == original.len() {
            expect.extend_from_slice(&batches[2]);
            assert!(rep.repaired.is_empty());
        } else if cut > last {
            assert_eq!(rep.repaired.len(), 1, "cut {cut}");
            assert_eq!(rep.repaired[0].dropped_bytes, (cut - last) as u64);
            assert_eq!(rep.repaired[0].kept_batches, 2);
        }
        assert_eq!(leases[0].data(), expect, "cut {cut}");
        // the file was cut back to its good frames (now queued by enqueue_all)
        let queued = PathBuf::from(path.display().to_string().replace("buffer.b", "buffer.q"));
        assert_eq!(
            std::fs::read(&queued).expect("queued").len(),
            if cut == original.len() {
                original.len()
            } else {
                last
            }
        );
        std::fs::rename(&queued, &path).expect("back to staged");
        std::fs::rename(
            format!("{}.meta", queued.display()),
            format!("{}.meta", path.display()),
        )
        .expect("meta back");
        let Fixture { buffer, dir: d, .. } = f;
        drop(leases);
        drop(buffer);
        dir = Some(d);
    }
}

#[test]
fn resume_drops_only_a_corrupt_middle_batch() {
    let (f, path, batches) = three_batches();
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = frame::scan(&bytes, Some(chunk_incarnation(&path)), false).frames[1];
    // flip bits in the header, the length, and the payload of the middle batch
    for at in [
        mid.offset + 1,
        mid.offset + 5,
        mid.offset + frame::HEADER_LEN_V2 + 3,
    ] {
        bytes[at] ^= 0x40;
    }
    std::fs::write(&path, &bytes).expect("write");
    let f = f.reopen("tag", &[]);
    let rep = f.buffer.resume_report().clone();
    assert_eq!(rep.repaired.len(), 1);
    assert_eq!(rep.repaired[0].dropped_ranges, 1);
    assert_eq!(rep.repaired[0].kept_batches, 2);
    let l = f.drain().pop().expect("chunk");
    let mut expect = batches[0].clone();
    expect.extend_from_slice(&batches[2]);
    assert_eq!(
        l.data(),
        expect,
        "the first and last batch survive; the damaged one is dropped"
    );
    assert_eq!(l.records(), 4);
}

#[test]
fn resume_quarantines_missing_or_broken_meta_and_removes_empty_files() {
    // missing meta → data moved to the backup dir, never a crash
    let (f, path, batches) = three_batches();
    std::fs::remove_file(format!("{}.meta", path.display())).expect("rm meta");
    let f = f.reopen("tag", &[]);
    let rep = f.buffer.resume_report().clone();
    assert_eq!(rep.quarantined.len(), 1);
    assert_eq!(
        std::fs::read(&rep.quarantined[0]).expect("backup"),
        batches.concat()
    );
    assert!(rep.quarantined[0].starts_with(f.dir.path().join("root/backup/worker0/out_test")));
    assert!(f.buffer.is_empty());
    assert!(!path.exists());

    // broken meta → same
    let (f, path, _) = three_batches();
    std::fs::write(format!("{}.meta", path.display()), b"garbage").expect("break meta");
    let f = f.reopen("tag", &[]);
    assert_eq!(f.buffer.resume_report().quarantined.len(), 1);
    assert!(f.buffer.is_empty());

    // zero-length data file → removed as an empty chunk
    let (f, path, _) = three_batches();
    std::fs::write(&path, b"").expect("truncate");
    let f = f.reopen("tag", &[]);
    assert_eq!(f.buffer.resume_report().removed_empty, 1);
    assert!(f.buffer.is_empty());
    assert!(!PathBuf::from(format!("{}.meta", path.display())).exists());

    // meta without data → removed
    let (f, path, _) = three_batches();
    std::fs::remove_file(&path).expect("rm data");
    let f = f.reopen("tag", &[]);
    assert_eq!(f.buffer.resume_report().removed_stray, 1);

    // nothing readable at all → raw bytes kept in the backup dir
    let (f, path, _) = three_batches();
    std::fs::write(&path, b"\x00\x01not frames").expect("garble");
    let f = f.reopen("tag", &[]);
    let rep = f.buffer.resume_report().clone();
    assert_eq!(rep.quarantined.len(), 1);
    assert!(
        rep.quarantined[0]
            .display()
            .to_string()
            .ends_with(".log.raw")
    );
}

#[test]
fn resume_enqueues_full_and_duplicated_staged_chunks() {
    let one = entry_len(10);
    let limit = (one * 4).to_string();
    let p = [("chunk_limit_size", limit.as_str())];
    let f = open("tag", &p, true);
    f.write("t", &records(2, 10));
    let first = f.chunk_files().pop().expect("chunk");
    // Simulate a second staged chunk with the same metadata (a crash mid-rollover).
    let Fixture { buffer, clock, dir } = f;
    drop(buffer);
    let hex = first
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()["buffer.b".len().."buffer.b".len() + 32]
        .to_string();
    let other_hex = format!(
        "{}{}",
        &hex[..30],
        if hex.ends_with("ff") { "00" } else { "ff" }
    );
    let other = first.with_file_name(format!("buffer.b{other_hex}.log"));
    let id = crate::ChunkId::from_hex(&other_hex).expect("id");
    // The same batches, framed for the other chunk (v2 frames name their chunk).
    let raw = std::fs::read(&first).expect("data");
    let mut copy = Vec::new();
    for fr in frame::scan(&raw, Some(chunk_incarnation(&first)), false).frames {
        let payload = &raw[fr.payload()];
        frame::encode_v2(
            payload,
            fr.records,
            crate::file::incarnation(&id),
            &mut copy,
        );
    }
    std::fs::write(&other, copy).expect("copy data");
    let meta = std::fs::read(format!("{}.meta", first.display())).expect("meta");
    let (m, created) =
        crate::file::decode_meta(&meta, &crate::ChunkId::from_hex(&hex).expect("id"))
            .expect("decode");
    std::fs::write(
        format!("{}.meta", other.display()),
        crate::file::encode_meta(&id, &m, created + Duration::from_secs(1)),
    )
    .expect("meta");
    let f = open_at("tag", &p, true, dir, clock, false);
    let rep = f.buffer.resume_report().clone();
    assert_eq!(
        (rep.staged, rep.queued, rep.enqueued_at_resume),
        (1, 1, 1),
        "{rep:?}"
    );
    // and a full staged chunk is enqueued at resume
    f.write("t", &records(2, 10));
    let Fixture { buffer, clock, dir } = f;
    drop(buffer);
    let f = open_at("tag", &p, true, dir, clock, false);
    let rep = f.buffer.resume_report().clone();
    assert_eq!(rep.queued, 2, "{rep:?}");
}

#[test]
fn file_buffer_total_limit_counts_resumed_chunks() {
    let one = entry_len(10);
    let total = (one * 3).to_string();
    let f = open(
        "tag",
        &[
            ("total_limit_size", total.as_str()),
            ("chunk_limit_size", total.as_str()),
        ],
        true,
    );
    f.write("t", &records(3, 10));
    let f = f.reopen(
        "tag",
        &[
            ("total_limit_size", total.as_str()),
            ("chunk_limit_size", total.as_str()),
        ],
    );
    assert!(matches!(
        f.buffer.write("t", &records(1, 10), 1),
        Err(BufferError::Overflow { .. })
    ));
}

// ---------------------------------------------------------------- threads

#[test]
fn concurrent_writers_and_flushers_lose_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    // The last case goes through the group fsync: interval mode, so most writes stay
    // staged and wait for their fsync outside the buffer lock.
    for (file, fsync, mode) in [
        (false, "never", "immediate"),
        (true, "never", "immediate"),
        (true, "always", "interval"),
    ] {
        let sub = tempfile::tempdir_in(dir.path()).expect("sub");
        let one = entry_len(16);
        let limit = (one * 7).to_string();
        let f = Arc::new(open_at(
            "tag",
            &[
                ("chunk_limit_size", limit.as_str()),
                ("flush_mode", mode),
                ("retry_forever", "true"),
                ("fsync", fsync),
            ],
            file,
            sub,
            Arc::new(FakeClock::at_secs(T0)),
            false,
        ));
        const WRITERS: u64 = 4;
        const WRITES: u64 = 50;
        let committed = Arc::new(AtomicU64::new(0));
        let writers_done = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for w in 0..WRITERS {
            let (f, done) = (f.clone(), writers_done.clone());
            handles.push(std::thread::spawn(move || {
                for i in 0..WRITES {
                    let n = (i % 3 + 1) as usize;
                    f.buffer
                        .write(&format!("tag.{}", (w + i) % 3), &records(n, 16), n as u64)
                        .expect("write");
                }
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for t in 0..2u64 {
            let (f, committed, done) = (f.clone(), committed.clone(), writers_done.clone());
            handles.push(std::thread::spawn(move || {
                let mut k = 0u64;
                for _ in 0..2_000_000u64 {
                    match f.buffer.next_ready(f.clock.now()).expect("next_ready") {
                        Some(l) => {
                            k += 1;
                            if (k + t) % 7 == 0 {
                                f.buffer.rollback(l, RETRYABLE).expect("rollback");
                            } else {
                                committed.fetch_add(l.records(), Ordering::SeqCst);
                                f.buffer.commit(l).expect("commit");
                            }
                        }
                        None => {
                            if done.load(Ordering::SeqCst) == WRITERS && f.buffer.is_empty() {
                                return;
                            }
                            f.clock.advance(Duration::from_secs(60));
                            std::thread::yield_now();
                        }
                    }
                }
                panic!("flusher did not finish");
            }));
        }
        for h in handles {
            h.join().expect("thread");
        }
        let per_writer: u64 = (0..WRITES).map(|i| i % 3 + 1).sum();
        assert_eq!(
            committed.load(Ordering::SeqCst),
            WRITERS * per_writer,
            "file={file} fsync={fsync}"
        );
        let m = f.buffer.metrics();
        assert_eq!(m.write_records, WRITERS * per_writer);
        assert_eq!((m.stage_byte_size, m.queue_byte_size), (0, 0));
        if file {
            assert!(f.chunk_files().is_empty());
        }
    }
}

/// The fast path does not walk: the caller's count is what is stored (the contract in
/// `Buffer::write`'s docs; in_forward counts and validates every entry), while the walk
/// counts entries itself.
#[test]
fn whole_batch_fast_path_takes_the_callers_count() {
    let data = records(4, 10);
    let check = |arg: &str, extra: &[(&str, &str)], expect: u64| {
        let f = open(arg, extra, false);
        let r = f.buffer.write("t", &data, 3).expect("write");
        assert_eq!(r.records, expect, "{arg} {extra:?}");
        assert_eq!(f.buffer.metrics().write_records, expect, "{arg} {extra:?}");
    };
    check("tag", &[], 3);
    check("", &[], 3);
    check("tag,msg", &[], 4);
    check("tag", &[("chunk_limit_records", "100")], 4);
}

/// A file chunk's lease carries exactly the payloads of its file's frames, whether it is
/// served from the in-memory mirror or read back: small chunks (mirrored), chunks too
/// large to mirror, and a mirror budget spent part-way (the chunk falls back to its file).
/// Zeroing the files before the flush shows which one was used: a chunk read back from
/// a zeroed file has no intact batch left.
#[test]
fn file_leases_equal_their_files_payloads_with_or_without_a_mirror() {
    let one = entry_len(100);
    let check = |entries_per_chunk: usize, budget_entries: usize, expect_mirrored: &[bool]| {
        let limit = if entries_per_chunk == 0 {
            "32m".to_string()
        } else {
            (one * entries_per_chunk).to_string()
        };
        let mut f = open(
            "tag",
            &[("chunk_limit_size", limit.as_str()), ("flush_mode", "lazy")],
            true,
        );
        f.buffer.mirror_budget = (one * budget_entries) as u64;
        let mut written = Vec::new();
        for i in 0..4 {
            let b = records(i + 1, 100);
            written.extend_from_slice(&b);
            f.write("app", &b);
        }
        f.buffer.enqueue_all().expect("enqueue_all");
        let files = f.chunk_files();
        let mut on_disk: Vec<Vec<u8>> = Vec::new();
        for p in &files {
            let mut buf = Vec::new();
            crate::file::read_payloads_into(p, 0, chunk_incarnation(p), false, &mut buf)
                .expect("read");
            on_disk.push(buf);
            let len = std::fs::metadata(p).expect("stat").len();
            std::fs::write(p, vec![0u8; len as usize]).expect("zero");
        }
        let case = format!("{limit} budget {budget_entries}");
        assert_eq!(on_disk.concat(), written, "{case}");
        let mut mirrored = Vec::new();
        let mut leased = Vec::new();
        while let Some(l) = f.buffer.next_ready(f.now()).expect("next_ready") {
            mirrored.push(!l.data().is_empty());
            leased.extend_from_slice(l.data());
            f.buffer.commit(l).expect("commit");
        }
        assert_eq!(mirrored, expect_mirrored, "{case}");
        let kept: Vec<u8> = on_disk
            .iter()
            .zip(&mirrored)
            .filter(|(_, m)| **m)
            .flat_map(|(d, _)| d.clone())
            .collect();
        assert_eq!(leased, kept, "{case}");
        assert_eq!(f.buffer.mirrored.load(Ordering::SeqCst), 0, "{case}");
    };
    // 1+2+3+4 entries in chunks of 10: one chunk.
    check(10, usize::MAX / one, &[true]);
    // Larger than MIRROR_CHUNK_LIMIT: never mirrored.
    check(0, usize::MAX / one, &[false]);
    // Room for the first two batches only: the mirror is dropped at the third.
    check(10, 3, &[false]);
    // Chunks of 5: [1, 2], [3] and [4] (a whole batch goes to a fresh chunk, unsplit);
    // the first holds 3 of the 5 budgeted entries, so the later ones, which would pass
    // it, lose their mirrors.
    check(5, 5, &[true, false, false]);
}

/// The read buffer of a committed chunk is reused for the next chunk's mirror (no fresh
/// multi-megabyte allocation, and no page faults, per chunk).
#[test]
fn committed_buffers_are_reused_for_new_chunks() {
    let limit = (entry_len(50) * 4).to_string();
    let f = open("tag", &[("chunk_limit_size", limit.as_str())], true);
    f.write("app", &records(2, 50));
    let first = f.drain();
    assert_eq!(first.len(), 1);
    let ptr = first[0].data().as_ptr();
    for l in first {
        f.buffer.commit(l).expect("commit");
    }
    f.write("app", &records(3, 50));
    let second = f.drain();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].data().as_ptr(), ptr);
    assert_eq!(second[0].data(), records(3, 50).as_slice());
}

/// A flushed chunk's file is reused by the next chunk; after a crash the reused file
/// resumes with only the new chunk's batches (the earlier chunk's bytes after them are a
/// stale tail, cut off without a repair report), a torn append after them is still
/// reported, and free files are removed at start.
#[test]
fn flushed_files_are_reused_and_resume_keeps_only_the_new_chunks_batches() {
    let one = entry_len(100);
    let limit = (one * 10).to_string();
    let p = [("chunk_limit_size", limit.as_str()), ("flush_mode", "lazy")];
    let free_files = |f: &Fixture| {
        std::fs::read_dir(f.dir.path().join("buf"))
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_free_file(p))
            .count()
    };
    for torn in [false, true] {
        let f = open("tag", &p, true);
        f.write("t", &records(8, 100));
        for l in f.drain() {
            f.buffer.commit(l).expect("commit");
        }
        assert_eq!((f.chunk_files().len(), free_files(&f)), (0, 1));
        let new = records(2, 100);
        f.write("t", &new);
        let files = f.chunk_files();
        assert_eq!(
            (files.len(), free_files(&f)),
            (1, 0),
            "the free file was reused"
        );
        let path = files[0].clone();
        let new_len = (frame::HEADER_LEN_V2 + new.len()) as u64;
        assert!(std::fs::metadata(&path).expect("stat").len() > new_len);
        if torn {
            // A torn third append: its header and part of its payload.
            let mut frame_bytes = Vec::new();
            frame::encode_v2(
                &records(1, 100),
                1,
                chunk_incarnation(&path),
                &mut frame_bytes,
            );
            let mut raw = std::fs::read(&path).expect("read");
            let at = new_len as usize;
            raw[at..at + 30].copy_from_slice(&frame_bytes[..30]);
            std::fs::write(&path, raw).expect("write");
        }
        let f = f.reopen("tag", &p);
        let rep = f.buffer.resume_report().clone();
        assert_eq!(rep.staged, 1, "{rep:?}");
        assert!(rep.quarantined.is_empty(), "{rep:?}");
        assert_eq!(rep.repaired.len(), usize::from(torn), "{rep:?}");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), new_len);
        let leases = f.drain();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].data(), new.as_slice());
        assert_eq!(leases[0].records(), 2);
        for l in leases {
            f.buffer.commit(l).expect("commit");
        }
        // Resumed chunks' files are removed, not kept for reuse.
        assert_eq!(free_files(&f), 0);
        f.write("t", &records(1, 100));
        for l in f.drain() {
            f.buffer.commit(l).expect("commit");
        }
        assert_eq!(free_files(&f), 1);
        let f = f.reopen("tag", &p);
        assert_eq!(free_files(&f), 0);
        assert_eq!(f.buffer.resume_report().removed_stray, 1);
    }
}

/// A chunk in a reused file flushed without a mirror is read back from its file: only its
/// own batches, although the file still holds the earlier chunk's bytes after them.
#[test]
fn a_reused_file_read_back_yields_only_its_own_batches() {
    let one = entry_len(100);
    let limit = (one * 10).to_string();
    let mut f = open(
        "tag",
        &[("chunk_limit_size", limit.as_str()), ("flush_mode", "lazy")],
        true,
    );
    f.buffer.mirror_budget = 0;
    f.write("t", &records(9, 100));
    for l in f.drain() {
        f.buffer.commit(l).expect("commit");
    }
    let new = batch(&[(T0, &[("msg", "new")]), (T0, &[("msg", "newer")])]);
    f.write("t", &new);
    let path = f.chunk_files().pop().expect("chunk");
    assert!(std::fs::metadata(&path).expect("stat").len() > (one * 9) as u64);
    let leases = f.drain();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].data(), new.as_slice());
    assert_eq!(leases[0].records(), 2);
}

// ---------------------------------------------------------------- durability

/// A deferred write is in the chunk file when it returns (a crash of the process keeps it)
/// but waits for no fsync; a `Now` write into the same chunk fsyncs the file once, which
/// covers the deferred data before it; a memory buffer takes both alike.
#[test]
fn deferred_writes_skip_the_fsync_until_a_durable_write() {
    let interval = [("flush_mode", "interval"), ("flush_interval", "60")];
    let f = open("tag", &interval, true);
    for _ in 0..3 {
        f.buffer
            .write_with("t", &records(2, 10), 2, Durability::Deferred)
            .expect("deferred write");
    }
    assert_eq!(f.buffer.synced_files(), 0, "no fsync for deferred writes");
    let f = f.reopen("tag", &interval);
    let m = f.buffer.metrics();
    assert_eq!(
        (m.stage_length, m.stage_byte_size),
        (1, 3 * records(2, 10).len() as u64),
        "every deferred write is in the chunk file after a crash"
    );
    f.buffer
        .write_with("t", &records(1, 10), 1, Durability::Now)
        .expect("durable write");
    assert_eq!(
        f.buffer.synced_files(),
        1,
        "one fsync covers the chunk file"
    );
    f.buffer.write("t", &records(1, 10), 1).expect("write");
    assert_eq!(f.buffer.synced_files(), 2, "write is a durable write");

    let m = open("tag", &interval, false);
    m.buffer
        .write_with("t", &records(2, 10), 2, Durability::Deferred)
        .expect("memory");
    assert_eq!(m.buffer.metrics().write_records, 2);
    assert_eq!(m.buffer.synced_files(), 0);
}

// ---------------------------------------------------------------- file ranges

/// A file buffer (`tag` chunks) whose output takes chunks as ranges of their files
/// ([`BufferOptions::file_ranges`]), with a `<secondary>` or not.
fn open_ranged(extra: &[(&str, &str)], secondary: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    open_with(
        "tag",
        extra,
        true,
        dir,
        Arc::new(FakeClock::at_secs(T0)),
        |o| {
            o.has_secondary = secondary;
            o.file_ranges = true;
        },
    )
}

impl Fixture {
    /// [`Fixture::reopen`] for a file-ranges buffer.
    fn reopen_ranged(self, extra: &[(&str, &str)]) -> Fixture {
        let Fixture { buffer, clock, dir } = self;
        drop(buffer); // a crash: no close, no flush
        open_with("tag", extra, true, dir, clock, |o| o.file_ranges = true)
    }
}

/// The payload of a file-ranges lease, read from its file at its ranges with positioned
/// reads (as an output does), after checking the lease carries no bytes besides.
fn read_ranges(l: &ChunkLease) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let r = l.file_ranges().expect("a file-ranges lease");
    assert!(l.data().is_empty(), "a file-ranges lease carries no bytes");
    let mut out = Vec::new();
    for &(offset, len) in r.ranges() {
        let mut buf = vec![0u8; usize::try_from(len).expect("range length")];
        r.file()
            .read_exact_at(&mut buf, offset)
            .expect("read range");
        out.extend_from_slice(&buf);
    }
    out
}

/// A file-ranges lease names one range per frame, each its frame's payload (after the
/// header), and reading them gives back exactly the batches written, in order; the buffer
/// keeps no mirror of them, and a committed lease leaves no (empty) buffer for reuse.
#[test]
fn file_ranges_leases_name_each_frames_payload_and_keep_no_mirror() {
    // Small enough to be mirrored without `file_ranges` (see the test after next).
    let f = open_ranged(&[("flush_mode", "lazy"), ("chunk_limit_size", "1m")], false);
    let batches = [
        records(1, 10),
        records(2, 200),
        batch(&[(T0, &[("msg", "third")]), (T0 + 1, &[("k", "v")])]),
        records(3, 30),
    ];
    for b in &batches {
        f.write("t", b);
    }
    assert_eq!(f.buffer.mirrored.load(Ordering::SeqCst), 0, "no mirror");
    let leases = f.drain();
    assert_eq!(leases.len(), 1);
    let l = &leases[0];
    assert_eq!(l.records(), 8);
    assert_eq!(l.route(), Route::Primary);
    assert_eq!(read_ranges(l), batches.concat());
    let path = f.chunk_files().pop().expect("the queued chunk");
    let raw = std::fs::read(&path).expect("read chunk file");
    let frames: Vec<(u64, u64)> = frame::scan(&raw, Some(chunk_incarnation(&path)), false)
        .frames
        .iter()
        .map(|fr| (fr.payload().start as u64, fr.payload().len() as u64))
        .collect();
    let ranges = l.file_ranges().expect("ranges").ranges().to_vec();
    assert_eq!(ranges, frames, "one range per frame, its payload");
    assert_eq!(ranges.len(), batches.len());
    assert_eq!(ranges[0].0, frame::HEADER_LEN_V2 as u64);
    for l in leases {
        f.buffer.commit(l).expect("commit");
    }
    assert!(f.buffer.lock_spare().is_empty(), "no empty buffer recycled");
    assert_eq!(f.buffer.mirrored.load(Ordering::SeqCst), 0);
    assert!(f.buffer.is_empty());
}

/// Up to `MAX_SPANS` frames a chunk is leased as ranges; written in more (many small
/// writes) it is read back from its file and leased as bytes.
#[test]
fn a_chunk_of_more_than_max_spans_frames_is_leased_as_bytes() {
    let f = open_ranged(&[("flush_mode", "lazy"), ("fsync", "never")], false);
    for frames in [crate::buffer::MAX_SPANS, crate::buffer::MAX_SPANS + 1] {
        let mut written = Vec::new();
        for i in 0..frames {
            let b = batch(&[(T0, &[("n", i.to_string().as_str())])]);
            f.write("t", &b);
            written.extend_from_slice(&b);
        }
        let leases = f.drain();
        assert_eq!(leases.len(), 1, "{frames} frames");
        let l = &leases[0];
        assert_eq!(l.records(), frames as u64);
        if frames <= crate::buffer::MAX_SPANS {
            assert_eq!(
                l.file_ranges().map(|r| r.ranges().len()),
                Some(frames),
                "{frames} frames"
            );
            assert_eq!(read_ranges(l), written, "{frames} frames");
        } else {
            assert!(l.file_ranges().is_none(), "{frames} frames");
            assert_eq!(l.data(), written, "{frames} frames");
        }
        for l in leases {
            f.buffer.commit(l).expect("commit");
        }
    }
}

/// Past `retry_secondary_threshold` a ranged chunk goes to the secondary as bytes; before
/// it, each retry of the primary is leased as ranges again, reading the same bytes.
#[test]
fn file_ranges_leases_for_the_secondary_carry_bytes() {
    let f = open_ranged(
        &[
            ("retry_type", "periodic"),
            ("retry_wait", "10s"),
            ("retry_timeout", "100s"),
            ("retry_randomize", "false"),
            ("flush_mode", "immediate"),
        ],
        true,
    );
    let data = records(2, 10);
    f.write("t", &data);
    let mut routes = Vec::new();
    for _ in 0..9 {
        let l = f.lease();
        match l.route() {
            Route::Primary => assert_eq!(read_ranges(&l), data),
            _ => {
                assert!(l.file_ranges().is_none(), "{:?}", l.route());
                assert_eq!(l.data(), data);
            }
        }
        routes.push(l.route());
        let Decision::Retry { at, .. } = f.buffer.rollback(l, RETRYABLE).expect("rollback") else {
            panic!("expected a retry")
        };
        f.clock.set(at);
    }
    // Leases at T0, T0+10 s, ..., T0+80 s: the threshold is 80 % of the 100 s timeout.
    let mut expect = vec![Route::Primary; 8];
    expect.push(Route::Secondary);
    assert_eq!(routes, expect);
    let l = f.lease();
    assert_eq!((l.route(), l.data()), (Route::Secondary, data.as_slice()));
    f.buffer.commit(l).expect("commit");
    assert!(f.buffer.is_empty());
}

/// An unrecoverable failure of a ranged lease hands the secondary the chunk's bytes, and
/// the backup file (after the secondary, or without one) holds them too.
#[test]
fn unrecoverable_file_ranges_leases_go_to_the_secondary_and_backup_as_bytes() {
    let data = [records(2, 10), records(1, 50)];
    let backup_dir = |f: &Fixture| f.dir.path().join("root/backup/worker0/out_test");
    for secondary in [true, false] {
        let f = open_ranged(&[("flush_mode", "lazy")], secondary);
        for b in &data {
            f.write("t", b);
        }
        let l = f.drain().pop().expect("a chunk");
        let id = l.id();
        assert_eq!(read_ranges(&l), data.concat());
        let mut d = f
            .buffer
            .rollback(l, Failure::Unrecoverable)
            .expect("rollback");
        if secondary {
            let Decision::ToSecondary(l) = d else {
                panic!("{d:?}")
            };
            assert_eq!(l.route(), Route::SecondaryAfterUnrecoverable);
            assert!(l.file_ranges().is_none());
            assert_eq!(l.data(), data.concat());
            // the secondary fails too: backup
            d = f.buffer.rollback(l, RETRYABLE).expect("rollback");
        }
        let Decision::Backup { path: Some(p) } = d else {
            panic!("secondary {secondary}: {d:?}")
        };
        assert_eq!(p, backup_dir(&f).join(format!("{}.log", id.hex())));
        assert_eq!(
            std::fs::read(&p).expect("backup"),
            data.concat(),
            "secondary {secondary}"
        );
        assert!(f.buffer.is_empty());
        assert!(f.chunk_files().is_empty());
    }
}

/// A committed ranged chunk's file is reused in place (the same inode) by the next chunk,
/// whose ranges read back only its own batches although the earlier chunk's bytes are still
/// in the file after them.
#[test]
fn a_reused_file_leased_as_ranges_reads_only_the_new_chunk() {
    use std::os::unix::fs::MetadataExt;
    let limit = (entry_len(100) * 10).to_string();
    let p = [("chunk_limit_size", limit.as_str()), ("flush_mode", "lazy")];
    let f = open_ranged(&p, false);
    let old = records(8, 100);
    f.write("t", &old);
    let l = f.drain().pop().expect("first chunk");
    assert_eq!(read_ranges(&l), old);
    let inode = l
        .file_ranges()
        .and_then(|r| r.file().metadata().ok())
        .expect("stat")
        .ino();
    f.buffer.commit(l).expect("commit");
    let new = [
        batch(&[(T0, &[("msg", "new")]), (T0, &[("msg", "newer")])]),
        records(1, 5),
    ];
    for b in &new {
        f.write("t", b);
    }
    let path = f.chunk_files().pop().expect("second chunk");
    let on_disk = std::fs::metadata(&path).expect("stat");
    assert_eq!(on_disk.ino(), inode, "the free file was reused");
    let new_len: usize = new.iter().map(|b| frame::HEADER_LEN_V2 + b.len()).sum();
    assert!(
        on_disk.len() > new_len as u64,
        "the old chunk's bytes remain"
    );
    let l = f.drain().pop().expect("second chunk");
    assert_eq!(l.records(), 3);
    assert_eq!(read_ranges(&l), new.concat());
    assert_eq!(
        l.file_ranges().map(|r| r.ranges().to_vec()),
        Some(vec![
            (frame::HEADER_LEN_V2 as u64, new[0].len() as u64),
            (
                (2 * frame::HEADER_LEN_V2 + new[0].len()) as u64,
                new[1].len() as u64
            ),
        ])
    );
    f.buffer.commit(l).expect("commit");
}

/// Without `file_ranges` (the default) a file buffer's leases carry bytes and it keeps
/// mirrors (of chunks small enough); with it, a memory buffer's leases still carry bytes.
#[test]
fn without_file_ranges_or_a_file_leases_carry_bytes() {
    let data = [records(2, 10), records(1, 20)];
    let f = open(
        "tag",
        &[("flush_mode", "lazy"), ("chunk_limit_size", "1m")],
        true,
    );
    for b in &data {
        f.write("t", b);
    }
    assert!(
        f.buffer.mirrored.load(Ordering::SeqCst) > 0,
        "a file buffer mirrors small chunks"
    );
    let l = f.drain().pop().expect("a chunk");
    assert!(l.file_ranges().is_none());
    assert_eq!(l.data(), data.concat());

    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(FakeClock::at_secs(T0));
    let m = open_with("tag", &[("flush_mode", "lazy")], false, dir, clock, |o| {
        o.file_ranges = true
    });
    for b in &data {
        m.write("t", b);
    }
    let l = m.drain().pop().expect("a chunk");
    assert!(l.file_ranges().is_none());
    assert_eq!(l.data(), data.concat());
}

/// A chunk resumed after a restart has no index of its frames: it is leased as bytes read
/// back from its file, also once more batches were appended to it after the restart; a
/// chunk started after the restart is leased as ranges again.
#[test]
fn a_resumed_chunk_is_leased_as_bytes() {
    let p = [("flush_mode", "lazy")];
    let f = open_ranged(&p, false);
    let before = [records(2, 10), records(1, 30)];
    for b in &before {
        f.write("a", b);
    }
    let f = f.reopen_ranged(&p);
    assert_eq!(f.buffer.resume_report().staged, 1);
    // The same rng seed at the same time would give "b"'s new chunk "a"'s id.
    f.clock.advance(Duration::from_secs(1));
    let after = records(3, 20);
    f.write("a", &after);
    f.write("b", &after);
    let mut leases = f.drain();
    leases.sort_by_key(|l| l.metadata().tag.clone());
    assert_eq!(leases.len(), 2);
    assert!(leases[0].file_ranges().is_none());
    assert_eq!(leases[0].data(), [before.concat(), after.clone()].concat());
    assert_eq!(leases[0].records(), 6);
    assert_eq!(read_ranges(&leases[1]), after);
}
