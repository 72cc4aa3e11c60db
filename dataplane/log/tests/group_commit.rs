//! Group commit: a flush request covers everything appended since the previous request was
//! taken, requests may complete out of order without committing past an incomplete one, a roll
//! adds the old and new segment files and the directory, and a failed flush poisons.

mod common;

use common::{OwnedInput, append_owned, read_all, small_config};
use dataplane_log::{
    AckMode, Error, FlushTargetKind, Partition, PartitionId, SequenceNumber, WritePath,
};

fn open(dir: &std::path::Path, ack: AckMode) -> Partition {
    Partition::open(dir, PartitionId(0), small_config(WritePath::Pwrite, ack))
        .expect("open")
        .0
}

#[test]
fn a_request_taken_while_another_is_in_flight_covers_only_what_came_after() {
    // Setup: append A, take request 1 (in flight), append B and C, take request 2.
    // Expectation: request 1 covers A only and request 2 covers B and C; completing 2 first
    // commits nothing (1 is incomplete); completing 1 then commits everything. No request when
    // nothing new was appended.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut partition = open(dir.path(), AckMode::Durable);
    let reader = partition.reader();
    assert!(
        partition.take_flush_request().expect("take").is_none(),
        "nothing to flush yet"
    );
    let a = append_owned(&mut partition, &[OwnedInput::numbered(0, 100)], 1).expect("append");
    let first = partition
        .take_flush_request()
        .expect("take")
        .expect("request 1");
    append_owned(&mut partition, &[OwnedInput::numbered(1, 100)], 2).expect("append");
    let c = append_owned(&mut partition, &[OwnedInput::numbered(2, 100)], 3).expect("append");
    let second = partition
        .take_flush_request()
        .expect("take")
        .expect("request 2");
    assert!(
        partition.take_flush_request().expect("take").is_none(),
        "everything is already requested"
    );
    assert_eq!(first.start().offset.0, 0);
    assert_eq!(first.end().offset, a.end_offset);
    assert_eq!(second.start(), first.end());
    assert_eq!(second.end().offset, c.end_offset);
    assert_eq!(second.end().sequence, SequenceNumber(3));
    assert!(
        read_all(&reader).is_empty(),
        "nothing committed before a flush"
    );

    first.sync().expect("sync");
    second.sync().expect("sync");
    let durable = partition.flush_complete(second).expect("complete 2");
    assert_eq!(
        durable.end.sequence,
        SequenceNumber(0),
        "request 1 is still incomplete"
    );
    assert!(read_all(&reader).is_empty());
    let durable = partition.flush_complete(first).expect("complete 1");
    assert_eq!(durable.end.sequence, SequenceNumber(3));
    assert_eq!(read_all(&reader).len(), 3);
    assert_eq!(
        reader.committed().last.map(|l| l.sequence),
        Some(SequenceNumber(2))
    );
}

#[test]
fn a_request_after_a_roll_lists_both_segments_and_the_directory() {
    // Setup: fill most of a segment, take no request, append a batch that rolls.
    // Expectation: the request lists the old segment, then the new one, then the directory
    // (whose entry for the new file must reach the disk); each target yields a usable fd.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut partition = open(dir.path(), AckMode::Durable);
    let batch: Vec<OwnedInput> = (0..50).map(|i| OwnedInput::numbered(i, 1000)).collect();
    append_owned(&mut partition, &batch, 1).expect("append");
    append_owned(&mut partition, &batch, 2).expect("append that rolls");
    assert_eq!(partition.stats().segments_rolled, 1);
    let request = partition
        .take_flush_request()
        .expect("take")
        .expect("request");
    let kinds: Vec<FlushTargetKind> = request
        .targets()
        .iter()
        .map(dataplane_log::FlushTarget::kind)
        .collect();
    assert_eq!(
        kinds,
        [
            FlushTargetKind::Segment,
            FlushTargetKind::Segment,
            FlushTargetKind::Directory
        ]
    );
    assert!(request.targets()[0].path() < request.targets()[1].path());
    assert_eq!(request.targets()[2].path(), dir.path());
    for target in request.targets() {
        assert!(target.raw_fd() >= 0);
        target
            .try_clone_file()
            .expect("dup")
            .sync_all()
            .expect("sync the duplicate");
    }
    partition.flush_complete(request).expect("complete");
    assert_eq!(read_all(&partition.reader()).len(), 100);
    let batch: Vec<OwnedInput> = (0..3).map(|i| OwnedInput::numbered(i, 10)).collect();
    append_owned(&mut partition, &batch, 3).expect("append");
    let request = partition
        .take_flush_request()
        .expect("take")
        .expect("request");
    assert_eq!(
        request.targets().len(),
        1,
        "only the active segment is dirty now"
    );
}

#[test]
fn a_failed_flush_poisons_appends_but_committed_records_stay_readable() {
    // Setup: commit one record, then fail the flush of a second.
    // Expectation: the returned error names the failure; appends and flushes are refused with
    // Poisoned; the first record still reads back and the second never becomes visible.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut partition = open(dir.path(), AckMode::Durable);
    append_owned(&mut partition, &[OwnedInput::numbered(0, 100)], 1).expect("append");
    partition.flush_now().expect("flush");
    append_owned(&mut partition, &[OwnedInput::numbered(1, 100)], 2).expect("append");
    let request = partition
        .take_flush_request()
        .expect("take")
        .expect("request");
    let error = partition.flush_failed(request, std::io::Error::from_raw_os_error(libc::EIO));
    assert!(matches!(error, Error::FlushFailed { .. }), "{error}");
    assert!(partition.is_poisoned());
    assert!(partition.reader().is_poisoned());
    let refused =
        append_owned(&mut partition, &[OwnedInput::numbered(2, 100)], 3).expect_err("poisoned");
    assert!(matches!(refused, Error::Poisoned { .. }), "{refused}");
    assert!(matches!(partition.flush_now(), Err(Error::Poisoned { .. })));
    assert!(matches!(
        partition.take_flush_request(),
        Err(Error::Poisoned { .. })
    ));
    assert!(partition.next_segment_request().is_none());
    let records = read_all(&partition.reader());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1, OwnedInput::numbered(0, 100));
}

#[test]
fn written_mode_commits_on_append_and_flushes_only_move_the_durable_end() {
    // Setup: written mode, two appends, one flush in between.
    // Expectation: each append is visible at once; durable() trails until the flush.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut partition = open(dir.path(), AckMode::Written);
    let reader = partition.reader();
    let first = append_owned(&mut partition, &[OwnedInput::numbered(0, 100)], 1).expect("append");
    assert_eq!(reader.committed_end(), first.end_offset);
    assert!(reader.has_records_after(first.first_offset));
    assert_eq!(partition.durable().end.offset.0, 0);
    partition.flush_now().expect("flush");
    assert_eq!(partition.durable().end.offset, first.end_offset);
    let second = append_owned(&mut partition, &[OwnedInput::numbered(1, 100)], 2).expect("append");
    assert_eq!(reader.committed_end(), second.end_offset);
    assert_eq!(partition.durable().end.offset, first.end_offset);
    assert_eq!(read_all(&reader).len(), 2);
}
