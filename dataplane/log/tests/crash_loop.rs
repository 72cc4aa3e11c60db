//! SIGKILL at random moments loses nothing that was reported committed: a child process (this
//! test binary, re-executed) appends in durable mode and prints each flushed sequence number;
//! the parent kills it, recovers the partition, checks every reported record, appends, and
//! starts the next child on the same directory. The children cycle through the write paths:
//! pwrite with records staged until the flush request (the default), pwrite with a 4 KiB
//! staging bound (staged bytes written by appends, at rolls and at flush requests), and mmap.
//! A read-only follower in the parent reads the same directory throughout, next to the child
//! (which holds the lock), across the kills and the parent's recoveries.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use common::{OwnedInput, Rng, append_owned, read_all};
use dataplane_log::{
    AckMode, Cursor, Follower, Partition, PartitionConfig, PartitionId, StartPosition, WritePath,
};

const DIR_VAR: &str = "SHOAL_CRASH_WRITER_DIR";
const PATH_VAR: &str = "SHOAL_CRASH_WRITER_PATH";
const SEED_VAR: &str = "SHOAL_CRASH_WRITER_SEED";
const CHILD_TEST: &str = "child_writer_runs_only_when_spawned_by_the_crash_loop";

/// The child's write path, by name: `pwrite`, `pwrite-4k` or `mmap`.
fn config(variant: &str) -> PartitionConfig {
    PartitionConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 512,
        write_path: if variant == "mmap" {
            WritePath::Mmap
        } else {
            WritePath::Pwrite
        },
        ack: AckMode::Durable,
        retention_ms: None,
        retention_bytes: None,
        prefault: true,
        zero_fill: true,
        prepare_next_at_percent: 50,
        staged_bytes_max: if variant == "pwrite-4k" {
            4096
        } else {
            1 << 20
        },
    }
}

const VARIANTS: [&str; 3] = ["pwrite", "pwrite-4k", "mmap"];

/// Record `sequence` always has the same content, so any survivor can be checked.
fn record(sequence: u64) -> OwnedInput {
    OwnedInput::numbered(sequence, 16 + (sequence * 97 % 1500) as usize)
}

#[test]
fn child_writer_runs_only_when_spawned_by_the_crash_loop() {
    // Setup: none when run normally (returns at once). Spawned by the crash loop with the
    // directory in the environment, it appends batches forever, flushing after most of them,
    // and prints "committed <last sequence>" once a flush completed.
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let variant = std::env::var(PATH_VAR).unwrap_or_else(|_| "pwrite".to_owned());
    let seed = std::env::var(SEED_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(seed);
    let (mut partition, _) =
        Partition::open(&dir, PartitionId(0), config(&variant)).expect("child open");
    let mut stdout = std::io::stdout().lock();
    loop {
        let first = partition.written_end().sequence.0;
        let batch: Vec<OwnedInput> = (first..first + 1 + rng.below(20)).map(record).collect();
        let receipt = append_owned(&mut partition, &batch, first as i64).expect("child append");
        if rng.below(3) == 0
            && let Some(prep) = partition.next_segment_request()
        {
            partition
                .install_prepared(prep.prepare().expect("prepare"))
                .expect("install");
        }
        // Flush after one to four batches, so that kills also land between appends.
        if rng.below(4) == 0 {
            continue;
        }
        partition.flush_now().expect("child flush");
        writeln!(stdout, "committed {}", receipt.last_sequence().0).expect("report");
        stdout.flush().expect("report");
    }
}

/// Refreshes the follower and reads what became readable, checking every record's content and
/// that sequence numbers continue from `next`; returns the next sequence number expected.
fn follow(follower: &mut Follower, cursor: &mut Cursor, mut next: u64) -> u64 {
    follower.refresh().expect("the follower refreshes");
    while let Some(view) = cursor.next().expect("the follower reads valid records") {
        assert_eq!(view.sequence().0, next, "the follower reads in order");
        assert_eq!(OwnedInput::from_view(&view), record(next));
        next += 1;
    }
    next
}

#[test]
fn records_reported_committed_survive_sigkill_and_the_log_continues() {
    // Setup: nine iterations on one directory, cycling through the write paths. Each spawns
    // the child writer, reads a random number of its "committed" lines, spins a random while,
    // then SIGKILLs it mid-append or mid-flush (staged records not yet written die with it),
    // and drains the lines already written.
    // Expectation: the partition reopens (a torn tail at most), every record up to the highest
    // reported sequence number reads back intact and in order with nothing missing, and an
    // append by the parent continues the sequence and reads back. The follower never fails,
    // reads every record once and in order, has read past every reported record after each
    // kill (it shows what was written), and reads the parent's appends after each recovery.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::from_env("crash_loop");
    let exe = std::env::current_exe().expect("test binary");
    let mut committed_max: Option<u64> = None;
    let mut torn_tails = 0;
    let mut following: Option<(Follower, Cursor)> = None;
    let mut followed = 0u64;
    for iteration in 0..9u64 {
        let variant = VARIANTS[iteration as usize % VARIANTS.len()];
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, dir.path())
            .env(PATH_VAR, variant)
            .env(SEED_VAR, rng.next_u64().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child writer");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
        let wanted = 1 + rng.below(60);
        let mut reported = 0;
        let mut line = String::new();
        let note = |line: &str, committed_max: &mut Option<u64>| {
            if let Some(n) = line.trim().strip_prefix("committed ") {
                let n: u64 = n.parse().expect("a sequence number");
                assert!(committed_max.is_none_or(|m| n > m), "reports increase");
                *committed_max = Some(n);
                return true;
            }
            false
        };
        while reported < wanted {
            line.clear();
            if lines.read_line(&mut line).expect("read child output") == 0 {
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .expect("stderr")
                    .read_to_string(&mut stderr)
                    .expect("stderr");
                panic!("child exited early in iteration {iteration}: {stderr}");
            }
            if note(&line, &mut committed_max) {
                reported += 1;
            }
        }
        let (follower, cursor) = following.get_or_insert_with(|| {
            let follower = Follower::open(dir.path()).expect("follow the child's partition");
            let cursor = follower.cursor(StartPosition::Earliest);
            (follower, cursor)
        });
        followed = follow(follower, cursor, followed);
        // Kill at a random point of the next append or flush.
        let spin = rng.below(2_000_000);
        let mut sink = 0u64;
        for i in 0..spin {
            sink = std::hint::black_box(sink.wrapping_add(i));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        loop {
            line.clear();
            if lines.read_line(&mut line).expect("drain") == 0 {
                break;
            }
            note(&line, &mut committed_max);
        }

        let committed = committed_max.expect("something was committed");
        let (follower, cursor) = following.as_mut().expect("following");
        followed = follow(follower, cursor, followed);
        assert!(
            followed > committed,
            "iteration {iteration}: the follower read {followed}, {committed} was committed"
        );
        let (mut partition, report) =
            Partition::open(dir.path(), PartitionId(0), config(variant)).expect("recover");
        torn_tails += report.truncated.len();
        assert!(
            report.end.sequence.0 > committed,
            "iteration {iteration}: lost committed records: {report:?}"
        );
        let records = read_all(&partition.reader());
        assert_eq!(records.len() as u64, report.end.sequence.0);
        for (i, (header, body)) in records.iter().enumerate() {
            assert_eq!(header.sequence, i as u64, "iteration {iteration}");
            assert_eq!(
                *body,
                record(i as u64),
                "iteration {iteration}: record {i} differs"
            );
        }
        let next = report.end.sequence.0;
        let receipt = append_owned(
            &mut partition,
            &[record(next), record(next + 1)],
            next as i64,
        )
        .expect("append");
        assert_eq!(receipt.first_sequence.0, next);
        partition.flush_now().expect("flush");
        committed_max = Some(next + 1);
        let tail = read_all(&partition.reader());
        assert_eq!(tail.len() as u64, next + 2);
        assert_eq!(tail.last().expect("records").1, record(next + 1));
        assert!(
            followed <= next,
            "the follower read only what recovery kept"
        );
        followed = follow(follower, cursor, followed);
        assert_eq!(followed, next + 2, "iteration {iteration}");
    }
    eprintln!("crash loop: {torn_tails} torn tails truncated over 9 kills");
}
