//! A partition directory has one owner at a time.

use dataplane_log::{Error, Partition, PartitionConfig, PartitionId};

#[test]
fn a_second_open_of_the_same_directory_is_refused_until_the_first_is_dropped() {
    // Setup: open a partition, open the same directory again. Expectation: Locked naming the
    // lock file; after dropping the first, the second open succeeds.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PartitionConfig {
        segment_bytes: 64 * 1024,
        prefault: false,
        ..PartitionConfig::default()
    };
    let (first, _) = Partition::open(dir.path(), PartitionId(0), config.clone()).expect("open");
    match Partition::open(dir.path(), PartitionId(0), config.clone()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path().join("LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    Partition::open(dir.path(), PartitionId(0), config).expect("open after the owner left");
}

#[test]
fn a_directory_of_another_partition_is_refused() {
    // Setup: a directory written as partition 0, opened as partition 1. Expectation: the
    // segment header check refuses it, naming the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PartitionConfig {
        segment_bytes: 64 * 1024,
        prefault: false,
        ..PartitionConfig::default()
    };
    drop(Partition::open(dir.path(), PartitionId(0), config.clone()).expect("open"));
    match Partition::open(dir.path(), PartitionId(1), config) {
        Err(Error::CorruptSegment { path, reason }) => {
            assert!(path.ends_with("00000000000000000000.segment"));
            assert!(reason.contains("another partition"));
        }
        other => panic!("expected CorruptSegment, got {other:?}"),
    }
}
