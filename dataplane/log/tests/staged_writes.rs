//! Durable mode on the pwrite path stages appended records and writes them with one `pwrite`
//! when the flush request is taken (or at a roll, or when the staging buffer is full); written
//! mode, and durable mode with staging off, write every append at once. A failed staged write
//! poisons like a failed flush.

mod common;

use std::os::fd::AsRawFd;

use common::{OwnedInput, append_owned, read_all, small_config};
use dataplane_log::{
    AckMode, Error, FlushTargetKind, Partition, PartitionConfig, PartitionId, WritePath,
};

fn open(dir: &std::path::Path, config: PartitionConfig) -> Partition {
    Partition::open(dir, PartitionId(0), config)
        .expect("open")
        .0
}

/// The bytes of the first segment's data area up to `end`, as another process reads the file.
fn file_data(dir: &std::path::Path, end: u64) -> Vec<u8> {
    let bytes = std::fs::read(dir.join("00000000000000000000.segment")).expect("read segment");
    bytes[64..64 + end as usize].to_vec()
}

#[test]
fn durable_appends_stay_staged_until_the_flush_request_writes_them_with_one_pwrite() {
    // Setup: durable mode, pwrite path, 40 appends of one record each (as 40 sessions with one
    // message in flight each would append between two flushes), then a flush request; then 10
    // more and `flush_now`.
    // Expectation: no write before the request (the file still holds zeros where the records
    // go, readers see nothing); taking the request performs exactly one write, after which the
    // file holds all 40 records; completing it commits them. The second round costs one write
    // more.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut partition = open(
        dir.path(),
        small_config(WritePath::Pwrite, AckMode::Durable),
    );
    let reader = partition.reader();
    for i in 0..40 {
        append_owned(&mut partition, &[OwnedInput::numbered(i, 60)], 1).expect("append");
    }
    let end = partition.written_end().offset.0;
    assert_eq!(partition.stats().record_writes, 0);
    assert!(
        file_data(dir.path(), end).iter().all(|b| *b == 0),
        "nothing is written before the flush request"
    );
    assert!(read_all(&reader).is_empty());

    let request = partition
        .take_flush_request()
        .expect("the staged write succeeds")
        .expect("a request");
    assert_eq!(
        partition.stats().record_writes,
        1,
        "one pwrite for 40 appends"
    );
    assert_eq!(request.end().offset.0, end);
    assert!(file_data(dir.path(), end).iter().any(|b| *b != 0));
    assert!(read_all(&reader).is_empty(), "written is not yet committed");
    request.sync().expect("sync");
    partition.flush_complete(request).expect("complete");
    let records = read_all(&reader);
    assert_eq!(records.len(), 40);
    for (i, (_, record)) in records.iter().enumerate() {
        assert_eq!(*record, OwnedInput::numbered(i as u64, 60));
    }

    for i in 40..50 {
        append_owned(&mut partition, &[OwnedInput::numbered(i, 60)], 2).expect("append");
    }
    partition.flush_now().expect("flush");
    assert_eq!(partition.stats().record_writes, 2);
    assert_eq!(read_all(&reader).len(), 50);
}

#[test]
fn staged_records_reach_each_segment_in_order_across_rolls_and_the_buffer_bound() {
    // Setup: 64 KiB segments, 300 single-record appends of about 600 bytes (several rolls)
    // without any flush in between, once with the default 1 MiB staging bound and once with a
    // 4 KiB bound; then one flush request, and a reopen.
    // Expectation: with 1 MiB the only writes before the request are one per roll (the staged
    // bytes of the segment being sealed); with 4 KiB there are more, each at most the bound. The
    // request lists every segment written since the start and the directory; after it
    // completes every record reads back in order, and the reopened partition recovers all of
    // them without repairing anything.
    for staged_bytes_max in [1 << 20, 4096] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = PartitionConfig {
            staged_bytes_max,
            ..small_config(WritePath::Pwrite, AckMode::Durable)
        };
        let mut partition = open(dir.path(), config.clone());
        let records: Vec<OwnedInput> = (0..300)
            .map(|i| OwnedInput::numbered(i, 500 + (i as usize * 13) % 200))
            .collect();
        for record in &records {
            append_owned(&mut partition, std::slice::from_ref(record), 1).expect("append");
        }
        let stats = partition.stats();
        assert!(stats.segments_rolled >= 2, "{stats:?}");
        if staged_bytes_max == 1 << 20 {
            assert_eq!(stats.record_writes, stats.segments_rolled, "{stats:?}");
        } else {
            let written = partition.written_end().offset.0;
            assert!(stats.record_writes >= written / 4096, "{stats:?}");
        }
        let request = partition
            .take_flush_request()
            .expect("write")
            .expect("request");
        let kinds: Vec<FlushTargetKind> = request
            .targets()
            .iter()
            .map(dataplane_log::FlushTarget::kind)
            .collect();
        assert_eq!(
            kinds.len() as u64,
            stats.segments_rolled + 2,
            "every segment and the directory: {kinds:?}"
        );
        assert_eq!(kinds.last(), Some(&FlushTargetKind::Directory));
        request.sync().expect("sync");
        partition.flush_complete(request).expect("complete");
        let read: Vec<OwnedInput> = read_all(&partition.reader())
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(read, records);
        drop(partition);

        let (partition, report) =
            Partition::open(dir.path(), PartitionId(0), config).expect("reopen");
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.end.sequence.0, 300);
        let read: Vec<OwnedInput> = read_all(&partition.reader())
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(read, records);
    }
}

#[test]
fn written_mode_and_durable_mode_without_staging_write_every_append() {
    // Setup: 20 single-record appends in written mode on the pwrite path, and in durable mode
    // with `staged_bytes_max = 0`. Expectation: 20 writes each, before any flush; written mode
    // shows every record to readers at once.
    let cases = [
        small_config(WritePath::Pwrite, AckMode::Written),
        PartitionConfig {
            staged_bytes_max: 0,
            ..small_config(WritePath::Pwrite, AckMode::Durable)
        },
    ];
    for config in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let ack = config.ack;
        let mut partition = open(dir.path(), config);
        for i in 0..20 {
            append_owned(&mut partition, &[OwnedInput::numbered(i, 60)], 1).expect("append");
            assert_eq!(partition.stats().record_writes, i + 1);
        }
        let end = partition.written_end().offset.0;
        assert!(file_data(dir.path(), end).iter().any(|b| *b != 0));
        let visible = read_all(&partition.reader()).len();
        assert_eq!(visible, if ack == AckMode::Written { 20 } else { 0 });
    }
}

#[test]
fn a_failed_staged_write_poisons_and_committed_records_survive() {
    // Setup: four records committed; then the segment's file descriptor is replaced (dup2) by
    // one open read-only, so that the next pwrite on it fails (EBADF) as a failing disk would;
    // two more appends are staged and the flush request is taken.
    // Expectation: the appends themselves succeed (nothing is written yet); taking the request
    // returns the write error naming the segment, the partition is poisoned, later appends and
    // requests are refused with Poisoned, readers still see exactly the four committed records;
    // after a reopen the four records are there.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(WritePath::Pwrite, AckMode::Durable);
    let mut partition = open(dir.path(), config.clone());
    let batch: Vec<OwnedInput> = (0..4).map(|i| OwnedInput::numbered(i, 80)).collect();
    append_owned(&mut partition, &batch, 1).expect("append");
    let request = partition
        .take_flush_request()
        .expect("write")
        .expect("request");
    let fd = request.targets()[0].raw_fd();
    request.sync().expect("sync");
    partition.flush_complete(request).expect("complete");

    let read_only = std::fs::File::open("/dev/null").expect("open /dev/null");
    // SAFETY: both descriptors are open; `fd` is the segment's own descriptor, which now
    // refers to /dev/null opened read-only until the partition closes it.
    let rc = unsafe { libc::dup2(read_only.as_raw_fd(), fd) };
    assert_eq!(rc, fd, "dup2");
    let more: Vec<OwnedInput> = (4..6).map(|i| OwnedInput::numbered(i, 80)).collect();
    append_owned(&mut partition, &more, 2).expect("a staged append writes nothing");
    let error = partition
        .take_flush_request()
        .expect_err("the staged write fails");
    assert!(matches!(error, Error::WriteFailed { .. }), "{error}");
    assert!(error.to_string().contains(".segment"), "{error}");
    assert!(partition.is_poisoned());
    assert!(matches!(
        append_owned(&mut partition, &more, 3),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        partition.take_flush_request(),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(partition.flush_now(), Err(Error::Poisoned { .. })));
    let read: Vec<OwnedInput> = read_all(&partition.reader())
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(read, batch);
    drop(partition);

    let (partition, _) = Partition::open(dir.path(), PartitionId(0), config).expect("reopen");
    let read: Vec<OwnedInput> = read_all(&partition.reader())
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(read, batch);
}
