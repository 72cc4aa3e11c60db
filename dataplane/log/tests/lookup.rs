//! Lookups by offset (inclusive and exclusive), sequence number and enqueued time find the same
//! record as a brute-force scan, including keys before the first and after the last record.

mod common;

use common::{OwnedInput, append_owned, small_config};
use dataplane_log::{
    AckMode, Offset, Partition, PartitionConfig, PartitionId, SequenceNumber, StartPosition,
    WritePath,
};
use proptest::prelude::*;

/// (sequence, offset, enqueued_ms) of every record.
type Key = (u64, u64, i64);

fn first_matching(keys: &[Key], start: StartPosition) -> Option<u64> {
    keys.iter()
        .find(|(sequence, offset, time)| match start {
            StartPosition::Offset {
                offset: x,
                inclusive: true,
            } => *offset >= x.0,
            StartPosition::Offset {
                offset: x,
                inclusive: false,
            } => *offset > x.0,
            StartPosition::Sequence(n) => *sequence >= n.0,
            StartPosition::EnqueuedTime(t) => *time >= t,
            StartPosition::Earliest => true,
            StartPosition::Latest => false,
        })
        .map(|(sequence, _, _)| *sequence)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn lookups_agree_with_a_brute_force_scan(
        batch_sizes in proptest::collection::vec(1usize..24, 5..40),
        payload_bytes in proptest::collection::vec(64usize..700, 40),
        time_steps in proptest::collection::vec(0i64..3, 40),
        probes in proptest::collection::vec((0u8..4, any::<u64>(), any::<bool>()), 64),
    ) {
        // Setup: several segments of records of varied sizes; batches share an enqueued time
        // and times repeat across batches. Expectation: for random keys (inside, before and
        // past the log), the first record a cursor yields is the first record a linear scan
        // finds, or none when the scan finds none.
        let dir = tempfile::tempdir().expect("tempdir");
        let config = PartitionConfig { segment_bytes: 32 * 1024, ..small_config(WritePath::Pwrite, AckMode::Written) };
        let (mut partition, _) = Partition::open(dir.path(), PartitionId(0), config).expect("open");
        let (mut keys, mut now_ms, mut seed) = (Vec::<Key>::new(), 100i64, 0u64);
        for (i, size) in batch_sizes.iter().enumerate() {
            now_ms += time_steps[i % time_steps.len()];
            let batch: Vec<OwnedInput> = (0..*size)
                .map(|j| { seed += 1; OwnedInput::numbered(seed, payload_bytes[(i + j) % payload_bytes.len()]) })
                .collect();
            let receipt = append_owned(&mut partition, &batch, now_ms).expect("append");
            for (j, offset) in partition.record_offsets().iter().enumerate() {
                keys.push((receipt.first_sequence.0 + j as u64, offset.0, receipt.enqueued_ms));
            }
        }
        let reader = partition.reader();
        let end = reader.committed().end;
        let (min_time, max_time) = (keys[0].2, keys.last().expect("records").2);
        for (kind, raw, inclusive) in probes {
            let start = match kind {
                0 => StartPosition::Offset { offset: Offset(raw % (end.offset.0 + 200)), inclusive },
                1 => {
                    // Exactly a record's offset, to exercise inclusive versus exclusive.
                    let key = keys[(raw % keys.len() as u64) as usize];
                    StartPosition::Offset { offset: Offset(key.1), inclusive }
                }
                2 => StartPosition::Sequence(SequenceNumber(raw % (end.sequence.0 + 5))),
                _ => StartPosition::EnqueuedTime(min_time - 3 + (raw % (max_time - min_time + 6) as u64) as i64),
            };
            let mut cursor = reader.cursor(start);
            let found = cursor.next().expect("lookup reads").map(|r| r.sequence().0);
            prop_assert_eq!(found, first_matching(&keys, start), "start {:?}", start);
        }
    }
}

#[test]
fn a_cursor_past_the_end_yields_the_first_matching_record_once_it_is_appended() {
    // Setup: two records, then cursors for a sequence number, an offset and a time that do
    // not exist yet. Expectation: nothing now; after more appends each cursor starts at the
    // first record satisfying its key, not at the end position it was created at.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(WritePath::Pwrite, AckMode::Written);
    let (mut partition, _) = Partition::open(dir.path(), PartitionId(0), config).expect("open");
    append_owned(
        &mut partition,
        &[OwnedInput::numbered(0, 10), OwnedInput::numbered(1, 10)],
        10,
    )
    .expect("append");
    let reader = partition.reader();
    let end = reader.committed().end.offset;
    let mut by_sequence = reader.cursor(StartPosition::Sequence(SequenceNumber(4)));
    let mut by_offset = reader.cursor(StartPosition::Offset {
        offset: Offset(end.0 + 1),
        inclusive: true,
    });
    let mut by_time = reader.cursor(StartPosition::EnqueuedTime(30));
    assert!(by_sequence.next().expect("read").is_none());
    assert!(by_offset.next().expect("read").is_none());
    assert!(by_time.next().expect("read").is_none());
    let batch: Vec<OwnedInput> = (2..8).map(|i| OwnedInput::numbered(i, 10)).collect();
    append_owned(&mut partition, &batch[..3], 20).expect("append");
    append_owned(&mut partition, &batch[3..], 30).expect("append");
    assert_eq!(
        by_sequence.next().expect("read").map(|r| r.sequence().0),
        Some(4)
    );
    assert_eq!(
        by_offset.next().expect("read").map(|r| r.sequence().0),
        Some(3)
    );
    assert_eq!(
        by_time.next().expect("read").map(|r| r.sequence().0),
        Some(5)
    );
}
