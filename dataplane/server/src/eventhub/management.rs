//! `$management` READ answers: the event hub's and a partition's properties, from the hub's
//! configuration and the partition's committed position.

use dataplane_amqp::management::{EventHubProperties, PartitionProperties};
use dataplane_log::PartitionReader;

/// A READ that cannot be answered: the status and the description the client shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFailure {
    /// 404 (no such partition) or 503 (the partition did not open).
    pub status: i32,
    /// What went wrong.
    pub description: String,
}

/// The hub's properties.
pub fn event_hub(hub_name: &str, created_ms: i64, partition_count: u32) -> EventHubProperties {
    EventHubProperties {
        name: hub_name.to_owned(),
        created_at_ms: created_ms,
        partition_ids: (0..partition_count).map(|id| id.to_string()).collect(),
    }
}

/// Parses a partition id the way the hub lists them (`0` to `count - 1`).
pub fn partition_id(text: &str, partition_count: u32) -> Option<u32> {
    // Reject signs, spaces and leading zeros: the client compares ids as strings.
    let canonical =
        text == "0" || (!text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit()));
    text.parse::<u32>()
        .ok()
        .filter(|id| canonical && *id < partition_count)
}

/// A partition's properties from its committed position. An empty partition (never written,
/// or emptied by retention) reports `is_partition_empty` and its next sequence number as the
/// beginning.
pub fn partition(
    hub_name: &str,
    partition: &str,
    partition_count: u32,
    reader: impl FnOnce(u32) -> Option<PartitionReader>,
) -> Result<PartitionProperties, ReadFailure> {
    let id = partition_id(partition, partition_count).ok_or_else(|| ReadFailure {
        status: 404,
        description: format!(
            "partition '{partition}' does not exist: event hub '{hub_name}' has partitions 0 to {}",
            partition_count.saturating_sub(1)
        ),
    })?;
    let reader = reader(id).ok_or_else(|| ReadFailure {
        status: 503,
        description: format!("partition {id} is unavailable: it failed to open at start"),
    })?;
    let committed = reader.committed();
    let earliest = reader.earliest();
    let is_empty = earliest.sequence.0 >= committed.end.sequence.0;
    let (sequence, offset, enqueued_ms) = match committed.last {
        Some(last) => (
            last.sequence.0 as i64,
            last.offset.0.to_string(),
            last.enqueued_ms,
        ),
        None => (-1, "-1".to_owned(), 0),
    };
    Ok(PartitionProperties {
        name: hub_name.to_owned(),
        partition: id.to_string(),
        begin_sequence_number: earliest.sequence.0 as i64,
        last_enqueued_sequence_number: sequence,
        last_enqueued_offset: offset,
        last_enqueued_time_ms: enqueued_ms,
        is_partition_empty: is_empty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane_log::{Partition, PartitionConfig, PartitionId, RecordInput};

    #[test]
    fn partition_ids_are_canonical_and_in_range() {
        assert_eq!(partition_id("0", 4), Some(0));
        assert_eq!(partition_id("3", 4), Some(3));
        assert_eq!(partition_id("4", 4), None);
        assert_eq!(partition_id("01", 4), None);
        assert_eq!(partition_id("-1", 4), None);
        assert_eq!(partition_id("", 4), None);
    }

    #[test]
    fn partition_properties_follow_the_committed_records() {
        // Setup: an empty partition, then two committed records. Expectation: empty reports
        // -1 and "-1"; then the last record's sequence number, offset string and time.
        let dir = tempfile::tempdir().unwrap();
        let config = PartitionConfig {
            segment_bytes: 1 << 20,
            ..PartitionConfig::default()
        };
        let (mut log, _) = Partition::open(dir.path(), PartitionId(1), config).unwrap();
        let reader = log.reader();
        let empty = partition("hub", "1", 4, |_| Some(reader.clone())).unwrap();
        assert!(empty.is_partition_empty);
        assert_eq!(empty.last_enqueued_sequence_number, -1);
        assert_eq!(empty.last_enqueued_offset, "-1");

        let record = RecordInput {
            payload: b"x",
            ..RecordInput::default()
        };
        log.append(&[record, record], 1_700_000_000_000).unwrap();
        log.flush_now().unwrap();
        let properties = partition("hub", "1", 4, |_| Some(reader.clone())).unwrap();
        let last = reader.committed().last.unwrap();
        assert!(!properties.is_partition_empty);
        assert_eq!(properties.begin_sequence_number, 0);
        assert_eq!(properties.last_enqueued_sequence_number, 1);
        assert_eq!(properties.last_enqueued_offset, last.offset.0.to_string());
        assert_eq!(properties.last_enqueued_time_ms, 1_700_000_000_000);

        let missing = partition("hub", "9", 4, |_| Some(reader.clone())).unwrap_err();
        assert_eq!(missing.status, 404);
        let closed = partition("hub", "2", 4, |_| None).unwrap_err();
        assert_eq!(closed.status, 503);
    }
}
