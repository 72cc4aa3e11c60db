//! Random batches of random records read back with every field intact, with contiguous
//! sequence numbers and offsets, in both write paths and both ack modes.

mod common;

use common::{OwnedInput, append_owned, arb_input, read_all, small_config};
use dataplane_log::{AckMode, Offset, Partition, PartitionId, SequenceNumber, WritePath};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_read_back_with_every_field_and_contiguous_positions(
        batches in proptest::collection::vec(proptest::collection::vec(arb_input(), 1..24), 1..14),
        clock_steps in proptest::collection::vec(-50i64..200, 14),
        mmap in any::<bool>(),
        written in any::<bool>(),
    ) {
        // Setup: a partition with 64 KiB segments (so larger cases roll), fed random batches
        // at a clock that sometimes goes backwards; durable mode flushes after every batch.
        // Expectation: receipts chain (each batch starts where the previous ended, sequence
        // numbers contiguous from 0, enqueued time never decreasing), and reading everything
        // back yields exactly the inputs with the receipts' positions.
        let dir = tempfile::tempdir().expect("tempdir");
        let write_path = if mmap { WritePath::Mmap } else { WritePath::Pwrite };
        let ack = if written { AckMode::Written } else { AckMode::Durable };
        let (mut partition, report) =
            Partition::open(dir.path(), PartitionId(1), small_config(write_path, ack)).expect("open");
        prop_assert!(report.is_clean());
        let mut expected: Vec<(u64, Offset, i64, OwnedInput)> = Vec::new();
        let (mut now_ms, mut next_offset, mut last_enqueued) = (1_000i64, Offset(0), i64::MIN);
        for (batch, step) in batches.iter().zip(&clock_steps) {
            now_ms += step;
            let receipt = append_owned(&mut partition, batch, now_ms).expect("append");
            prop_assert_eq!(receipt.first_sequence, SequenceNumber(expected.len() as u64));
            prop_assert_eq!(receipt.first_offset, next_offset);
            prop_assert_eq!(receipt.count as usize, batch.len());
            prop_assert!(receipt.enqueued_ms >= last_enqueued && receipt.enqueued_ms >= now_ms);
            let offsets = partition.record_offsets().to_vec();
            prop_assert_eq!(offsets.len(), batch.len());
            prop_assert_eq!(offsets[0], receipt.first_offset);
            prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(*offsets.last().expect("non-empty") < receipt.end_offset);
            for (input, offset) in batch.iter().zip(offsets) {
                expected.push((expected.len() as u64, offset, receipt.enqueued_ms, input.clone()));
            }
            next_offset = receipt.end_offset;
            last_enqueued = receipt.enqueued_ms;
            if ack == AckMode::Durable {
                partition.flush_now().expect("flush");
            }
        }
        let committed = partition.committed();
        prop_assert_eq!(committed.end.offset, next_offset);
        prop_assert_eq!(committed.end.sequence, SequenceNumber(expected.len() as u64));
        let last = committed.last.expect("records were committed");
        prop_assert_eq!(last.offset, expected.last().expect("non-empty").1);

        let read = read_all(&partition.reader());
        prop_assert_eq!(read.len(), expected.len());
        for ((header, record), (sequence, offset, enqueued_ms, input)) in read.iter().zip(&expected) {
            prop_assert_eq!(header.sequence, *sequence);
            prop_assert_eq!(header.offset, offset.0);
            prop_assert_eq!(header.enqueued_ms, *enqueued_ms);
            prop_assert_eq!(record, input);
        }
    }
}
